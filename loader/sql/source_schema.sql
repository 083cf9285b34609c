-- The source contract of SPEC §3: the application tables the dbt project reads.
--
-- `{app_schema}` and `{forms_schema}` are filled in by loader/environment/source_schema.py as quoted
-- identifiers. The file runs in three sections so a bulk load can sit between "tables" and
-- "keys": building keys and indexes once after loading is much faster than per row.
-- Closed value sets are checked; body_part_type and setting_type are not (new values appear).

-- section: tables

create schema if not exists {app_schema};

create schema if not exists {forms_schema};

create table {app_schema}.states (
    id bigint not null,
    name text not null,
    postal_abbreviation text not null
        constraint states_postal_abbreviation_check
        check (postal_abbreviation ~ '^[A-Z][A-Z]$')
);

create table {app_schema}.regions (
    id bigint not null,
    state_id bigint not null,
    name text not null
);

create table {app_schema}.clinicians (
    id bigint not null,
    first_name text,
    last_name text,
    npi text
        constraint clinicians_npi_check check (npi ~ '^[0-9]+$' and length(npi) = 10),
    tin text
        constraint clinicians_tin_check check (tin ~ '^[0-9]+$' and length(tin) = 9)
);

create table {app_schema}.patients (
    id bigint not null,
    date_of_birth date,
    sex text
        constraint patients_sex_check check (sex in ('female', 'male', 'other', 'unknown'))
);

create table {app_schema}.injuries (
    id bigint not null,
    patient_id bigint not null,
    body_part_type text not null,
    surgical boolean not null,
    onset_date date
);

create table {app_schema}.care_plans (
    id bigint not null,
    patient_id bigint not null,
    injury_id bigint not null,
    region_id bigint not null,
    payer_type text
        constraint care_plans_payer_type_check check (
            payer_type in (
                'medicare',
                'medicare_advantage',
                'medicaid',
                'commercial',
                'workers_comp',
                'self_pay',
                'other'
            )
        ),
    start_date date not null,
    end_date date,
    status text not null
        constraint care_plans_status_check check (status in ('active', 'discharged', 'cancelled')),
    constraint care_plans_dates_check check (end_date is null or end_date >= start_date)
);

create table {app_schema}.appointments (
    id bigint not null,
    care_plan_id bigint not null,
    clinician_id bigint not null,
    starts_at timestamptz not null,
    status text not null
        constraint appointments_status_check
        check (status in ('completed', 'cancelled', 'no_show', 'scheduled')),
    visit_type text not null
        constraint appointments_visit_type_check
        check (visit_type in ('evaluation', 'treatment', 're_evaluation', 'discharge'))
);

create table {app_schema}.settings (
    id bigint not null,
    key text not null,
    value text,
    setting_type text not null
);

-- Synced from Athena in a Postgres deployment, so it references nothing.
create table {forms_schema}.patient_forms_mips (
    id bigint not null,
    appointment_id bigint,
    care_plan_id bigint not null,
    patient_id bigint not null,
    instrument text not null
        constraint patient_forms_mips_instrument_check
        check (
            instrument in (
                'NDI',
                'QUICKDASH',
                'MDQ',
                'LEFS',
                'KOS',
                'PROMIS_PF',
                'PROMIS_PI',
                'PROMIS_UE'
            )
        ),
    functional_score numeric,
    nprs_score numeric
        constraint patient_forms_mips_nprs_score_check check (nprs_score between 0 and 10),
    completed_at timestamptz not null
);

-- section: keys

alter table {app_schema}.states
    add constraint states_pkey primary key (id),
    add constraint states_postal_abbreviation_key unique (postal_abbreviation);

alter table {app_schema}.regions
    add constraint regions_pkey primary key (id),
    add constraint regions_state_id_fkey
    foreign key (state_id) references {app_schema}.states (id);

alter table {app_schema}.clinicians
    add constraint clinicians_pkey primary key (id);

alter table {app_schema}.patients
    add constraint patients_pkey primary key (id);

alter table {app_schema}.injuries
    add constraint injuries_pkey primary key (id),
    add constraint injuries_patient_id_fkey
    foreign key (patient_id) references {app_schema}.patients (id);

alter table {app_schema}.care_plans
    add constraint care_plans_pkey primary key (id),
    add constraint care_plans_patient_id_fkey
    foreign key (patient_id) references {app_schema}.patients (id),
    add constraint care_plans_injury_id_fkey
    foreign key (injury_id) references {app_schema}.injuries (id),
    add constraint care_plans_region_id_fkey
    foreign key (region_id) references {app_schema}.regions (id);

alter table {app_schema}.appointments
    add constraint appointments_pkey primary key (id),
    add constraint appointments_care_plan_id_fkey
    foreign key (care_plan_id) references {app_schema}.care_plans (id),
    add constraint appointments_clinician_id_fkey
    foreign key (clinician_id) references {app_schema}.clinicians (id);

alter table {app_schema}.settings
    add constraint settings_pkey primary key (id),
    add constraint settings_key_key unique (key);

alter table {forms_schema}.patient_forms_mips
    add constraint patient_forms_mips_pkey primary key (id);

-- section: indexes

-- The export walks state -> regions -> care plans -> appointments -> forms.
create index regions_state_id_idx on {app_schema}.regions (state_id);

create index care_plans_region_id_idx on {app_schema}.care_plans (region_id);

create index care_plans_patient_id_idx on {app_schema}.care_plans (patient_id);

create index care_plans_injury_id_idx on {app_schema}.care_plans (injury_id);

create index injuries_patient_id_idx on {app_schema}.injuries (patient_id);

create index appointments_care_plan_id_idx on {app_schema}.appointments (care_plan_id);

create index appointments_clinician_id_idx on {app_schema}.appointments (clinician_id);

-- Picks a visit's latest form (completed_at, then id) from the index alone.
create index patient_forms_mips_appointment_id_idx
on {forms_schema}.patient_forms_mips (appointment_id, completed_at, id);

create index patient_forms_mips_care_plan_id_idx
on {forms_schema}.patient_forms_mips (care_plan_id);

-- sync-forms copies incrementally by completed_at.
create index patient_forms_mips_completed_at_idx
on {forms_schema}.patient_forms_mips (completed_at);
