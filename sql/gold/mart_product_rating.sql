select p.product_id, p.name, p.category,
       count(r.review_id) as reviews,
       cast(avg(r.rating) as decimal(3, 2)) as avg_rating,
       sum(case when r.rating >= 4 then 1 else 0 end) as positive
from {{ ref('dim_product') }} p
left join {{ ref('reviews') }} r using (product_id)
group by p.product_id, p.name, p.category
