{#
    The quality gate's memory. dbt's own run_results.json lives in one
    working copy and is overwritten by every command, so each invocation
    also leaves its results in the database, where scripts/dbt_gate.py can
    compare them with the latest ingest (raw.month_loads.loaded_at).
#}

{% macro audit_selection() -%}
    {#- Anything that narrows the run; a narrowed run cannot vouch for the
        whole project, so the gate ignores it. -#}
    {%- set parts = [] -%}
    {%- for key in [
        'select', 'exclude', 'selector', 'resource_types',
        'exclude_resource_types', 'inline'
    ] -%}
        {%- set value = invocation_args_dict.get(key) -%}
        {%- if value -%}
            {%- do parts.append(
                key ~ '=' ~ (value if value is string else value | join(' '))
            ) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(parts | join('; ')) }}
{%- endmacro %}


{% macro audit_literal(value) -%}
    {%- if value is none -%}
        null
    {%- else -%}
        '{{ escape_single_quotes(value | string) }}'
    {%- endif -%}
{%- endmacro %}


{% macro record_invocation_start() %}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {#- The newest load visible now is what this run's models will read, so
        the gate can tell whether the run saw the latest ingest even when an
        ingest commits while dbt is running. -#}
    {%- set month_loads = adapter.get_relation(
        database=target.database, schema='raw', identifier='month_loads'
    ) -%}
    {%- set selection = audit_selection() -%}
    create schema if not exists audit;

    create table if not exists audit.dbt_invocations (
        invocation_id text primary key,
        command text not null,
        selection text,
        raw_loaded_at timestamptz,
        started_at timestamptz not null,
        finished_at timestamptz
    );

    create table if not exists audit.dbt_results (
        invocation_id text not null
            references audit.dbt_invocations (invocation_id),
        command text not null,
        node text not null,
        node_name text not null,
        resource_type text not null,
        status text not null,
        failures bigint,
        message text,
        finished_at timestamptz not null,
        primary key (invocation_id, node)
    );

    insert into audit.dbt_invocations (
        invocation_id, command, selection, raw_loaded_at, started_at
    )
    values (
        {{ audit_literal(invocation_id) }},
        {{ audit_literal(flags.WHICH) }},
        {{ audit_literal(selection or none) }},
        {% if month_loads %}
            (select max(loaded_at) from {{ month_loads }}),
        {% else %}
            null,
        {% endif %}
        clock_timestamp()
    );
    commit;
{% endmacro %}


{% macro record_invocation_results(results) %}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {% for result in results %}
        insert into audit.dbt_results (
            invocation_id, command, node, node_name, resource_type, status,
            failures, message, finished_at
        )
        values (
            {{ audit_literal(invocation_id) }},
            {{ audit_literal(flags.WHICH) }},
            {{ audit_literal(result.node.unique_id) }},
            {{ audit_literal(result.node.name) }},
            {{ audit_literal(result.node.resource_type) }},
            {{ audit_literal(result.status) }},
            {{ result.failures if result.failures is not none else 'null' }},
            {#- A failing test's message holds its row count; compile errors
                can be long, and the gate only quotes the first line. -#}
            {{ audit_literal((result.message or '')[:2000] or none) }},
            clock_timestamp()
        );
    {% endfor %}
    update audit.dbt_invocations
    set finished_at = clock_timestamp()
    where invocation_id = {{ audit_literal(invocation_id) }};
    commit;
{% endmacro %}
