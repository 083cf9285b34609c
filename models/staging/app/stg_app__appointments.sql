with

source as (

    select * from {{ source('app', 'appointments') }}

),

renamed as (

    select
        -- ids
        cast(id as {{ dbt.type_bigint() }}) as appointment_id,
        cast(care_plan_id as {{ dbt.type_bigint() }}) as care_plan_id,
        cast(clinician_id as {{ dbt.type_bigint() }}) as clinician_id,

        -- strings
        status as appointment_status,
        visit_type,

        -- timestamps
        starts_at

    from source

)

select * from renamed
