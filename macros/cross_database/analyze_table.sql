{#-
    Fresh planner statistics for a table just built, so the next joins are planned from real
    row counts and distinct values (PostgreSQL does not analyze a new table until autovacuum
    gets to it; guessed counts turn hash joins into nested loops). Athena plans without them,
    and so does any other adapter: the default does nothing, which is right everywhere.
-#}
{% macro analyze_table(relation) -%}
    {{ return(adapter.dispatch('analyze_table', 'healthmonix_mips')(relation)) }}
{%- endmacro %}

{% macro default__analyze_table(relation) -%}
{%- endmacro %}

{% macro postgres__analyze_table(relation) -%}
    {#- a view in a folder of tables has no statistics of its own -#}
    {%- if config.get('materialized') != 'view' -%}
        analyze {{ relation }}
    {%- endif -%}
{%- endmacro %}
