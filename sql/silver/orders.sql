-- Latest state of every order. Each order event carries the whole order; events can
-- arrive twice or late (an older state after a newer one), so every run takes the new
-- bronze events, adds the current row of the same orders, and keeps the newest state.
{{ config(materialized='incremental', unique_key='order_id') }}
with new_events as (
    select order_id, customer_id, store_id, session_id, created_at, updated_at, status,
           order_items, statuses,
           cast(cost as decimal(12, 2)) as cost,
           cast(bonus_payment as decimal(12, 2)) as bonus_payment,
           coalesce(bonus_grant, 0) as bonus_grant,
           payment['method'] as payment_method,
           cast(payment['amount'] as decimal(12, 2)) as payment_amount,
           _ingested_at
    from {{ source('kafka', 'orders') }}
    {% if is_incremental() %}
    -- coalesce: a first build over an empty bronze table leaves this table empty
    where _ingested_at > coalesce((select max(_ingested_at) from {{ this }}),
                                  TIMESTAMP '1970-01-01 00:00:00Z')
    {% endif %}
),
candidates as (
    select * from new_events
    {% if is_incremental() %}
    union all
    select order_id, customer_id, store_id, session_id, created_at, updated_at, status,
           order_items, statuses, cost, bonus_payment, bonus_grant, payment_method,
           payment_amount, _ingested_at
    from {{ this }}
    where order_id in (select order_id from new_events)
    {% endif %}
),
ranked as (
    select *, row_number() over (
        partition by order_id order by updated_at desc, _ingested_at desc) as rn
    from candidates
)
select order_id, customer_id, store_id, session_id, created_at, updated_at, status,
       order_items, statuses, cost, bonus_payment, bonus_grant, payment_method,
       payment_amount, _ingested_at
from ranked
where rn = 1
