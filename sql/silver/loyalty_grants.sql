-- Loyalty points granted for closed orders, one grant per order.
select customer_id, order_id, points, reason, granted_at
from (
    select *, row_number() over (partition by customer_id, order_id order by _offset) as rn
    from {{ source('kafka', 'loyalty') }}
)
where rn = 1
