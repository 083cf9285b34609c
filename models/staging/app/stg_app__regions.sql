with

source as (

    select * from {{ source('app', 'regions') }}

),

renamed as (

    select
        -- ids
        cast(id as {{ dbt.type_bigint() }}) as region_id,
        cast(state_id as {{ dbt.type_bigint() }}) as state_id,

        -- strings
        name as region_name

    from source

)

select * from renamed
