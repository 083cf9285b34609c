with

care_plans_in_scope as (

    select * from {{ ref('int_care_plans_in_scope') }}

),

injuries_extended as (

    select * from {{ ref('int_injuries_extended') }}

),

care_plans_eligible as (

    select
        care_plans_in_scope.performance_year,
        care_plans_in_scope.state_code,
        care_plans_in_scope.care_plan_id,
        care_plans_in_scope.patient_id,
        care_plans_in_scope.payer_type,
        care_plans_in_scope.start_date,
        care_plans_in_scope.end_date,
        care_plans_in_scope.date_of_birth,
        care_plans_in_scope.sex,
        injuries_extended.injury_id,
        injuries_extended.body_part_type,
        injuries_extended.is_surgical,
        injuries_extended.onset_date,
        injuries_extended.function_measure_code,
        injuries_extended.pain_measure_code
    from care_plans_in_scope
    -- the year's measure map decides which body parts take part (SPEC §5)
    inner join injuries_extended
        on
            care_plans_in_scope.injury_id = injuries_extended.injury_id
            and care_plans_in_scope.performance_year = injuries_extended.performance_year

)

select * from care_plans_eligible
