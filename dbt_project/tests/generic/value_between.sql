{#
    Fails with every row whose value lies outside [min_value, max_value];
    either bound may be left out. NULLs are not_null's business and pass.
#}
{% test value_between(model, column_name, min_value=none, max_value=none) %}

select {{ column_name }}
from {{ model }}
where
    {% if min_value is not none -%}
        {{ column_name }} < {{ min_value }}
    {%- else -%}
        false
    {%- endif %}
    or {% if max_value is not none -%}
        {{ column_name }} > {{ max_value }}
    {%- else -%}
        false
    {%- endif %}

{% endtest %}
