-- Per day: orders placed, closed and cancelled, and revenue of closed orders.
select d.date_key, d.day_of_week, d.is_weekend,
       count(f.order_id) as orders,
       sum(case when f.status = 'CLOSED' then 1 else 0 end) as closed,
       sum(case when f.status = 'CANCELLED' then 1 else 0 end) as cancelled,
       coalesce(sum(case when f.status = 'CLOSED' then f.order_total end), 0) as revenue
from {{ ref('fact_orders') }} f
join {{ ref('dim_date') }} d using (date_key)
group by d.date_key, d.day_of_week, d.is_weekend
