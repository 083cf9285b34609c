with

injuries as (

    select * from {{ ref('stg_app__injuries') }}

),

measure_map as (

    select * from {{ ref('int_measure_codes_expanded') }}

),

injuries_extended as (

    select
        injuries.injury_id,
        measure_map.performance_year,
        injuries.patient_id,
        injuries.body_part_type,
        injuries.onset_date,
        injuries.is_surgical,
        measure_map.function_measure_code,
        measure_map.pain_measure_code
    from injuries
    -- inner: a body part without a row for the year is not exported that year (SPEC §5)
    inner join measure_map
        on injuries.body_part_type = measure_map.body_part_type

)

select * from injuries_extended
