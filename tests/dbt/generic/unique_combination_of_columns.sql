{#- The primary-key test of models keyed by several columns (dbt-utils' test, which we cannot install). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

{%- set columns_csv = combination_of_columns | join(', ') %}

select
    {{ columns_csv }},
    count(*) as duplicate_count
from {{ model }}
group by {{ columns_csv }}
having count(*) > 1

{% endtest %}
