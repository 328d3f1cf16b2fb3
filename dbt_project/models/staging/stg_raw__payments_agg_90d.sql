with

raw_payments_agg_90d as (

    select * from {{ source('raw', 'payments_agg_90d') }}

),

renamed as (

    select
        user_id,
        {{ utc_midnight('as_of') }} as as_of,
        failed_payments_90d,
        loaded_at

    from raw_payments_agg_90d

)

select * from renamed
