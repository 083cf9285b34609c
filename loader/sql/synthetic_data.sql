-- Deterministic synthetic source data (see docs/synthetic-data.md), run by loader/environment/synthetic.py
-- between the "tables" and "keys" sections of source_schema.sql, in one transaction.
--
-- Every value is a pure function of (seed, stream name, row key) through pg_temp.draw, so the
-- same seed and scale give the same rows whatever plan or worker order the server picks.
-- Placeholders: schema identifiers, integer/boolean literals sized in Python, and {as_of}, the
-- date literal the data is anchored to (its "today").
-- Data window: care plans start 2021-06-01 .. {as_of}; visits up to {as_of} have happened
-- (completed, cancelled, no-show), later ones are `scheduled`. With as_of 2026-06-30 the data
-- is exactly what the generator made before it took a date.

-- step: random draws
create or replace function pg_temp.draw(stream text, key bigint) returns double precision
language sql immutable parallel safe
as $$
    select
        (hashint8extended(key, hashtextextended(stream, {seed})) & 4503599627370495)::float8
        / 4503599627370496.0
$$;

-- step: states
-- Ids in the order an application would have added them, not alphabetical.
insert into {app_schema}.states (id, name, postal_abbreviation)
values
    (1, 'California', 'CA'),
    (2, 'Arizona', 'AZ'),
    (3, 'Washington', 'WA'),
    (4, 'Texas', 'TX'),
    (5, 'Florida', 'FL'),
    (6, 'Illinois', 'IL'),
    (7, 'Oregon', 'OR'),
    (8, 'Colorado', 'CO'),
    (9, 'Georgia', 'GA'),
    (10, 'New York', 'NY'),
    (11, 'Nevada', 'NV'),
    (12, 'Utah', 'UT'),
    (13, 'Washington, D.C.', 'DC'),
    (14, 'Hawaiʻi', 'HI');

-- step: regions
insert into {app_schema}.regions (id, state_id, name)
values
    (1, 1, 'Los Angeles'),
    (2, 1, 'Bay Area, "Peninsula"'),
    (3, 1, 'San Diego'),
    (4, 1, 'Inland Empire'),
    (5, 2, 'Phoenix Metro'),
    (6, 2, 'Tucson'),
    (7, 3, 'Seattle / Puget Sound'),
    (8, 3, 'Spokane'),
    (9, 4, 'Dallas–Fort Worth'),
    (10, 4, 'Houston'),
    (11, 4, 'Austin'),
    (12, 5, 'Miami-Dade'),
    (13, 5, 'Tampa Bay'),
    (14, 6, 'Chicagoland, O''Hare'),
    (15, 6, 'Springfield'),
    (16, 7, 'Portland'),
    (17, 8, 'Denver Front Range'),
    (18, 8, 'Colorado Springs'),
    (19, 9, 'Atlanta'),
    (20, 9, 'Savannah'),
    (21, 10, 'New York City'),
    (22, 10, 'Long Island; Nassau'),
    (23, 10, 'Buffalo'),
    (24, 11, 'Las Vegas'),
    (25, 12, 'Salt Lake'),
    (26, 13, 'Capitol Hill'),
    (27, 14, 'Oʻahu'),
    (28, 1, '  Española Valley  ');

-- step: clinicians
-- NPIs: an affine bijection mod 10^10, so they are distinct, seed-dependent, and ~10% start
-- with 0. TINs are per practice (several clinicians bill under one TIN), 9 digits likewise.
-- Names cycle through both lists, so every awkward one appears from 16 clinicians on.
insert into {app_schema}.clinicians (id, first_name, last_name, npi, tin)
with offsets as (
    select
        floor(pg_temp.draw('clinician.npi_offset', 0) * 1e10)::bigint as npi_offset,
        floor(pg_temp.draw('clinician.tin_offset', 0) * 1e9)::bigint as tin_offset,
        floor(pg_temp.draw('clinician.name_offset', 0) * 16)::bigint as name_offset
),

