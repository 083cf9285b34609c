{#- Every name the loader gives a delivery's objects is decided here, as a template whose
    {placeholders} only the run can fill: {run_date}, {run_date_compact}, {run_time}, {run_id}. -#}
{%- set year_state = dbt.concat([
    "cast(performance_year as " ~ dbt.type_string() ~ ")", "'/'", "state_code",
]) -%}
{%- set snapshot_dir = dbt.concat([
    year_state, "'/'", "coalesce(" ~ format_date_iso('fixed_snapshot_date') ~ ", '{run_date}')",
]) -%}
-- A broken configuration stops this model from being rebuilt through mips_export, which it refs
-- (export_relation) and which depends on int_configuration_errors: dbt skips both. A depends_on
-- here too would rejoin that parent (dbt Labs' rule fct_rejoining_of_upstream_concepts).

with

program_year_states as (

    select * from {{ ref('int_program_year_states_split') }}
    where state_id is not null

),

program_year_rules as (

    select * from {{ ref('mips_program_years') }}

),

registrations as (

    select * from {{ ref('mips_registrations') }}

),

delivery_parts as (

    select
        program_year_states.performance_year,
        program_year_states.state_code,
        program_year_rules.export_layout_version,
        program_year_rules.fixed_snapshot_date,
        program_year_rules.sftp_file_name_has_date_suffix,
        coalesce(program_year_states.is_integration_enabled, false) as sftp_enabled,
        program_year_states.is_strictly_contained as strictly_contained,
        registrations.registration_id,
        registrations.integration_key
    from program_year_states
    inner join program_year_rules
        on program_year_states.performance_year = program_year_rules.performance_year
    left join registrations
        on
            program_year_states.performance_year = registrations.performance_year
            and program_year_states.state_code = upper({{ trim_spaces('registrations.state_code') }})

),

deliveries as (

    select
        cast(performance_year as {{ dbt.type_int() }}) as performance_year,
        cast(state_code as {{ dbt.type_string() }}) as state_code,
        -- the relation the loader unloads: the export version of the year's layout
        cast(
            case export_layout_version
                when 1 then '{{ ref("mips_export", v=1) }}'
            end
            as {{ dbt.type_string() }}
        ) as export_relation,
        -- S3 key below the prefix; {run_date} is the loader's run date, YYYY-MM-DD (SPEC §6)
        cast(
            {{ dbt.concat([snapshot_dir, "'/data.csv'"]) }} as {{ dbt.type_string() }}
        ) as s3_key_template,
        -- the manifest beside the file, describing the snapshot it sits in
        cast(
            {{ dbt.concat([snapshot_dir, "'/manifest.json'"]) }} as {{ dbt.type_string() }}
        ) as manifest_key_template,
        -- every snapshot folder of the delivery is below this prefix (status reads the newest)
        cast({{ dbt.concat([year_state, "'/'"]) }} as {{ dbt.type_string() }}) as snapshot_prefix,
        -- one record per run, never overwritten: {run_time} is HHMMSS.mmmZ (UTC), {run_id} the run's
        cast(
            {{ dbt.concat([
                "'run-log/'", year_state, "'/{run_date}T{run_time}-{run_id}.json'",
            ]) }}
            as {{ dbt.type_string() }}
        ) as run_log_key_template,
        cast({{ dbt.concat(["'run-log/'", year_state, "'/'"]) }} as {{ dbt.type_string() }})
            as run_log_prefix,
        -- the prefix of an s3:// URL that names only a bucket (SPEC §6)
        cast(
            '{{ var("mips_s3_prefix") }}' as {{ dbt.type_string() }}
        ) as s3_default_prefix,
        -- the zone of the run date: the same as the visit dates'
        cast(
            '{{ var("mips_time_zone") }}' as {{ dbt.type_string() }}
        ) as run_time_zone,
        cast(fixed_snapshot_date as date) as fixed_snapshot_date,
        cast(sftp_enabled as boolean) as sftp_enabled,
        cast(registration_id as {{ dbt.type_string() }}) as registration_id,
        cast(integration_key as {{ dbt.type_string() }}) as integration_key,
        -- {run_date_compact} is the run date as YYYYMMDD, for years that want it (2023)
        cast(
            case
                when sftp_enabled and registration_id is not null and integration_key is not null
                    then {{ dbt.concat([
                        "'Quality_'",
                        "registration_id",
                        "'_'",
                        "integration_key",
                        "case when sftp_file_name_has_date_suffix then '_{run_date_compact}' else '' end",
                        "'.csv'",
                    ]) }}
            end
            as {{ dbt.type_string() }}
        ) as sftp_file_name_template,
        cast(strictly_contained as boolean) as strictly_contained,
        -- the CSV header of the year's layout: the loader writes it even for an empty slice
        cast(
            case export_layout_version
                when 1 then '{{ export_file_columns(1) | join(",") }}'
            end
            as {{ dbt.type_string() }}
        ) as file_header,
        -- which dbt run produced this row, for the loader's delivery records
        cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as dbt_invocation_id
    from delivery_parts

)

select * from deliveries
