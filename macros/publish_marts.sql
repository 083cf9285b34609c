-- noqa: disable=all
-- (Jinja and hook statements only: nothing here is a model sqlfluff could lay out.)
{#-
    Publication, the last step of write-audit-publish. dbt builds and tests the marts in the
    target schema as always; the loader reads only the *published* marts, which change in one
    step at the end of a build whose every node passed (macros/record_build.sql decides when).

    The published schema is var `mips_published_schema` (default: the target schema followed
    by `_published`). Each published mart's name is the built mart's, followed by the
    engine's publication suffix: none on PostgreSQL, one per build on Athena. After publication
    the target schema's mart is a view of the published one, so `select * from
    analytics.mips_export_v1` and a later `dbt test` read what was published; the next build
    replaces the view with its own table, which nothing the loader reads depends on.
-#}
{% macro published_schema() -%}
    {{ return(var('mips_published_schema', none) or (target.schema ~ '_published')) }}
{%- endmacro %}

{% macro publication_suffix() -%}
    {{ return(adapter.dispatch('publication_suffix', 'healthmonix_mips')()) }}
{%- endmacro %}

{#- PostgreSQL: the published marts keep the built marts' names; publication swaps them in
    one transaction. -#}
{% macro postgres__publication_suffix() -%}
    {{ return('') }}
{%- endmacro %}

{#- Athena: a new set of tables per publication, named by the build's start and invocation. -#}
{% macro athena__publication_suffix() -%}
    {{ return('__p' ~ run_started_at.strftime('%Y%m%d%H%M%S') ~ '_' ~ invocation_id[:8]) }}
{%- endmacro %}

{#-
    PostgreSQL: inside the transaction that also inserts the `finished` row, so the marts and
    the log row that names their build commit together or not at all. Each step is metadata
    only (no row is copied). The marts are taken in the order of all_mart_relation_names
    (deliveries first), the order in which an export locks them: a publication waits for a
    running export (its ACCESS SHARE locks) and an export that starts meanwhile waits for the
    publication, so an export never reads two builds (loader/engines/postgres.py). The export
    is a view of its two parts there, which are marts too (docs/models.md, "The export in two
    parts"): by name the view comes before them, so it is dropped before the parts it reads;
    `alter table ... set schema` moves a view as it moves a table, and the view reads its
    parts wherever they move (it names them by OID).
-#}
{% macro postgres_publication_sql(marts) -%}
    {%- set built = adapter.quote(target.schema) -%}
    {%- set published = adapter.quote(healthmonix_mips.published_schema()) -%}
    {%- if healthmonix_mips.published_schema() == target.schema -%}
        {{ exceptions.raise_compiler_error("var mips_published_schema must differ from the target schema " ~ target.schema) }}
    {%- endif -%}
    {#- what each published mart is now: the export is a view (of its parts), the others
        tables, and a publication of an earlier version of the project may differ -#}
    {%- set views_query -%}
        select viewname from pg_views
        where schemaname = '{{ healthmonix_mips.published_schema() | replace("'", "''") }}'
    {%- endset -%}
    {%- set published_views = run_query(views_query).columns[0].values() | list -%}
    set local lock_timeout = '{{ var("mips_publication_lock_timeout", "30min") }}';
    create schema if not exists {{ published }};
    {% for mart in marts -%}
    {%- set name = adapter.quote(mart) -%}
    drop {{ 'view' if mart in published_views else 'table' }} if exists {{ published }}.{{ name }};
    alter table {{ built }}.{{ name }} set schema {{ published }};
    create view {{ built }}.{{ name }} as select * from {{ published }}.{{ name }};
    {% endfor -%}
{%- endmacro %}

{#-
    Athena: no transaction spans two statements, so the tables come first and the log row
    that names them is the publication (the loader reads only the tables the newest published
    row names). Renaming an Iceberg table is metadata only, across databases too; the marts
    are Iceberg tables on Athena for that reason (dbt_project.yml). These statements are
    strings so that tests/python/test_athena_publication.py runs them in the DuckDB stand-in.
-#}
{% macro athena_publication_statements(marts, suffix) -%}
    {#- DDL (CREATE SCHEMA, ALTER, DROP) takes Hive's `quotes`, a view Trino's "quotes". -#}
    {%- set built = target.schema -%}
    {%- set published = healthmonix_mips.published_schema() -%}
    {%- set statements = ['create schema if not exists `' ~ published ~ '`'] -%}
    {%- for mart in marts -%}
        {%- do statements.append(
            'alter table `' ~ built ~ '`.`' ~ mart ~ '` rename to `' ~ published ~ '`.`' ~ mart ~ suffix ~ '`'
        ) -%}
        {%- do statements.append(
            'create or replace view "' ~ built ~ '"."' ~ mart ~ '" as select * from "'
            ~ published ~ '"."' ~ mart ~ suffix ~ '"'
        ) -%}
    {%- endfor -%}
    {{ return(statements) }}
{%- endmacro %}

{#-
    Athena: after publishing, the versions of every mart but the newest two publications are
    dropped. The previous one stays for an export that began before this publication; an
    export that runs across two more publications finds its tables gone and fails its
    remaining deliveries (never mixes two builds). Leftovers of a publication killed half-way
    carry no published row and go the same way.
-#}
{% macro athena_retired_publication_statements(marts, suffix) -%}
    {%- set log = adapter.quote(target.schema) ~ '.' ~ adapter.quote('mips_build_log') -%}
    {%- set keep_query -%}
        select publication_suffix from {{ log }}
        where event = 'finished' and published
        order by completed_at desc
        limit 2
    {%- endset -%}
    {%- set keep = run_query(keep_query).columns[0].values() | list -%}
    {%- do keep.append(suffix) -%}
    {%- set schema_relation = api.Relation.create(database=target.database, schema=healthmonix_mips.published_schema()) -%}
    {%- set statements = [] -%}
    {%- for relation in adapter.list_relations_without_caching(schema_relation) -%}
        {%- for mart in marts if relation.identifier.startswith(mart ~ '__p') -%}
            {%- if relation.identifier[mart | length:] not in keep -%}
                {%- do statements.append('drop table if exists `' ~ relation.schema ~ '`.`' ~ relation.identifier ~ '`') -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(statements) }}
{%- endmacro %}
