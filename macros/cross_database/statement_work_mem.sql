{#-
    The sort and hash memory of a big model's statements (var `mips_work_mem`, a PostgreSQL
    memory size; default 256MB, the monolithic query's yardstick; null: the server's own
    work_mem). PostgreSQL's default of 4MB sends the visit and file-order sorts of the daily
    build to temporary files. `set local` lasts until the model's transaction ends (the
    pre-hook runs inside it), so nothing else on the connection is affected. Athena manages its
    own memory: the default does nothing.
-#}
{% macro statement_work_mem() -%}
    {{ return(adapter.dispatch('statement_work_mem', 'healthmonix_mips')()) }}
{%- endmacro %}

{% macro default__statement_work_mem() -%}
{%- endmacro %}

{% macro postgres__statement_work_mem() -%}
    {%- set work_mem = var('mips_work_mem', '256MB') -%}
    {%- if work_mem -%}
        set local work_mem = '{{ work_mem | replace("'", "''") }}'
    {%- endif -%}
{%- endmacro %}
