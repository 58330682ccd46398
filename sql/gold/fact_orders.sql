-- One row per order: its latest status, its lines' total, what was paid, and the
-- customer's loyalty tier now.
with lines as (
    select order_id, count(*) as lines, sum(quantity) as items, sum(amount) as order_total
    from {{ ref('order_lines') }}
    group by order_id
)
select o.order_id, o.customer_id, o.store_id, o.session_id,
       cast(o.created_at as date) as date_key,
       o.created_at, o.updated_at, o.status,
       o.status = 'CLOSED' as is_closed,
       c.loyalty_status,
       l.lines, l.items, l.order_total, o.cost as reported_cost,
       o.bonus_payment, o.bonus_grant, o.payment_method, o.payment_amount
from {{ ref('orders') }} o
join lines l using (order_id)
left join {{ ref('dim_customer') }} c using (customer_id)