clinician as (
    select
        c.id,
        1 + mod(c.id - 1, {practices}::bigint) as practice_id,
        1 + mod(c.id + o.name_offset, 16)::int as first_name_index,
        1 + mod(c.id * 7 + o.name_offset, 16)::int as last_name_index
    from generate_series(1, {clinicians}::bigint) as c (id)
    cross join offsets as o
)

select
    c.id,
    (array[
        'Maria', 'James', 'José', 'Zoë', 'Wei', 'Aisha', 'Łukasz', 'Siobhán',
        'Robert', 'Ngozi', 'François', 'Priya', 'Anne' || chr(10) || 'Marie', 'Kenji',
        'Sarah', '"Doc"'
    ])[c.first_name_index] as first_name,
    (array[
        'García', 'Smith', 'O''Brien', 'Nguyễn', 'Müller', 'Smith, Jr.', 'Kowalski',
        'Johnson', 'Okafor', 'Dubois', 'Patel', 'Tanaka', 'Lee', 'Hernández-López',
        'Brown', '   Whitespace   '
    ])[c.last_name_index] as last_name,
    lpad(mod(o.npi_offset + c.id * 3141592653, 10000000000)::text, 10, '0') as npi,
    lpad(mod(o.tin_offset + c.practice_id * 271828183, 1000000000)::text, 9, '0') as tin
from clinician as c
cross join offsets as o;

-- step: plan shapes
-- One row per care plan with everything later steps derive from it; dropped at the end.
create temporary table plan_shape on commit drop as
with drawn as (
    select
        id,
        date '2021-06-01'
        + floor(pg_temp.draw('plan.start', id) * ({as_of} - date '2021-06-01' + 1))::int
        as start_date,
        pg_temp.draw('plan.length_kind', id) as length_kind,
        pg_temp.draw('plan.length', id) as length_draw,
        pg_temp.draw('plan.status', id) as status_draw,
        pg_temp.draw('plan.body_part', id) as body_part_draw,
        pg_temp.draw('plan.payer', id) as payer_draw,
        pg_temp.draw('plan.instrument', id) as instrument_draw,
        pg_temp.draw('plan.visit_rate', id) as visit_rate_draw,
        1 + floor(pg_temp.draw('plan.patient', id) * {patients})::bigint as patient_id,
        1 + mod((id - 1) * {injury_stride}, {care_plans}::bigint) as injury_id,
        1 + floor(pg_temp.draw('plan.clinician', id) * {clinicians})::bigint as clinician_id,
        1 + floor(
            pg_temp.draw('plan.region', id) * (select count(*) from {app_schema}.regions)
        )::bigint as region_id,
        pg_temp.draw('plan.year_end_visits', id) < 0.5 as wants_year_end_visits
    from generate_series(1, {care_plans}::bigint) as id
),

lengths as (
    select
        *,
        start_date + case
            when length_kind < 0.70 then 14 + floor(length_draw * 77)::int
            when length_kind < 0.92 then 90 + floor(length_draw * 111)::int
            else 200 + floor(length_draw * 341)::int
        end as planned_end
    from drawn
),

classified as (
    select
        *,
        case
            when status_draw < 0.05 then 'cancelled'
            when planned_end > {as_of} then 'active'
            -- a few old plans nobody discharged: active, no end date, years later
            when status_draw < 0.06 then 'active'
            else 'discharged'
        end as status,
        case
            when body_part_draw < 0.13 then 'neck'
            when body_part_draw < 0.30 then 'shoulder_arm'
            when body_part_draw < 0.50 then 'lower_back'
            when body_part_draw < 0.56 then 'hip'
            when body_part_draw < 0.59 then 'hip_joint_replacement'
            when body_part_draw < 0.69 then 'foot_and_ankle'
            when body_part_draw < 0.82 then 'knee'
            when body_part_draw < 0.87 then 'knee_joint_replacement'
            when body_part_draw < 0.92 then 'other'
            when body_part_draw < 0.94 then 'pelvis'
            when body_part_draw < 0.98 then 'upper_back'
            -- a value no measure map knows: must be excluded and reported, not crash
            else 'wrist_hand'
        end as body_part_type,
        case
            when payer_draw < 0.25 then 'medicare'
            when payer_draw < 0.37 then 'medicare_advantage'
            when payer_draw < 0.47 then 'medicaid'
            when payer_draw < 0.85 then 'commercial'
            when payer_draw < 0.93 then 'workers_comp'
            when payer_draw < 0.97 then 'self_pay'
            else 'other'
        end as payer_type
    from lengths
),

