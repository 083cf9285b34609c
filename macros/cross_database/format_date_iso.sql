{#-
    A date as the file writes it: YYYY-MM-DD text; null stays null (an empty field).
    No default: an adapter without its own version fails to compile instead of running
    another engine's SQL.
-#}
{% macro format_date_iso(date_expression) -%}
    {{ return(adapter.dispatch('format_date_iso', 'healthmonix_mips')(date_expression)) }}
{%- endmacro %}

{% macro postgres__format_date_iso(date_expression) -%}
    {#-
        A plain cast writes YYYY-MM-DD under the ISO DateStyle (PostgreSQL's default) at a
        fifth of to_char's cost (5 dates x 7.6 million rows: 7 s of the export's build at the
        benchmark's scale 100), but follows the session's DateStyle; to_char does not. The
        DateStyle is read once per statement (a scalar subquery is an InitPlan), so a session
        with another DateStyle still gets YYYY-MM-DD, from to_char.
    -#}
    case
        when (select current_setting('DateStyle') like 'ISO%')
            then cast({{ date_expression }} as {{ dbt.type_string() }})
        else to_char({{ date_expression }}, 'YYYY-MM-DD')
    end
{%- endmacro %}

{% macro athena__format_date_iso(date_expression) -%}
    date_format({{ date_expression }}, '%Y-%m-%d')
{%- endmacro %}
