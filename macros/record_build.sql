-- noqa: disable=all
-- (Jinja control flow and hook statements only: nothing here is a model sqlfluff could lay out.)
{#-
    The build log: one row per dbt invocation in {{ target.schema }}.mips_build_log, written by
    the on-run-end hook (dbt_project.yml), so it exists wherever dbt runs. The loader's publish
    gate reads it (loader/run/build_gate.py, docs/operations.md): it delivers only when the newest
    invocation that touched the marts succeeded and built both of them.

    touched_marts: a result's node is a model under models/marts, or a test or unit test of one.
    success: no result is error, fail, runtime error or skipped (warn is a success).
    marts_built: the mart models built successfully, as relation names (mips_export_v1).
-#}
{% macro record_build(results) -%}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {%- set command = invocation_args_dict.get('which', '') -%}
    {%- if command not in ['build', 'run', 'test', 'seed', 'snapshot'] -%}{{ return('') }}{%- endif -%}
    {%- set counts = {'errors': 0, 'failures': 0, 'warnings': 0, 'skipped': 0} -%}
    {%- set failed = [] -%}
    {%- set built = [] -%}
    {%- set touched = [] -%}
    {%- for result in results -%}
        {%- set status = (result.status | string | lower).split('.')[-1] -%}
        {%- set node = result.node -%}
        {%- if status in ['error', 'runtime error'] -%}
            {%- do counts.update({'errors': counts['errors'] + 1}) -%}
        {%- elif status == 'fail' -%}
            {%- do counts.update({'failures': counts['failures'] + 1}) -%}
        {%- elif status == 'warn' -%}
            {%- do counts.update({'warnings': counts['warnings'] + 1}) -%}
        {%- elif status == 'skipped' -%}
            {%- do counts.update({'skipped': counts['skipped'] + 1}) -%}
        {%- endif -%}
        {%- if status in ['error', 'runtime error', 'fail', 'skipped'] -%}
            {%- do failed.append(node.unique_id) -%}
        {%- endif -%}
        {%- if healthmonix_mips.is_mart_model(node) -%}
            {%- do touched.append(node.unique_id) -%}
            {%- if status == 'success' -%}
                {%- do built.append(node.name ~ ('_v' ~ node.version if node.version else '')) -%}
            {%- endif -%}
        {%- elif node.resource_type in ['test', 'unit_test'] -%}
            {%- for parent in node.depends_on.nodes -%}
                {%- if parent in graph.nodes and healthmonix_mips.is_mart_model(graph.nodes[parent]) -%}
                    {%- do touched.append(node.unique_id) -%}
                {%- endif -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set selection = [] -%}
    {%- for key in ['select', 'exclude', 'selector'] -%}
        {%- set value = invocation_args_dict.get(key) -%}
        {%- if value -%}
            {%- set text = value if value is string else (value | join(' ')) -%}
            {%- do selection.append(key ~ '=' ~ text) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set row = {
        'invocation_id': invocation_id,
        'command': command,
        'selection': selection | join(' '),
        'started_at': run_started_at.strftime('%Y-%m-%d %H:%M:%S.%f'),
        'completed_at': modules.datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M:%S.%f'),
        'success': (failed | length) == 0,
        'touched_marts': (touched | length) > 0,
        'marts_built': built | unique | sort | join(','),
        'errors': counts['errors'],
        'failures': counts['failures'],
        'warnings': counts['warnings'],
        'skipped': counts['skipped'],
        'failed_nodes': (failed | unique | sort | list)[:5] | join(','),
        'dbt_version': dbt_version,
        'target_name': target.name,
    } -%}
    {%- do adapter.dispatch('write_build_log', 'healthmonix_mips')(row) -%}
    {{ return('') }}
{%- endmacro %}

{% macro is_mart_model(node) -%}
    {{ return(node.resource_type == 'model' and node.original_file_path.replace('\\', '/').startswith('models/marts/')) }}
{%- endmacro %}

{% macro build_log_text(value) -%}
    {{ return("'" ~ (value | string).replace("'", "''") ~ "'") }}
{%- endmacro %}

{% macro default__write_build_log(row) -%}
    {{ exceptions.raise_compiler_error('the build log has no implementation for ' ~ adapter.type()) }}
{%- endmacro %}

{% macro postgres__write_build_log(row) -%}
    {%- set relation = adapter.quote(target.schema) ~ '.' ~ adapter.quote('mips_build_log') -%}
    {%- set text = healthmonix_mips.build_log_text -%}
    {% call statement('create_build_log') -%}
        create schema if not exists {{ adapter.quote(target.schema) }};
        create table if not exists {{ relation }} (
            invocation_id text not null,
            command text not null,
            selection text not null,
            started_at timestamptz not null,
            completed_at timestamptz not null,
            success boolean not null,
            touched_marts boolean not null,
            marts_built text not null,
            errors integer not null,
            failures integer not null,
            warnings integer not null,
            skipped integer not null,
            failed_nodes text not null,
            dbt_version text not null,
            target_name text not null
        );
        insert into {{ relation }} values (
            {{ text(row.invocation_id) }}, {{ text(row.command) }}, {{ text(row.selection) }},
            {{ text(row.started_at) }}::timestamp at time zone 'UTC',
            {{ text(row.completed_at) }}::timestamp at time zone 'UTC',
            {{ row.success }}, {{ row.touched_marts }}, {{ text(row.marts_built) }},
            {{ row.errors }}, {{ row.failures }}, {{ row.warnings }}, {{ row.skipped }},
            {{ text(row.failed_nodes) }}, {{ text(row.dbt_version) }}, {{ text(row.target_name) }}
        );
        commit;
    {%- endcall %}
{%- endmacro %}

{#- Athena: an Iceberg table (INSERT INTO needs no partition juggling); timestamps hold UTC. -#}
{% macro athena__write_build_log(row) -%}
    {%- set relation = adapter.quote(target.schema) ~ '.' ~ adapter.quote('mips_build_log') -%}
    {%- set text = healthmonix_mips.build_log_text -%}
    {%- set location = (target.s3_data_dir or target.s3_staging_dir).rstrip('/') ~ '/' ~ target.schema ~ '/mips_build_log/' -%}
    {% call statement('create_build_log') -%}
        create table if not exists {{ relation }} (
            invocation_id string, command string, selection string,
            started_at timestamp, completed_at timestamp, success boolean,
            touched_marts boolean, marts_built string, errors int, failures int,
            warnings int, skipped int, failed_nodes string, dbt_version string,
            target_name string
        )
        location '{{ location }}'
        tblproperties ('table_type' = 'ICEBERG')
    {%- endcall %}
    {% call statement('insert_build_log') -%}
        insert into {{ relation }} values (
            {{ text(row.invocation_id) }}, {{ text(row.command) }}, {{ text(row.selection) }},
            cast({{ text(row.started_at) }} as timestamp(6)),
            cast({{ text(row.completed_at) }} as timestamp(6)),
            {{ row.success | lower }}, {{ row.touched_marts | lower }}, {{ text(row.marts_built) }},
            {{ row.errors }}, {{ row.failures }}, {{ row.warnings }}, {{ row.skipped }},
            {{ text(row.failed_nodes) }}, {{ text(row.dbt_version) }}, {{ text(row.target_name) }}
        )
    {%- endcall %}
{%- endmacro %}
