{#- True when the text matches the (POSIX / Java compatible) regular expression. -#}
{% macro matches_regex(expression, pattern) -%}
    {{ return(adapter.dispatch('matches_regex', 'healthmonix_mips')(expression, pattern)) }}
{%- endmacro %}

{% macro default__matches_regex(expression, pattern) -%}
    ({{ expression }} ~ '{{ pattern }}')
{%- endmacro %}

{% macro postgres__matches_regex(expression, pattern) -%}
    {{ default__matches_regex(expression, pattern) }}
{%- endmacro %}

{% macro athena__matches_regex(expression, pattern) -%}
    regexp_like({{ expression }}, '{{ pattern }}')
{%- endmacro %}