dated as (
    select
        *,
        case
            when status = 'discharged' then planned_end
            when status = 'cancelled' and length_draw < 0.5
                then least(start_date + floor(length_draw * 30)::int, {as_of})
        end as end_date,
        -- the span visits are spread over; a cancelled plan stops within two weeks
        case
            when status = 'cancelled' then 14
            else planned_end - start_date
        end as visit_span_days,
        case
            when status = 'cancelled' then floor(visit_rate_draw * 3)::int
            else least(
                40, 1 + floor((planned_end - start_date) / 7.0 * (0.3 + 0.6 * visit_rate_draw))::int
            )
        end as visit_count,
        case
            when body_part_type = 'neck' then 'NDI'
            when body_part_type = 'shoulder_arm' then 'QUICKDASH'
            when body_part_type in ('lower_back', 'pelvis') then 'MDQ'
            when body_part_type in ('knee', 'knee_joint_replacement')
                then case when instrument_draw < 0.5 then 'KOS' else 'LEFS' end
            when body_part_type in ('hip', 'hip_joint_replacement', 'foot_and_ankle') then 'LEFS'
            when body_part_type = 'wrist_hand'
                then case when instrument_draw < 0.7 then 'QUICKDASH' else 'PROMIS_UE' end
            when body_part_type = 'upper_back'
                then case when instrument_draw < 0.5 then 'NDI' else 'PROMIS_PF' end
            else 'PROMIS_PF'
        end as instrument,
        -- Dec 31 of the start year, when the plan runs into the next year (time-zone edge)
        case
            when
                status != 'cancelled'
                and wants_year_end_visits
                -- both extra visits have happened by {as_of}
                and make_date(extract(year from start_date)::int + 1, 1, 1) <= {as_of}
                and planned_end >= make_date(extract(year from start_date)::int + 1, 1, 1)
                then make_date(extract(year from start_date)::int, 12, 31)
        end as year_end
    from classified
),

counted as (
    select
        *,
        visit_count + case when year_end is null then 0 else 2 end as appointment_count
    from dated
)

select
    id,
    patient_id,
    injury_id,
    region_id,
    clinician_id,
    payer_type,
    body_part_type,
    instrument,
    status,
    start_date,
    end_date,
    visit_span_days,
    visit_count,
    year_end,
    appointment_count,
    -- dense appointment ids, plan by plan
    sum(appointment_count) over (order by id) - appointment_count + 1 as first_appointment_id
from counted;

-- step: care_plans
insert into {app_schema}.care_plans (
    id, patient_id, injury_id, region_id, payer_type, start_date, end_date, status
)
select id, patient_id, injury_id, region_id, payer_type, start_date, end_date, status
from plan_shape
order by id;

-- step: injuries
-- Injury ids are a permutation of care-plan ids, so joining the wrong id column shows.
insert into {app_schema}.injuries (id, patient_id, body_part_type, surgical, onset_date)
select
    injury_id as id,
    patient_id,
    body_part_type,
    body_part_type like '%joint_replacement'
    or pg_temp.draw('injury.surgical', injury_id) < 0.15 as surgical,
    start_date
    - (3 + floor(power(pg_temp.draw('injury.onset', injury_id), 2) * 400))::int as onset_date
from plan_shape
order by injury_id;

