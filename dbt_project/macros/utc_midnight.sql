{#
    A snapshot "as of 2024-01-31" becomes the instant 2024-01-31T00:00:00Z,
    the timestamp Feast joins on. Going through `timestamp` (no zone) and
    then `at time zone 'utc'` pins the instant to UTC whatever the session's
    TimeZone setting is.
#}
{% macro utc_midnight(date_column) -%}
    ({{ date_column }}::timestamp at time zone 'utc')
{%- endmacro %}
