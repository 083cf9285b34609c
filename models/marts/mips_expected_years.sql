{#-
    Which performance years the registry expects files for, and whether each is ready.

    A year Y is expected from its first day to the last day of its submission window in the
    next year (var `mips_submission_window_end`, month-day, default 03-31): so on any run date
    the current year is expected, and from January to the window's end the previous one too.
    The loader keeps the rows whose window holds its run date and shows every one that is not
    configured. `is_expected_at_build` applies the same rule to the build's own date, for the
    warning test and for unit tests of the calendar edges.

    Candidate years: every year any setting or seed names, and the build date's year with the
    one before and the one after (so a status dated into the next January still finds it).
-#}
-- a broken configuration must stop this model from being rebuilt, though it reads nothing of it
-- depends_on: {{ ref('int_configuration_errors') }}

{%- set as_of_setting = var('mips_expected_years_as_of', none) -%}
{%- if as_of_setting -%}
    {%- set as_of = modules.datetime.datetime.fromisoformat(as_of_setting | string) -%}
    {%- if as_of.tzinfo is none -%}
        {{ exceptions.raise_compiler_error(
            "var mips_expected_years_as_of must be an instant with a UTC offset, like "
            ~ "2027-01-01T07:30:00+00:00; got '" ~ as_of_setting ~ "'"
        ) }}
    {%- endif -%}
{%- else -%}
    {%- set as_of = run_started_at -%}
{%- endif -%}
{%- set as_of_date = as_of.astimezone(modules.pytz.timezone(var('mips_time_zone'))).date() -%}

{%- set window_end = var('mips_submission_window_end') | string -%}
{%- set days_in_month = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] -%}
{%- set window_ok = modules.re.fullmatch('(0[1-9]|1[0-2])-([0-2][0-9]|3[01])', window_end) -%}
{%- if not window_ok
    or (window_end[3:] | int) < 1
    or (window_end[3:] | int) > days_in_month[(window_end[:2] | int) - 1] -%}
    {{ exceptions.raise_compiler_error(
        "var mips_submission_window_end must be a month and day like 03-31 (not Feb 29); got '"
        ~ window_end ~ "'"
    ) }}
{%- endif %}

with

program_years as (

    select * from {{ ref('int_program_years_parsed') }}

),

program_year_rules as (

    select * from {{ ref('mips_program_years') }}

),

measure_codes as (

    select * from {{ ref('mips_measure_codes') }}

),

registrations as (

    select * from {{ ref('mips_registrations') }}

),

candidate_years as (

    select performance_year from program_years
    union
    select performance_year from program_year_rules
    union
    select performance_year from measure_codes
    union
    select performance_year from registrations
    {%- for year in range(as_of_date.year - 1, as_of_date.year + 2) %}
        union
        select {{ year }} as performance_year
    {%- endfor %}

),

measured_years as (

    select distinct performance_year from measure_codes

),

registered_years as (

    select distinct performance_year from registrations

),

years as (

    select
        candidate_years.performance_year,
        coalesce(program_years.is_configured, false) as is_configured,
        -- missing setting: reported; a malformed one already failed the build
        not coalesce(program_years.is_reported, true) as is_declared_not_reported,
        program_years.reported_setting_key,
        program_year_rules.performance_year is not null as has_program_year_rules,
        measured_years.performance_year is not null as has_measure_codes,
        registered_years.performance_year is not null as has_registrations
    from candidate_years
    left join program_years
        on candidate_years.performance_year = program_years.performance_year
    left join program_year_rules
        on candidate_years.performance_year = program_year_rules.performance_year
    left join measured_years
        on candidate_years.performance_year = measured_years.performance_year
    left join registered_years
        on candidate_years.performance_year = registered_years.performance_year

),

expected_years as (

    select
        cast(performance_year as {{ dbt.type_int() }}) as performance_year,
        cast(
            cast(performance_year as {{ dbt.type_string() }}) || '-01-01' as date
        ) as expected_from,
        cast(
            cast(performance_year + 1 as {{ dbt.type_string() }}) || '-{{ window_end }}' as date
        ) as expected_until,
        cast(
            case
                when is_configured then 'configured'
                when is_declared_not_reported then 'not reported'
                else 'not configured'
            end
            as {{ dbt.type_string() }}
        ) as readiness,
        -- what a year that is not configured lacks, in the order the rollover adds it
        cast(
            case
                when not is_configured and not is_declared_not_reported
                    then concat_ws(
                            '; ',
                            'setting healthmonix_'
                            || cast(performance_year as {{ dbt.type_string() }}) || '_states',
                            case when not has_program_year_rules then 'a mips_program_years row' end,
                            case when not has_measure_codes then 'measure codes in mips_measure_codes' end,
                            case
                                when not has_registrations then 'registrations in mips_registrations'
                            end
                        )
            end
            as {{ dbt.type_string() }}
        ) as missing,
        -- the setting that declares a year not reported, as the settings name it
        cast(
            case
                when is_declared_not_reported and not is_configured
                    then 'setting ' || reported_setting_key
            end
            as {{ dbt.type_string() }}
        ) as declared_not_reported_by,
        cast('{{ as_of_date }}' as date) as as_of_date
    from years

)

select
    *,
    cast(
        as_of_date >= expected_from and as_of_date <= expected_until as boolean
    ) as is_expected_at_build,
    -- the zone the loader's run date is taken in, also when no year has deliveries
    cast('{{ var("mips_time_zone") }}' as {{ dbt.type_string() }}) as run_time_zone
from expected_years
