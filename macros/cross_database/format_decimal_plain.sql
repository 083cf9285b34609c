{#-
    A number as the file writes it: plain decimal text, no exponent, no trailing zeros
    (42.50 → 42.5, 40.00 → 40, 7 → 7); null stays null (an empty field).

    The caller states the decimal type the value is formatted in, decimal(precision, scale),
    and both engines cast to exactly that type first, so they format the same value: a value
    that does not fit fails on both (PostgreSQL: numeric field overflow; Athena: cannot cast),
    digits beyond the scale are rounded half away from zero on both, and within the type the
    text is exact (no double on the way). No default: another adapter fails to compile.
-#}
{% macro format_decimal_plain(number_expression, precision, scale) -%}
    {%- if precision is not integer or scale is not integer
        or precision < 1 or precision > 38 or scale < 0 or scale > precision -%}
        {{ exceptions.raise_compiler_error(
            "format_decimal_plain(" ~ number_expression ~ ", " ~ precision ~ ", " ~ scale
            ~ "): precision must be an integer from 1 to 38 and scale an integer from 0 to"
            ~ " precision (decimal(precision, scale) exists on PostgreSQL and Athena alike)"
        ) }}
    {%- endif -%}
    {{ return(adapter.dispatch('format_decimal_plain', 'healthmonix_mips')(
        number_expression, precision, scale
    )) }}
{%- endmacro %}

{% macro postgres__format_decimal_plain(number_expression, precision, scale) -%}
    {#- numeric's text form never uses an exponent; trim_scale (PostgreSQL 13+) drops the zeros -#}
    cast(
        trim_scale(cast({{ number_expression }} as numeric({{ precision }}, {{ scale }})))
        as {{ dbt.type_string() }}
    )
{%- endmacro %}

{% macro athena__format_decimal_plain(number_expression, precision, scale) -%}
    {#- a decimal prints every digit of its scale, never an exponent: strip zeros, then a bare point -#}
    regexp_replace(
        regexp_replace(
            cast(cast({{ number_expression }} as decimal({{ precision }}, {{ scale }})) as varchar),
            '(\.[0-9]*?)0+$', '$1'
        ),
        '\.$', ''
    )
{%- endmacro %}
