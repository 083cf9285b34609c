"""The data tests of a diff: what the change touches, tested on each side after its build.

The selection is dbt's own convention for "what a change touches": `state:modified+`, with the
base's manifest as the state, so the head runs the data tests of every node the change
modified and of everything downstream of them. It is limited to the tests whose every parent
the diff built (`state:modified+,+<mart>` per built mart, indirect selection `buildable`): a
test of a mart the diff does not build (`mips_expected_years`) would only fail for want of its
table. Unit tests are not data tests and do not run (`make test` runs them). The base then
runs the same tests, by name (those it has), which tells a failure the change brings from
one that was there before. (Not `state:modified+` the other way round: from the base's side
an added export column is a removed one, which dbt refuses to compare, below.)

dbt says how each test ended in `run_results.json` and what it tests in `manifest.json`, both
in the side's own target directory; only names, statuses and failing-row counts are kept.
dbt's messages are not: a failing `matches_pattern` names the offending values.

dbt may also refuse to run the selection at all. The one refusal a reviewer meets is dbt's
governance check of `state:modified`: a column removed or retyped in a versioned model with an
enforced contract (the export) is a breaking change, and dbt wants a new version of the model
instead. That refusal is kept as the side's error (a message about the project, not the data):
the report leads with it, since the change's tests did not run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# dbt's statuses of a data test; "fail" and "error" fail a build, "warn" does not.
FAILED = frozenset({"fail", "error"})
WARNED = "warn"
PASSED = "pass"


@dataclass(frozen=True)
class Outcome:
    status: str  # pass, fail, error, warn (dbt's)
    failing_rows: int | None  # None for an error (the test's query did not run to the end)

    @property
    def failed(self) -> bool:
        return self.status in FAILED


@dataclass(frozen=True)
class SideTests:
    """How one side's `dbt test` of the selection ended: every test's outcome by unique id."""

    outcomes: dict[str, Outcome]
    # what each test tests, by unique id: (test name, model, column)
    subjects: dict[str, tuple[str, str | None, str | None]]
    log: Path
    # dbt ran no test: why (one line), e.g. a breaking change to an enforced contract
    error: str | None = None


@dataclass(frozen=True)
class DataTest:
    """A data test that failed or warned on either side, with both sides' outcomes (None: the
    test did not run on that side: the base has no such test, the change adds it)."""

    name: str
    model: str | None  # the node it is attached to (a seed or a model), or its parents
    column: str | None
    head: Outcome | None
    base: Outcome | None

    @property
    def fails_on_head(self) -> bool:
        return self.head is not None and self.head.failed

    @property
    def fails_on_base(self) -> bool:
        return self.base is not None and self.base.failed

    @property
    def subject(self) -> str:
        """`mips_measure_codes.measure_group`, the model, or "?" when dbt names neither."""
        if self.model and self.column:
            return f"{self.model}.{self.column}"
        return self.model or "?"


@dataclass(frozen=True)
class DataTestReport:
    """Both sides' test runs of what the change touches, as the report shows them."""

    head_run: int  # how many data tests ran on each side
    base_run: int
    tests: list[DataTest]  # failed or warned somewhere: head failures first
    head_log: Path
    base_log: Path
    # dbt refused to run a side's selection (its tests did not run): dbt's reason
    head_error: str | None = None
    base_error: str | None = None

    @property
    def head_fails(self) -> bool:
        """The working tree fails a test, or its tests could not run."""
        return bool(self.head_error or self.head_failures)

    @property
    def head_failures(self) -> list[DataTest]:
        return [t for t in self.tests if t.fails_on_head]

    @property
    def base_only_failures(self) -> list[DataTest]:
        """Failing on base, not on head: the change fixes them (context)."""
        return [t for t in self.tests if t.fails_on_base and not t.fails_on_head]

    @property
    def head_warnings(self) -> list[DataTest]:
        return [t for t in self.tests if t.head is not None and t.head.status == WARNED]


