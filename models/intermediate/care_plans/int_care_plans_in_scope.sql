with

program_year_states as (

    select * from {{ ref('int_program_year_states_split') }}
    where state_id is not null

),

care_plans as (

    select * from {{ ref('stg_app__care_plans') }}

),

regions as (

    select * from {{ ref('stg_app__regions') }}

),

patients as (

    select * from {{ ref('stg_app__patients') }}

),

care_plans_in_scope as (

    select
        program_year_states.performance_year,
        program_year_states.state_code,
        care_plans.care_plan_id,
        care_plans.patient_id,
        care_plans.injury_id,
        care_plans.payer_type,
        care_plans.start_date,
        care_plans.end_date,
        patients.date_of_birth,
        patients.sex,
        program_year_states.is_strictly_contained
    from care_plans
    inner join regions
        on care_plans.region_id = regions.region_id
    inner join program_year_states
        on regions.state_id = program_year_states.state_id
    inner join patients
        on care_plans.patient_id = patients.patient_id
    where
        care_plans.care_plan_status <> 'cancelled'
        -- 18 or older on the start date: the 18th birthday is on or before it
        and {{ dbt.dateadd('year', 18, 'patients.date_of_birth') }} <= care_plans.start_date
        and (
            -- strict: started and ended within the year
            (
                program_year_states.is_strictly_contained
                and extract(year from care_plans.start_date) >= program_year_states.performance_year
                and care_plans.end_date is not null
                and extract(year from care_plans.end_date) <= program_year_states.performance_year
            )
            -- overlap: started by the year's end and not ended before it began
            or (
                not program_year_states.is_strictly_contained
                and extract(year from care_plans.start_date) <= program_year_states.performance_year
                and (
                    care_plans.end_date is null
                    or extract(year from care_plans.end_date) >= program_year_states.performance_year
                )
            )
        )

)

select * from care_plans_in_scope
