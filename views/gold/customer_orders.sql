-- CALL gold.customer_orders(42);  CALL gold.customer_orders(42, '2026-11-01');
CREATE OR REPLACE PROCEDURE customer_orders(customer_id BIGINT, since DATE DEFAULT '2000-01-01')
AS SELECT order_id, created_at, status, lines, order_total, payment_amount
   FROM gold.fact_orders
   WHERE customer_id = :customer_id AND date_key >= :since
   ORDER BY created_at DESC;
