{#
    Fails with every value that is not 00:00:00 UTC on the last day of a
    month, the instant a monthly snapshot is published at. Meant for
    timestamptz columns; `at time zone 'utc'` makes it independent of the
    session's time zone.
#}
{% test is_month_end_utc_midnight(model, column_name) %}

with

utc_values as (

    select distinct ({{ column_name }} at time zone 'utc') as utc_value
    from {{ model }}

)

select utc_value
from utc_values
where
    utc_value
    <> date_trunc('month', utc_value) + interval '1 month' - interval '1 day'

{% endtest %}
