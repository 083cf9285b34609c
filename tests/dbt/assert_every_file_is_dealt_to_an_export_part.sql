{#-
    The (year, state) files with eligible care plans that int_export_parts deals to no part: on
    PostgreSQL their rows would be in neither of the export's parts, so missing from the files
    without an error. Never, while the eligible plans are some of the plans in scope that the
    parts are dealt from; this says so if that changes.
-#}
with

care_plans_eligible as (

    select * from {{ ref('int_care_plans_eligible') }}

),

export_parts as (

    select * from {{ ref('int_export_parts') }}

)

select distinct
    care_plans_eligible.performance_year,
    care_plans_eligible.state_code
from care_plans_eligible
left join export_parts
    on
        care_plans_eligible.performance_year = export_parts.performance_year
        and care_plans_eligible.state_code = export_parts.state_code
where export_parts.export_part is null
