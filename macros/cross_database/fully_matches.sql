{#-
    True when the whole text matches the regular expression (POSIX / Java compatible syntax),
    null when the text is null. Write the pattern without ^ and $: the macro anchors it, and
    anchors the end exactly. A plain `$` would not do that on Athena: Trino's regex library
    (Joni, Java syntax) lets `$` match before a final newline, so '12345' || chr(10) would
    pass '^[0-9]+$' there and fail it on PostgreSQL. Joni's `\z` is the very end of the text;
    PostgreSQL's `$` (without the newline-sensitive flag) already is.
    No default: another adapter fails to compile until it has its own version.
-#}
{% macro fully_matches(expression, pattern) -%}
    {%- if pattern.startswith('^') or pattern.endswith('$') -%}
        {{ exceptions.raise_compiler_error(
            "fully_matches(" ~ expression ~ ", '" ~ pattern ~ "'): write the pattern without"
            ~ " ^ and $; the macro anchors both ends itself, exactly on every engine"
        ) }}
    {%- endif -%}
    {{ return(adapter.dispatch('fully_matches', 'healthmonix_mips')(expression, pattern)) }}
{%- endmacro %}

{% macro postgres__fully_matches(expression, pattern) -%}
    ({{ expression }} ~ '^(?:{{ pattern }})$')
{%- endmacro %}

{% macro athena__fully_matches(expression, pattern) -%}
    regexp_like({{ expression }}, '^(?:{{ pattern }})\z')
{%- endmacro %}
