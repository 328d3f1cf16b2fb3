{#
    Every snapshot table is incremental by month in the same way, so the
    month selection lives here once instead of in each model. It returns the
    as_of values to (re)build: every month on a first build or a full
    refresh; otherwise the months whose load (loaded_at) in staging differs
    from the one the table holds. delete+insert on as_of (dbt_project.yml)
    then replaces each of those months whole, so a reloaded month ends up
    exactly as a full refresh would build it.

    `staged` is the name of the model's import CTE over its staging view;
    the table is read through `this`, so a unit test gives both as inputs
    of the model.
#}
{% macro months_to_build(staged) -%}
    with

    built_months as (
        {#- Which load of each month the table holds. #}
        {%- if is_incremental() %}

        select
            as_of,
            max(loaded_at) as loaded_at
        from {{ this }}
        group by as_of
        {%- else %}
        {#- A first build or a full refresh starts from an empty table. #}

        select
            null::timestamptz as as_of,
            null::timestamptz as loaded_at
        where false
        {%- endif %}

    ),

    staged_loads as (

        select distinct
            as_of,
            loaded_at
        from {{ staged }}

    )

    select distinct staged_loads.as_of
    from staged_loads
    left join built_months
        on staged_loads.as_of = built_months.as_of
    where built_months.loaded_at is distinct from staged_loads.loaded_at
{%- endmacro %}
