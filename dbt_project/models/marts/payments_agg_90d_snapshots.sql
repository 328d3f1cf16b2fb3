with

payments_agg_90d as (

    select * from {{ ref('stg_raw__payments_agg_90d') }}

),

months_to_build as (

    {{ months_to_build('payments_agg_90d') }}

),

snapshots as (

    select
        payments_agg_90d.user_id,
        payments_agg_90d.as_of,
        payments_agg_90d.failed_payments_90d,
        payments_agg_90d.loaded_at

    from payments_agg_90d
    inner join months_to_build
        on payments_agg_90d.as_of = months_to_build.as_of

)

select * from snapshots
