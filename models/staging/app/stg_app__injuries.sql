with

source as (

    select * from {{ source('app', 'injuries') }}

),

renamed as (

    select
        -- ids
        cast(id as {{ dbt.type_bigint() }}) as injury_id,
        cast(patient_id as {{ dbt.type_bigint() }}) as patient_id,

        -- strings
        -- an application enum: lower-case already, the measure map is keyed on it as is
        body_part_type,

        -- dates
        cast(onset_date as date) as onset_date,

        -- booleans
        surgical as is_surgical

    from source

)

select * from renamed
