-- Average check by order status and the customer's loyalty tier.
select f.status, coalesce(c.loyalty_status, 'unknown') as loyalty_status,
       count(*) as orders,
       cast(avg(f.payment_amount) as decimal(12, 2)) as average_check,
       sum(f.payment_amount) as paid
from {{ ref('fact_orders') }} f
left join {{ ref('dim_customer') }} c using (customer_id)
group by f.status, coalesce(c.loyalty_status, 'unknown')
