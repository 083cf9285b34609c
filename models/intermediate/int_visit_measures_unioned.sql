with

care_plans_eligible as (

    select * from {{ ref('int_care_plans_eligible') }}

),

visits_dated as (

    select * from {{ ref('int_visits_dated') }}

),

visit_forms_selected as (

    select * from {{ ref('int_visit_forms_selected') }}

),

export_parts as (

    select * from {{ ref('int_export_parts') }}

),

clinicians as (

    select * from {{ ref('stg_app__clinicians') }}

),

-- the three rows of every visit, in file order (SPEC §5)
measure_kinds as (

    select
        1 as measure_order,
        'function' as measure_kind
    union all
    select
        2 as measure_order,
        'pain' as measure_kind
    union all
    select
        3 as measure_order,
        'length_of_stay' as measure_kind

),

eligible_visits as (

    select
        care_plans_eligible.performance_year,
        care_plans_eligible.state_code,
        export_parts.export_part,
        -- what the measure rows are made of (below)
        care_plans_eligible.start_date,
        care_plans_eligible.function_measure_code,
        care_plans_eligible.pain_measure_code,
        visits_dated.visit_date,
        visit_forms_selected.instrument,
        visit_forms_selected.functional_score,
        visit_forms_selected.nprs_score,
        -- the fields that are the same in a visit's three rows, as the file writes them (SPEC
        -- §6), formatted here once per visit: this level, kept apart by its window, is
        -- evaluated per visit; what reads the view (mips_export) is evaluated per file row,
        -- three times as often (7-8 s of the export's 33 s at the benchmark's scale 100)
        cast(clinicians.tin as {{ dbt.type_string() }}) as file_practice_tin,
        cast(clinicians.npi as {{ dbt.type_string() }}) as file_provider_npi,
        cast(care_plans_eligible.patient_id as {{ dbt.type_string() }}) as file_patient_id,
        {{ format_date_iso('care_plans_eligible.date_of_birth') }} as file_patient_date_of_birth,
        case care_plans_eligible.sex when 'female' then 'F' when 'male' then 'M' else 'U' end
            as file_patient_sex,
        case care_plans_eligible.payer_type
            when 'medicare' then 'Medicare'
            when 'medicare_advantage' then 'Medicare Advantage'
            when 'medicaid' then 'Medicaid'
            when 'commercial' then 'Commercial'
            when 'workers_comp' then 'Workers Comp'
            when 'self_pay' then 'Self Pay'
            when 'other' then 'Other'
        end as file_payer,
        cast(care_plans_eligible.care_plan_id as {{ dbt.type_string() }}) as file_episode_id,
        {{ format_date_iso('care_plans_eligible.start_date') }} as file_episode_start_date,
        {{ format_date_iso('care_plans_eligible.end_date') }} as file_episode_end_date,
        case when care_plans_eligible.is_surgical then 'Y' else 'N' end as file_surgical,
        {{ format_date_iso('care_plans_eligible.onset_date') }} as file_symptom_onset_date,
        upper(care_plans_eligible.body_part_type) as file_body_part,
        cast(visits_dated.visit_id as {{ dbt.type_string() }}) as file_visit_id,
        {{ format_date_iso('visits_dated.visit_date') }} as file_date_of_service,
        upper(visits_dated.visit_type) as file_visit_type,
        -- the visit's place in its (year, state) file; sorting visits, not 3x as many rows.
        -- dense_rank, not row_number: the same while each visit comes once (the order is the
        -- visit's own), but two rows of one visit (a join that fans out) share a number, so
        -- their file rows collide in the export's primary key, which refuses the table.
        -- export_part, set by year and state, changes no number: partitioned by it too, the
        -- window lets a filter on it reach the care plans, so that a part numbers only its own
        dense_rank() over (
            partition by
                export_parts.export_part,
                care_plans_eligible.performance_year,
                care_plans_eligible.state_code
            order by
                care_plans_eligible.care_plan_id,
                visits_dated.visit_date,
                visits_dated.visit_id
        ) as visit_sequence
    from care_plans_eligible
    -- the part that holds the file (int_export_parts; each file is in it once)
    inner join export_parts
        on
            care_plans_eligible.performance_year = export_parts.performance_year
            and care_plans_eligible.state_code = export_parts.state_code
    -- only the visits whose local date falls in the year (a plan without any yields nothing)
    inner join visits_dated
        on
            care_plans_eligible.care_plan_id = visits_dated.care_plan_id
            and care_plans_eligible.performance_year = visits_dated.performance_year
    left join clinicians
        on visits_dated.clinician_id = clinicians.clinician_id
    left join visit_forms_selected
        on visits_dated.visit_id = visit_forms_selected.visit_id

),

visit_measures as (

    select
        eligible_visits.performance_year,
        eligible_visits.state_code,
        eligible_visits.export_part,
        (eligible_visits.visit_sequence - 1) * 3 + measure_kinds.measure_order as file_row_number,
        eligible_visits.file_practice_tin,
        eligible_visits.file_provider_npi,
        eligible_visits.file_patient_id,
        eligible_visits.file_patient_date_of_birth,
        eligible_visits.file_patient_sex,
        eligible_visits.file_payer,
        eligible_visits.file_episode_id,
        eligible_visits.file_episode_start_date,
        eligible_visits.file_episode_end_date,
        eligible_visits.file_surgical,
        eligible_visits.file_symptom_onset_date,
        eligible_visits.file_body_part,
        eligible_visits.file_visit_id,
        eligible_visits.file_date_of_service,
        eligible_visits.file_visit_type,
        measure_kinds.measure_order,
        measure_kinds.measure_kind,
        case measure_kinds.measure_kind
            when 'function' then eligible_visits.function_measure_code
            when 'pain' then eligible_visits.pain_measure_code
            else 'LOS'
        end as measure_code,
        -- no score, no instrument: both fields stay empty (SPEC §5)
        case
            when measure_kinds.measure_kind = 'function' and eligible_visits.functional_score is not null
                then eligible_visits.instrument
            when measure_kinds.measure_kind = 'pain' and eligible_visits.nprs_score is not null
                then 'NPRS'
        end as instrument,
        cast(
            case measure_kinds.measure_kind
                when 'function' then eligible_visits.functional_score
                when 'pain' then eligible_visits.nprs_score
                else {{ dbt.datediff('eligible_visits.start_date', 'eligible_visits.visit_date', 'day') }}
            end
            as decimal(28, 6)
        ) as score
    from eligible_visits
    cross join measure_kinds

)

select * from visit_measures
