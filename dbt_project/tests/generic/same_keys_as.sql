{#
    Fails with every key present on one side only. `composite_relationships`
    catches rows without a user; this also catches users missing from the
    model, so every snapshot table covers the same users in every month.
#}
{% test same_keys_as(model, to, columns) %}

select
    {% for column in columns -%}
        coalesce(model_keys.{{ column }}, to_keys.{{ column }})
            as {{ column }},
    {% endfor %}
    (model_keys.{{ columns[0] }} is null) as missing_from_model
from (select distinct {{ columns | join(', ') }} from {{ model }}) as model_keys
full outer join
    (select distinct {{ columns | join(', ') }} from {{ to }}) as to_keys
    on
        {% for column in columns -%}
            model_keys.{{ column }} = to_keys.{{ column }}
            {%- if not loop.last %} and {% endif %}
        {% endfor %}
where
    model_keys.{{ columns[0] }} is null
    or to_keys.{{ columns[0] }} is null

{% endtest %}
