"""What the test suite and the benchmark share: servers, scenarios, rigs.

Imported as `tests.support.<module>` (pytest and `python -m bench` run from the root).
"""
