{#-
    dbt's `unique` test on PostgreSQL, answered by the catalog where it can be: when the tested
    relation has a valid unique index on exactly the tested column (a primary key or a unique
    constraint, which PostgreSQL enforces on every write, whatever the session's replication
    role), no two rows can share a non-null value and the table is not scanned (the index check
    is a one-time filter of the query). Otherwise (a view, no such index, an index on other or
    more columns, a partial or expression index, a test with a `where`) it is dbt's own test:
    the non-null values that occur more than once. Other adapters run dbt's own test.

    The daily build's key tests on the source tables scanned millions of rows to confirm what
    their primary keys already guarantee (docs/models.md, "The daily build").
-#}
{% macro postgres__test_unique(model, column_name) %}
    {%- if model is string -%}
        {{ return(dbt.default__test_unique(model, column_name)) }}
    {%- endif -%}
    {%- set relation_name = adapter.quote(model.schema) ~ '.' ~ adapter.quote(model.identifier) -%}

    with unique_index as (
        select 1 as found
        from pg_catalog.pg_index as ix
        inner join pg_catalog.pg_attribute as att
            on ix.indrelid = att.attrelid and ix.indkey[0] = att.attnum
        where
            ix.indrelid = to_regclass({{ dbt.string_literal(relation_name) }})
            and ix.indisunique
            and ix.indisvalid
            and ix.indnkeyatts = 1
            and ix.indpred is null
            and ix.indexprs is null
            and att.attname = {{ dbt.string_literal(column_name) }}
    )

    select
        {{ column_name }} as unique_field,
        count(*) as n_records
    from {{ model }}
    where
        {{ column_name }} is not null
        and not exists (select found from unique_index)
    group by {{ column_name }}
    having count(*) > 1

{% endmacro %}
