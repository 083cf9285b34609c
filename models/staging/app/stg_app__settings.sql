with

source as (

    select * from {{ source('app', 'settings') }}

),

renamed as (

    select
        -- ids
        cast(id as {{ dbt.type_bigint() }}) as setting_id,

        -- strings
        -- keys are matched exactly (SPEC §4); values are parsed downstream, raw here
        key as setting_key,
        value as setting_value,
        setting_type

    from source

)

select * from renamed