def read_test_run(target_dir: Path, invocation_id: str | None, log: Path) -> SideTests | None:
    """The outcomes of the `dbt test` invocation `invocation_id` from the side's target
    directory; None when its run_results.json is another invocation's (dbt stopped before
    running anything, e.g. a compilation error)."""
    try:
        results = json.loads((target_dir / "run_results.json").read_text())
        manifest = json.loads((target_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if invocation_id and results.get("metadata", {}).get("invocation_id") != invocation_id:
        return None
    nodes = manifest.get("nodes", {})
    outcomes: dict[str, Outcome] = {}
    subjects: dict[str, tuple[str, str | None, str | None]] = {}
    for result in results.get("results", []):
        unique_id = result.get("unique_id", "")
        node = nodes.get(unique_id)
        if node is None or node.get("resource_type") != "test":
            continue
        status = str(result.get("status", "")).lower()
        failures = result.get("failures")
        outcomes[unique_id] = Outcome(status, None if status == "error" else int(failures or 0))
        subjects[unique_id] = _subject(node, nodes)
    return SideTests(outcomes, subjects, log)


def names_run(run: SideTests) -> list[str]:
    """The names of the tests `run` ran (a test is run on the other side by its name)."""
    return sorted({name for name, _, _ in run.subjects.values()})


def outcomes_by_name(run: SideTests, names: list[str]) -> dict[str, dict | None]:
    """What `run` (a run of the tests `names`) says of each of them, by name, as JSON values:
    its unique id, status, failing rows, model and column; None for a name it has no test of."""
    found: dict[str, dict | None] = dict.fromkeys(names)
    for unique_id, outcome in run.outcomes.items():
        name, model, column = run.subjects[unique_id]
        found[name] = {
            "unique_id": unique_id,
            "status": outcome.status,
            "failing_rows": outcome.failing_rows,
            "model": model,
            "column": column,
        }
    return found


def run_of_names(tests: dict[str, dict | None], names: list[str], log: Path) -> SideTests:
    """The side's run of the tests `names`, from what `outcomes_by_name` says of each."""
    outcomes: dict[str, Outcome] = {}
    subjects: dict[str, tuple[str, str | None, str | None]] = {}
    for name in names:
        test = tests.get(name)
        if test is not None:
            outcomes[test["unique_id"]] = Outcome(test["status"], test["failing_rows"])
            subjects[test["unique_id"]] = (name, test["model"], test["column"])
    return SideTests(outcomes, subjects, log)


def _subject(node: dict, nodes: dict) -> tuple[str, str | None, str | None]:
    """(test name, model, column): the node a generic test is attached to; for a singular
    test, the models it reads."""

    def name(unique_id: str) -> str:
        return nodes.get(unique_id, {}).get("name") or unique_id.split(".")[-1]

    attached = node.get("attached_node")
    if attached:
        model = name(attached)
    else:
        parents = node.get("depends_on", {}).get("nodes", [])
        model = ", ".join(sorted(name(p) for p in parents)) or None
    return node["name"], model, node.get("column_name")


def pair_runs(head: SideTests, base: SideTests) -> DataTestReport:
    """Every test that failed or warned on a side, with both sides' outcomes, paired by name
    (the base ran the head's tests by name; a test whose arguments changed keeps its name and
    gets another unique id); the head's failures first (new ones before those the base has
    too), then the base's only."""

    def named(run: SideTests) -> dict[str, tuple[tuple, Outcome]]:
        return {run.subjects[u][0]: (run.subjects[u], o) for u, o in run.outcomes.items()}

    heads, bases = named(head), named(base)
    tests = []
    for name in heads.keys() | bases.keys():
        head_outcome = heads[name][1] if name in heads else None
        base_outcome = bases[name][1] if name in bases else None
        if not any(o and (o.failed or o.status == WARNED) for o in (head_outcome, base_outcome)):
            continue
        _, model, column = (heads.get(name) or bases[name])[0]
        tests.append(DataTest(name, model, column, head_outcome, base_outcome))
    tests.sort(
        key=lambda t: (
            0 if t.fails_on_head and not t.fails_on_base else 1 if t.fails_on_head else 2,
            t.name,
        )
    )
    return DataTestReport(
        head_run=len(head.outcomes),
        base_run=len(base.outcomes),
        tests=tests,
        head_log=head.log,
        base_log=base.log,
        head_error=head.error,
        base_error=base.error,
    )
