{#- tidepool's `dbt` namespace: dbt's cross-database macros in PostgreSQL's dialect, as
    dbt-postgres renders them (`dbt.hash(...)`, `dbt.dateadd(...)`, `dbt.type_string()`...).
    A project overrides one with `postgres__<name>` or `default__<name>` in its macros. -#}

{% macro type_string() %}text{% endmacro %}
{% macro type_timestamp() %}timestamp{% endmacro %}
{% macro type_int() %}integer{% endmacro %}
{% macro type_bigint() %}bigint{% endmacro %}
{% macro type_float() %}double precision{% endmacro %}
{% macro type_numeric() %}numeric(28,6){% endmacro %}
{% macro type_boolean() %}boolean{% endmacro %}

{% macro hash(field) %}md5(cast({{ field }} as text)){% endmacro %}

{% macro concat(fields) %}{{ fields | join(' || ') }}{% endmacro %}

{% macro cast(field, type) %}cast({{ field }} as {{ type }}){% endmacro %}

{% macro safe_cast(field, type) %}cast({{ field }} as {{ type }}){% endmacro %}

{% macro cast_bool_to_text(field) %}cast({{ field }} as text){% endmacro %}

{% macro dateadd(datepart, interval, from_date_or_timestamp) -%}
({{ from_date_or_timestamp }} + ((interval '1 {{ datepart }}') * ({{ interval }})))
{%- endmacro %}

{% macro datediff(first_date, second_date, datepart) -%}
{%- set part = datepart | lower -%}
{%- set days = "((" ~ second_date ~ ")::date - (" ~ first_date ~ ")::date)" -%}
{%- set years = "(date_part('year', (" ~ second_date ~ ")::date) - date_part('year', (" ~ first_date ~ ")::date))" -%}
{%- if part == 'year' -%}
{{ years }}
{%- elif part == 'quarter' -%}
({{ years }} * 4 + date_part('quarter', ({{ second_date }})::date) - date_part('quarter', ({{ first_date }})::date))
{%- elif part == 'month' -%}
({{ years }} * 12 + date_part('month', ({{ second_date }})::date) - date_part('month', ({{ first_date }})::date))
{%- elif part == 'day' -%}
{{ days }}
{%- elif part == 'week' -%}
(floor({{ days }} / 7.0) + case when date_part('dow', ({{ first_date }})::timestamp) <= date_part('dow', ({{ second_date }})::timestamp) then 0 else 1 end)
{%- elif part in ('hour', 'minute', 'second') -%}
{%- set seconds = "floor(extract(epoch from (" ~ second_date ~ ")::timestamp) - extract(epoch from (" ~ first_date ~ ")::timestamp))" -%}
{%- if part == 'hour' -%}
floor({{ seconds }} / 3600)
{%- elif part == 'minute' -%}
floor({{ seconds }} / 60)
{%- else -%}
{{ seconds }}
{%- endif -%}
{%- else -%}
{{ exceptions.raise_compiler_error("datediff: unsupported datepart " ~ datepart) }}
{%- endif -%}
{%- endmacro %}

{% macro date_trunc(datepart, date) %}date_trunc('{{ datepart }}', {{ date }}){% endmacro %}

{% macro last_day(date, datepart) -%}
cast(date_trunc('{{ datepart }}', {{ date }}) + interval '1 {{ datepart }}' - interval '1 day' as date)
{%- endmacro %}

{% macro current_timestamp() %}now(){% endmacro %}

{% macro escape_single_quotes(expression) %}{{ expression | replace("'", "''") }}{% endmacro %}

{% macro string_literal(value) %}'{{ value | replace("'", "''") }}'{% endmacro %}

{% macro split_part(string_text, delimiter_text, part_number) -%}
split_part({{ string_text }}, {{ delimiter_text }}, {{ part_number }})
{%- endmacro %}

{% macro listagg(measure, delimiter_text="','", order_by_clause=none, limit_num=none) -%}
{%- if limit_num is not none -%}
array_to_string((array_agg({{ measure }} {{ order_by_clause or '' }}))[1:{{ limit_num }}], {{ delimiter_text }})
{%- else -%}
string_agg({{ measure }}, {{ delimiter_text }} {{ order_by_clause or '' }})
{%- endif -%}
{%- endmacro %}

{% macro any_value(expression) %}min({{ expression }}){% endmacro %}

{% macro bool_or(expression) %}bool_or({{ expression }}){% endmacro %}

{% macro length(expression) %}length({{ expression }}){% endmacro %}

{% macro position(substring_text, string_text) %}position({{ substring_text }} in {{ string_text }}){% endmacro %}

{% macro replace(field, old_chars, new_chars) %}replace({{ field }}, {{ old_chars }}, {{ new_chars }}){% endmacro %}

{% macro right(string_text, length_expression) %}right({{ string_text }}, {{ length_expression }}){% endmacro %}

{% macro except() %}except{% endmacro %}

{% macro intersect() %}intersect{% endmacro %}

{% macro array_construct(inputs=[], data_type='text') -%}
{%- if inputs | length > 0 -%}array[{{ inputs | join(', ') }}]{%- else -%}array[]::{{ data_type }}[]{%- endif -%}
{%- endmacro %}

{% macro date(year, month, day) -%}
cast('{{ "%04d-%02d-%02d" | format(year, month, day) }}' as date)
{%- endmacro %}
