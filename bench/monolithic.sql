-- The export model's rows (mips_export_v1) as one statement, without dbt's layers: what the
-- layering costs is dbt build's time minus this statement's. Same rules (SPEC §4-6), same
-- columns (snake case; the file header comes from mips_deliveries) and formatting; the
-- measure map is inlined instead of read from a seed. The same SQL techniques as the model, so
-- the difference is the layering only: dates as format_date_iso writes them (a cast under an
-- ISO DateStyle), and no final `order by` (the rows leave the numbering window in file order).
-- Placeholders: {app} and {forms} (source schemas), {target} (the table to create).
create table {target} as
with

program_year_settings as (
    select
        cast(substr(key, 13, 4) as int) as performance_year,
        substr(key, 18) as setting_name,
        value
    from {app}.settings
    where key ~ '^healthmonix_[0-9]{{4}}_(states|integration_enabled|strictly_contained)$'
),

program_years as (
    select
        performance_year,
        max(value) filter (where setting_name = 'states') as states_value,
        coalesce(
            lower(trim(max(value) filter (where setting_name = 'strictly_contained')))
            in ('true', 't', '1'),
            false
        ) as is_strictly_contained
    from program_year_settings
    group by performance_year
    having count(*) filter (where setting_name = 'states') > 0
),

program_year_states as (
    select distinct
        program_years.performance_year,
        program_years.is_strictly_contained,
        states.postal_abbreviation as state_code,
        states.id as state_id
    from program_years
    cross join lateral regexp_split_to_table(program_years.states_value, ',') as listed (code)
    inner join {app}.states as states
        on upper(trim(listed.code)) = states.postal_abbreviation
),

measure_map (performance_year, body_part_type, function_measure_code, pain_measure_code) as (
    select years.performance_year, codes.body_part_type, codes.function_code,
        case when years.performance_year >= 2025 then codes.pain_code_2025 else codes.pain_code end
    from (values (2022), (2023), (2024), (2025)) as years (performance_year)
    cross join (
        values
            ('neck', 'MSK01', 'MSK11', 'MSK06'),
            ('shoulder_arm', 'MSK02', 'MSK12', 'MSK07'),
            ('lower_back', 'MSK03', 'MSK13', 'MSK08'),
            ('hip', 'MSK04', 'MSK14', 'MSK09'),
            ('hip_joint_replacement', 'MSK04', 'MSK14', 'MSK09'),
            ('foot_and_ankle', 'MSK04', 'MSK14', 'MSK09'),
            ('knee', 'MSK05', 'MSK15', 'MSK10'),
            ('knee_joint_replacement', 'MSK05', 'MSK15', 'MSK10')
    ) as codes (body_part_type, function_code, pain_code, pain_code_2025)
),

eligible_care_plans as (
    select
        pys.performance_year,
        pys.state_code,
        cp.id as care_plan_id,
        cp.patient_id,
        cp.payer_type,
        cp.start_date,
        cp.end_date,
        p.date_of_birth,
        p.sex,
        inj.body_part_type,
        inj.surgical,
        inj.onset_date,
        mm.function_measure_code,
        mm.pain_measure_code
    from {app}.care_plans as cp
    inner join {app}.regions as r on cp.region_id = r.id
    inner join program_year_states as pys on r.state_id = pys.state_id
    inner join {app}.patients as p on cp.patient_id = p.id
    inner join {app}.injuries as inj on cp.injury_id = inj.id
    inner join measure_map as mm
        on inj.body_part_type = mm.body_part_type and pys.performance_year = mm.performance_year
    where
        cp.status <> 'cancelled'
        and p.date_of_birth + interval '18 years' <= cp.start_date
        and case
            when pys.is_strictly_contained
                then cp.start_date >= make_date(pys.performance_year, 1, 1)
                and cp.end_date <= make_date(pys.performance_year, 12, 31)
            else cp.start_date <= make_date(pys.performance_year, 12, 31)
                and (cp.end_date is null or cp.end_date >= make_date(pys.performance_year, 1, 1))
        end
),