-- step: patients
-- Ages are taken at the patient's first care plan; a few turn 18 exactly on that day or the
-- day after, to pin the "18 or older on start_date" boundary.
insert into {app_schema}.patients (id, date_of_birth, sex)
with first_plan as (
    select distinct on (patient_id)
        patient_id,
        start_date
    from plan_shape
    order by patient_id, id
),

patient as (
    select
        p.id,
        coalesce(fp.start_date, date '2024-01-01') as reference_date,
        fp.start_date is not null as has_plan,
        pg_temp.draw('patient.age_kind', p.id) as age_kind,
        pg_temp.draw('patient.age', p.id) as age_draw,
        pg_temp.draw('patient.sex', p.id) as sex_draw
    from generate_series(1, {patients}::bigint) as p (id)
    left join first_plan as fp on p.id = fp.patient_id
)

select
    id,
    case
        when has_plan and age_kind < 0.01
            then (reference_date - interval '18 years')::date
        when has_plan and age_kind < 0.02
            then (reference_date - interval '18 years')::date + 1
        when age_kind < 0.06
            then reference_date - (5 * 365 + floor(age_draw * 12.9 * 365))::int
        else reference_date - (18 * 365 + 5 + floor(age_draw * 77 * 365))::int
    end as date_of_birth,
    case
        when sex_draw < 0.52 then 'female'
        when sex_draw < 0.94 then 'male'
        when sex_draw < 0.96 then 'other'
        when sex_draw < 0.98 then 'unknown'
    end as sex
from patient
order by id;

-- step: appointments
-- Visits spread evenly over the plan on 30-minute slots between 07:00 and 18:30 local time,
-- plus, for some plans crossing a year end, 23:30 on Dec 31 and 00:30 on Jan 1 local time.
insert into {app_schema}.appointments (
    id, care_plan_id, clinician_id, starts_at, status, visit_type
)
with visit as (
    select
        ps.first_appointment_id + v.visit_number - 1 as id,
        ps.id as care_plan_id,
        ps.clinician_id as plan_clinician_id,
        ps.status as plan_status,
        ps.visit_count,
        v.visit_number,
        case
            when v.visit_number = ps.visit_count + 1
                then ps.year_end + time '23:30'
            when v.visit_number = ps.visit_count + 2
                then ps.year_end + 1 + time '00:30'
            else
                ps.start_date
                + round(
                    (v.visit_number - 1) * ps.visit_span_days
                    / greatest(ps.visit_count - 1, 1)::numeric
                )::int
                + time '07:00'
                + floor(
                    pg_temp.draw('appointment.slot', ps.first_appointment_id + v.visit_number - 1)
                    * 24
                )::int * interval '30 minutes'
        end as local_start
    from plan_shape as ps
    cross join lateral generate_series(1, ps.appointment_count) as v (visit_number)
),

drawn as (
    select
        *,
        pg_temp.draw('appointment.status', id) as status_draw,
        pg_temp.draw('appointment.other_clinician', id) as other_clinician_draw
    from visit
)

select
    id,
    care_plan_id,
    case
        when other_clinician_draw < 0.15
            then 1 + floor(pg_temp.draw('appointment.clinician', id) * {clinicians})::bigint
        else plan_clinician_id
    end as clinician_id,
    local_start at time zone 'America/Los_Angeles' as starts_at,
    case
        when local_start >= {as_of} + 1 then 'scheduled'
        when visit_number > visit_count then 'completed'
        when status_draw < 0.86 then 'completed'
        when status_draw < 0.93 then 'cancelled'
        when status_draw < 0.98 then 'no_show'
        -- never closed in the application: still "scheduled" though in the past
        else 'scheduled'
    end as status,
    case
        when visit_number = 1 then 'evaluation'
        when visit_number = visit_count and plan_status = 'discharged' then 'discharge'
        when visit_number <= visit_count and mod(visit_number, 8) = 0 then 're_evaluation'
        else 'treatment'
    end as visit_type
from drawn
order by id;

