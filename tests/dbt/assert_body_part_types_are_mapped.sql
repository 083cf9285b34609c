{#-
    Care plans that pass every eligibility rule but have a body part the year's measure map
    neither maps nor excludes on purpose: they are left out of the export (SPEC §5), and this
    warning says so, so a new application value gets a decision (a seed row) instead of silence.
-#}
{{ config(severity='warn') }}

with

care_plans_in_scope as (

    select * from {{ ref('int_care_plans_in_scope') }}

),

injuries as (

    select * from {{ ref('stg_app__injuries') }}

),

measure_map as (

    select * from {{ ref('int_measure_codes_expanded') }}

),

excluded_body_part_types as (

    select * from {{ ref('mips_excluded_body_part_types') }}

)

select
    care_plans_in_scope.performance_year,
    injuries.body_part_type,
    count(*) as care_plan_count
from care_plans_in_scope
inner join injuries
    on care_plans_in_scope.injury_id = injuries.injury_id
left join measure_map
    on
        care_plans_in_scope.performance_year = measure_map.performance_year
        and injuries.body_part_type = measure_map.body_part_type
left join excluded_body_part_types
    on injuries.body_part_type = excluded_body_part_types.body_part_type
where
    measure_map.body_part_type is null
    and excluded_body_part_types.body_part_type is null
group by care_plans_in_scope.performance_year, injuries.body_part_type
