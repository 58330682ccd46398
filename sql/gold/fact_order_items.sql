select l.order_id, l.line_no, l.customer_id, l.product_id, l.order_date as date_key,
       l.category, p.parent_category, l.status, l.price, l.quantity, l.amount
from {{ ref('order_lines') }} l
left join {{ ref('products') }} p using (product_id)
