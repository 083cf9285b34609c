{#-
    A boolean setting as SPEC §4 reads it: true/false/t/f/1/0 in any case, surrounding spaces
    ignored. Anything else (null included) gives null, which int_configuration_errors reports
    as an error naming the key: a malformed value never becomes a silent default.
-#}
{% macro parse_setting_boolean(value_expression) -%}
    case
        when lower({{ trim_spaces(value_expression) }}) in ('true', 't', '1') then true
        when lower({{ trim_spaces(value_expression) }}) in ('false', 'f', '0') then false
    end
{%- endmacro %}
