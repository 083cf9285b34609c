"""The project's scripts (`python scripts/<name>.py`), importable as `scripts.<name>` by the
tests, which run from the repository root."""
