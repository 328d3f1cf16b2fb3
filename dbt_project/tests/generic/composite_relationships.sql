{#
    Fails with every row whose `columns` have no matching row in `to`: dbt's
    built-in `relationships` compares one column, and a snapshot row belongs
    to a user *in a given month*, so the key is (user_id, as_of).
#}
{% test composite_relationships(model, columns, to) %}

select child.*
from {{ model }} as child
where not exists (
    select
    from {{ to }} as parent
    where
        {% for column in columns -%}
            parent.{{ column }} = child.{{ column }}
            {%- if not loop.last %} and {% endif %}
        {% endfor %}
)

{% endtest %}
