{#-
    The column's type holds instants, so its local date (macro local_date) is right: on
    PostgreSQL `timestamp with time zone`; on Athena a Glue `timestamp` holding UTC (Athena
    sessions run in UTC, which is what makes `at time zone` right there) or a timestamp with
    time zone. A PostgreSQL `timestamp without time zone` would be read as wall-clock time in
    the session's zone, and a string or a date is no instant at all: the test then fails with a
    row naming the column and the type found. Whether a Glue `timestamp` really holds UTC cannot
    be seen from its type; docs/athena.md says what the source contract requires.

    The type comes from the adapter's catalog (information_schema on PostgreSQL, Glue on
    Athena) when the test runs (`dbt build`/`dbt test`); compiling does not connect, so there
    the test is a query without rows.
-#}
{% test holds_instants(model, column_name) %}
    {%- set accepted = {
        'postgres': ['timestamp with time zone'],
        'athena': ['timestamp', 'timestamp with time zone'],
    }.get(target.type, []) -%}
    {%- set found = [] -%}
    {%- if execute and invocation_args_dict.get('which') in ['build', 'test'] -%}
        {%- for column in adapter.get_columns_in_relation(model) -%}
            {%- if column.name | lower == column_name | lower -%}
                {#- Athena may report a precision: timestamp(3) -#}
                {%- do found.append(column.data_type | lower | replace('(3)', '') | replace('(6)', '')) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if not found -%}
            {%- do found.append('no such column') -%}
        {%- endif -%}
    {%- endif -%}
    {%- if found and found[0] not in accepted -%}
        {{ exceptions.raise_compiler_error(
            model.identifier ~ '.' ~ column_name ~ ' is ' ~ found[0] ~ ', which holds no instant'
            ~ ' (local dates would be wrong): on ' ~ target.type ~ ' it must be '
            ~ (accepted | join(' or ') or 'a type this adapter has a local_date for')
            ~ '; see docs/athena.md'
        ) }}
    {%- endif %}
    {#- a query with no rows: the type is right, or this is a compile -#}
select
    cast(null as {{ dbt.type_string() }}) as column_name,
    cast(null as {{ dbt.type_string() }}) as data_type
where 1 = 0
{% endtest %}
