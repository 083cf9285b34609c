-- Part 1 of the export on PostgreSQL: the files that int_export_parts deals to it
-- (part 0, built beside it, holds the others). mips_export_v1 is the view of both.
select
    {{ export_columns(1) | join(',\n    ') }}
from {{ ref('int_export_rows') }}
where export_part = 1
