with

raw_users as (

    select * from {{ source('raw', 'users') }}

),

renamed as (

    select
        user_id,
        {{ utc_midnight('as_of') }} as as_of,
        signup_date,
        user_gender,
        user_is_senior,
        has_family,
        has_dependents,
        loaded_at

    from raw_users

)

select * from renamed
