"""Reusing the base side of a diff: a reviewer diffs the same base again and again while the
working tree changes, and the base build would be the same every time.

After a base build succeeds, a stamp beside its dbt target (`built.json`) records what went
into it: the commit, the target, the schema, the build's selection, the dbt vars, the
versions of dbt, its adapter and the loader, the build's dbt invocation, a fingerprint of the
source data (every table and view in the source schemas) and one of what the comparison reads
in the base schema (its `mips_` relations: the marts and the seeds). A fingerprint is, per
relation, its columns and types, its row count and the sum of a hash of each row (order-free).
The next diff reuses the base schema only when every input is the same again, the schema's
build log still names that invocation as the newest that touched the marts (no other build
went into it since), and those relations are as the build left them. Anything else, or
`--rebuild-base`, builds the base again; the stamp is removed before any base build, so a
build that fails or is killed leaves none.

The base's data tests are kept with it (`tested.json`, beside the stamp): what each test the
base ran gave on that build, by name. A diff on the reused base runs there only the tests no
earlier diff ran on it; the others' outcomes are the same tests' (the same commit) on the same
tables (the same build, no other since) over the same sources, so running them again would
only repeat them.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

from loader.engines.postgres import read_build_history
from loader.marts.build_log import BUILD_LOG_MODEL
from loader.review.builds import BUILD_SELECTION

STAMP = "built.json"
TESTED = "tested.json"
# The packages whose code shapes a build besides the project's own files.
_PACKAGES = ("dbt-core", "dbt-postgres", "healthmonix-mips")
# Every relation dbt can read as a source: tables (plain and partitioned), views, materialized
# views, foreign tables; and what a build writes (a mart published elsewhere is a view).
_SOURCE_KINDS = ("r", "p", "v", "m", "f")
_BUILT_KINDS = ("r", "p", "v", "m")


@dataclass(frozen=True)
class BaseBuild:
    """What a base build was made of (`invocation_id` aside: which build it was)."""

    commit: str
    target: str
    schema: str
    selection: str  # the build's dbt command line (builds.py)
    dbt_vars: str  # canonical JSON
    versions: dict[str, str]
    sources: dict[str, str]  # "schema.relation": "columns; rows; hash sum"
    # which build it was, and what it left in the schema (set once it succeeded)
    invocation_id: str = ""
    built: dict[str, str] = field(default_factory=dict)

    def same_inputs(self, other: BaseBuild) -> bool:
        made_of = {"invocation_id": "", "built": {}}
        return asdict(self) | made_of == asdict(other) | made_of


def inputs(conn, *, commit: str, target: str, schema: str, dbt_vars: dict) -> BaseBuild | None:
    """What a base build of `commit` into `schema` would be made of now; None when the source
    data cannot be read whole (a relation the user may not read, a view that fails): then
    nothing can be proved, and the base is built."""
    import psycopg

    try:
        sources = source_fingerprint(
            conn, sorted({dbt_vars["app_schema"], dbt_vars["forms_schema"]})
        )
    except psycopg.Error:
        return None
    return BaseBuild(
        commit=commit,
        target=target,
        schema=schema,
        selection=" ".join(BUILD_SELECTION),
        dbt_vars=json.dumps(dbt_vars, sort_keys=True, default=str),
        versions={name: _version(name) for name in _PACKAGES},
        sources=sources,
    )


def source_fingerprint(conn, schemas: list[str]) -> dict[str, str]:
    """Each table and view of `schemas` (`fingerprint`)."""
    return fingerprint(conn, schemas, _SOURCE_KINDS)


def built_fingerprint(conn, schema: str) -> dict[str, str]:
    """What the comparison reads of a built side: its `mips_` relations (the marts and the
    seeds; not the build log, which every dbt command writes, nor the staging and intermediate
    models)."""
    tables = fingerprint(conn, [schema], _BUILT_KINDS, name_prefix="mips_")
    tables.pop(f"{schema}.{BUILD_LOG_MODEL}", None)
    return tables


def fingerprint(conn, schemas: list[str], kinds, *, name_prefix: str = "") -> dict[str, str]:
    """Per relation: its columns with their types, its row count, and the sum of a 64-bit hash
    of each row's text (any change of a value, a row, a column or a type changes it; the order
    of the rows does not)."""
    from psycopg import sql

    listed = conn.execute(
        """
        select n.nspname, c.relname,
            string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                order by a.attnum)
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        join pg_attribute as a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where n.nspname = any(%s) and c.relkind = any(%s) and starts_with(c.relname, %s)
        group by n.nspname, c.relname
        order by n.nspname, c.relname
        """,
        (schemas, list(kinds), name_prefix),
    ).fetchall()
    found = {}
    for schema, name, columns in listed:
        rows, hashes = conn.execute(
            sql.SQL(
                "select count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) from {} as t"
            ).format(sql.Identifier(schema, name))
        ).fetchone()
        found[f"{schema}.{name}"] = f"{columns}; {rows}; {hashes}"
    return found


def reusable(conn, work_dir: Path, wanted: BaseBuild) -> BaseBuild | None:
    """The stamped build of the base schema, when it was made of `wanted`'s inputs and is still
    the newest build that touched the schema's marts; otherwise None."""
    stamp = read_stamp(work_dir)
    if stamp is None or not stamp.same_inputs(wanted):
        return None
    latest, _ = read_build_history(conn, stamp.schema)
    if latest is None or latest.invocation_id != stamp.invocation_id:
        return None
    if not (latest.finished and latest.success):
        return None
    return stamp if built_fingerprint(conn, stamp.schema) == stamp.built else None


def stamped(conn, wanted: BaseBuild, invocation_id: str) -> BaseBuild | None:
    """`wanted` as the build `invocation_id` made it: with what it left in its schema (None
    when that cannot be read whole)."""
    import psycopg

    try:
        built = built_fingerprint(conn, wanted.schema)
    except psycopg.Error:
        return None
    return replace(wanted, invocation_id=invocation_id, built=built)


def read_stamp(work_dir: Path) -> BaseBuild | None:
    try:
        return BaseBuild(**json.loads((work_dir / STAMP).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_stamp(work_dir: Path, build: BaseBuild) -> None:
    path = work_dir / STAMP
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(asdict(build), indent=2, sort_keys=True))
    partial.replace(path)


def remove_stamp(work_dir: Path) -> None:
    """The stamp and the tests kept with it: the base is about to be built again."""
    for name in (STAMP, TESTED):
        with contextlib.suppress(FileNotFoundError):
            (work_dir / name).unlink()


def kept_tests(work_dir: Path, invocation_id: str) -> dict[str, dict | None]:
    """The base's test outcomes kept for the build `invocation_id`, by test name (None: the
    base has no test of that name); empty when none were kept for that build."""
    try:
        kept = json.loads((work_dir / TESTED).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(kept, dict) or kept.get("invocation_id") != invocation_id:
        return {}
    tests = kept.get("tests")
    return tests if isinstance(tests, dict) else {}


def keep_tests(work_dir: Path, invocation_id: str, tests: dict[str, dict | None]) -> None:
    """Keep the base's test outcomes (`kept_tests`) for the build `invocation_id`; not those
    of a test that ended in an error: its query did not run to the end (a lock, a lost
    connection), which the next diff may not meet."""
    lasting = {name: t for name, t in tests.items() if t is None or t["status"] != "error"}
    path = work_dir / TESTED
    partial = path.with_suffix(".partial")
    document = {"invocation_id": invocation_id, "tests": lasting}
    partial.write_text(json.dumps(document, indent=2, sort_keys=True))
    partial.replace(path)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
