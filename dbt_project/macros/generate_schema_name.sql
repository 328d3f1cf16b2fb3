{#
    dbt's default prefixes a custom schema with the target schema
    ("public_features"). Feast and the gate read fixed schema names, so a
    custom schema is used verbatim and only unconfigured nodes fall back to
    the profile's schema.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
