{#-
    The calendar date of an instant in the zone of var `mips_time_zone` (America/Los_Angeles):
    a visit at 23:30 on Dec 31 there is a Dec 31 visit, although it is Jan 1 in UTC.
    The column must hold instants (the source test `holds_instants` checks its type).
    No default: `at time zone` means opposite things on zone-less timestamps in different
    engines, so another adapter fails to compile until it has its own version.
-#}
{% macro local_date(timestamp_expression) -%}
    {{ return(adapter.dispatch('local_date', 'healthmonix_mips')(timestamp_expression)) }}
{%- endmacro %}

{% macro postgres__local_date(timestamp_expression) -%}
    {#- timestamptz at time zone gives the wall-clock time there; its date is the local date -#}
    cast(({{ timestamp_expression }} at time zone '{{ var("mips_time_zone") }}') as date)
{%- endmacro %}

{% macro athena__local_date(timestamp_expression) -%}
    {#- Athena sessions run in UTC, so a zone-less timestamp column is taken as a UTC instant -#}
    cast(({{ timestamp_expression }} at time zone '{{ var("mips_time_zone") }}') as date)
{%- endmacro %}
