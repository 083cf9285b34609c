{#-
    The CSV columns of an export layout version, in file order (SPEC §6 for version 1): the
    file header (mips_deliveries.file_header) and, through export_column_name, the export
    model's column names, from this one list. None holds a comma or a quote, so the header
    needs no CSV quoting.
-#}
{% macro export_file_columns(layout_version) %}
    {%- set layouts = {
        1: [
            'Practice TIN', 'Provider NPI', 'Patient ID', 'Patient Date Of Birth', 'Patient Sex',
            'Payer', 'Episode ID', 'Episode Start Date', 'Episode End Date', 'Surgical',
            'Symptom Onset Date', 'Body Part', 'Visit ID', 'Date Of Service', 'Visit Type',
            'Treatment', 'Instrument', 'Score',
        ],
    } -%}
    {%- if layout_version not in layouts -%}
        {{ exceptions.raise_compiler_error("no export layout version " ~ layout_version) }}
    {%- endif -%}
    {{ return(layouts[layout_version]) }}
{% endmacro %}

{#-
    The export model's column for a header name: lower case, spaces as underscores
    ("Practice TIN" -> practice_tin). Plain identifiers, because Glue (Athena) keeps only
    lower-case letters, digits and underscores in column names.
-#}
{% macro export_column_name(header) -%}
    {{ header | lower | replace(' ', '_') }}
{%- endmacro %}

{#-
    The export model's columns for a layout version, in the contract's order: the slice and the
    row's place in it, then the file columns. What the export and its parts select from
    int_export_rows (which has one more, export_part).
-#}
{% macro export_columns(layout_version) -%}
    {%- set columns = ['performance_year', 'state_code', 'file_row_number'] -%}
    {%- for header in export_file_columns(layout_version) -%}
        {%- do columns.append(export_column_name(header)) -%}
    {%- endfor -%}
    {{ return(columns) }}
{%- endmacro %}
