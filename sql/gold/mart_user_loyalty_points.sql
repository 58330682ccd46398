-- Points earned (grants for closed orders) and spent (bonus payments) per customer.
with earned as (
    select customer_id, sum(points) as earned, count(*) as grants
    from {{ ref('loyalty_grants') }} group by customer_id
),
spent as (
    select customer_id, cast(sum(bonus_payment) * 100 as bigint) as spent
    from {{ ref('fact_orders') }} where status <> 'CANCELLED' group by customer_id
)
select c.customer_id, c.name, c.loyalty_status,
       coalesce(e.earned, 0) as points_earned,
       coalesce(s.spent, 0) as points_spent,
       coalesce(e.earned, 0) - coalesce(s.spent, 0) as points_balance,
       coalesce(e.grants, 0) as grants
from {{ ref('dim_customer') }} c
left join earned e using (customer_id)
left join spent s using (customer_id)
