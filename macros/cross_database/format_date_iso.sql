{#-
    A date as the file writes it: YYYY-MM-DD text; null stays null (an empty field).
    No default: an adapter without its own version fails to compile instead of running
    another engine's SQL.
-#}
{% macro format_date_iso(date_expression) -%}
    {{ return(adapter.dispatch('format_date_iso', 'healthmonix_mips')(date_expression)) }}
{%- endmacro %}

{% macro postgres__format_date_iso(date_expression) -%}
    {#- to_char does not depend on the session's DateStyle, a plain cast does -#}
    to_char({{ date_expression }}, 'YYYY-MM-DD')
{%- endmacro %}

{% macro athena__format_date_iso(date_expression) -%}
    date_format({{ date_expression }}, '%Y-%m-%d')
{%- endmacro %}
