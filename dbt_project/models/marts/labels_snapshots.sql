with

labels as (

    select * from {{ ref('stg_raw__labels') }}

),

months_to_build as (

    {{ months_to_build('labels') }}

),

snapshots as (

    select
        labels.user_id,
        labels.as_of,
        labels.churn_label,
        labels.loaded_at

    from labels
    inner join months_to_build
        on labels.as_of = months_to_build.as_of

)

select * from snapshots