-- step: patient_forms_mips
-- Most completed visits have one form; some have two or three, completed in any order, and a
-- third of those share one completed_at so the id tie-break decides. A few cancelled or
-- no-show visits have a form too, and some plans an intake form filled in at home the evening
-- before they start, with no appointment. Form ids leave room for three forms per appointment.
insert into {forms_schema}.patient_forms_mips (
    id,
    appointment_id,
    care_plan_id,
    patient_id,
    instrument,
    functional_score,
    nprs_score,
    completed_at
)
with visit as (
    select
        a.id as appointment_id,
        a.care_plan_id,
        a.starts_at,
        ps.patient_id,
        ps.body_part_type,
        ps.instrument as plan_instrument,
        -- how far into the plan: 0 at the evaluation, 1 at the last planned visit
        least(
            1.0, (a.id - ps.first_appointment_id)::float8 / greatest(ps.visit_count - 1, 1)
        ) as progress,
        pg_temp.draw('form.count', a.id) as count_draw,
        pg_temp.draw('form.tie', a.id) < 0.35 as tied,
        case
            when a.status = 'completed' then 1
            when a.status in ('cancelled', 'no_show') then 0.02
            else 0
        end as form_chance
    from {app_schema}.appointments as a
    inner join plan_shape as ps on a.care_plan_id = ps.id
),

counted as (
    select
        *,
        case
            when count_draw >= 0.85 * form_chance then 0
            when form_chance < 1 then 1
            when count_draw < 0.85 * 0.88 then 1
            when count_draw < 0.85 * 0.96 then 2
            else 3
        end as form_count
    from visit
),

visit_form as (
    select
        (c.appointment_id - 1) * 3 + f.form_number as id,
        c.appointment_id,
        c.care_plan_id,
        c.patient_id,
        c.body_part_type,
        c.plan_instrument,
        c.progress,
        case
            when c.tied then c.starts_at + interval '20 minutes'
            else
                c.starts_at
                + floor(
                    pg_temp.draw('form.minutes', (c.appointment_id - 1) * 3 + f.form_number) * 90
                )::int * interval '1 minute'
        end as completed_at
    from counted as c
    cross join lateral generate_series(1, c.form_count) as f (form_number)
),

intake_form as (
    select
        -- after every appointment's three form slots
        (select max(first_appointment_id + appointment_count) from plan_shape) * 3
        + ps.id as id,
        null::bigint as appointment_id,
        ps.id as care_plan_id,
        ps.patient_id,
        ps.body_part_type,
        ps.instrument as plan_instrument,
        0.0::float8 as progress,
        (
            (ps.start_date - 1)
            + time '19:00'
            + floor(pg_temp.draw('intake.minutes', ps.id) * 240)::int * interval '1 minute'
        ) at time zone 'America/Los_Angeles' as completed_at
    from plan_shape as ps
    where pg_temp.draw('intake.exists', ps.id) < 0.10
),

form as (
    select * from visit_form
    union all
    select * from intake_form
),

drawn as (
    select
        *,
        pg_temp.draw('form.promis', id) as promis_draw,
        pg_temp.draw('form.half_point_pain', id) < 0.03 as half_point_pain,
        pg_temp.draw('form.no_function', id) < 0.03 as no_function,
        pg_temp.draw('form.no_pain', id) < 0.03 as no_pain,
        -- roughly normal, mean 0, sd 0.5
        pg_temp.draw('form.noise_1', id)
        + pg_temp.draw('form.noise_2', id)
        + pg_temp.draw('form.noise_3', id)
        - 1.5 as noise,
        pg_temp.draw('form.pain_noise', id) - 0.5 as pain_noise
    from form
),

