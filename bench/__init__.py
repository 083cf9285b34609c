"""Benchmarks of the daily run: `python -m bench --scale N` (docs/benchmarks.md)."""
