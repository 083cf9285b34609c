{#-
    The public export. On PostgreSQL a view of its two parts, tables that dbt builds side by
    side, each holding whole (year, state) files (docs/models.md, "The export in two parts");
    elsewhere (Athena), or with var `mips_export_in_parts: false`, one table of int_export_rows
    (partitioned by year and state on Athena).
-#}
{%- set in_parts = target.type == 'postgres' and var('mips_export_in_parts', true) -%}
{{ config(materialized='view' if in_parts else 'table') }}
{%- set columns = export_columns(1) -%}

{% if in_parts -%}
    select
        {{ columns | join(',\n        ') }}
    from {{ ref('mips_export_v1_part_0') }}
    union all
    select
        {{ columns | join(',\n        ') }}
    from {{ ref('mips_export_v1_part_1') }}
{%- else -%}
    select
        {{ select_columns_for_layout(columns) }}
    from {{ ref('int_export_rows') }}
{%- endif %}