recovering as (
    select
        *,
        case
            when promis_draw < 0.01 then 'PROMIS_PI'
            when promis_draw < 0.03 and body_part_type in ('neck', 'shoulder_arm', 'wrist_hand')
                then 'PROMIS_UE'
            when promis_draw < 0.03 then 'PROMIS_PF'
            else plan_instrument
        end as instrument,
        -- 0 = worst possible function, 1 = full recovery
        least(1.0, greatest(0.0, 0.35 + 0.4 * progress + 0.3 * noise)) as recovery
    from drawn
)

select
    id,
    appointment_id,
    care_plan_id,
    patient_id,
    instrument,
    -- each instrument's own scale and precision, so formatting sees 40, 43.18, 40.00, 42.50
    case
        when no_function then null
        -- 10 items scored 0-5, doubled to a percentage of disability
        when instrument in ('NDI', 'MDQ') then (2 * round(50 * (1 - recovery)))::numeric
        -- 11 items scored 1-5: (sum / 11 - 1) * 25
        when instrument = 'QUICKDASH'
            then round(((11 + round(44 * (1 - recovery)))::numeric / 11 - 1) * 25, 2)
        when instrument = 'LEFS' then round(80 * recovery)::numeric
        -- 14 items scored 0-5, as a percentage of 70
        when instrument = 'KOS' then round(round(70 * recovery)::numeric / 70 * 100, 2)
        -- T-scores in half points; pain interference is worse when higher
        when instrument = 'PROMIS_PI' then round(round((70 - 30 * recovery) * 2)::numeric / 2, 2)
        else round(round((25 + 35 * recovery) * 2)::numeric / 2, 2)
    end as functional_score,
    case
        when no_pain then null
        when half_point_pain
            then round(
                round(least(10.0, greatest(0.0, 9 * (1 - recovery) + 3 * pain_noise)) * 2)::numeric
                / 2,
                1
            )
        else round(least(10.0, greatest(0.0, 9 * (1 - recovery) + 3 * pain_noise)))::numeric
    end as nprs_score,
    completed_at
from recovering
order by id;

-- step: settings
-- SPEC §4 production rows (dropped for an alpha-like environment) and unrelated rows, one of
-- which looks like a program setting but is not.
insert into {app_schema}.settings (id, key, value, setting_type)
select id, key, value, setting_type
from (
    values
        (1, 'default_time_zone', 'America/Los_Angeles', 'string', false),
        (2, 'feature_online_intake', 'true', 'boolean', false),
        (3, 'healthmonix_2022_states', 'CA', 'list', true),
        (4, 'healthmonix_2022_integration_enabled', 'false', 'boolean', true),
        (5, 'healthmonix_2022_strictly_contained', 'true', 'boolean', true),
        (6, 'healthmonix_sftp_host', 'sftp.healthmonix.invalid', 'string', false),
        (7, 'healthmonix_2023_states', 'AZ,CA,FL,IL,TX,WA', 'list', true),
        (8, 'healthmonix_2023_integration_enabled', 'true', 'boolean', true),
        (9, 'healthmonix_2023_strictly_contained', 'false', 'boolean', true),
        (10, 'max_visits_per_day', '12', 'integer', false),
        (11, 'healthmonix_2024_states', 'AZ,CA,FL,IL,TX,WA,GA,NY,CO', 'list', true),
        (12, 'healthmonix_2024_integration_enabled', 'true', 'boolean', true),
        (13, 'healthmonix_2024_strictly_contained', 'false', 'boolean', true),
        (14, 'healthmonix_2025_states', 'AZ,CA,FL,IL,TX,WA,GA,NY,CO', 'list', true),
        (15, 'healthmonix_2025_integration_enabled', 'true', 'boolean', true),
        (16, 'healthmonix_2025_strictly_contained', 'false', 'boolean', true),
        (17, 'healthmonix_2026_states_draft', 'AZ,CA', 'list', false)
) as setting (id, key, value, setting_type, is_program_setting)
where {program_settings} or not is_program_setting
order by id;

-- step: clean up
-- Explicitly, not only at commit: a caller's outer transaction may call generate() again.
drop table plan_shape;

-- step: clean up
drop function pg_temp.draw(text, bigint);
