"""Stand-in for dbt's `target` under sqlfluff: the PostgreSQL target the lint renders for (the
dispatched macros resolve to their `postgres__` versions too, adapter.py)."""

type = "postgres"  # the adapter type, as dbt names it