visits as (
    select
        a.id as visit_id,
        a.care_plan_id,
        a.clinician_id,
        a.visit_type,
        (a.starts_at at time zone 'America/Los_Angeles')::date as visit_date
    from {app}.appointments as a
    where a.status = 'completed'
),

visit_forms as (
    select distinct on (appointment_id)
        appointment_id as visit_id,
        instrument,
        functional_score,
        nprs_score
    from {forms}.patient_forms_mips
    where appointment_id is not null
    order by appointment_id, completed_at desc nulls last, id desc
),

eligible_visits as (
    select
        ecp.*,
        v.visit_id,
        v.visit_date,
        v.visit_type,
        c.tin,
        c.npi,
        f.instrument,
        f.functional_score,
        f.nprs_score,
        row_number() over (
            partition by ecp.performance_year, ecp.state_code
            order by ecp.care_plan_id, v.visit_date, v.visit_id
        ) as visit_sequence
    from eligible_care_plans as ecp
    inner join visits as v
        on
            ecp.care_plan_id = v.care_plan_id
            and v.visit_date >= make_date(ecp.performance_year, 1, 1)
            and v.visit_date <= make_date(ecp.performance_year, 12, 31)
    left join {app}.clinicians as c on v.clinician_id = c.id
    left join visit_forms as f on v.visit_id = f.visit_id
)

select
    ev.performance_year,
    ev.state_code,
    (ev.visit_sequence - 1) * 3 + kind.measure_order as file_row_number,
    ev.tin as practice_tin,
    ev.npi as provider_npi,
    ev.patient_id::text as patient_id,
    case when (select current_setting('DateStyle') like 'ISO%') then ev.date_of_birth::text else to_char(ev.date_of_birth, 'YYYY-MM-DD') end as patient_date_of_birth,
    case lower(trim(ev.sex)) when 'female' then 'F' when 'male' then 'M' else 'U' end
        as patient_sex,
    case ev.payer_type
        when 'medicare' then 'Medicare'
        when 'medicare_advantage' then 'Medicare Advantage'
        when 'medicaid' then 'Medicaid'
        when 'commercial' then 'Commercial'
        when 'workers_comp' then 'Workers Comp'
        when 'self_pay' then 'Self Pay'
        when 'other' then 'Other'
    end as payer,
    ev.care_plan_id::text as episode_id,
    case when (select current_setting('DateStyle') like 'ISO%') then ev.start_date::text else to_char(ev.start_date, 'YYYY-MM-DD') end as episode_start_date,
    case when (select current_setting('DateStyle') like 'ISO%') then ev.end_date::text else to_char(ev.end_date, 'YYYY-MM-DD') end as episode_end_date,
    case when ev.surgical then 'Y' else 'N' end as surgical,
    case when (select current_setting('DateStyle') like 'ISO%') then ev.onset_date::text else to_char(ev.onset_date, 'YYYY-MM-DD') end as symptom_onset_date,
    upper(ev.body_part_type) as body_part,
    ev.visit_id::text as visit_id,
    case when (select current_setting('DateStyle') like 'ISO%') then ev.visit_date::text else to_char(ev.visit_date, 'YYYY-MM-DD') end as date_of_service,
    upper(ev.visit_type) as visit_type,
    case kind.measure_order
        when 1 then ev.function_measure_code
        when 2 then ev.pain_measure_code
        else 'LOS'
    end as treatment,
    case
        when kind.measure_order = 1 and ev.functional_score is not null then ev.instrument
        when kind.measure_order = 2 and ev.nprs_score is not null then 'NPRS'
    end as instrument,
    trim_scale(
        case kind.measure_order
            when 1 then ev.functional_score
            when 2 then ev.nprs_score
            else (ev.visit_date - ev.start_date)::numeric
        end
    )::text as score
from eligible_visits as ev
cross join (values (1), (2), (3)) as kind (measure_order)
