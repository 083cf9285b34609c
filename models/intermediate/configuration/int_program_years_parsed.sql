{#-
    The per-year keys healthmonix_{year}_{setting_name}: the three of SPEC §4, and `reported`,
    which declares a year the company deliberately does not report (false; missing means true).
-#}
{%- set key_pattern = 'healthmonix_[0-9]{4}_(states|integration_enabled|strictly_contained|reported)' -%}

with

settings as (

    select * from {{ ref('stg_app__settings') }}

),

program_year_settings as (

    select
        -- 'healthmonix_' is 12 characters: the year is at 13..16, the name from 18
        cast(substr(setting_key, 13, 4) as {{ dbt.type_int() }}) as performance_year,
        substr(setting_key, 18) as setting_name,
        setting_key,
        setting_value
    from settings
    where {{ fully_matches('setting_key', key_pattern) }}

),

program_years as (

    select
        performance_year,
        max(case when setting_name = 'states' then setting_key end) as states_setting_key,
        max(case when setting_name = 'states' then setting_value end) as states_setting_value,
        max(case when setting_name = 'integration_enabled' then setting_key end)
            as integration_enabled_setting_key,
        max(case when setting_name = 'integration_enabled' then setting_value end)
            as integration_enabled_setting_value,
        max(case when setting_name = 'strictly_contained' then setting_key end)
            as strictly_contained_setting_key,
        max(case when setting_name = 'strictly_contained' then setting_value end)
            as strictly_contained_setting_value,
        max(case when setting_name = 'reported' then setting_key end) as reported_setting_key,
        max(case when setting_name = 'reported' then setting_value end) as reported_setting_value
    from program_year_settings
    group by performance_year

),

parsed as (

    select
        performance_year,
        states_setting_key,
        states_setting_value,
        integration_enabled_setting_key,
        integration_enabled_setting_value,
        strictly_contained_setting_key,
        strictly_contained_setting_value,
        reported_setting_key,
        reported_setting_value,
        -- a year takes part when its states list exists (SPEC §4: missing -> no deliveries)
        states_setting_key is not null as is_configured,
        -- the year's span in var mips_time_zone, as instants: Jan 1 and the next Jan 1 there
        {{ local_day_starts_at(
            "cast(cast(performance_year as " ~ dbt.type_string() ~ ") || '-01-01' as date)"
        ) }} as year_starts_at,
        {{ local_day_starts_at(
            "cast(cast(performance_year + 1 as " ~ dbt.type_string() ~ ") || '-01-01' as date)"
        ) }} as next_year_starts_at,
        -- missing means false; present but malformed stays null and is reported as an error
        case
            when integration_enabled_setting_key is null then false
            else {{ parse_setting_boolean('integration_enabled_setting_value') }}
        end as is_integration_enabled,
        case
            when strictly_contained_setting_key is null then false
            else {{ parse_setting_boolean('strictly_contained_setting_value') }}
        end as is_strictly_contained,
        -- missing means the year is reported (expected from its January on)
        case
            when reported_setting_key is null then true
            else {{ parse_setting_boolean('reported_setting_value') }}
        end as is_reported
    from program_years

)

select * from parsed
