{%- set columns = export_columns(1) -%}

-- The export's rows, every field as the file writes it, and the part each lies in: read by
-- mips_export_v1 on Athena and by its two parts on PostgreSQL (docs/models.md, "The export in
-- two parts").

-- a broken configuration must stop the export from being rebuilt, though it reads nothing of it
-- depends_on: {{ ref('int_configuration_errors') }}

with

visit_measures as (

    select * from {{ ref('int_visit_measures_unioned') }}

),

-- every field already as the CSV writes it (SPEC §6): the loader only quotes and joins. The
-- fields a visit's three rows share come formatted from int_visit_measures_unioned (once per
-- visit); the three that differ by row are formatted here
export_rows as (

    select
        -- the slice and the row's place in it
        cast(performance_year as {{ dbt.type_int() }}) as performance_year,
        cast(state_code as {{ dbt.type_string() }}) as state_code,
        cast(file_row_number as {{ dbt.type_bigint() }}) as file_row_number,
        -- which of the export's two tables holds the row on PostgreSQL (mips_export_v1_part_0
        -- and _1); not a column of the export
        export_part,

        -- file columns, in file order
        file_practice_tin as practice_tin,
        file_provider_npi as provider_npi,
        file_patient_id as patient_id,
        file_patient_date_of_birth as patient_date_of_birth,
        file_patient_sex as patient_sex,
        file_payer as payer,
        file_episode_id as episode_id,
        file_episode_start_date as episode_start_date,
        file_episode_end_date as episode_end_date,
        file_surgical as surgical,
        file_symptom_onset_date as symptom_onset_date,
        file_body_part as body_part,
        file_visit_id as visit_id,
        file_date_of_service as date_of_service,
        file_visit_type as visit_type,
        cast(measure_code as {{ dbt.type_string() }}) as treatment,
        cast(instrument as {{ dbt.type_string() }}) as instrument,
        {{ format_decimal_plain('score', 28, 6) }} as score

    from visit_measures

)

-- No `order by`: int_visit_measures_unioned numbers the rows by sorting the visits, and hands
-- them out in that order, three rows per visit in measure order, i.e. already in file order;
-- PostgreSQL stores them as they come (in the parts, mips_export_v1_part_0 and _1), so a slice
-- lies on adjacent pages. Sorting them again cost 6 s of the export's 37 s at the benchmark's
-- scale 100 (1.3 GB of temporary files). The order is the plan's, not a promise: another plan
-- costs scattered reads, never a wrong file (the loader reads a slice `order by
-- file_row_number`, through the primary key's index).
select
    {{ (columns[:3] + ['export_part'] + columns[3:]) | join(',\n    ') }}
from export_rows
