with

source as (

    select * from {{ source('app', 'clinicians') }}

),

renamed as (

    select
        -- ids
        cast(id as {{ dbt.type_bigint() }}) as clinician_id,
        -- identifiers are text: leading zeros matter
        {{ trim_spaces('npi') }} as npi,
        {{ trim_spaces('tin') }} as tin,

        -- strings
        first_name,
        last_name

    from source

)

select * from renamed
