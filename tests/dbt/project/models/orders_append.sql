{{ config(materialized='incremental', incremental_strategy='append') }}
select order_id, amount, updated_at from {{ ref('orders_raw') }}
{% if is_incremental() %}
where updated_at > (select max(updated_at) from {{ this }})
{% endif %}
