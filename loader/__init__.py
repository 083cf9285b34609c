"""Loader for the Healthmonix MIPS export: unloads dbt's export slices and delivers them."""
