with

patient_forms as (

    select * from {{ ref('stg_forms__patient_forms') }}
    -- forms filled in outside a visit are not exported (SPEC §5)
    where appointment_id is not null

),

ranked_forms as (

    select
        appointment_id as visit_id,
        patient_form_id,
        instrument,
        functional_score,
        nprs_score,
        completed_at,
        row_number() over (
            partition by appointment_id
            order by completed_at desc nulls last, patient_form_id desc
        ) as form_rank
    from patient_forms

),

visit_forms_selected as (

    select
        visit_id,
        patient_form_id,
        instrument,
        functional_score,
        nprs_score,
        completed_at
    from ranked_forms
    -- the latest form of the visit; on equal completed_at the highest id
    where form_rank = 1

)

select * from visit_forms_selected
