-- Clickstream to order: sessions per day that viewed, added to cart, checked out, ordered.
with sessions as (
    select session_id, cast(min(at) as date) as date_key,
           max(case when event_type = 'page_view' then 1 else 0 end) as viewed,
           max(case when event_type = 'add_to_cart' then 1 else 0 end) as carted,
           max(case when event_type = 'checkout' then 1 else 0 end) as checked_out
    from {{ ref('clicks') }}
    group by session_id
)
select s.date_key,
       count(*) as sessions,
       sum(s.viewed) as viewed,
       sum(s.carted) as added_to_cart,
       sum(s.checked_out) as checked_out,
       count(o.order_id) as ordered,
       cast(count(o.order_id) * 100.0 / count(*) as decimal(5, 2)) as conversion_pct
from sessions s
left join {{ ref('fact_orders') }} o using (session_id)
group by s.date_key
