-- Latest state of every product (prices change over time).
select product_id, name, category, parent_category,
       cast(price as decimal(12, 2)) as price, updated_at
from (
    select *, row_number() over (partition by product_id order by updated_at desc) as rn
    from {{ source('kafka', 'products') }}
)
where rn = 1
