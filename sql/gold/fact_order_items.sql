-- One row per order line, with the order's status and date from fact_orders.
select l.order_id, l.line_no, f.customer_id, l.product_id, f.date_key,
       l.category, p.parent_category, f.status, l.price, l.quantity, l.amount
from {{ ref('order_lines') }} l
join {{ ref('fact_orders') }} f using (order_id)
left join {{ ref('dim_product') }} p using (product_id)
