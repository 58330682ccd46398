-- One row per order line of each order's latest state (order_items flattened).
with lines as (
    select order_id, customer_id, status, created_at, unnest(order_items) as line
    from {{ ref('orders') }}
)
select order_id,
       row_number() over (
           partition by order_id
           order by line['product_id'], line['price'], line['quantity']) as line_no,
       customer_id, status, created_at,
       cast(created_at as date) as order_date,
       line['product_id'] as product_id,
       line['category'] as category,
       cast(line['price'] as decimal(12, 2)) as price,
       line['quantity'] as quantity,
       cast(line['price'] as decimal(12, 2)) * line['quantity'] as amount
from lines
