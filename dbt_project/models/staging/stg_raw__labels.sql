with

raw_labels as (

    select * from {{ source('raw', 'labels') }}

),

renamed as (

    select
        user_id,
        {{ utc_midnight('as_of') }} as as_of,
        churn_label,
        loaded_at

    from raw_labels

)

select * from renamed
