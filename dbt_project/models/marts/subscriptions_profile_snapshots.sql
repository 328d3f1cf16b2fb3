with

subscriptions as (

    select * from {{ ref('stg_raw__subscriptions') }}

),

months_to_build as (

    {{ months_to_build('subscriptions') }}

),

snapshots as (

    select
        subscriptions.user_id,
        subscriptions.as_of,
        subscriptions.months_active,
        subscriptions.monthly_fee,
        subscriptions.paperless_billing,
        subscriptions.plan_stream_tv,
        subscriptions.plan_stream_movies,
        subscriptions.net_service,
        subscriptions.contract_type,
        subscriptions.total_paid,
        subscriptions.loaded_at

    from subscriptions
    inner join months_to_build
        on subscriptions.as_of = months_to_build.as_of

)

select * from snapshots
