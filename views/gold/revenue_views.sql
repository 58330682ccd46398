-- A view over the marts for dashboards: the last 30 days of revenue.
CREATE OR REPLACE VIEW revenue_last_30_days AS
SELECT date_key, orders, closed, revenue
FROM gold.mart_daily_revenue
WHERE date_key >= current_date - INTERVAL '30 days';
