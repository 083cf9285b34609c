{#-
    The text without its surrounding spaces (SPEC §4: "surrounding spaces ignored"), and
    nothing else: tabs, newlines and other whitespace stay, so 'true\t' or 'CA\n' is not a
    valid value on any engine. A bare trim() would differ: PostgreSQL's strips spaces only,
    Trino's (Athena) every whitespace character. The SQL-standard form below means the same on
    both, so it needs no dispatch.
-#}
{% macro trim_spaces(text_expression) -%}
    trim(both ' ' from {{ text_expression }})
{%- endmacro %}
