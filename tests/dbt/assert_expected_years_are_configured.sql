{#-
    Warning: a performance year the registry expects files for today (its window holds the
    build's date) has no `healthmonix_{year}_states` setting and is not declared not reported.
    `mips-loader status` says the same and exits 1; this makes `dbt build` say it too.
-#}
{{ config(severity='warn') }}

select
    performance_year,
    missing
from {{ ref('mips_expected_years') }}
where is_expected_at_build and readiness = 'not configured'
