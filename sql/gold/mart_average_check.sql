-- Average check by order status and the customer's loyalty tier.
select status, coalesce(loyalty_status, 'unknown') as loyalty_status,
       count(*) as orders,
       cast(avg(payment_amount) as decimal(12, 2)) as average_check,
       sum(payment_amount) as paid
from {{ ref('fact_orders') }}
group by status, coalesce(loyalty_status, 'unknown')
