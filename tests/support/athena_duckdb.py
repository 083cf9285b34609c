"""The project's compiled Athena SQL, executed in DuckDB: a stand-in for Trino that runs offline.

No Trino or Athena can run here, but the SQL dbt compiles for the `athena` target can: each
compiled model is transpiled with sqlglot (read `athena`, write `duckdb`) and built in an
in-memory DuckDB, in manifest order, over the same source rows the PostgreSQL build read.
The export and the deliveries it gives are then compared with PostgreSQL's, and the project's
dbt unit tests are run against the Athena SQL with their given/expect rows.

Where the two engines differ in a way sqlglot does not translate, the difference is bridged by
one of the FIXUPS below, each small and counted, so a reader sees exactly what is not Trino's
own behaviour. Everything else is sqlglot's translation. What this proves and what only a real
Athena run can is in docs/athena.md.
"""

from __future__ import annotations

import contextlib
import csv
import graphlib
import io
import json
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from scripts import athena_lint

PROJECT_DIR = Path(__file__).resolve().parents[2]

# dbt-athena's `database` of profiles.example.yml: attached under this name, so the compiled
# three-part names ("awsdatacatalog"."mips_analytics"."x") resolve unchanged.
CATALOG = "awsdatacatalog"

# What each fix-up bridges (the names are the keys of Transpiler.fixups).
FIXUPS = {
    "regexp_replace_group_reference": (
        "Trino's regexp_replace writes a captured group as $1, DuckDB's (RE2) as \\1; sqlglot "
        "keeps $1, which DuckDB would insert literally"
    ),
    "date_difference_milliseconds": (
        "dbt-athena's datediff is to_milliseconds(date - date) / 86400000: an interval and an "
        "integer division on Trino, a day count (DuckDB's to_milliseconds builds an interval) "
        "and a float division on DuckDB; it becomes (days * 86400000) // 86400000"
    ),
    "trino_trim_whitespace": (
        "Trino's one-argument trim() strips every whitespace character (tab, newline, ...), "
        "DuckDB's only spaces: it is given Trino's set of characters. The project uses "
        "trim(both ' ' from x) (macro trim_spaces), which means the same on both, so this "
        "counts bare trims that slipped in"
    ),
    "trino_regex_end_anchor": (
        "in regexp_like, Trino's `$` (Joni, Java syntax) also matches before a final newline, "
        "RE2's only at the end: it becomes (?:\\n?\\z). The project anchors with \\z (macro "
        "fully_matches), so this counts `$` anchors that slipped in"
    ),
    "iceberg_rename_across_schemas": (
        "Athena renames an Iceberg table into another database as metadata (publication, "
        "macros/publish_marts.sql); DuckDB renames only within a schema (and sqlglot drops the "
        "target schema), so the table is copied there and dropped"
    ),
    "utc_timestamp_as_timestamptz": (
        "a zone-less Glue timestamp holds UTC, and Trino (session zone UTC) reads `ts at time "
        "zone z` as that instant in z; DuckDB reads a zone-less timestamp as wall-clock time in "
        "z, so the source column is loaded as timestamptz with DuckDB's TimeZone = UTC"
    ),
    "trino_with_timezone": (
        "Trino's with_timezone(ts, z) is the instant at which wall-clock time ts occurs in z "
        "(macro local_day_starts_at); DuckDB has no such function and writes it `ts AT TIME "
        "ZONE z`, which on a zone-less timestamp means the same there (as on PostgreSQL)"
    ),
}

# PostgreSQL source column types, as the Glue table of the Athena deployment types them.
_POSTGRES_TO_DUCKDB = {
    "bigint": "BIGINT",
    "integer": "INTEGER",
    "smallint": "SMALLINT",
    "boolean": "BOOLEAN",
    "text": "VARCHAR",
    "date": "DATE",
    "double precision": "DOUBLE",
    # Glue has no unconstrained decimal: the forms' scores are taken as decimal(38, 10)
    "numeric": "DECIMAL(38, 10)",
    # the fix-up utc_timestamp_as_timestamptz (Glue: timestamp, holding UTC)
    "timestamp with time zone": "TIMESTAMPTZ",
}


