"""Stand-in for dbt's `modules` context (datetime, pytz, re) when sqlfluff renders the models:
the real modules, as dbt exposes them, so a model's compile-time date logic renders here too."""

import datetime  # noqa: F401
import re  # noqa: F401

import pytz  # noqa: F401
