{#- tidepool's own `dbt_utils`: the package's commonly used macros and generic tests,
    written for tidepool from dbt_utils' documented behaviour (same names, arguments and
    results), so a project that calls them runs without `dbt deps`. A real dbt_utils in
    the project's `dbt_packages/` takes its place. -#}

{% macro generate_surrogate_key(field_list) -%}
{%- set null_value = '' if var('surrogate_key_treat_nulls_as_empty_strings', false) else '_dbt_utils_surrogate_key_null_' -%}
{%- set parts = [] -%}
{%- for field in field_list -%}
{%- do parts.append("coalesce(cast(" ~ field ~ " as " ~ dbt.type_string() ~ "), '" ~ null_value ~ "')") -%}
{%- if not loop.last %}{% do parts.append("'-'") %}{% endif -%}
{%- endfor -%}
{{ dbt.hash(dbt.concat(parts)) }}
{%- endmacro %}

{% macro get_filtered_columns_in_relation(from, except=[]) -%}
{%- if not execute -%}{{ return([]) }}{%- endif -%}
{%- set skip = except | map('lower') | list -%}
{%- set kept = [] -%}
{%- for col in adapter.get_columns_in_relation(from) -%}
{%- if col.column | lower not in skip %}{% do kept.append(col.column) %}{% endif -%}
{%- endfor -%}
{{ return(kept) }}
{%- endmacro %}

{% macro star(from, relation_alias=False, except=[], prefix='', suffix='', quote_identifiers=True) -%}
{%- if not execute -%}{{ return('*') }}{%- endif -%}
{%- set cols = dbt_utils.get_filtered_columns_in_relation(from, except) -%}
{%- if cols | length == 0 -%}
{{ return('/* no columns returned from star() macro */') }}
{%- endif -%}
{%- for col in cols -%}
{%- if relation_alias %}{{ relation_alias }}.{% endif -%}
{%- if quote_identifiers %}{{ adapter.quote(col) }}{% else %}{{ col }}{% endif -%}
{%- if prefix != '' or suffix != '' %} as {% if quote_identifiers %}{{ adapter.quote(prefix ~ col ~ suffix) }}{% else %}{{ prefix ~ col ~ suffix }}{% endif %}{% endif -%}
{%- if not loop.last %},
  {% endif -%}
{%- endfor -%}
{%- endmacro %}

{% macro get_powers_of_two(upper_bound) -%}
{%- if upper_bound <= 0 -%}{{ exceptions.raise_compiler_error("upper bound must be positive") }}{%- endif -%}
{%- for n in range(1, 100) -%}
{%- if upper_bound <= 2 ** n %}{{ return(n) }}{% endif -%}
{%- endfor -%}
{%- endmacro %}

{% macro generate_series(upper_bound) -%}
{%- set n = dbt_utils.get_powers_of_two(upper_bound) -%}
with p as (
    select 0 as generated_number union all select 1
), unioned as (
    select
    {% for i in range(n) %}p{{ i }}.generated_number * power(2, {{ i }}){% if not loop.last %} + {% endif %}{% endfor %}
    + 1 as generated_number
    from {% for i in range(n) %}p as p{{ i }}{% if not loop.last %} cross join {% endif %}{% endfor %}
)
select * from unioned
where generated_number <= {{ upper_bound }}
order by generated_number
{%- endmacro %}

{% macro get_intervals_between(start_date, end_date, datepart) -%}
{%- call statement('get_intervals_between', fetch_result=True) -%}
select {{ dbt.datediff(start_date, end_date, datepart) }}
{%- endcall -%}
{%- set result = load_result('get_intervals_between') -%}
{%- if result and result['data'] -%}
{{ return(result['data'][0][0] | int) }}
{%- else -%}
{{ return(1) }}
{%- endif -%}
{%- endmacro %}

{% macro date_spine(datepart, start_date, end_date) -%}
with rawdata as (
    {{ dbt_utils.generate_series(dbt_utils.get_intervals_between(start_date, end_date, datepart)) }}
),
all_periods as (
    select ({{ dbt.dateadd(datepart, "row_number() over (order by generated_number) - 1", start_date) }}) as date_{{ datepart }}
    from rawdata
),
filtered as (
    select * from all_periods where date_{{ datepart }} <= {{ end_date }}
)
select * from filtered
{%- endmacro %}

