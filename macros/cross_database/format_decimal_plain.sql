{#-
    A number as the file writes it: plain decimal text, no exponent, no trailing zeros
    (42.50 → 42.5, 40.00 → 40, 7 → 7); null stays null (an empty field).
-#}
{% macro format_decimal_plain(number_expression) -%}
    {{ return(adapter.dispatch('format_decimal_plain', 'healthmonix_mips')(number_expression)) }}
{%- endmacro %}

{% macro default__format_decimal_plain(number_expression) -%}
    {#- numeric's text form never uses an exponent; trim_scale (PostgreSQL 13+) drops the zeros -#}
    cast(trim_scale(cast({{ number_expression }} as numeric)) as {{ dbt.type_string() }})
{%- endmacro %}

{% macro postgres__format_decimal_plain(number_expression) -%}
    {{ default__format_decimal_plain(number_expression) }}
{%- endmacro %}

{% macro athena__format_decimal_plain(number_expression) -%}
    {#- a decimal prints every digit of its scale and never an exponent (a double would): strip the zeros -#}
    regexp_replace(
        regexp_replace(
            cast(cast({{ number_expression }} as decimal(38, 10)) as varchar),
            '(\.[0-9]*?)0+$', '$1'
        ),
        '\.$', ''
    )
{%- endmacro %}
