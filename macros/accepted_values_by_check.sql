{#-
    dbt's `accepted_values` test on PostgreSQL, answered by the catalog where it can be: when
    the tested table has a validated, enforced CHECK constraint that is exactly
    `<column> = any (array[...])` over text literals, each of them an accepted value,
    PostgreSQL has refused every other value on every write (a CHECK constraint is no
    trigger: no replication role or disabled trigger skips it), and the table is not scanned
    (the catalog check is a one-time filter of the query). Otherwise (a view, no such
    constraint, one with more conditions or other types, one added `not valid` or `not
    enforced`, a value the test does not accept, `quote: false`, a test with a `where`) the
    rows are read and grouped as dbt's own test does: the values outside the list, with their
    counts. Nulls pass either way (dbt's `not in` and a CHECK both let them through). Other
    adapters run dbt's own test.

    The daily build's accepted-values tests on the source tables scanned millions of rows to
    confirm what the application's CHECK constraints already guarantee (docs/models.md, "The
    daily build"). The same idea as macros/unique_by_index.sql.
-#}
{% macro postgres__test_accepted_values(model, column_name, values, quote=True) %}
    {%- if model is string or not quote -%}
        {{ return(dbt.default__test_accepted_values(model, column_name, values, quote)) }}
    {%- endif -%}
    {%- set relation_name = adapter.quote(model.schema) ~ '.' ~ adapter.quote(model.identifier) -%}
    {%- set accepted -%}
        {%- for value in values -%}
            '{{ value | string | replace("'", "''") }}'{{ ", " if not loop.last }}
        {%- endfor -%}
    {%- endset %}

    with check_definitions as (
        select
            pg_catalog.pg_get_constraintdef(con.oid) as definition,
            'CHECK ((' || quote_ident({{ dbt.string_literal(column_name) }})
            || ' = ANY (ARRAY[' as prefix
        from pg_catalog.pg_constraint as con
        inner join pg_catalog.pg_attribute as att
            on con.conrelid = att.attrelid and con.conkey = array[att.attnum]
        where
            con.conrelid = to_regclass({{ dbt.string_literal(relation_name) }})
            and con.contype = 'c'
            and con.convalidated
            -- PostgreSQL 18's `not enforced` (the column is absent before 18)
            and coalesce((to_jsonb(con) ->> 'conenforced')::boolean, true)
            and att.attname = {{ dbt.string_literal(column_name) }}
            -- how the literals below are spelt
            and current_setting('standard_conforming_strings') = 'on'
    ),

    check_lists as (
        select substr(
            definition,
            length(prefix) + 1,
            length(definition) - length(prefix) - length('])))')
        ) as literals
        from check_definitions
        where
            left(definition, length(prefix)) = prefix
            and right(definition, length('])))')) = '])))'
    ),

    checked as (
        -- a list made of nothing but text literals, each one an accepted value
        select 1 as found
        from check_lists
        where
            literals <> ''
            and regexp_replace(literals, '''(?:[^'']|'''')*''::text(, |$)', '', 'g') = ''
            and not exists (
                select 1
                from regexp_matches(literals, '''((?:[^'']|'''')*)''::text', 'g') as literal (m)
                where replace(literal.m[1], '''''', '''') not in ({{ accepted }})
            )
    ),

    all_values as (
        select
            {{ column_name }} as value_field,
            count(*) as n_records
        from {{ model }}
        where not exists (select found from checked)
        group by {{ column_name }}
    )

    select
        value_field,
        n_records
    from all_values
    where value_field not in ({{ accepted }})

{% endmacro %}
