{#-
    A FROM-clause fragment that turns a comma-separated text column into one row per item:
        from program_years {{ split_to_rows('program_years.states_value', 'listed', 'item') }}
    Items come back untrimmed; empty items are the caller's to drop. No default: another
    adapter fails to compile until it has its own version.
-#}
{% macro split_to_rows(list_expression, table_alias, column_name) -%}
    {{ return(adapter.dispatch('split_to_rows', 'healthmonix_mips')(
        list_expression, table_alias, column_name
    )) }}
{%- endmacro %}

{% macro postgres__split_to_rows(list_expression, table_alias, column_name) -%}
    cross join
        unnest(string_to_array({{ list_expression }}, ',')) as {{ table_alias }} ({{ column_name }})
{%- endmacro %}

{% macro athena__split_to_rows(list_expression, table_alias, column_name) -%}
    cross join unnest(split({{ list_expression }}, ',')) as {{ table_alias }} ({{ column_name }})
{%- endmacro %}