@dataclass
class Transpiler:
    """Athena SQL → DuckDB SQL: sqlglot's translation plus the counted fix-ups."""

    fixups: Counter = field(default_factory=Counter)

    def to_duckdb(self, athena_sql: str, relations: Mapping[str, str] | None = None) -> str:
        """DuckDB SQL for one compiled statement; `relations` swaps table names (unit tests)."""
        tree = sqlglot.parse_one(athena_sql, read="athena")
        tree = tree.transform(self._fix)
        if relations:
            tree = tree.transform(lambda node: _swap_relation(node, relations))
        return tree.sql(dialect="duckdb")

    def statements_to_duckdb(self, athena_sql: str) -> list[str]:
        """DuckDB statements for one Athena statement, DDL included (a rename across schemas
        becomes a copy and a drop: the counted fix-up iceberg_rename_across_schemas)."""
        tree = sqlglot.parse_one(athena_sql, read="athena")
        rename = tree.args.get("actions", [None])[0] if isinstance(tree, exp.Alter) else None
        if isinstance(rename, exp.AlterRename):
            source, target = tree.this, rename.this
            if target.db and target.db != source.db:
                self.fixups["iceberg_rename_across_schemas"] += 1
                old, new = source.sql(dialect="duckdb"), target.sql(dialect="duckdb")
                return [f"create table {new} as select * from {old}", f"drop table {old}"]
        return [self.to_duckdb(athena_sql)]

    def _fix(self, node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Trim) and node.args.get("expression") is None:
            self.fixups["trino_trim_whitespace"] += 1
            node.set("expression", exp.Literal.string(TRINO_WHITESPACE))
            return node
        if isinstance(node, exp.RegexpLike) and isinstance(node.expression, exp.Literal):
            pattern = node.expression.this
            emulated = _trino_end_anchors(pattern)
            if emulated != pattern:
                self.fixups["trino_regex_end_anchor"] += 1
                node.set("expression", exp.Literal.string(emulated))
            return node
        if isinstance(node, exp.RegexpReplace):
            replacement = node.args.get("replacement")
            if isinstance(replacement, exp.Literal) and re.search(r"\$\d", replacement.this):
                self.fixups["regexp_replace_group_reference"] += 1
                node.set(
                    "replacement",
                    exp.Literal.string(re.sub(r"\$(\d)", r"\\\1", replacement.this)),
                )
            return node
        if (
            isinstance(node, exp.Div)
            and _is_date_difference_milliseconds(node.this)
            and isinstance(node.expression, exp.Literal)
            and node.expression.is_int
        ):
            # to_milliseconds(...) / 86400000 is bigint / integer: Trino truncates, DuckDB's
            # `/` would return a double, so the division becomes DuckDB's integer `//`
            self.fixups["date_difference_milliseconds"] += 1
            return exp.IntDiv(this=_milliseconds(node.this), expression=node.expression.copy())
        if _is_date_difference_milliseconds(node):
            self.fixups["date_difference_milliseconds"] += 1
            return _milliseconds(node)
        if (
            isinstance(node, exp.Anonymous)
            and node.name.lower() == "with_timezone"
            and len(node.expressions) == 2
        ):
            # Trino's with_timezone(timestamp, zone): that wall-clock time in the zone, as an
            # instant; DuckDB writes it `timestamp AT TIME ZONE zone` (PostgreSQL's meaning)
            self.fixups["trino_with_timezone"] += 1
            timestamp, zone = (argument.copy() for argument in node.expressions)
            return exp.AtTimeZone(this=timestamp, zone=zone)
        return node


# What Trino's trim() strips (Java's Character.isWhitespace; no-break spaces are not in it).
TRINO_WHITESPACE = (
    "\t\n\u000b\f\r\u001c\u001d\u001e\u001f \u1680"
    + "".join(chr(code) for code in range(0x2000, 0x2007))
    + "\u2008\u2009\u200a\u2028\u2029\u205f\u3000"
)


def _trino_end_anchors(pattern: str) -> str:
    """Each `$` anchor as Trino means it: the end, or before a final newline."""
    for position in reversed(athena_lint.end_anchors(pattern)):
        pattern = pattern[:position] + "(?:\\n?\\z)" + pattern[position + 1 :]
    return pattern


