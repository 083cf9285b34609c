{#-
    How a big mart is laid out for reading one (year, state) slice at a time.

    select_columns_for_layout(columns): the select list. Athena requires the `partitioned_by`
    columns last in a CTAS select, so they move to the end there; elsewhere the list stays in
    the contract's order. Contracts match columns by name, so both satisfy the same contract.
    The defaults are plain SQL every engine runs (PostgreSQL uses them).

    order_rows_for_layout(columns): PostgreSQL writes the rows in slice order, so the index
    on the slice columns reads each slice from adjacent pages; Athena partitions instead.
-#}
{% macro select_columns_for_layout(columns) -%}
    {{ return(adapter.dispatch('select_columns_for_layout', 'healthmonix_mips')(columns)) }}
{%- endmacro %}

{% macro default__select_columns_for_layout(columns) -%}
    {{ columns | join(',\n    ') }}
{%- endmacro %}

{% macro athena__select_columns_for_layout(columns) -%}
    {%- set partitioned_by = config.get('partitioned_by') or [] -%}
    {%- set ordered = [] -%}
    {%- for column in columns if column not in partitioned_by -%}
        {%- do ordered.append(column) -%}
    {%- endfor -%}
    {%- for column in partitioned_by -%}
        {%- do ordered.append(column) -%}
    {%- endfor -%}
    {{ ordered | join(',\n    ') }}
{%- endmacro %}

{% macro order_rows_for_layout(columns) -%}
    {{ return(adapter.dispatch('order_rows_for_layout', 'healthmonix_mips')(columns)) }}
{%- endmacro %}

{% macro default__order_rows_for_layout(columns) -%}
    order by {{ columns | join(', ') }}
{%- endmacro %}

{% macro athena__order_rows_for_layout(columns) -%}
    {#- partitions already separate the slices; a global sort would only cost time -#}
{%- endmacro %}
