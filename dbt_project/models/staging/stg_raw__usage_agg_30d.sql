with

raw_usage_agg_30d as (

    select * from {{ source('raw', 'usage_agg_30d') }}

),

renamed as (

    select
        user_id,
        {{ utc_midnight('as_of') }} as as_of,
        watch_hours_30d::double precision as watch_hours_30d,
        avg_session_mins_7d::double precision as avg_session_mins_7d,
        unique_devices_30d,
        skips_7d,
        rebuffer_events_7d,
        loaded_at

    from raw_usage_agg_30d

)

select * from renamed
