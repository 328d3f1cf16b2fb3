with

support_agg_90d as (

    select * from {{ ref('stg_raw__support_agg_90d') }}

),

months_to_build as (

    {{ months_to_build('support_agg_90d') }}

),

snapshots as (

    select
        support_agg_90d.user_id,
        support_agg_90d.as_of,
        support_agg_90d.support_tickets_90d,
        support_agg_90d.ticket_avg_resolution_hrs_90d,
        support_agg_90d.loaded_at

    from support_agg_90d
    inner join months_to_build
        on support_agg_90d.as_of = months_to_build.as_of

)

select * from snapshots
