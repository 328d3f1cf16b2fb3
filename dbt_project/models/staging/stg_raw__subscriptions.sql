with

raw_subscriptions as (

    select * from {{ source('raw', 'subscriptions') }}

),

renamed as (

    select
        user_id,
        {{ utc_midnight('as_of') }} as as_of,
        months_active,
        monthly_fee::double precision as monthly_fee,
        paperless_billing,
        plan_stream_tv,
        plan_stream_movies,
        net_service,
        contract_type,
        total_paid::double precision as total_paid,
        loaded_at

    from raw_subscriptions

)

select * from renamed
