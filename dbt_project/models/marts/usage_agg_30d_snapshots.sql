with

usage_agg_30d as (

    select * from {{ ref('stg_raw__usage_agg_30d') }}

),

months_to_build as (

    {{ months_to_build('usage_agg_30d') }}

),

snapshots as (

    select
        usage_agg_30d.user_id,
        usage_agg_30d.as_of,
        usage_agg_30d.watch_hours_30d,
        usage_agg_30d.avg_session_mins_7d,
        usage_agg_30d.unique_devices_30d,
        usage_agg_30d.skips_7d,
        usage_agg_30d.rebuffer_events_7d,
        usage_agg_30d.loaded_at

    from usage_agg_30d
    inner join months_to_build
        on usage_agg_30d.as_of = months_to_build.as_of

)

select * from snapshots
