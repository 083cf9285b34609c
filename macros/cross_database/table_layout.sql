{#-
    How a big mart is laid out for reading one (year, state) slice at a time.

    select_columns_for_layout(columns): the select list. Athena requires the `partitioned_by`
    columns last in a CTAS select, so they move to the end there; elsewhere the list stays in
    the contract's order. Contracts match columns by name, so both satisfy the same contract.
    The defaults are plain SQL every engine runs (PostgreSQL uses them).

    No ordering macro: on PostgreSQL the export's rows already leave their window in file
    order (int_export_rows.sql says why no `order by`); Athena partitions by slice.
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
