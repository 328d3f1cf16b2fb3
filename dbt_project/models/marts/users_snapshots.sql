with

users as (

    select * from {{ ref('stg_raw__users') }}

),

months_to_build as (

    {{ months_to_build('users') }}

),

snapshots as (

    select
        users.user_id,
        users.as_of,
        users.signup_date,
        users.user_gender,
        users.user_is_senior,
        users.has_family,
        users.has_dependents,
        users.loaded_at

    from users
    inner join months_to_build
        on users.as_of = months_to_build.as_of

)

select * from snapshots
