select product_id, name, category, parent_category, price as list_price, updated_at
from {{ ref('products') }}
