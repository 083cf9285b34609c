with

patient_forms as (

    select * from {{ ref('stg_forms__patient_forms') }}
    -- forms filled in outside a visit are not exported (SPEC §5)
    where appointment_id is not null

),

-- the latest form of the visit; on equal completed_at the highest id
visit_forms_selected as (

    {{ first_row_per(
        'patient_forms',
        key='appointment_id',
        order_by='completed_at desc nulls last, patient_form_id desc',
        columns=[
            'appointment_id as visit_id',
            'patient_form_id',
            'instrument',
            'functional_score',
            'nprs_score',
            'completed_at',
        ],
    ) }}

)

select * from visit_forms_selected
