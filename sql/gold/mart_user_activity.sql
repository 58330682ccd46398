-- Orders and spend per customer and status.
select f.customer_id, c.name, f.status,
       count(*) as orders, sum(f.order_total) as spend,
       max(f.created_at) as last_order_at
from {{ ref('fact_orders') }} f
left join {{ ref('dim_customer') }} c using (customer_id)
group by f.customer_id, c.name, f.status
