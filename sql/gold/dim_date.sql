-- A calendar from 2024 through 2030.
select d as date_key,
       extract(year from d) as year,
       extract(quarter from d) as quarter,
       extract(month from d) as month,
       to_char(d, '%B') as month_name,
       extract(day from d) as day,
       extract(dow from d) as day_of_week,
       extract(dow from d) in (0, 6) as is_weekend
from (select unnest(generate_series(DATE '2024-01-01', DATE '2030-12-31', INTERVAL '1 day'))
      as d)