{% macro get_column_values(table, column, order_by='count(*) desc', max_records=none, default=none, where=none) -%}
{%- if not execute -%}{{ return(default or []) }}{%- endif -%}
{%- if adapter.get_relation(database=none, schema=table.schema, identifier=table.identifier) is none -%}
{{ return(default or []) }}
{%- endif -%}
{%- set sql -%}
select {{ column }} as value
from {{ table }}
{% if where is not none %}where {{ where }}{% endif %}
group by {{ column }}
order by {{ order_by }}
{% if max_records is not none %}limit {{ max_records }}{% endif %}
{%- endset -%}
{%- set result = run_query(sql) -%}
{{ return(result.columns[0].values()) }}
{%- endmacro %}

{% macro get_single_value(query, default=none) -%}
{%- if not execute -%}{{ return(default) }}{%- endif -%}
{%- set result = run_query(query) -%}
{%- if result.rows | length == 0 -%}{{ return(default) }}{%- endif -%}
{{ return(result.rows[0][0]) }}
{%- endmacro %}

{% macro union_relations(relations, column_override=none, include=[], exclude=[], source_column_name='_dbt_source_relation', where=none) -%}
{%- if not execute -%}{{ return('') }}{%- endif -%}
{%- set overrides = column_override or {} -%}
{%- set names = [] -%}
{%- set types = {} -%}
{%- set by_relation = {} -%}
{%- for relation in relations -%}
{%- set present = [] -%}
{%- for col in adapter.get_columns_in_relation(relation) -%}
{%- set lower = col.column | lower -%}
{%- if (include | length == 0 or lower in include | map('lower') | list) and lower not in exclude | map('lower') | list -%}
{%- if lower not in names %}{% do names.append(lower) %}{% do types.update({lower: overrides.get(col.column, col.data_type)}) %}{% endif -%}
{%- do present.append(lower) -%}
{%- endif -%}
{%- endfor -%}
{%- do by_relation.update({relation | string: present}) -%}
{%- endfor -%}
{%- for relation in relations %}
(
    select
        cast({{ dbt.string_literal(relation | string) }} as text) as {{ adapter.quote(source_column_name) }},
        {% for name in names -%}
        {%- if name in by_relation[relation | string] -%}
        cast({{ adapter.quote(name) }} as {{ types[name] }}) as {{ adapter.quote(name) }}
        {%- else -%}
        cast(null as {{ types[name] }}) as {{ adapter.quote(name) }}
        {%- endif -%}
        {%- if not loop.last %},
        {% endif -%}
        {%- endfor %}
    from {{ relation }}
    {% if where %}where {{ where }}{% endif %}
)
{% if not loop.last %}union all{% endif %}
{%- endfor -%}
{%- endmacro %}

{% macro deduplicate(relation, partition_by, order_by) -%}
select * from (
    select _dedup.*, row_number() over (partition by {{ partition_by }} order by {{ order_by }}) as _dbt_utils_dedup_rn
    from {{ relation }} as _dedup
) as _deduped
where _dbt_utils_dedup_rn = 1
{%- endmacro %}

{% macro safe_divide(numerator, denominator) -%}
( {{ numerator }} ) / nullif( ( {{ denominator }} ), 0)
{%- endmacro %}

{% macro safe_add(field_list) -%}
{%- set parts = [] -%}
{%- for f in field_list %}{% do parts.append("coalesce(" ~ f ~ ", 0)") %}{% endfor -%}
{{ parts | join(' +\n  ') }}
{%- endmacro %}

{% macro safe_subtract(field_list) -%}
{%- set parts = [] -%}
{%- for f in field_list %}{% do parts.append("coalesce(" ~ f ~ ", 0)") %}{% endfor -%}
{{ parts | join(' -\n  ') }}
{%- endmacro %}

{% macro group_by(n) -%}
group by {% for i in range(1, n + 1) %}{{ i }}{% if not loop.last %},{% endif %}{% endfor %}
{%- endmacro %}

{% macro pivot(column, values, alias=True, agg='sum', cmp='=', prefix='', suffix='', then_value=1, else_value=0, quote_identifiers=True, distinct=False) -%}
{%- for value in values -%}
{{ agg }}({% if distinct %}distinct {% endif %}case when {{ column }} {{ cmp }} '{{ dbt.escape_single_quotes(value) }}' then {{ then_value }} else {{ else_value }} end)
{%- if alias %} as {% if quote_identifiers %}{{ adapter.quote(prefix ~ value ~ suffix) }}{% else %}{{ prefix ~ value ~ suffix }}{% endif %}{% endif -%}
{%- if not loop.last %},
  {% endif -%}
{%- endfor -%}
{%- endmacro %}

{#- Generic tests: each query returns the failing rows. -#}

{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) -%}
select * from {{ model }}
where 1 = 2
{%- if min_value is not none %} or not {{ column_name }} >{{ "=" if inclusive }} {{ min_value }}{% endif %}
{%- if max_value is not none %} or not {{ column_name }} <{{ "=" if inclusive }} {{ max_value }}{% endif %}
{%- endtest %}

