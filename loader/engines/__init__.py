"""One engine per warehouse (PostgreSQL, Athena) behind one interface (`base.Engine`),
chosen by the dbt target's adapter type."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from loader.engines.base import Engine, EngineConfigError


@contextlib.contextmanager
def open_engine(warehouse) -> Iterator[Engine]:
    """The engine of `warehouse` (a rendered dbt target), open for the `with` block."""
    if warehouse.adapter_type == "postgres":
        from loader.engines.postgres import open_postgres_engine

        with open_postgres_engine(warehouse) as engine:
            yield engine
    elif warehouse.adapter_type == "athena":
        from loader.engines.athena import AthenaEngine

        yield AthenaEngine(warehouse.settings)
    else:
        raise EngineConfigError(
            f"target '{warehouse.target_name}' is {warehouse.adapter_type}: "
            "the loader reads PostgreSQL or Athena"
        )
