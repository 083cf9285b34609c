{#-
    Every way the configuration can be wrong (SPEC §4, §6), one row per problem, each message
    naming the setting key or the year and state. A post-hook (raise_configuration_errors)
    fails the build when this model has rows.
-#}

with

program_years as (

    select * from {{ ref('int_program_years_parsed') }}

),

program_year_states as (

    select * from {{ ref('int_program_year_states_split') }}

),

measure_codes as (

    select * from {{ ref('mips_measure_codes') }}

),

program_year_rules as (

    select * from {{ ref('mips_program_years') }}

),

registrations as (

    select
        *,
        'performance year ' || cast(performance_year as {{ dbt.type_string() }})
        || ', state ' || state_code as registration_label
    from {{ ref('mips_registrations') }}

),

malformed_booleans as (

    select
        'malformed_boolean' as error_kind,
        performance_year,
        cast(null as {{ dbt.type_string() }}) as state_code,
        integration_enabled_setting_key as setting_key,
        'setting ' || integration_enabled_setting_key || ': '
        || coalesce('''' || integration_enabled_setting_value || '''', 'null')
        || ' is not a boolean (accepted: true, false, t, f, 1, 0, in any case)' as error_message
    from program_years
    where integration_enabled_setting_key is not null and is_integration_enabled is null

    union all

    select
        'malformed_boolean' as error_kind,
        performance_year,
        cast(null as {{ dbt.type_string() }}) as state_code,
        strictly_contained_setting_key as setting_key,
        'setting ' || strictly_contained_setting_key || ': '
        || coalesce('''' || strictly_contained_setting_value || '''', 'null')
        || ' is not a boolean (accepted: true, false, t, f, 1, 0, in any case)' as error_message
    from program_years
    where strictly_contained_setting_key is not null and is_strictly_contained is null

    union all

    select
        'malformed_boolean' as error_kind,
        performance_year,
        cast(null as {{ dbt.type_string() }}) as state_code,
        reported_setting_key as setting_key,
        'setting ' || reported_setting_key || ': '
        || coalesce('''' || reported_setting_value || '''', 'null')
        || ' is not a boolean (accepted: true, false, t, f, 1, 0, in any case)' as error_message
    from program_years
    where reported_setting_key is not null and is_reported is null

),

unreported_years_with_states as (

    select
        'unreported_year_with_states' as error_kind,
        performance_year,
        cast(null as {{ dbt.type_string() }}) as state_code,
        reported_setting_key as setting_key,
        'setting ' || reported_setting_key || ' declares performance year '
        || cast(performance_year as {{ dbt.type_string() }})
        || ' not reported, but ' || states_setting_key
        || ' lists states to deliver: remove one of the two' as error_message
    from program_years
    where is_configured and not is_reported

),

unknown_states as (

    select
        'unknown_state' as error_kind,
        performance_year,
        state_code,
        states_setting_key as setting_key,
        'setting ' || states_setting_key || ': ''' || state_code
        || ''' is not a postal_abbreviation in the states table' as error_message
    from program_year_states
    where state_id is null

),

years_without_rules as (

    select
        'missing_program_year' as error_kind,
        program_years.performance_year,
        cast(null as {{ dbt.type_string() }}) as state_code,
        program_years.states_setting_key as setting_key,
        'setting ' || program_years.states_setting_key || ': performance year '
        || cast(program_years.performance_year as {{ dbt.type_string() }})
        || ' has no row in seed mips_program_years' as error_message
    from program_years
    left join program_year_rules
        on program_years.performance_year = program_year_rules.performance_year
    where program_years.is_configured and program_year_rules.performance_year is null

),

years_without_measures as (

    select
        'missing_measure_codes' as error_kind,
        program_years.performance_year,
        cast(null as {{ dbt.type_string() }}) as state_code,
        program_years.states_setting_key as setting_key,
        'setting ' || program_years.states_setting_key || ': performance year '
        || cast(program_years.performance_year as {{ dbt.type_string() }})
        || ' has no rows in seed mips_measure_codes' as error_message
    from program_years
    where
        program_years.is_configured
        and not exists (
            select 1 from measure_codes
            where measure_codes.performance_year = program_years.performance_year
        )

),

missing_registrations as (

    select
        'missing_registration' as error_kind,
        program_year_states.performance_year,
        program_year_states.state_code,
        program_year_states.integration_enabled_setting_key as setting_key,
        'performance year ' || cast(program_year_states.performance_year as {{ dbt.type_string() }})
        || ', state ' || program_year_states.state_code
        || ': SFTP integration is enabled (' || program_year_states.integration_enabled_setting_key
        || ') but seed mips_registrations has no registration' as error_message
    from program_year_states
    left join registrations
        on
            program_year_states.performance_year = registrations.performance_year
            and program_year_states.state_code = upper({{ trim_spaces('registrations.state_code') }})
    where
        program_year_states.is_integration_enabled
        and registrations.performance_year is null
        -- an unknown state code is reported as such, not once more here
        and program_year_states.state_id is not null

),

malformed_registrations as (

    select
        'malformed_registration' as error_kind,
        registrations.performance_year,
        registrations.state_code,
        cast(null as {{ dbt.type_string() }}) as setting_key,
        registrations.registration_label
        || ': seed mips_registrations has registration_id '
        || coalesce('''' || registrations.registration_id || '''', 'null')
        || ', which is not numeric' as error_message
    from registrations
    where not coalesce({{ fully_matches('registrations.registration_id', '[0-9]+') }}, false)

    union all

    select
        'malformed_registration' as error_kind,
        registrations.performance_year,
        registrations.state_code,
        cast(null as {{ dbt.type_string() }}) as setting_key,
        registrations.registration_label
        || ': seed mips_registrations has integration_key '
        || coalesce('''' || registrations.integration_key || '''', 'null')
        || ', which is not 10 letters and digits' as error_message
    from registrations
    where not coalesce({{ fully_matches('registrations.integration_key', '[A-Za-z0-9]{10}') }}, false)

),

sample_registrations as (

    select
        'sample_registration' as error_kind,
        program_year_states.performance_year,
        program_year_states.state_code,
        program_year_states.integration_enabled_setting_key as setting_key,
        'performance year ' || cast(program_year_states.performance_year as {{ dbt.type_string() }})
        || ', state ' || program_year_states.state_code
        || ': seed mips_registrations holds a shipped sample registration' as error_message
    from program_year_states
    inner join registrations
        on
            program_year_states.performance_year = registrations.performance_year
            and program_year_states.state_code = upper({{ trim_spaces('registrations.state_code') }})
    where
        -- production runs set the var; dev and demo deliver to file:// with the samples
        {{ 'true' if var('mips_reject_sample_registrations', false) else 'false' }}
        and program_year_states.is_integration_enabled
        and registrations.is_sample

),

sample_measure_codes as (

    select
        'sample_measure_codes' as error_kind,
        program_years.performance_year,
        cast(null as {{ dbt.type_string() }}) as state_code,
        program_years.states_setting_key as setting_key,
        'performance year ' || cast(program_years.performance_year as {{ dbt.type_string() }})
        || ', measure group ' || measure_codes.measure_group
        || ': seed mips_measure_codes holds sample measure codes' as error_message
    from program_years
    inner join measure_codes
        on program_years.performance_year = measure_codes.performance_year
    where
        -- the same var as for registrations: a placeholder code must not reach the registry;
        -- a year without settings yet delivers nothing, so its placeholders may wait
        {{ 'true' if var('mips_reject_sample_registrations', false) else 'false' }}
        and program_years.is_configured
        and measure_codes.is_sample

),

configuration_errors as (

    select * from malformed_booleans
    union all
    select * from unreported_years_with_states
    union all
    select * from unknown_states
    union all
    select * from years_without_rules
    union all
    select * from years_without_measures
    union all
    select * from missing_registrations
    union all
    select * from malformed_registrations
    union all
    select * from sample_registrations
    union all
    select * from sample_measure_codes

)

select * from configuration_errors
