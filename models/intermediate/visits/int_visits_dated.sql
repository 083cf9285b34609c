with

appointments as (

    select * from {{ ref('stg_app__appointments') }}

),

configured_years as (

    select performance_year from {{ ref('int_program_years_parsed') }}
    where is_configured

),

completed_visits as (

    select
        appointment_id as visit_id,
        care_plan_id,
        clinician_id,
        visit_type,
        starts_at,
        -- the visit's date where the clinic is, not in UTC (SPEC §5)
        {{ local_date('starts_at') }} as visit_date
    from appointments
    where appointment_status = 'completed'

),

visits_dated as (

    select
        visit_id,
        care_plan_id,
        clinician_id,
        visit_type,
        starts_at,
        visit_date,
        cast(extract(year from visit_date) as {{ dbt.type_int() }}) as performance_year
    from completed_visits

)

select * from visits_dated
-- years nobody exports are not worth a row (an alpha environment has none)
where performance_year in (select configured_years.performance_year from configured_years)
