-- noqa: disable=all
-- (A materialisation's DDL in Jinja: nothing here is a model sqlfluff could lay out.)
{#-
    PostgreSQL builds a contract-enforced table by `create table ... as` and then adds the
    contract's constraints with one `alter table`, instead of dbt-postgres' `create table (columns
    and constraints)` + `insert ... select`: PostgreSQL plans no parallel workers for an INSERT
    and maintains the primary key row by row, while CTAS runs in parallel and the key's index is
    built once, sorted (docs/models.md, "Contract-enforced tables on PostgreSQL").

    What stays as dbt does it: the contract's column check (`get_assert_columns_equivalent`) runs
    first; every column is cast to its declared `data_type` and listed in the contract's order,
    so the table has the columns and types the insert path gives it; every constraint the
    contract declares (column and model level) is rendered by the adapter, as dbt renders them,
    and added to the intermediate relation before the materialisation swaps it in. A row that
    breaks a constraint fails the `alter table`, the model's transaction rolls back, and nothing
    is swapped (or published). A constraint that only makes sense in a column definition (a
    `custom` column constraint, a `not_null` with an expression), a column of a length-limited
    character or bit type (an explicit cast truncates where the insert's assignment fails), a
    temporary relation, or var `mips_contract_tables_by_ctas: false` takes dbt-postgres' own
    path unchanged.
    Athena has its own materialisation and never reaches this macro.
-#}
{% macro postgres__create_table_as(temporary, relation, sql) -%}
    {%- set contract_config = config.get('contract') -%}
    {%- set alterations = none -%}
    {%- if contract_config.enforced and not temporary and var('mips_contract_tables_by_ctas', true) -%}
        {%- set alterations = contract_constraints_as_alterations() -%}
    {%- endif -%}
    {%- if alterations is none -%}
        {#- `dbt.` names dbt-postgres' own macro, which this one overrides -#}
        {{ return(dbt.postgres__create_table_as(temporary, relation, sql)) }}
    {%- endif -%}
    {%- set unlogged = config.get('unlogged', default=false) -%}
    {%- set sql_header = config.get('sql_header', none) -%}

    {{ sql_header if sql_header is not none }}

    {{ get_assert_columns_equivalent(sql) }}
    create {% if unlogged -%} unlogged {% endif -%} table {{ relation }} as (
        select
        {%- for column in model['columns'].values() %}
            {% set column_name = adapter.quote(column['name']) if column.get('quote') else column['name'] -%}
            cast({{ column_name }} as {{ column['data_type'] }}) as {{ column_name }}{{ ',' if not loop.last }}
        {%- endfor %}
        from (
            {{ sql }}
        ) as model_subq
    );
    {%- if alterations %}
    alter table {{ relation }}
        {{ alterations | join(',\n        ') }};
    {%- endif %}
{%- endmacro %}


{#-
    The contract's constraints as `alter table` sub-commands, or none when the table cannot be
    built this way with the same result: a constraint that cannot be added after the fact, or a
    length-limited character or bit column (`varchar(10)`: `cast` would cut a longer value that
    the insert refuses). Column constraints become the table constraints they are equivalent
    to (`unique` on c → `unique (c)`); the adapter renders them as it renders the model's own.
-#}
{% macro contract_constraints_as_alterations() -%}
    {%- set alterations = [] -%}
    {#- with a length, or character/char/bit alone, which means a length of 1 -#}
    {%- set limited_length = '^\\s*((character|char|bpchar|varchar|bit|varbit)\\b[^(]*\\(|(character|char|bit)\\s*$)' -%}
    {%- for column in model['columns'].values() -%}
        {%- if modules.re.match(limited_length, column['data_type'] | lower) -%}
            {{ return(none) }}
        {%- endif -%}
        {%- set column_name = adapter.quote(column['name']) if column.get('quote') else column['name'] -%}
        {%- for constraint in column.get('constraints', []) -%}
            {%- if constraint['type'] == 'not_null' and not constraint.get('expression') -%}
                {%- do alterations.append('alter column ' ~ column_name ~ ' set not null') -%}
            {%- elif constraint['type'] in ['unique', 'primary_key', 'check', 'foreign_key'] -%}
                {%- set as_table_constraint = {} -%}
                {%- do as_table_constraint.update(constraint) -%}
                {%- do as_table_constraint.update({'columns': [column_name], 'name': none}) -%}
                {%- for rendered in adapter.render_raw_model_constraints([as_table_constraint]) -%}
                    {%- do alterations.append('add ' ~ rendered) -%}
                {%- endfor -%}
            {%- else -%}
                {{ return(none) }}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- for rendered in adapter.render_raw_model_constraints(model.get('constraints', [])) -%}
        {%- do alterations.append('add ' ~ rendered) -%}
    {%- endfor -%}
    {{ return(alterations) }}
{%- endmacro %}
