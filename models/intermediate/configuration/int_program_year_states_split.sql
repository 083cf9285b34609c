with

program_years as (

    select * from {{ ref('int_program_years_parsed') }}
    where is_configured

),

states as (

    select * from {{ ref('stg_app__states') }}

),

listed_states as (

    select
        program_years.performance_year,
        -- the list is typed by hand: " ca, AZ,,CA " means CA and AZ
        upper({{ trim_spaces('listed.state_code') }}) as state_code
    from program_years
    {{ split_to_rows('program_years.states_setting_value', 'listed', 'state_code') }}

),

distinct_states as (

    select distinct
        performance_year,
        state_code
    from listed_states
    where state_code <> ''

),

program_year_states as (

    select
        distinct_states.performance_year,
        distinct_states.state_code,
        states.state_id,
        program_years.states_setting_key,
        program_years.integration_enabled_setting_key,
        program_years.is_integration_enabled,
        program_years.is_strictly_contained
    from distinct_states
    inner join program_years
        on distinct_states.performance_year = program_years.performance_year
    left join states
        on distinct_states.state_code = states.state_code

)

select * from program_year_states
