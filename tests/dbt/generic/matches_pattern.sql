{#-
    Every non-null value of the column matches the regular expression as a whole (write it
    without ^ and $: fully_matches anchors it exactly, on every engine).
    The loader names files and keys after these values, so a bad one must fail the build, and
    the failure names the rows: on `dbt build`/`dbt test` the test raises with the first five
    offending rows' keys and values (only identifiers such as state codes, NPIs and TINs are
    checked this way, never patient data). Elsewhere (compile) it is a plain failing-rows query.
-#}
{% test matches_pattern(model, column_name, pattern, row_key) %}

    {%- set failing -%}
select
    cast({{ row_key }} as {{ dbt.type_string() }}) as row_key,
    cast({{ column_name }} as {{ dbt.type_string() }}) as bad_value
from {{ model }}
where
    {{ column_name }} is not null
    and not {{ fully_matches(column_name, pattern) }}
    {%- endset -%}

    {%- if execute and invocation_args_dict.get('which') in ['build', 'test'] -%}
    {%- set found = run_query(failing ~ ' order by 1 limit 5') -%}
    {%- if found and found.rows | length > 0 -%}
        {%- set named = [] -%}
        {%- for row in found.rows -%}
            {%- do named.append(row_key ~ ' ' ~ row[0] ~ ': ' ~ (row[1] | tojson)) -%}
        {%- endfor -%}
        {{ exceptions.raise_compiler_error(
            model.identifier ~ '.' ~ column_name ~ ' must match ' ~ pattern ~ ' as a whole; failing rows: '
            ~ named | join('; ')
        ) }}
    {%- endif -%}
{%- endif %}

    {{ failing }}

{% endtest %}