{% test expression_is_true(model, expression, column_name=none) -%}
select * from {{ model }}
{% if column_name is none %}where not ({{ expression }}){% else %}where not ({{ column_name }} {{ expression }}){% endif %}
{%- endtest %}

{% test unique_combination_of_columns(model, combination_of_columns, quote_columns=false) -%}
{%- set cols = [] -%}
{%- for c in combination_of_columns %}{% do cols.append(adapter.quote(c) if quote_columns else c) %}{% endfor -%}
select {{ cols | join(', ') }}, count(*) as n_records
from {{ model }}
group by {{ cols | join(', ') }}
having count(*) > 1
{%- endtest %}

{% test not_constant(model, column_name, group_by_columns=[]) -%}
select {% for c in group_by_columns %}{{ c }}, {% endfor %}count(distinct {{ column_name }}) as filler_column
from {{ model }}
{% if group_by_columns %}group by {{ group_by_columns | join(', ') }}{% endif %}
having count(distinct {{ column_name }}) = 1
{%- endtest %}

{% test at_least_one(model, column_name, group_by_columns=[]) -%}
select {% for c in group_by_columns %}{{ c }}, {% endfor %}count({{ column_name }}) as filler_column
from {{ model }}
{% if group_by_columns %}group by {{ group_by_columns | join(', ') }}{% endif %}
having count({{ column_name }}) = 0
{%- endtest %}

{% test not_empty_string(model, column_name, trim_whitespace=true) -%}
select {{ column_name }} from {{ model }}
where {% if trim_whitespace %}trim({{ column_name }}){% else %}{{ column_name }}{% endif %} = ''
{%- endtest %}

{% test not_accepted_values(model, column_name, values, quote=true) -%}
select {{ column_name }} as value_field from {{ model }}
where {{ column_name }} in ({% for v in values %}{% if quote %}'{{ v }}'{% else %}{{ v }}{% endif %}{% if not loop.last %}, {% endif %}{% endfor %})
{%- endtest %}

{% test equal_rowcount(model, compare_model) -%}
select a.n as model_rows, b.n as compare_model_rows
from (select count(*) as n from {{ model }}) as a
cross join (select count(*) as n from {{ compare_model }}) as b
where a.n <> b.n
{%- endtest %}

{% test fewer_rows_than(model, compare_model) -%}
select a.n as model_rows, b.n as compare_model_rows
from (select count(*) as n from {{ model }}) as a
cross join (select count(*) as n from {{ compare_model }}) as b
where a.n >= b.n
{%- endtest %}

{% test not_null_proportion(model, column_name, at_least, at_most=1.0) -%}
select * from (
    select sum(case when {{ column_name }} is null then 0 else 1 end) / cast(count(*) as double precision) as not_null_proportion
    from {{ model }}
) as p
where not_null_proportion < {{ at_least }} or not_null_proportion > {{ at_most }}
{%- endtest %}

{% test relationships_where(model, column_name, to, field, from_condition='1=1', to_condition='1=1') -%}
select child.{{ column_name }} as id
from (select * from {{ model }} where {{ from_condition }}) as child
left join (select * from {{ to }} where {{ to_condition }}) as parent
  on child.{{ column_name }} = parent.{{ field }}
where child.{{ column_name }} is not null and parent.{{ field }} is null
{%- endtest %}

{% test recency(model, field, datepart, interval, ignore_time_component=false, group_by_columns=[]) -%}
select max({{ field }}) as most_recent
from {{ model }}
having max({{ field }}) < {{ dbt.dateadd(datepart, -interval, dbt.current_timestamp()) }} or max({{ field }}) is null
{%- endtest %}

{% test equality(model, compare_model, compare_columns=none) -%}
{%- set cols = (compare_columns | join(', ')) if compare_columns else '*' -%}
select * from (
    (select {{ cols }} from {{ model }} except select {{ cols }} from {{ compare_model }})
    union all
    (select {{ cols }} from {{ compare_model }} except select {{ cols }} from {{ model }})
) as differences
{%- endtest %}

{% test sequential_values(model, column_name, interval=1, datepart=none) -%}
select * from (
    select {{ column_name }}, lag({{ column_name }}) over (order by {{ column_name }}) as previous_{{ column_name }}
    from {{ model }}
) as s
where {% if datepart %}{{ column_name }} <> {{ dbt.dateadd(datepart, interval, 'previous_' ~ column_name) }}{% else %}{{ column_name }} <> previous_{{ column_name }} + {{ interval }}{% endif %}
{%- endtest %}
