{#-
    One row per value of `key` in `relation`: the first in `order_by` order, as the select list
    `columns` (expressions of the relation's columns, with their aliases). `order_by` must break
    every tie (end it with a unique column), so that each engine keeps the same row.

    PostgreSQL: `distinct on`, which sorts the rows and keeps the first of each key as it reads
    them; standard SQL elsewhere (Athena, DuckDB): `row_number() = 1` over the key, which
    numbers every row before the filter drops all but one. At the benchmark's scale 100 the
    latest form of 6 million visits took 6.5 s one way and 9.3 s the other on PostgreSQL, and
    the benchmark's monolithic query already used `distinct on` (docs/models.md).
-#}
{% macro first_row_per(relation, key, order_by, columns) -%}
    {{ return(adapter.dispatch('first_row_per', 'healthmonix_mips')(relation, key, order_by, columns)) }}
{%- endmacro %}

{% macro default__first_row_per(relation, key, order_by, columns) -%}
    select
        {{ columns | join(',\n        ') }}
    from (
        select
            *,
            row_number() over (partition by {{ key }} order by {{ order_by }}) as first_row_rank
        from {{ relation }}
    ) as ranked
    where first_row_rank = 1
{%- endmacro %}

{% macro postgres__first_row_per(relation, key, order_by, columns) -%}
    select distinct on ({{ key }})
        {{ columns | join(',\n        ') }}
    from {{ relation }}
    order by {{ key }}, {{ order_by }}
{%- endmacro %}
