-- Customers as they are now, with when they were first seen.
select c.customer_id, c.name, c.email, c.city, c.loyalty_status, f.first_seen,
       c.valid_from as status_since
from {{ ref('customers') }} c
join (select customer_id, min(valid_from) as first_seen
      from {{ ref('customers') }} group by customer_id) f using (customer_id)
where c.is_current
