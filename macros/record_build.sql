-- noqa: disable=all
-- (Jinja control flow and hook statements only: nothing here is a model sqlfluff could lay out.)
{#-
    The build log: {{ target.schema }}.mips_build_log, two rows per dbt invocation, written by
    the hooks of dbt_project.yml, so it holds wherever dbt runs (cron, Airflow, a laptop):

    - `started` (on-run-start): the invocation began. A build killed before its end (SIGKILL,
      a scheduler's timeout) leaves only this row: "started at …, never finished".
    - `finished` (on-run-end): how it ended, and whether it published the marts.

    Publication (write-audit-publish, macros/publish_marts.sql): the loader reads the marts of
    the *published* schema only. A `dbt build` whose every node succeeded (warnings allowed)
    and that ran at least what the daily build runs (every mart, every model and seed, every
    data test not tagged `weekly`: daily_nodes_left_out) publishes them in its on-run-end, in
    the same transaction as its `finished` row; anything else (a failure, an interruption, `dbt
    run`, a build of some of the marts, a build that left a daily test out) leaves the
    published marts exactly as they were. The loader's gate
    (loader/run/build_gate.py, docs/operations.md) reads this log.

    touched_marts: the invocation selected a mart model, or a test or unit test of one.
    failed_nodes: the nodes that errored, then those that failed (tests), in run order, as
        unique ids; skipped nodes are only counted (`skipped`).
    marts_built: the mart relations built successfully (mips_export_v1, ...).
-#}
{% macro record_build_start() -%}
    {%- if not execute or invocation_args_dict.get('which', '') not in ['build', 'run', 'test', 'seed', 'snapshot'] -%}
        {{ return('') }}
    {%- endif -%}
    {%- set touched = [] -%}
    {%- for unique_id in selected_resources -%}
        {%- if unique_id in graph.nodes and healthmonix_mips.guards_or_is_mart(graph.nodes[unique_id]) -%}
            {%- do touched.append(unique_id) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set row = healthmonix_mips.build_log_row('started', touched | length > 0) -%}
    {%- do adapter.dispatch('write_build_log', 'healthmonix_mips')(row, none) -%}
    {{ return('') }}
{%- endmacro %}

{% macro record_build(results) -%}
    {%- if not execute or invocation_args_dict.get('which', '') not in ['build', 'run', 'test', 'seed', 'snapshot'] -%}
        {{ return('') }}
    {%- endif -%}
    {%- set counts = {'errors': 0, 'failures': 0, 'warnings': 0, 'skipped': 0} -%}
    {%- set erred = [] -%}
    {%- set failed = [] -%}
    {%- set built = [] -%}
    {%- set touched = [] -%}
    {%- for result in results -%}
        {%- set status = (result.status | string | lower).split('.')[-1] -%}
        {%- set node = result.node -%}
        {%- if status in ['error', 'runtime error'] -%}
            {%- do counts.update({'errors': counts['errors'] + 1}) -%}
            {%- do erred.append(node.unique_id) -%}
        {%- elif status == 'fail' -%}
            {%- do counts.update({'failures': counts['failures'] + 1}) -%}
            {%- do failed.append(node.unique_id) -%}
        {%- elif status == 'warn' -%}
            {%- do counts.update({'warnings': counts['warnings'] + 1}) -%}
        {%- elif status == 'skipped' -%}
            {%- do counts.update({'skipped': counts['skipped'] + 1}) -%}
        {%- endif -%}
        {%- if healthmonix_mips.guards_or_is_mart(node) -%}
            {%- do touched.append(node.unique_id) -%}
        {%- endif -%}
        {%- if healthmonix_mips.is_mart_model(node) and status == 'success' -%}
            {%- do built.append(healthmonix_mips.mart_relation_name(node)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set success = (erred | length) + (failed | length) + counts['skipped'] == 0 -%}
    {%- set marts = healthmonix_mips.all_mart_relation_names() -%}
    {%- set missing = [] -%}
    {%- for name in marts if name not in built -%}
        {%- do missing.append(name) -%}
    {%- endfor -%}
    {%- set left_out = healthmonix_mips.daily_nodes_left_out(results) -%}
    {%- set publish = success and invocation_args_dict.get('which') == 'build' and (missing | length) == 0 and (left_out | length) == 0 -%}
    {%- set row = healthmonix_mips.build_log_row('finished', (touched | length) > 0) -%}
    {%- do row.update({
        'completed_at': modules.datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M:%S.%f'),
        'success': success,
        'published': publish,
        'published_schema': healthmonix_mips.published_schema() if publish else none,
        'publication_suffix': healthmonix_mips.publication_suffix() if publish else none,
        'marts_built': built | unique | sort | list,
        'failed_nodes': (erred + failed) | unique | list,
        'errors': counts['errors'],
        'failures': counts['failures'],
        'warnings': counts['warnings'],
        'skipped': counts['skipped'],
    }) -%}
    {%- do adapter.dispatch('write_build_log', 'healthmonix_mips')(row, marts if publish else none) -%}
    {{ return('') }}
{%- endmacro %}

{#-
    What the daily build runs (selectors.yml: every seed, every model that runs, every data test
    not tagged `weekly`) and this invocation did not. A build publishes only when there is none:
    a build of every mart that left a guard out (`--exclude-resource-type test`, `--exclude
    some_test`) or rebuilt the marts over an intermediate it did not rebuild (`--exclude
    int_visits_dated`) would publish what the daily build never tested.
-#}
{% macro daily_nodes_left_out(results) -%}
    {%- set ran = {} -%}
    {%- for result in results -%}
        {%- do ran.update({result.node.unique_id: true}) -%}
    {%- endfor -%}
    {%- set left_out = [] -%}
    {%- for node in graph.nodes.values() if node.unique_id not in ran -%}
        {%- set runs = node.resource_type in ['seed', 'snapshot']
            or (node.resource_type == 'model' and node.config.materialized != 'ephemeral')
            or (node.resource_type == 'test' and 'weekly' not in node.tags) -%}
        {%- if runs -%}
            {%- do left_out.append(node.unique_id) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(left_out) }}
{%- endmacro %}

{#- The row both hooks start from; `finished` fills in the outcome. -#}
{% macro build_log_row(event, touched_marts) -%}
    {%- set selection = [] -%}
    {%- for key in ['select', 'exclude', 'selector'] -%}
        {%- set value = invocation_args_dict.get(key) -%}
        {%- if value -%}
            {%- set text = value if value is string else (value | join(' ')) -%}
            {%- do selection.append(key ~ '=' ~ text) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return({
        'invocation_id': invocation_id,
        'event': event,
        'command': invocation_args_dict.get('which', ''),
        'selection': selection | join(' '),
        'started_at': run_started_at.strftime('%Y-%m-%d %H:%M:%S.%f'),
        'completed_at': none,
        'success': none,
        'touched_marts': touched_marts,
        'published': none,
        'published_schema': none,
        'publication_suffix': none,
        'marts_built': [],
        'failed_nodes': [],
        'errors': 0,
        'failures': 0,
        'warnings': 0,
        'skipped': 0,
        'dbt_version': dbt_version,
        'target_name': target.name,
    }) }}
{%- endmacro %}

{% macro is_mart_model(node) -%}
    {{ return(node.resource_type == 'model' and node.original_file_path.replace('\\', '/').startswith('models/marts/')) }}
{%- endmacro %}

{#- A mart model, or a data or unit test of one. -#}
{% macro guards_or_is_mart(node) -%}
    {%- if healthmonix_mips.is_mart_model(node) -%}{{ return(true) }}{%- endif -%}
    {%- if node.resource_type in ['test', 'unit_test'] -%}
        {%- for parent in node.depends_on.nodes -%}
            {%- if parent in graph.nodes and healthmonix_mips.is_mart_model(graph.nodes[parent]) -%}
                {{ return(true) }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(false) }}
{%- endmacro %}

{#- The relation name a mart is built under: mips_export_v1 for version 1 of mips_export. -#}
{% macro mart_relation_name(node) -%}
    {{ return(node.alias or (node.name ~ ('_v' ~ node.version if node.version else ''))) }}
{%- endmacro %}

{#- Every enabled mart of the project, in the order publication takes them (and the loader
    locks them): the deliveries first, then the other marts by name. -#}
{% macro all_mart_relation_names() -%}
    {%- set names = [] -%}
    {%- for node in graph.nodes.values() if healthmonix_mips.is_mart_model(node) and node.config.enabled -%}
        {%- do names.append(healthmonix_mips.mart_relation_name(node)) -%}
    {%- endfor -%}
    {%- set ordered = names | unique | sort | list -%}
    {%- if 'mips_deliveries' in ordered -%}
        {%- do ordered.remove('mips_deliveries') -%}
        {%- do ordered.insert(0, 'mips_deliveries') -%}
    {%- endif -%}
    {{ return(ordered) }}
{%- endmacro %}

{% macro build_log_text(value) -%}
    {%- if value is none -%}{{ return('null') }}{%- endif -%}
    {{ return("'" ~ (value | string).replace("'", "''") ~ "'") }}
{%- endmacro %}

{% macro build_log_boolean(value) -%}
    {{ return('null' if value is none else (value | string | lower)) }}
{%- endmacro %}

{% macro build_log_timestamp(value, type) -%}
    {%- if value is none -%}{{ return('cast(null as ' ~ type ~ ')') }}{%- endif -%}
    {{ return('cast(' ~ healthmonix_mips.build_log_text(value) ~ ' as ' ~ type ~ ')') }}
{%- endmacro %}

{% macro build_log_list(values) -%}
    {%- set items = [] -%}
    {%- for value in values -%}{%- do items.append(healthmonix_mips.build_log_text(value)) -%}{%- endfor -%}
    {{ return('array[' ~ items | join(', ') ~ ']') }}
{%- endmacro %}

{#- The log's columns, in table order, as the loader reads them (loader/marts/build_log.py). -#}
{% macro build_log_values(row, timestamp_type, text_array_cast) -%}
    {%- set text = healthmonix_mips.build_log_text -%}
    {%- set boolean = healthmonix_mips.build_log_boolean -%}
    {%- set when = healthmonix_mips.build_log_timestamp -%}
    {%- set values = [
        text(row.invocation_id), text(row.event), text(row.command), text(row.selection),
        when(row.started_at, timestamp_type), when(row.completed_at, timestamp_type),
        boolean(row.success), boolean(row.touched_marts), boolean(row.published),
        text(row.published_schema), text(row.publication_suffix),
        'cast(' ~ healthmonix_mips.build_log_list(row.marts_built) ~ ' as ' ~ text_array_cast ~ ')',
        'cast(' ~ healthmonix_mips.build_log_list(row.failed_nodes) ~ ' as ' ~ text_array_cast ~ ')',
        row.errors, row.failures, row.warnings, row.skipped,
        text(row.dbt_version), text(row.target_name),
    ] -%}
    {{ return(values | join(', ')) }}
{%- endmacro %}

{% macro default__write_build_log(row, publish) -%}
    {{ exceptions.raise_compiler_error('the build log has no implementation for ' ~ adapter.type()) }}
{%- endmacro %}

{#-
    PostgreSQL: the row, and the publication when there is one, commit in one transaction. A
    log of the shape before publication existed (no `event` column) is kept under
    mips_build_log_before_publication and a new one begun.
-#}
{% macro postgres__write_build_log(row, publish) -%}
    {%- set schema = adapter.quote(target.schema) -%}
    {%- set relation = schema ~ '.' ~ adapter.quote('mips_build_log') -%}
    {%- set existing = adapter.get_relation(database=target.database, schema=target.schema, identifier='mips_build_log') -%}
    {%- set columns = adapter.get_columns_in_relation(existing) | map(attribute='name') | list if existing else [] -%}
    {% call statement('write_build_log') -%}
        create schema if not exists {{ schema }};
        {% if existing and 'event' not in columns -%}
        alter table {{ relation }} rename to {{ adapter.quote('mips_build_log_before_publication') }};
        {% endif -%}
        create table if not exists {{ relation }} (
            invocation_id text not null,
            event text not null check (event in ('started', 'finished')),
            command text not null,
            selection text not null,
            started_at timestamptz not null,
            completed_at timestamptz,
            success boolean,
            touched_marts boolean not null,
            published boolean,
            published_schema text,
            publication_suffix text,
            marts_built text[] not null,
            failed_nodes text[] not null,
            errors integer not null,
            failures integer not null,
            warnings integer not null,
            skipped integer not null,
            dbt_version text not null,
            target_name text not null
        );
        {% if publish is not none -%}
        {{ healthmonix_mips.postgres_publication_sql(publish) }}
        {%- endif %}
        insert into {{ relation }} values ({{ healthmonix_mips.build_log_values(row, 'timestamptz', 'text[]') }});
        commit;
    {%- endcall %}
{%- endmacro %}

{#-
    Athena: an Iceberg table (INSERT INTO needs no partition juggling); timestamps hold UTC.
    Athena has no transaction across statements: the publication's tables come first, and the
    `finished` row that names them is the one statement that publishes (macros/publish_marts.sql).
-#}
{% macro athena__write_build_log(row, publish) -%}
    {%- set relation = adapter.quote(target.schema) ~ '.' ~ adapter.quote('mips_build_log') -%}
    {%- set location = (target.s3_data_dir or target.s3_staging_dir).rstrip('/') ~ '/' ~ target.schema ~ '/mips_build_log/' -%}
    {%- set existing = adapter.get_relation(database=target.database, schema=target.schema, identifier='mips_build_log') -%}
    {%- set columns = adapter.get_columns_in_relation(existing) | map(attribute='name') | list if existing else [] -%}
    {%- if existing and 'event' not in columns -%}
        {% call statement('keep_old_build_log') -%}
            alter table {{ relation }} rename to {{ adapter.quote(target.schema) }}.{{ adapter.quote('mips_build_log_before_publication') }}
        {%- endcall %}
    {%- endif -%}
    {% call statement('create_build_log') -%}
        create table if not exists {{ relation }} (
            invocation_id string, event string, command string, selection string,
            started_at timestamp, completed_at timestamp, success boolean,
            touched_marts boolean, published boolean, published_schema string,
            publication_suffix string, marts_built array<string>, failed_nodes array<string>,
            errors int, failures int, warnings int, skipped int, dbt_version string,
            target_name string
        )
        location '{{ location }}'
        tblproperties ('table_type' = 'ICEBERG')
    {%- endcall %}
    {%- if publish is not none -%}
        {%- for statement_sql in healthmonix_mips.athena_publication_statements(publish, row.publication_suffix) -%}
            {% call statement('publish_marts') -%}{{ statement_sql }}{%- endcall %}
        {%- endfor -%}
    {%- endif -%}
    {% call statement('insert_build_log') -%}
        insert into {{ relation }} values ({{ healthmonix_mips.build_log_values(row, 'timestamp(6)', 'array(varchar)') }})
    {%- endcall %}
    {%- if publish is not none -%}
        {%- for statement_sql in healthmonix_mips.athena_retired_publication_statements(publish, row.publication_suffix) -%}
            {% call statement('retire_publication') -%}{{ statement_sql }}{%- endcall %}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
