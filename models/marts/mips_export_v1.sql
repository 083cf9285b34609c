{%- set slice_columns = ['performance_year', 'state_code', 'file_row_number'] -%}
{%- set file_columns = [] -%}
{%- for column in export_file_columns(1) -%}
    {%- do file_columns.append(export_column_name(column)) -%}
{%- endfor -%}

-- a broken configuration must stop this model from being rebuilt, though it reads nothing of it
-- depends_on: {{ ref('int_configuration_errors') }}

with

visit_measures as (

    select * from {{ ref('int_visit_measures_unioned') }}

),

-- every field already as the CSV writes it (SPEC §6): the loader only quotes and joins
export_rows as (

    select
        -- the slice and the row's place in it
        cast(performance_year as {{ dbt.type_int() }}) as performance_year,
        cast(state_code as {{ dbt.type_string() }}) as state_code,
        cast(file_row_number as {{ dbt.type_bigint() }}) as file_row_number,

        -- file columns, in file order
        cast(tin as {{ dbt.type_string() }}) as practice_tin,
        cast(npi as {{ dbt.type_string() }}) as provider_npi,
        cast(patient_id as {{ dbt.type_string() }}) as patient_id,
        {{ format_date_iso('date_of_birth') }} as patient_date_of_birth,
        case sex when 'female' then 'F' when 'male' then 'M' else 'U' end as patient_sex,
        case payer_type
            when 'medicare' then 'Medicare'
            when 'medicare_advantage' then 'Medicare Advantage'
            when 'medicaid' then 'Medicaid'
            when 'commercial' then 'Commercial'
            when 'workers_comp' then 'Workers Comp'
            when 'self_pay' then 'Self Pay'
            when 'other' then 'Other'
        end as payer,
        cast(care_plan_id as {{ dbt.type_string() }}) as episode_id,
        {{ format_date_iso('start_date') }} as episode_start_date,
        {{ format_date_iso('end_date') }} as episode_end_date,
        case when is_surgical then 'Y' else 'N' end as surgical,
        {{ format_date_iso('onset_date') }} as symptom_onset_date,
        upper(body_part_type) as body_part,
        cast(visit_id as {{ dbt.type_string() }}) as visit_id,
        {{ format_date_iso('visit_date') }} as date_of_service,
        upper(visit_type) as visit_type,
        cast(measure_code as {{ dbt.type_string() }}) as treatment,
        cast(instrument as {{ dbt.type_string() }}) as instrument,
        {{ format_decimal_plain('score', 28, 6) }} as score

    from visit_measures

)

-- No `order by`: int_visit_measures_unioned numbers the rows by sorting the visits, and hands
-- them out in that order, three rows per visit in measure order, i.e. already in file order;
-- PostgreSQL stores them as they come, so a slice lies on adjacent pages. Sorting them again
-- cost 6 s of this model's 37 s at the benchmark's scale 100 (1.3 GB of temporary files). The
-- order is the plan's, not a promise: another plan costs scattered reads, never a wrong file
-- (the loader reads a slice `order by file_row_number`, through the primary key's index).
select
    {{ select_columns_for_layout(slice_columns + file_columns) }}
from export_rows
