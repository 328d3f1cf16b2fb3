{#
    Fails with every row where the column is NULL while `condition` is false,
    or filled while `condition` is true: optional attributes are NULL for a
    reason, and only for that reason.
#}
{% test null_exactly_when(model, column_name, condition) %}

select *
from {{ model }}
where ({{ column_name }} is null) <> coalesce(({{ condition }}), false)

{% endtest %}
