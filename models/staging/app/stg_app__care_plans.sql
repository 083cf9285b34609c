with

source as (

    select * from {{ source('app', 'care_plans') }}

),

renamed as (

    select
        -- ids
        cast(id as {{ dbt.type_bigint() }}) as care_plan_id,
        cast(patient_id as {{ dbt.type_bigint() }}) as patient_id,
        cast(injury_id as {{ dbt.type_bigint() }}) as injury_id,
        cast(region_id as {{ dbt.type_bigint() }}) as region_id,

        -- strings
        payer_type,
        status as care_plan_status,

        -- dates
        cast(start_date as date) as start_date,
        cast(end_date as date) as end_date

    from source

)

select * from renamed
