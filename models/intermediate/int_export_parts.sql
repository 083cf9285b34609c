-- The export's two parts, which PostgreSQL builds side by side (docs/models.md, "The export in
-- two parts"): the (year, state) files ordered by their care plans, largest first, and dealt
-- 0, 1, 1, 0, 0, 1, 1, 0, … so that each part holds about half of the rows. A file lies in one
-- part. The plans in scope are nearly the eligible ones (all but those of an unmapped body
-- part) and known before them: this runs beside int_care_plans_eligible, not after it. A table,
-- so that the planner knows how many files a part holds when it joins them.
with

care_plans_in_scope as (

    select * from {{ ref('int_care_plans_in_scope') }}

),

file_sizes as (

    select
        performance_year,
        state_code,
        count(*) as care_plans
    from care_plans_in_scope
    group by performance_year, state_code

),

files_by_size as (

    select
        performance_year,
        state_code,
        care_plans,
        row_number() over (
            order by care_plans desc, performance_year asc, state_code asc
        ) as size_rank
    from file_sizes

)

select
    performance_year,
    state_code,
    care_plans,
    case when mod(size_rank - 1, 4) in (0, 3) then 0 else 1 end as export_part
from files_by_size