def _is_date_difference_milliseconds(node: exp.Expression) -> bool:
    """to_milliseconds(cast(a as date) - cast(b as date)), as dbt-athena's datediff writes it."""
    node = _unwrap(node)
    if not (
        isinstance(node, exp.Anonymous)
        and node.name.lower() == "to_milliseconds"
        and len(node.expressions) == 1
    ):
        return False
    difference = _unwrap(node.expressions[0])
    return isinstance(difference, exp.Sub) and all(
        _is_date(side) for side in (difference.this, difference.expression)
    )


def _milliseconds(node: exp.Expression) -> exp.Expression:
    """DuckDB's date - date is a day count: times the milliseconds of a day."""
    difference = _unwrap(_unwrap(node).expressions[0]).copy()
    return exp.paren(exp.Mul(this=exp.paren(difference), expression=exp.Literal.number(86400000)))


def _unwrap(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _is_date(node: exp.Expression) -> bool:
    node = _unwrap(node)
    return isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.DATE


def _swap_relation(node: exp.Expression, relations: Mapping[str, str]) -> exp.Expression:
    if isinstance(node, exp.Table) and node.name:
        key = _relation_key(node.catalog, node.db, node.name)
        if key in relations:
            replacement = exp.to_table(relations[key])
            if node.alias:
                replacement.set("alias", node.args["alias"])
            else:
                replacement.set("alias", exp.TableAlias(this=exp.to_identifier(node.name)))
            return replacement
    return node


def _relation_key(catalog: str, schema: str, name: str) -> str:
    return f"{catalog}.{schema}.{name}".lower()


def _relation_key_of(relation_name: str) -> str:
    table = exp.to_table(relation_name, dialect="athena")
    return _relation_key(table.catalog, table.db, table.name)


@dataclass(frozen=True)
class UnitTestResult:
    name: str
    model: str
    passed: bool
    detail: str = ""


class AthenaOnDuckDB:
    """An in-memory DuckDB holding what the Athena target would build from one manifest."""

    def __init__(self, manifest: Mapping[str, Any], project_dir: Path) -> None:
        self.manifest = manifest
        self.project_dir = project_dir
        self.transpiler = Transpiler()
        self.built: list[str] = []
        self.connection = duckdb.connect(":memory:")
        self.connection.execute("set TimeZone = 'UTC'")  # Athena sessions run in UTC
        self.connection.execute(f"attach ':memory:' as \"{CATALOG}\"")
        self.connection.execute(f'use "{CATALOG}"')

    # --- sources and seeds -------------------------------------------------------------

    def load_sources_from_postgres(self, pg, source_schemas: Mapping[str, str]) -> None:
        """Copies every source table from PostgreSQL (`source_schemas`: source name → schema)."""
        for source in self.manifest["sources"].values():
            pg_schema = source_schemas[source["source_name"]]
            table = source["identifier"]
            columns = pg.execute(
                "select attname, format_type(atttypid, -1) from pg_attribute"
                " where attrelid = format('%%I.%%I', %s::text, %s::text)::regclass"
                " and attnum > 0 and not attisdropped order by attnum",
                (pg_schema, table),
            ).fetchall()
            types = {name: _duckdb_type(pg_type) for name, pg_type in columns}
            self.transpiler.fixups["utc_timestamp_as_timestamptz"] += sum(
                t == "TIMESTAMPTZ" for t in types.values()
            )
            with tempfile.NamedTemporaryFile(suffix=".csv") as scratch:
                with (
                    open(scratch.name, "wb") as out,
                    pg.cursor().copy(
                        f'copy "{pg_schema}"."{table}" to stdout (format csv, header)'
                    ) as copy,
                ):
                    for chunk in copy:
                        out.write(chunk)
                self._create_from_csv(source["relation_name"], Path(scratch.name), types)

    def _create_from_csv(self, relation_name: str, path: Path, types: Mapping[str, str]) -> None:
        table = exp.to_table(relation_name, dialect="athena")
        self.connection.execute(f'create schema if not exists "{table.catalog}"."{table.db}"')
        self.connection.execute(
            f"create or replace table {relation_name} as select * from read_csv(?, header = true,"
            " columns = ?, nullstr = '', allow_quoted_nulls = false, quote = '\"', escape = '\"',"
            " auto_detect = false)",
            [str(path), dict(types)],
        )

    def load_seeds(self) -> None:
        """Every seed from its CSV, typed by its `column_types` as dbt-athena would create it."""
        for node in self._nodes("seed"):
            path = self.project_dir / node["original_file_path"]
            with path.open(newline="") as handle:
                header = next(csv.reader(handle))
            declared = node["config"].get("column_types") or {}
            types = {name: declared.get(name, "VARCHAR") for name in header}
            self._create_from_csv(node["relation_name"], path, types)

    # --- models ------------------------------------------------------------------------

    def build_models(self) -> list[str]:
        """Builds every model in dependency order; returns (and keeps) their names in order."""
        built = self.built = []
        for node in self._in_dependency_order(self._nodes("model")):
            materialized = node["config"]["materialized"]
            if materialized == "ephemeral":
                continue  # inlined into its consumers' compiled SQL by dbt
            table = exp.to_table(node["relation_name"], dialect="athena")
            self.connection.execute(f'create schema if not exists "{table.catalog}"."{table.db}"')
            sql = self.transpiler.to_duckdb(node["compiled_code"])
            kind = "view" if materialized == "view" else "table"
            if kind == "table" and self._is_view(table):
                # a published mart leaves a view of itself behind; dbt-athena replaces it
                self.connection.execute(f"drop view {node['relation_name']}")
            try:
                self.connection.execute(
                    f"create or replace {kind} {node['relation_name']} as {sql}"
                )
            except duckdb.Error as error:
                raise AssertionError(f"{node['name']} does not run in DuckDB: {error}") from error
            built.append(node["name"])
        return built

    def _is_view(self, table: exp.Table) -> bool:
        return bool(
            self.connection.execute(
                "select 1 from information_schema.tables where table_catalog = ? and "
                "table_schema = ? and table_name = ? and table_type = 'VIEW'",
                [table.catalog, table.db, table.name],
            ).fetchone()
        )

    def _nodes(self, resource_type: str) -> list[dict]:
        return [n for n in self.manifest["nodes"].values() if n["resource_type"] == resource_type]

    def _in_dependency_order(self, nodes: Iterable[dict]) -> Iterator[dict]:
        by_id = {node["unique_id"]: node for node in nodes}
        sorter = graphlib.TopologicalSorter(
            {uid: [d for d in n["depends_on"]["nodes"] if d in by_id] for uid, n in by_id.items()}
        )
        sorter.prepare()
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            for uid in ready:
                yield by_id[uid]
                sorter.done(uid)

    def fetch(self, relation_name: str) -> tuple[list[str], list[tuple]]:
        cursor = self.connection.execute(f"select * from {relation_name}")
        return [column[0] for column in cursor.description], cursor.fetchall()

    def relation_of(self, model: str, version: int | None = None) -> str:
        for node in self._nodes("model"):
            if node["name"] == model and (
                version is None or str(node.get("version")) == str(version)
            ):
                return node["relation_name"]
        for node in self._nodes("seed"):
            if node["name"] == model:
                return node["relation_name"]
        raise KeyError(model)

    # --- unit tests ----------------------------------------------------------------------

    def run_unit_tests(
        self, compiled_with_vars: Mapping[str, Mapping[str, str]]
    ) -> list[UnitTestResult]:
        """Every unit test of the manifest, on the Athena SQL of the model it tests.

        `compiled_with_vars` maps a unit test's name to its model's compiled code under the
        test's var overrides (models compile differently under other vars); tests without
        overrides use the manifest's compiled code. Built models must exist (build_models):
        their column types type the given rows, as dbt types them from the warehouse.
        """
        results = []
        models = {node["unique_id"]: node for node in self._nodes("model")}
        for test in sorted(self.manifest["unit_tests"].values(), key=lambda t: t["name"]):
            model = models[test["depends_on"]["nodes"][0]]
            if test.get("overrides") and test["overrides"].get("macros"):
                raise NotImplementedError(f"{test['name']}: macro overrides are not supported")
            compiled = compiled_with_vars.get(test["name"], {}).get("compiled_code")
            if compiled is None:
                if test.get("overrides") and test["overrides"].get("vars"):
                    raise KeyError(f"{test['name']} overrides vars but has no compiled code")
                compiled = model["compiled_code"]
            results.append(self._run_unit_test(test, model, compiled))
        return results

    def _run_unit_test(self, test: dict, model: dict, compiled: str) -> UnitTestResult:
        con = self.connection
        con.execute('drop schema if exists "memory"."unit_test" cascade')
        con.execute('create schema "memory"."unit_test"')
        relations = {}
        for index, given in enumerate(test["given"]):
            if given.get("rows") is None and given.get("fixture"):
                # dbt reads fixture files into `rows` at parse time; a missing one is an error
                raise KeyError(f"{test['name']}: fixture {given['fixture']} has no rows")
            relation = self._input_relation(given["input"])
            fixture = f'"memory"."unit_test"."given_{index}"'
            self._create_like(relation, fixture, given["rows"] or [])
            relations[_relation_key_of(relation)] = fixture
        sql = self.transpiler.to_duckdb(compiled, relations)
        try:
            con.execute(f'create table "memory"."unit_test"."actual" as {sql}')
        except duckdb.Error as error:
            return UnitTestResult(test["name"], model["name"], False, f"does not run: {error}")
        expected_rows = test["expect"]["rows"] or []
        columns = (
            list(expected_rows[0])
            if expected_rows
            else self._columns('"memory"."unit_test"."actual"')
        )
        self._create_like(
            '"memory"."unit_test"."actual"',
            '"memory"."unit_test"."expected"',
            expected_rows,
            columns,
        )
        selected = ", ".join(f'"{c}"' for c in columns)
        missing = con.execute(
            f'select {selected} from "memory"."unit_test"."expected" except all'
            f' select {selected} from "memory"."unit_test"."actual"'
        ).fetchall()
        unexpected = con.execute(
            f'select {selected} from "memory"."unit_test"."actual" except all'
            f' select {selected} from "memory"."unit_test"."expected"'
        ).fetchall()
        if missing or unexpected:
            detail = f"expected but missing {missing[:5]}; not expected {unexpected[:5]}"
            return UnitTestResult(test["name"], model["name"], False, detail)
        return UnitTestResult(test["name"], model["name"], True)

    def _input_relation(self, given_input: str) -> str:
        ref = re.fullmatch(r"ref\(\s*'([^']+)'\s*(?:,\s*v\s*=\s*(\d+)\s*)?\)", given_input.strip())
        if ref:
            return self.relation_of(ref.group(1), int(ref.group(2)) if ref.group(2) else None)
        source = re.fullmatch(r"source\(\s*'([^']+)'\s*,\s*'([^']+)'\s*\)", given_input.strip())
        if source:
            for node in self.manifest["sources"].values():
                if (node["source_name"], node["name"]) == source.groups():
                    return node["relation_name"]
        raise KeyError(f"unit test input {given_input!r} names no relation of the manifest")

    def _columns(self, relation: str) -> list[str]:
        return [row[0] for row in self.connection.execute(f"describe {relation}").fetchall()]

    def _create_like(
        self, relation: str, fixture: str, rows: list[dict], columns: list[str] | None = None
    ) -> None:
        """A table of `rows` typed like `relation`'s columns; columns not given are null."""
        described = self.connection.execute(f"describe {relation}").fetchall()
        types = {name.lower(): (name, column_type) for name, column_type, *_ in described}
        wanted = columns if columns is not None else [name for name, *_ in described]
        definition = ", ".join(f'"{types[c.lower()][0]}" {types[c.lower()][1]}' for c in wanted)
        self.connection.execute(f"create table {fixture} ({definition})")
        if not rows:
            return
        names = ", ".join(f'"{types[c.lower()][0]}"' for c in wanted)
        lowered = [{key.lower(): value for key, value in row.items()} for row in rows]
        unknown = {key for row in lowered for key in row} - {c.lower() for c in wanted}
        if unknown:
            raise KeyError(f"fixture columns {sorted(unknown)} are not columns of {relation}")
        # values as SQL literals cast to the column's type, as dbt renders a fixture: a number
        # stays exact (123456789012.125 is a decimal literal, not a double)
        values = ", ".join(
            "(" + ", ".join(_literal(row.get(c.lower())) for c in wanted) + ")" for row in lowered
        )
        self.connection.execute(f"insert into {fixture} ({names}) values {values}")


def _literal(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _duckdb_type(pg_type: str) -> str:
    if pg_type.startswith(("character varying", "character(")):
        return "VARCHAR"
    if pg_type.startswith("numeric("):
        return pg_type.replace("numeric", "DECIMAL")
    if pg_type not in _POSTGRES_TO_DUCKDB:
        raise KeyError(f"no Glue type for PostgreSQL {pg_type}: add it to _POSTGRES_TO_DUCKDB")
    return _POSTGRES_TO_DUCKDB[pg_type]


@dataclass(frozen=True)
class AthenaCompilation:
    """`dbt compile --target athena` done offline: the manifest and the unit tests' own SQL."""

    target_dir: Path
    manifest: dict
    # unit test name -> {"compiled_code": the model's SQL under the test's var overrides}
    unit_test_code: dict[str, dict[str, str]]
    # dbt's own parsed manifest and the invocation options, for `render`
    parsed: Any = field(repr=False, default=None)
    dbt_args: tuple[str, ...] = ()

    @property
    def compiled_dir(self) -> Path:
        return self.target_dir / "compiled"

    def render(self, jinja: str) -> str:
        """`jinja` compiled inline for the athena target, offline (macros of the project, its
        graph and vars): what a hook would send to Athena, as text."""
        from dbt.cli.main import dbtRunner

        with athena_lint.offline_env(), contextlib.redirect_stdout(io.StringIO()):
            rendered = dbtRunner(manifest=self.parsed).invoke(
                ["compile", "--no-populate-cache", "--inline", jinja, "--no-write-json",
                 *self.dbt_args]
            )  # fmt: skip
        if not rendered.success:
            raise RuntimeError(f"rendering {jinja!r} for athena failed: {rendered.exception}")
        return rendered.result.results[0].node.compiled_code


def compile_for_athena(
    project_dir: Path, target_dir: Path, profiles_dir: Path
) -> AthenaCompilation:
    """Parses once, compiles everything, then recompiles each unit test's model with its vars.

    The parsed manifest is handed to every later invocation, so the per-test compiles are a
    render of one model each, not a parse of the project.
    """
    from dbt.cli.main import dbtRunner

    common = athena_lint.athena_dbt_args(project_dir, profiles_dir, target_dir)
    with athena_lint.offline_env():
        parsed = dbtRunner().invoke(["parse", *common])
        if not parsed.success:
            raise RuntimeError(f"dbt parse --target athena failed: {parsed.exception}")
        athena_lint.compile_for_athena(
            project_dir, target_dir, profiles_dir, manifest=parsed.result
        )
        manifest = json.loads((target_dir / "manifest.json").read_text(encoding="utf-8"))
        unit_test_code: dict[str, dict[str, str]] = {}
        for test in manifest["unit_tests"].values():
            test_vars = (test.get("overrides") or {}).get("vars")
            if not test_vars:
                continue
            model_id = test["depends_on"]["nodes"][0]
            model = manifest["nodes"][model_id]
            selector = (
                model["name"]
                if model.get("version") is None
                else (f"{model['name']}.v{model['version']}")
            )
            with contextlib.redirect_stdout(io.StringIO()):  # a one-node compile prints it
                rendered = dbtRunner(manifest=parsed.result).invoke(
                    [
                        "compile",
                        "--no-populate-cache",
                        "--select",
                        selector,
                        "--indirect-selection",
                        "empty",
                        "--vars",
                        json.dumps(test_vars),
                        "--no-write-json",
                        *common,
                    ]
                )
            if not rendered.success:
                raise RuntimeError(
                    f"{test['name']}: compile with {test_vars} failed: {rendered.exception}"
                )
            (node,) = [r.node for r in rendered.result.results if r.node.unique_id == model_id]
            unit_test_code[test["name"]] = {"compiled_code": node.compiled_code}
    return AthenaCompilation(target_dir, manifest, unit_test_code, parsed.result, tuple(common))
