{#-
    The measure map of SPEC §5: the codes of each (year, measure group) given to every body
    part of the group. The seeds keep one row per group so that a year or a renumbering is one
    row per group; the models read one row per (year, body part) from here.
-#}

with

body_part_groups as (

    select * from {{ ref('mips_body_part_groups') }}

),

measure_codes as (

    select * from {{ ref('mips_measure_codes') }}

),

measure_codes_expanded as (

    select
        measure_codes.performance_year,
        body_part_groups.body_part_type,
        measure_codes.function_measure_code,
        measure_codes.pain_measure_code,
        measure_codes.provenance
    from measure_codes
    -- inner: a body part without a group, or a group without codes for the year, has no row
    inner join body_part_groups
        on measure_codes.measure_group = body_part_groups.measure_group

)

select * from measure_codes_expanded
