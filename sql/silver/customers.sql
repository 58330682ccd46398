-- Customer history as SCD2 validity ranges: a row per version of a customer (a loyalty
-- tier change, a move), valid from its updated_at until the next version's.
with versions as (
    select distinct customer_id, name, email, city, loyalty_status, updated_at
    from {{ source('kafka', 'customers') }}
)
select customer_id, name, email, city, loyalty_status,
       updated_at as valid_from,
       lead(updated_at) over (partition by customer_id order by updated_at) as valid_to,
       lead(updated_at) over (partition by customer_id order by updated_at) is null
           as is_current
from versions
