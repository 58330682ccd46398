-- Product reviews, each once (duplicated events dropped).
select review_id, product_id, customer_id, rating, review, created_at
from (
    select *, row_number() over (partition by review_id order by _offset) as rn
    from {{ source('kafka', 'reviews') }}
)
where rn = 1
