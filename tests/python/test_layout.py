"""The loader's layout: every module imports, nothing imports in a circle, layers point down.

    loader.cli, loader.demo, loader.dev  the commands
    loader.review.*                   `diff`: two builds of the project compared
    loader.run.*                      export, plan, status, sync-forms: gate, export, records
    loader.engines.*                  one engine per warehouse (PostgreSQL, Athena): the marts
                                      read, slices in the file layout, the run lock
    loader.marts.*                    the marts' rows as Python values (no I/O)
    loader.environment.*              the warehouse, the embedded cluster, dbt, the source data
    loader.destinations.*             S3, SFTP, local directories (beside the engines, not
                                      below them: an engine never delivers)
    loader.errors, retry, names, clock, aws, signals, processes  what every layer shares
    loader.__main__                   the console script: signal handlers, then loader.cli

(docs/loader.md says what lives where.)
"""

from __future__ import annotations

import ast
import graphlib
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import loader

LOADER_DIR = Path(loader.__file__).parent
SHARED = {
    "loader", "loader.errors", "loader.retry", "loader.names", "loader.clock", "loader.aws",
    "loader.signals", "loader.processes", "loader.allocator",
}  # fmt: skip
# What each package may import from the loader, besides itself and SHARED.
ALLOWED = {
    "loader.destinations": set(),
    "loader.marts": set(),
    "loader.engines": {"loader.marts", "loader.environment"},
    "loader.environment": set(),
    "loader.run": {"loader.engines", "loader.environment", "loader.destinations", "loader.marts"},
    "loader.review": {"loader.run", "loader.engines", "loader.environment", "loader.destinations",
                      "loader.marts"},
    "loader.cli": {"loader.run", "loader.engines", "loader.environment", "loader.destinations",
                   "loader.demo", "loader.dev", "loader.review", "loader.marts"},
    "loader.__main__": {"loader.cli"},
    "loader.dev": {"loader.environment"},
    "loader.demo": {"loader.run", "loader.engines", "loader.environment", "loader.destinations",
                    "loader.marts"},
}  # fmt: skip


def _modules() -> list[str]:
    return sorted(
        ["loader"] + [module.name for module in pkgutil.walk_packages(loader.__path__, "loader.")]
    )


def _imports(module: str) -> set[str]:
    """Every loader module `module` imports, at the top or inside a function."""
    path = LOADER_DIR.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = LOADER_DIR.parent / module.replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("loader"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("loader"))
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_every_module_imports_on_its_own():
    for module in _modules():
        importlib.import_module(module)
    # and the entry point starts in a fresh interpreter (no import order hides a circle)
    subprocess.run([sys.executable, "-c", "import loader.cli"], check=True)


def test_no_module_imports_in_a_circle():
    graph = {module: _imports(module) - {module} for module in _modules()}
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()  # raises CycleError naming the circle


def test_every_layer_imports_only_downwards():
    wrong = []
    for module in _modules():
        if module in SHARED:
            continue
        package = _package(module)
        for imported in _imports(module):
            target = _package(imported)
            if imported in SHARED or target == package or target in ALLOWED[package]:
                continue
            wrong.append(f"{module} imports {imported}")
    assert wrong == []


def test_the_layout_is_the_documented_one():
    packages = {_package(module) for module in _modules()} - SHARED
    assert packages == set(ALLOWED)
    docs = LOADER_DIR.parent / "docs"
    documented = (docs / "loader.md").read_text() + (docs / "destinations.md").read_text()
    for module in _modules():
        parts = module.split(".")
        if module == "loader" or parts[-1] == "__init__":
            continue
        if (LOADER_DIR.parent / "/".join(parts)).is_dir():
            assert f"`{'/'.join(parts)}/`" in documented, f"docs/loader.md lacks {module}"
            continue
        full = "/".join(parts) + ".py"
        in_package = (
            f"`{'/'.join(parts[:-1])}/`" in documented and f"`{parts[-1]}.py`" in documented
        )
        assert f"`{full}`" in documented or in_package, f"docs/loader.md does not place {full}"
