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

{#-
    The instant at which a calendar date begins in the zone of var `mips_time_zone`: local
    midnight. An instant lies on local date d exactly when it is at or after d's start and
    before the next day's, so a range of local dates can be matched on the instants themselves
    (int_visits_dated finds a visit's performance year that way: PostgreSQL resolves the zone
    name again at every `at time zone`, which for millions of visits costs more than the rest
    of the statement's expressions together; docs/models.md, "Materialisations and speed").
-#}
{% macro local_day_starts_at(date_expression) -%}
    {{ return(adapter.dispatch('local_day_starts_at', 'healthmonix_mips')(date_expression)) }}
{%- endmacro %}

{% macro postgres__local_day_starts_at(date_expression) -%}
    {#- a zone-less timestamp at time zone is the instant that wall-clock time has there -#}
    (cast({{ date_expression }} as timestamp) at time zone '{{ var("mips_time_zone") }}')
{%- endmacro %}

{% macro athena__local_day_starts_at(date_expression) -%}
    {#- a timestamp with time zone, which Trino compares with a zone-less (UTC) column as an instant -#}
    with_timezone(cast({{ date_expression }} as timestamp), '{{ var("mips_time_zone") }}')
{%- endmacro %}
