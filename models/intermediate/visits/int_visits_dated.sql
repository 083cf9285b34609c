with

appointments as (

    select * from {{ ref('stg_app__appointments') }}

),

-- years nobody exports are not worth a row (an alpha environment has none)
configured_years as (

    select
        performance_year,
        year_starts_at,
        next_year_starts_at
    from {{ ref('int_program_years_parsed') }}
    where is_configured

),

visits_dated as (

    select
        appointments.appointment_id as visit_id,
        appointments.care_plan_id,
        appointments.clinician_id,
        appointments.visit_type,
        appointments.starts_at,
        -- the visit's date where the clinic is, not in UTC (SPEC §5)
        {{ local_date('appointments.starts_at') }} as visit_date,
        -- the year of that date: the configured year whose local days the visit falls in,
        -- matched on the instant, so the zone is converted once per visit (local_day_starts_at)
        configured_years.performance_year
    from appointments
    inner join configured_years
        on
            appointments.starts_at >= configured_years.year_starts_at
            and appointments.starts_at < configured_years.next_year_starts_at
    where appointments.appointment_status = 'completed'

)

select * from visits_dated
