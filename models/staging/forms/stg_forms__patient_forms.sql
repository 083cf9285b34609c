with

source as (

    select * from {{ source('forms', 'patient_forms_mips') }}

),

renamed as (

    select
        -- ids
        cast(id as {{ dbt.type_bigint() }}) as patient_form_id,
        cast(appointment_id as {{ dbt.type_bigint() }}) as appointment_id,
        cast(care_plan_id as {{ dbt.type_bigint() }}) as care_plan_id,
        cast(patient_id as {{ dbt.type_bigint() }}) as patient_id,

        -- strings
        upper({{ trim_spaces('instrument') }}) as instrument,

        -- numerics
        functional_score,
        nprs_score,

        -- timestamps
        completed_at

    from source

)

select * from renamed
