-- CALL gold.sales_by_category('2026-01-01', '2026-12-31');  revenue of closed orders
CREATE OR REPLACE PROCEDURE sales_by_category(from_date DATE, to_date DATE)
AS SELECT parent_category, category,
          count(DISTINCT order_id) AS orders, sum(quantity) AS items, sum(amount) AS revenue
   FROM gold.fact_order_items
   WHERE date_key BETWEEN :from_date AND :to_date AND status = 'CLOSED'
   GROUP BY parent_category, category
   ORDER BY revenue DESC;
