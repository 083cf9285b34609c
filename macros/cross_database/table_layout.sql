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

{#-
    file_order_keys(): the keys that put the export's rows in file order, slice columns first.
    int_visit_measures_unioned numbers each slice's visits by the middle three (its window) and a
    visit's three rows by measure_order, so ordering by these keys is ordering by
    file_row_number; it returns its rows in this order and mips_export orders by the same keys,
    which lets PostgreSQL keep the window's sort instead of sorting the export's wide rows again
    (docs/models.md, "File order without a second sort"; test_dbt_build checks the plan).
-#}
{% macro file_order_keys() -%}
    {%- set slice = ['performance_year', 'state_code'] -%}
    {{ return(slice + ['care_plan_id', 'visit_date', 'visit_id', 'measure_order']) }}
{%- endmacro %}
