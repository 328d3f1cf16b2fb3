{#
    Fails with every column that is missing from the relation or not
    expected in it, read from the catalog. Contracts hold this for the
    snapshot tables at build time; the test states it for every model and
    re-checks relations that were changed by hand.
#}
{% test has_exactly_columns(model, column_names) %}

with

actual as (

    select column_name::text as column_name
    from information_schema.columns
    where
        table_schema = '{{ model.schema }}'
        and table_name = '{{ model.identifier }}'

),

expected as (

    select unnest(array[
        {%- for name in column_names %}
            '{{ name }}'{% if not loop.last %},{% endif %}
        {%- endfor %}
    ]::text []) as column_name

)

select
    coalesce(actual.column_name, expected.column_name) as column_name,
    case
        when actual.column_name is null then 'missing'
        else 'unexpected'
    end as problem
from actual
full outer join expected
    on actual.column_name = expected.column_name
where actual.column_name is null or expected.column_name is null

{% endtest %}
