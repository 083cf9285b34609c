"""`mips-loader diff`: what the working tree's models change in the files the registry gets.

The base revision (a git ref; default the merge base with main) is checked out in a temporary
worktree; it and the working tree are built into two sibling schemas over the same source
data; each side runs the data tests of what the change touches (`data_tests.py`); then the
deliveries (every name, rendered for the run date) and the export rows of both are compared
in the warehouse (`compare.py`). Every failure is a `DiffError` (exit 2): a diff that could
not be made must not read as "no change" (0) or "changes" (1). A data test the head fails is
exit 2 as well (the contract's failed build), but with the whole report, that test first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from loader.clock import today_in
from loader.engines.postgres import read_deliveries, read_run_time_zone
from loader.environment.cluster import default_data_dir
from loader.environment.synthetic import DEMO_SCALE, DEMO_SEED, generate, has_source_data
from loader.environment.warehouse import (
    ProjectOptions,
    Warehouse,
    schema_variable,
    uses_embedded_cluster,
)
from loader.errors import MipsError
from loader.marts.deliveries import Delivery, select_deliveries
from loader.names import relation_parts
from loader.review import base_reuse
from loader.review.builds import (
    DiffError,
    Side,
    build_side,
    rerun_data_tests,
    run_data_tests,
    side_log,
)
from loader.review.compare import (
    CodeTransition,
    ColumnChange,
    RowComparison,
    SlicePair,
    compare_columns,
    compare_rows,
)
from loader.review.data_tests import (
    DataTestReport,
    SideTests,
    names_run,
    outcomes_by_name,
    pair_runs,
    run_of_names,
)
from loader.review.revisions import Revision, base_checkout, file_at, resolve_base
from loader.review.seeds import SEEDS, SeedFiles, explaining_lines

# The seed that maps body parts to measure groups, in each side's schema.
BODY_PART_GROUPS_SEED = "mips_body_part_groups"
# A schema the diff builds into: plain, unquoted, within PostgreSQL's 63 bytes.
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# The names and flags of a delivery, most dangerous first: a file under a name the registry
# does not expect is never read.
NAME_FIELDS = (
    ("s3_key", "S3 key"),
    ("sftp_enabled", "SFTP enabled"),
    ("sftp_file_name", "SFTP file name"),
    ("file_header", "header line"),
    ("export_layout", "export layout"),
    ("manifest_key", "manifest key"),
    ("snapshot_prefix", "snapshot prefix"),
    ("run_log_key_template", "run-log key"),
    ("s3_default_prefix", "default S3 prefix"),
)


@dataclass(frozen=True)
class DiffRequest:
    base_ref: str | None = None
    years: tuple[int, ...] = ()
    states: tuple[str, ...] = ()
    show_rows: int = 0
    base_schema: str | None = None
    head_schema: str | None = None
    dbt_vars: dict = field(default_factory=dict)
    # build the base even when an earlier diff built the same one (base_reuse.py)
    rebuild_base: bool = False


@dataclass(frozen=True)
class DeliveryChange:
    """A delivery that appears or disappears (`what` "delivery") or one of its names or flags
    that changes, as rendered for the run date."""

    performance_year: int
    state_code: str
    what: str
    base: str | None
    head: str | None


@dataclass
class DiffResult:
    base: Revision
    head_label: str
    run_date: dt.date | None
    run_time_zone: str | None
    deliveries_compared: int
    delivery_changes: list[DeliveryChange]
    rows: RowComparison
    show_rows: int
    # both sides' data tests of what the change touches (None: the builds were only compared)
    data_tests: DataTestReport | None = None
    # the export relations' columns added, removed or retyped
    column_changes: list[ColumnChange] = field(default_factory=list)
    # the base schema was an earlier diff's build of the same commit and sources, not rebuilt
    base_reused: bool = False

    @property
    def differs(self) -> bool:
        return (
            bool(self.column_changes)
            or bool(self.delivery_changes)
            or any(s.differs for s in self.rows.slices)
        )

    @property
    def fails_tests(self) -> bool:
        """The head fails a data test: the real `dbt build` of the change fails (a test the
        base fails too included: merged, the change still does not build); or dbt would not
        run the head's tests (a breaking change to an enforced contract)."""
        return self.data_tests is not None and self.data_tests.head_fails

    @property
    def exit_code(self) -> int:
        """2 a failing data test on the head, 1 differences, 0 none; a test only the base
        fails is context, not an error of the change."""
        return 2 if self.fails_tests else 1 if self.differs else 0


