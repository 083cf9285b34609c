with

source as (

    select * from {{ source('app', 'patients') }}

),

renamed as (

    select
        -- ids
        cast(id as {{ dbt.type_bigint() }}) as patient_id,

        -- strings
        sex,

        -- dates
        cast(date_of_birth as date) as date_of_birth

    from source

)

select * from renamed
