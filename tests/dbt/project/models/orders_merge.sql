{{ config(materialized='incremental', incremental_strategy='merge', unique_key='order_id') }}
select order_id, customer_id, amount, status, updated_at from {{ ref('orders_raw') }}
