{#-
    Post-hook of int_configuration_errors: fails the model (hence the build, and every model
    downstream is skipped) with one message listing each configuration error, when there are any.
    Runs only when the model is built, so `dbt parse`/`compile` stay offline.
-#}
{% macro raise_configuration_errors(errors_relation) %}
    {%- if execute -%}
        {%- set listing -%}
            select error_message from {{ errors_relation }} order by error_message
        {%- endset -%}
        {%- set messages = run_query(listing).columns[0].values() -%}
        {%- if messages | length > 0 -%}
            {{ exceptions.raise_compiler_error(
                "MIPS configuration is invalid (" ~ messages | length ~ " error"
                ~ ("s" if messages | length > 1 else "") ~ "; see docs/models.md):\n  - "
                ~ messages | join("\n  - ")
            ) }}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}