def run_diff(
    warehouse: Warehouse,
    options: ProjectOptions,
    request: DiffRequest,
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> DiffResult:
    """Build both sides and compare them; the warehouse (and, on `dev`, the cluster) is up."""
    if warehouse.adapter_type != "postgres":
        raise DiffError(f"diff runs on PostgreSQL; target '{warehouse.target_name}' is not")
    try:
        return _run_diff(warehouse, options, request, progress)
    except DiffError:
        raise
    except MipsError as error:
        raise DiffError(str(error)) from None
    except Exception as error:
        import psycopg

        if not isinstance(error, psycopg.Error):
            raise
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DiffError(f"warehouse query failed: {first_line}") from None


def _run_diff(warehouse, options, request, progress) -> DiffResult:
    revision = resolve_base(options.project_dir, request.base_ref)
    # the target by name on both sides: dbt's partial parsing is kept only for the same
    # command line, and `--target dev` must not differ from the profile's default `dev`
    options = dataclasses.replace(options, target=warehouse.target_name)
    variable = schema_variable(options)
    base_schema, head_schema = _side_schemas(warehouse.schema, request)
    dbt_vars = _source_vars(request.dbt_vars)
    _check_sources_apart(dbt_vars, (base_schema, head_schema, warehouse.schema))
    # both sides' dbt target/ and logs/, beside the embedded cluster: kept for the next diff's
    # partial parsing and for reading a failed build's log
    work = default_data_dir(options.project_dir).parent / "diff"
    with _one_diff_at_a_time(work):
        if uses_embedded_cluster(options):
            _ensure_demo_data(warehouse, dbt_vars, progress)
        head = Side("head", "head (working tree)", options, head_schema, work / "head")
        with base_checkout(options.project_dir, revision, work / "base" / "worktree") as tree:
            base_options = ProjectOptions(
                project_dir=tree,
                profiles_dir=options.resolved_profiles_dir(),
                target=options.target,
            )
            base = Side("base", f"base {revision.label}", base_options, base_schema, work / "base")
            reused = _build_base(warehouse, base, revision, request, variable, dbt_vars, progress)
            progress(f"building {head.label} into schema {head.schema}")
            build_side(head, variable, dbt_vars)
            # the head's tests of what differs from the base's manifest, then the same on base
            progress(f"testing what the change touches on {head.label}")
            head_tests = run_data_tests(head, base.work_dir / "target", variable, dbt_vars)
            base_tests = _base_tests(base, head_tests, variable, dbt_vars, progress)
        progress("comparing")
        with warehouse.connect(autocommit=True) as conn:
            result = compare_builds(
                conn, revision, head.label, base_schema, head_schema, request,
                project_dir=options.project_dir,
            )  # fmt: skip
        return dataclasses.replace(
            result, data_tests=pair_runs(head_tests, base_tests), base_reused=reused
        )


def _build_base(warehouse, base: Side, revision, request, variable, dbt_vars, progress) -> bool:
    """Build the base side, or reuse the schema an earlier diff built of the same commit from
    the same source data (base_reuse.py): True when reused."""
    base.work_dir.mkdir(parents=True, exist_ok=True)
    with warehouse.connect(autocommit=True) as conn:
        wanted = base_reuse.inputs(
            conn,
            commit=revision.commit,
            target=warehouse.target_name,
            schema=base.schema,
            dbt_vars=dbt_vars,
        )
        if (
            wanted is not None
            and not request.rebuild_base
            and base_reuse.reusable(conn, base.work_dir, wanted)
        ):
            progress(
                f"reusing {base.label} in schema {base.schema}: built by an earlier diff of "
                "the same commit from the same source data (--rebuild-base builds it again)"
            )
            return True
    base_reuse.remove_stamp(base.work_dir)
    progress(f"building {base.label} into schema {base.schema}")
    invocation_id = build_side(base, variable, dbt_vars)
    if wanted is not None and invocation_id:
        with warehouse.connect(autocommit=True) as conn:
            stamp = base_reuse.stamped(conn, wanted, invocation_id)
        if stamp is not None:
            base_reuse.write_stamp(base.work_dir, stamp)
    return False


def _base_tests(base: Side, head_tests: SideTests, variable, dbt_vars, progress) -> SideTests:
    """The head's tests run on the base, by name; those an earlier diff ran on this same base
    build are not run again: their outcomes are the ones it kept (base_reuse.py)."""
    names = names_run(head_tests)
    stamp = base_reuse.read_stamp(base.work_dir)
    build = stamp.invocation_id if stamp is not None else ""
    kept = base_reuse.kept_tests(base.work_dir, build) if build else {}
    missing = [name for name in names if name not in kept]
    if len(missing) < len(names):
        progress(
            f"{len(names) - len(missing)} of the tests ran on {base.label} in an earlier diff "
            "of the same build: their outcomes are kept"
        )
    if missing:
        progress(f"running the same tests on {base.label}")
        run = rerun_data_tests(base, missing, variable, dbt_vars)
        if run.error is not None:
            return run
        kept = {**kept, **outcomes_by_name(run, missing)}
        if build:
            base_reuse.keep_tests(base.work_dir, build, kept)
    return run_of_names(kept, names, side_log(base))


@contextlib.contextmanager
def _one_diff_at_a_time(work: Path) -> Iterator[None]:
    """Two diffs of one project would build into the same schemas and worktree."""
    work.mkdir(parents=True, exist_ok=True)
    with (work / "diff.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DiffError(
                f"another mips-loader diff of this project is running ({work})"
            ) from None
        yield


def _side_schemas(target_schema: str, request: DiffRequest) -> tuple[str, str]:
    base = request.base_schema or f"{target_schema}_diff_base"
    head = request.head_schema or f"{target_schema}_diff_head"
    for option, name in (("--base-schema", base), ("--head-schema", head)):
        if not SCHEMA_NAME.fullmatch(name):
            raise DiffError(f"{option} {name!r}: a schema name of a-z, 0-9 and _ (at most 63)")
        if name == target_schema:
            raise DiffError(
                f"{option} {name!r} is the target's own schema: diff never builds there"
            )
    if base == head:
        raise DiffError(f"--base-schema and --head-schema are both {base!r}")
    return base, head


def _source_vars(dbt_vars: dict) -> dict:
    """The vars both sides are built with: the user's, and the source schemas spelled out, so
    both read the same tables whatever each revision's defaults are."""
    app = dbt_vars.get("app_schema") or "app"
    return {**dbt_vars, "app_schema": app, "forms_schema": dbt_vars.get("forms_schema") or app}


def _check_sources_apart(dbt_vars: dict, built: tuple[str, ...]) -> None:
    for source in {dbt_vars["app_schema"], dbt_vars["forms_schema"]}:
        if source in built:
            raise DiffError(f"source schema {source!r} is also a schema the diff builds into")


def _ensure_demo_data(warehouse: Warehouse, dbt_vars: dict, progress) -> None:
    """On the embedded cluster, sources without data get the demo's synthetic data."""
    app = dbt_vars["app_schema"]
    with warehouse.connect(autocommit=True) as conn:
        if has_source_data(conn, app):
            return
        progress(f"no source data in schema {app}: generating the demo's synthetic data")
        generate(
            conn,
            seed=DEMO_SEED,
            scale=DEMO_SCALE,
            app_schema=app,
            forms_schema=dbt_vars["forms_schema"],
        )


def compare_builds(
    conn, revision, head_label, base_schema, head_schema, request, *, project_dir=None
) -> DiffResult:
    """Compare two built schemas (the export's columns, the deliveries, then the rows of every
    selected delivery). With the project directory (the head's working tree), each code
    transition names the seed rows that changed (the base's from git)."""
    base_all, head_all = read_deliveries(conn, base_schema), read_deliveries(conn, head_schema)
    select_deliveries(base_all + head_all, request.years, request.states)  # a typo is an error
    base = {_key(d): d for d in select_deliveries(base_all, request.years, request.states)}
    head = {_key(d): d for d in select_deliveries(head_all, request.years, request.states)}
    zone = _run_time_zone(
        conn, head_schema if head_all else base_schema, bool(base_all or head_all)
    )
    run_date = today_in(zone) if zone else None
    keys = sorted(base.keys() | head.keys())
    pairs = [
        SlicePair(
            year,
            state,
            base[(year, state)].export_relation if (year, state) in base else None,
            head[(year, state)].export_relation if (year, state) in head else None,
        )
        for year, state in keys
    ]
    rows = compare_rows(
        conn,
        pairs,
        show_rows=request.show_rows,
        body_part_groups=(
            _seed_relation(conn, base_schema, BODY_PART_GROUPS_SEED),
            _seed_relation(conn, head_schema, BODY_PART_GROUPS_SEED),
        ),
    )
    seeds = _seed_files(project_dir, revision) if project_dir is not None else None
    rows.transitions = [_explained(t, seeds, base, head, run_date) for t in rows.transitions]
    return DiffResult(
        base=revision,
        head_label=head_label,
        run_date=run_date,
        run_time_zone=zone,
        deliveries_compared=len(keys),
        delivery_changes=[
            change
            for key in keys
            for change in _delivery_changes(key, base.get(key), head.get(key), run_date)
        ],
        rows=rows,
        show_rows=request.show_rows,
        column_changes=compare_columns(conn, pairs),
    )


def _seed_relation(conn, schema: str, seed: str) -> str | None:
    """The seed's relation in the schema, quoted, if the side built one."""
    relation = f'"{schema}"."{seed}"'
    found = conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()[0]
    return relation if found else None


def _seed_files(project_dir: Path, revision: Revision) -> SeedFiles:
    """The seeds as the working tree has them (head) and as the base commit does."""

    def head(seed: str) -> str | None:
        path = project_dir / seed
        return path.read_text() if path.is_file() else None

    return SeedFiles(
        base={seed: file_at(project_dir, revision.commit, seed) for seed in SEEDS},
        head={seed: head(seed) for seed in SEEDS},
    )


def _explained(transition: CodeTransition, seeds, base, head, run_date) -> CodeTransition:
    """The transition with the seed lines behind it and the SFTP file name of each delivery
    it changes (the head's name; the base's if the head no longer delivers it)."""
    deliveries = []
    for rows in transition.deliveries:
        delivery = head.get((transition.performance_year, rows.state_code)) or base.get(
            (transition.performance_year, rows.state_code)
        )
        name = delivery.sftp_file_name(run_date) if delivery and delivery.sftp_enabled else None
        deliveries.append(dataclasses.replace(rows, sftp_file_name=name))
    lines = (
        explaining_lines(
            seeds,
            transition.performance_year,
            transition.measure_kind,
            transition.base_group,
            transition.head_group,
        )
        if seeds is not None
        else None
    )
    return dataclasses.replace(transition, deliveries=tuple(deliveries), seed_lines=lines)


def _key(delivery: Delivery) -> tuple[int, str]:
    return (delivery.performance_year, delivery.state_code)


def _run_time_zone(conn, schema: str, any_delivery: bool) -> str | None:
    """The run date's zone as the deliveries state it (none: there is no name to render)."""
    if not any_delivery:
        return None
    return read_run_time_zone(conn, schema)


def delivery_names(delivery: Delivery, run_date: dt.date) -> dict[str, str | None]:
    """What each name of the delivery is on the run date (the export layout without the
    schema, which differs between the two builds by construction)."""
    return {
        "s3_key": delivery.s3_key(run_date),
        "sftp_enabled": "yes" if delivery.sftp_enabled else "no",
        "sftp_file_name": delivery.sftp_file_name(run_date),
        "file_header": delivery.file_header,
        "export_layout": relation_parts(delivery.export_relation)[-1],
        "manifest_key": delivery.manifest_key(run_date),
        "snapshot_prefix": delivery.snapshot_prefix,
        "run_log_key_template": delivery.run_log_key_template,
        "s3_default_prefix": delivery.s3_default_prefix,
    }


def _delivery_changes(key, base: Delivery | None, head: Delivery | None, run_date):
    year, state = key
    if base is None or head is None:
        present = head or base
        name = present.sftp_file_name(run_date) if present.sftp_enabled else None
        what = f"S3 {present.s3_key(run_date)}" + (f", SFTP {name}" if name else ", no SFTP")
        yield DeliveryChange(
            year, state, "delivery", what if base else None, what if head else None
        )
        return
    base_names, head_names = delivery_names(base, run_date), delivery_names(head, run_date)
    for name, label in NAME_FIELDS:
        if base_names[name] != head_names[name]:
            yield DeliveryChange(year, state, label, base_names[name], head_names[name])
