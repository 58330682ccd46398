-- Clickstream events, each once. Incremental: a run reads only what bronze received
-- since the last one and merges on event_id, so a duplicate that arrives later is absorbed.
{{ config(materialized='incremental', unique_key='event_id') }}
select event_id, session_id, customer_id, event_type, page, product_id, at, _ingested_at
from (
    select *, row_number() over (partition by event_id order by _offset) as rn
    from {{ source('kafka', 'clicks') }}
    {% if is_incremental() %}
    -- coalesce: a first build over an empty bronze table leaves this table empty
    where _ingested_at > coalesce((select max(_ingested_at) from {{ this }}),
                                  TIMESTAMP '1970-01-01 00:00:00Z')
    {% endif %}
)
where rn = 1
