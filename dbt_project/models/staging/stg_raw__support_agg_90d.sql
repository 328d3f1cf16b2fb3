with

raw_support_agg_90d as (

    select * from {{ source('raw', 'support_agg_90d') }}

),

renamed as (

    select
        user_id,
        {{ utc_midnight('as_of') }} as as_of,
        support_tickets_90d,
        ticket_avg_resolution_hrs_90d::double precision
            as ticket_avg_resolution_hrs_90d,
        loaded_at

    from raw_support_agg_90d

)

select * from renamed
