with

source as (

    select * from {{ source('app', 'states') }}

),

renamed as (

    select
        -- ids
        cast(id as {{ dbt.type_bigint() }}) as state_id,

        -- strings
        name as state_name,
        -- settings list postal codes in any case and spacing; compare on the clean form
        upper({{ trim_spaces('postal_abbreviation') }}) as state_code

    from source

)

select * from renamed
