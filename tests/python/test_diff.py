"""`mips-loader diff`: a change to the models, reported as what it does to the delivered files.

One git repository (a copy of the project, committed on `main`) and one source data set serve
every test; each scenario edits the working tree, runs the command on the embedded cluster
(both sides built for real) and puts the repository back. Every scenario builds into the same
two schemas, so dbt's partial parsing of both sides is reused from one build to the next, and
so is the base build itself while its commit and the source data stay the same (the diff's own
reuse, tested below); the test whose base is another commit runs last.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from loader.cli import cli
from loader.engines.postgres import read_deliveries
from loader.environment.synthetic import generate
from loader.environment.warehouse import ProjectOptions
from loader.review import base_reuse
from loader.review.compare import RowComparison, SliceCounts
from loader.review.data_tests import (
    Outcome,
    SideTests,
    outcomes_by_name,
    pair_runs,
    run_of_names,
)
from loader.review.diff import DiffRequest, DiffResult, compare_builds
from loader.review.diff_report import render
from loader.review.revisions import Revision
from loader.review.seeds import BODY_PART_GROUPS, MEASURE_CODES, SeedFiles, explaining_lines
from tests.support.handmade import record_build
from tests.support.model_scenarios import PRODUCTION_AS_OF, PROJECT_DIR, edit_seed
from tests.support.review import (
    edit_text,
    git,
    project_repository,
    reset,
    workflow_diff_script,
)

SOURCE_SCHEMA = "diff_app"
TARGET_SCHEMA = "diff"  # the sides: diff_diff_base and diff_diff_head
BASE_SCHEMA, HEAD_SCHEMA = f"{TARGET_SCHEMA}_diff_base", f"{TARGET_SCHEMA}_diff_head"
VARS = f"{{app_schema: {SOURCE_SCHEMA}}}"
# the vars both sides are built with (the diff spells the forms schema out)
SIDE_VARS = {"app_schema": SOURCE_SCHEMA, "forms_schema": SOURCE_SCHEMA}
WORKFLOW = PROJECT_DIR / "docs" / "ci" / "diff-on-pull-request.yml"
# The export's patient-level columns: none of their values may be printed without --show-rows.
PATIENT_COLUMNS = (
    "practice_tin", "provider_npi", "patient_id", "patient_date_of_birth", "episode_id",
    "episode_start_date", "episode_end_date", "symptom_onset_date", "visit_id",
    "date_of_service",
)  # fmt: skip


@pytest.fixture(scope="module")
def diff_environment(cluster):
    """The module's target schema (the sides are named after it) and source data."""
    saved = os.environ.get("MIPS_DEV_SCHEMA")
    os.environ["MIPS_DEV_SCHEMA"] = TARGET_SCHEMA
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        generate(
            conn,
            seed=5,
            scale=0.1,
            app_schema=SOURCE_SCHEMA,
            forms_schema=SOURCE_SCHEMA,
            as_of=PRODUCTION_AS_OF,
        )
    yield
    if saved is None:
        os.environ.pop("MIPS_DEV_SCHEMA", None)
    else:
        os.environ["MIPS_DEV_SCHEMA"] = saved


@pytest.fixture(scope="module")
def repo(tmp_path_factory, diff_environment) -> tuple[Path, str]:
    return project_repository(tmp_path_factory.mktemp("diff") / "project")


@pytest.fixture
def clean_repo(repo):
    yield repo
    reset(repo[0])


def run_diff(repo: Path, profiles_dir: Path, *args: str):
    return CliRunner().invoke(
        cli,
        ["diff", "--project-dir", str(repo), "--profiles-dir", str(profiles_dir),
         "--target", "dev", "--vars", VARS, *args],
        catch_exceptions=False,
    )  # fmt: skip


def run_json(repo: Path, profiles_dir: Path, *args: str):
    result = run_diff(repo, profiles_dir, "--format", "json", *args)
    return result.exit_code, json.loads(result.stdout)


def renumber_pain_code(project: Path, year: str, group: str, code: str) -> None:
    def edit(rows):
        for row in rows:
            if (row["performance_year"], row["measure_group"]) == (year, group):
                row["pain_measure_code"] = code
        return rows

    edit_seed(ProjectOptions(project_dir=project), "mips_measure_codes", edit)


def patient_values(db, schema: str) -> set[str]:
    """Every patient-level value of the base export (as the files write them)."""
    columns = ", ".join(PATIENT_COLUMNS)
    rows = db.execute(f"select {columns} from {schema}.mips_export_v1").fetchall()
    return {value for row in rows for value in row if value}


def tokens(text: str) -> set[str]:
    """Words of an output; dates stay whole, counts like 1,302 fall apart (see below)."""
    return set(re.findall(r"[0-9A-Za-z_-]+", text))


def printed_numbers(document: dict) -> set[str]:
    """Every count and year the JSON report holds, as the text formats print them: a patient
    id that happens to equal a count (ids are small numbers here) is not a leak."""
    found: set[str] = set()

    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, int) and not isinstance(value, bool):
            found.update({str(value), *f"{value:,}".split(",")})

    walk(document)
    return found


def json_strings(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {s for item in value.values() for s in json_strings(item)}
    if isinstance(value, list):
        return {s for item in value for s in json_strings(item)}
    return {value} if isinstance(value, str) else set()


def test_no_change_exits_0_and_says_so(clean_repo, profiles_dir):
    repo, base = clean_repo
    result = run_diff(repo, profiles_dir, "--format", "table")
    assert result.exit_code == 0, result.output
    assert "No change: the working tree delivers exactly what base" in result.stdout
    assert base[:7] in result.stdout


def test_the_base_is_reused_only_while_its_inputs_and_schema_are_those_it_was_built_of(
    diff_environment, db, tmp_path
):
    """The reuse decision against a real build log: the stamp of the base schema's newest
    build of the marts, made of the same inputs, whose tables are as it left them, is reused;
    another commit, other vars, other source data or versions, a newer or failed build into
    the schema, a changed table, or no stamp is not."""
    schema = "reuse_base"
    db.execute(f"drop schema if exists {schema} cascade")
    db.execute(f"create schema {schema}")
    wanted = base_reuse.inputs(db, commit="a" * 40, target="dev", schema=schema, dbt_vars=SIDE_VARS)
    assert wanted.sources and all(name.startswith(f"{SOURCE_SCHEMA}.") for name in wanted.sources)
    assert base_reuse.reusable(db, tmp_path, wanted) is None  # no stamp
    db.execute(f"create table {schema}.mips_export_v1 as select 1 as visit_id, 'MSK06' as code")
    db.execute(f"create view {schema}.stg_app__states as select 1 as id")  # not compared
    record_build(db, schema, invocation_id="base-build", marts_built="mips_export_v1")
    base_reuse.write_stamp(tmp_path, base_reuse.stamped(db, wanted, "base-build"))
    assert list(base_reuse.read_stamp(tmp_path).built) == [f"{schema}.mips_export_v1"]
    assert base_reuse.reusable(db, tmp_path, wanted).invocation_id == "base-build"
    # a passing `dbt test` of the base's marts since (the diff's own) changes nothing
    record_build(db, schema, invocation_id="base-tests", command="test", age="1 minute")
    assert base_reuse.reusable(db, tmp_path, wanted) is not None
    for other in (
        dataclasses.replace(wanted, commit="b" * 40),
        dataclasses.replace(wanted, dbt_vars='{"app_schema": "other"}'),
        dataclasses.replace(wanted, sources={**wanted.sources, f"{SOURCE_SCHEMA}.new": "x"}),
        dataclasses.replace(wanted, versions={**wanted.versions, "dbt-core": "0.0.1"}),
        dataclasses.replace(wanted, selection="build --select +mips_export"),
    ):
        assert base_reuse.reusable(db, tmp_path, other) is None, other
    # another build of the marts into the schema since, or a failed one
    record_build(db, schema, invocation_id="another-build", age="30 seconds")
    assert base_reuse.reusable(db, tmp_path, wanted) is None
    db.execute(f"delete from {schema}.mips_build_log where invocation_id = 'another-build'")
    record_build(
        db, schema, invocation_id="failed-tests", command="test", success=False, age="10 seconds"
    )
    assert base_reuse.reusable(db, tmp_path, wanted) is None
    db.execute(f"delete from {schema}.mips_build_log where invocation_id = 'failed-tests'")
    assert base_reuse.reusable(db, tmp_path, wanted) is not None
    # a table the comparison reads changed since the build
    db.execute(f"update {schema}.mips_export_v1 set code = 'MSK16'")
    assert base_reuse.reusable(db, tmp_path, wanted) is None
    db.execute(f"update {schema}.mips_export_v1 set code = 'MSK06'")
    assert base_reuse.reusable(db, tmp_path, wanted) is not None
    base_reuse.remove_stamp(tmp_path)
    assert base_reuse.reusable(db, tmp_path, wanted) is None
    # a source relation that cannot be read whole proves nothing: no inputs, no reuse
    broken = f"{SOURCE_SCHEMA}.zz_broken"
    db.execute(f"create view {broken} as select 1 / (id - id) as x from {SOURCE_SCHEMA}.states")
    try:
        unproved = base_reuse.inputs(
            db, commit="a" * 40, target="dev", schema=schema, dbt_vars=SIDE_VARS
        )
        assert unproved is None
    finally:
        db.execute(f"drop view {broken}")
    db.execute(f"drop schema {schema} cascade")


def test_the_base_keeps_its_test_outcomes_for_its_own_build_only(tmp_path):
    """What the base's tests gave is kept for the build they ran on: not for another build of
    the base, not once the base is built again (the stamp removed), and not a test that ended
    in an error (its query did not run to the end)."""
    passed = {"unique_id": "test.p", "status": "pass", "failing_rows": 0, "model": "m",
              "column": None}  # fmt: skip
    failed = {**passed, "unique_id": "test.f", "status": "fail", "failing_rows": 2}
    errored = {**passed, "unique_id": "test.e", "status": "error", "failing_rows": None}
    tests = {"passes": passed, "fails": failed, "errs": errored, "absent": None}
    base_reuse.keep_tests(tmp_path, "base-build", tests)
    assert base_reuse.kept_tests(tmp_path, "base-build") == {
        "passes": passed, "fails": failed, "absent": None,
    }  # fmt: skip
    assert base_reuse.kept_tests(tmp_path, "another-build") == {}
    base_reuse.remove_stamp(tmp_path)
    assert base_reuse.kept_tests(tmp_path, "base-build") == {}


def test_kept_outcomes_give_back_the_run_they_were_kept_from():
    """A run's outcomes by name (as kept) give back the same run; a name the side has no test
    of is kept as such (None), so the next diff does not run it again."""
    run = SideTests(
        outcomes={"test.a": Outcome("pass", 0), "test.b": Outcome("fail", 3)},
        subjects={"test.a": ("a", "m", "c"), "test.b": ("b", "m, n", None)},
        log=Path("/base/dbt.log"),
    )
    names = ["a", "b", "only_on_head"]
    kept = json.loads(json.dumps(outcomes_by_name(run, names)))  # through tested.json's JSON
    assert kept["only_on_head"] is None
    assert run_of_names(kept, names, run.log) == run


def test_the_source_fingerprint_sees_values_rows_and_types_not_order(db):
    source_fingerprint = base_reuse.source_fingerprint
    db.execute("drop schema if exists fingerprint_app cascade")
    db.execute("create schema fingerprint_app")
    db.execute(
        "create table fingerprint_app.t as select * from (values (1, 'a'), (2, 'b')) as v(id, x)"
    )
    first = source_fingerprint(db, ["fingerprint_app"])
    assert list(first) == ["fingerprint_app.t"]
    db.execute("create table fingerprint_app.u as select * from fingerprint_app.t order by id desc")
    db.execute("drop table fingerprint_app.t")
    db.execute("alter table fingerprint_app.u rename to t")
    assert source_fingerprint(db, ["fingerprint_app"]) == first  # same rows, another order
    db.execute("update fingerprint_app.t set x = 'c' where id = 2")
    changed = source_fingerprint(db, ["fingerprint_app"])
    assert changed != first
    db.execute("update fingerprint_app.t set x = 'b' where id = 2")
    assert source_fingerprint(db, ["fingerprint_app"]) == first
    db.execute("alter table fingerprint_app.t alter column id type bigint")
    assert source_fingerprint(db, ["fingerprint_app"]) != first  # same text, another type
    db.execute("alter table fingerprint_app.t alter column id type integer")
    assert source_fingerprint(db, ["fingerprint_app"]) == first
    db.execute("insert into fingerprint_app.t values (2, 'b')")  # a duplicate row counts
    assert source_fingerprint(db, ["fingerprint_app"]) != first
    db.execute("drop schema fingerprint_app cascade")


@pytest.fixture(scope="module")
def seed_change(repo, profiles_dir, cluster):
    """2025's neck pain code renumbered (MSK06 → MSK16): the command's JSON, then the same
    builds compared again in every format, without and with example rows."""
    project, base = repo
    # rewritten by csv (edit_seed): every line's quoting changes, one row's values do
    renumber_pain_code(project, "2025", "neck", "MSK16")
    revision = Revision(ref="main", commit=base)
    try:
        code, document = run_json(project, profiles_dir, "--rebuild-base")
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            base_tests_run = base_test_invocations(conn)
        # the same diff again: the base schema is reused, the head built again
        again_code, again = run_json(project, profiles_dir)
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            base_tests_run_again = base_test_invocations(conn)
            plain = compare_builds(
                conn, revision, "head", BASE_SCHEMA, HEAD_SCHEMA, DiffRequest(),
                project_dir=project,
            )  # fmt: skip
            shown = compare_builds(
                conn, revision, "head", BASE_SCHEMA, HEAD_SCHEMA, DiffRequest(show_rows=2)
            )
            neck_2025 = conn.execute(
                f"select count(*) from {BASE_SCHEMA}.mips_export_v1"
                " where performance_year = 2025 and treatment = 'MSK06'"
            ).fetchone()[0]
            neck_2025_states = conn.execute(
                f"select state_code, count(*) from {BASE_SCHEMA}.mips_export_v1"
                " where performance_year = 2025 and treatment = 'MSK06' group by 1 order by 1"
            ).fetchall()
            run_date = dt.date.fromisoformat(document["run_date"])
            file_names = {
                d.state_code: d.sftp_file_name(run_date) if d.sftp_enabled else None
                for d in read_deliveries(conn, HEAD_SCHEMA)
                if d.performance_year == 2025
            }
            values = patient_values(conn, BASE_SCHEMA)
    finally:
        reset(project)
    return {
        "exit_code": code,
        "document": document,
        "again": (again_code, again),
        "outputs": {f: render(plain, f) for f in ("markdown", "table", "json")},
        "shown": shown,
        "shown_outputs": {f: render(shown, f) for f in ("markdown", "table", "json")},
        "neck_2025_rows": neck_2025,
        "neck_2025_deliveries": [
            {"state_code": state, "rows": rows, "sftp_file_name": file_names[state]}
            for state, rows in neck_2025_states
        ],
        "patient_values": values,
        "base_test_invocations": (base_tests_run, base_tests_run_again),
    }


def base_test_invocations(conn) -> int:
    """How many `dbt test` commands ran on the base schema (its build log)."""
    return conn.execute(
        f"select count(*) from {BASE_SCHEMA}.mips_build_log "
        "where command = 'test' and event = 'finished'"
    ).fetchone()[0]


def test_a_renumbered_pain_code_changes_that_years_pain_rows_only(seed_change):
    document = seed_change["document"]
    assert seed_change["exit_code"] == 1 and document["differs"] is True
    assert document["delivery_changes"] == []
    # the measure group, the seed row that changed (line 17: 2025 neck; the rest of the file
    # only changed its quoting), and each delivery the transition changes, by its SFTP name
    assert document["code_transitions"] == [
        {"performance_year": 2025, "measure_kind": "pain", "base_code": "MSK06",
         "head_code": "MSK16", "rows": seed_change["neck_2025_rows"],
         "base_measure_group": "neck", "head_measure_group": "neck",
         "seed_lines": ["seeds/mips_measure_codes.csv:17"],
         "deliveries": seed_change["neck_2025_deliveries"]},
    ]  # fmt: skip
    assert seed_change["neck_2025_rows"] > 0
    assert all(d["sftp_file_name"] for d in seed_change["neck_2025_deliveries"])
    changed = [s for s in document["slices"] if s["changed"] or s["only_in_base"]]
    assert {s["performance_year"] for s in changed} == {2025}
    for slice_ in document["slices"]:
        assert slice_["only_in_base"] == slice_["only_in_head"] == 0
        assert slice_["changed_columns"] == (
            {"treatment": slice_["changed"]} if slice_["changed"] else {}
        )
    assert sum(s["changed"] for s in document["slices"]) == seed_change["neck_2025_rows"]
    markdown = seed_change["outputs"]["markdown"]
    deliveries = seed_change["neck_2025_deliveries"]
    files = ", ".join(f"`{d['sftp_file_name']}`" for d in deliveries)
    assert (
        f"- 2025 pain MSK06 → MSK16: {seed_change['neck_2025_rows']:,} rows, measure group neck"
        f" (`seeds/mips_measure_codes.csv:17`), in {len(deliveries)} deliveries: {files}\n"
    ) in markdown + "\n"
    assert "Delivery names and flags" not in markdown and "Export columns" not in markdown


def test_the_same_diff_again_reuses_the_base_and_says_so(seed_change):
    code, again = seed_change["again"]
    document = seed_change["document"]
    assert document["base"]["reused"] is False  # --rebuild-base
    assert code == seed_change["exit_code"] and again["base"]["reused"] is True
    for key in ("slices", "code_transitions", "delivery_changes", "data_tests"):
        assert again[key] == document[key], key
    # the base's outcomes of the same tests on the same build are those the first diff kept
    first, second = seed_change["base_test_invocations"]
    assert first >= 1 and second == first, "the reused base ran no test again"
    assert again["data_tests"]["base_run"] == document["data_tests"]["base_run"] > 0
    reused = dataclasses.replace(seed_change["shown"], base_reused=True)
    for output_format in ("markdown", "table"):
        assert "same source data, reused (--rebuild-base builds it again)." in render(
            reused, output_format
        )
    assert "reused" not in seed_change["outputs"]["markdown"]


def test_no_patient_value_is_printed_without_show_rows(seed_change):
    values = seed_change["patient_values"]
    document = json.loads(seed_change["outputs"]["json"])
    assert "examples" not in document and "examples" not in seed_change["document"]
    assert not json_strings(document) & values
    assert not json_strings(seed_change["document"]) & values
    # counts, years, numbers of deliveries ("17 other deliveries: no row changes") and the
    # seeds' line numbers (seeds/mips_measure_codes.csv:17)
    allowed = printed_numbers(document) | {str(n) for n in range(document["deliveries_compared"])}
    allowed |= {
        line.rsplit(":", 1)[1]
        for transition in document["code_transitions"]
        for line in transition["seed_lines"] or ()
    }
    for output in (seed_change["outputs"]["markdown"], seed_change["outputs"]["table"]):
        assert not (tokens(output) & values) - allowed, (tokens(output) & values) - allowed
    # the check can fail: the example rows of --show-rows do hold such values
    assert tokens(seed_change["shown_outputs"]["markdown"]) & values - allowed


def test_show_rows_gives_at_most_n_rows_per_delivery_side_by_side(seed_change):
    examples = seed_change["shown"].rows.examples
    per_slice: dict[tuple[int, str], int] = {}
    for example in examples:
        key = (example.performance_year, example.state_code)
        per_slice[key] = per_slice.get(key, 0) + 1
        assert example.outcome == "changed" and example.changed_columns == ("treatment",)
        treatment = example.columns.index("treatment")
        assert (example.base[treatment], example.head[treatment]) == ("MSK06", "MSK16")
    changed_slices = {
        (s.performance_year, s.state_code) for s in seed_change["shown"].rows.slices if s.changed
    }
    assert set(per_slice) == changed_slices
    assert set(per_slice.values()) <= {1, 2} and 2 in per_slice.values()
    document = json.loads(seed_change["shown_outputs"]["json"])
    assert len(document["examples"]) == len(examples)
    assert (
        document["examples"][0]["base"]["visit_id"] == document["examples"][0]["head"]["visit_id"]
    )


@pytest.fixture(scope="module")
def older_patients_and_a_new_key(repo, profiles_dir, cluster):
    """Two changes in one diff: the age threshold raised from 18 to 21 (rows go) and 2025 CA's
    new integration key (its file name changes). The command's JSON, the same builds compared
    again in markdown, and the base's rows the new threshold removes."""
    project, base = repo
    edit_text(
        project / "models" / "intermediate" / "care_plans" / "int_care_plans_in_scope.sql",
        "dbt.dateadd('year', 18,",
        "dbt.dateadd('year', 21,",
    )

    def new_key(rows):
        for row in rows:
            if (row["performance_year"], row["state_code"]) == ("2025", "CA"):
                row["integration_key"] = "Zz9Zz9Zz9Z"
        return rows

    edit_seed(ProjectOptions(project_dir=project), "mips_registrations", new_key)
    try:
        code, document = run_json(project, profiles_dir)
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            compared = compare_builds(
                conn, Revision("main", base), "head", BASE_SCHEMA, HEAD_SCHEMA, DiffRequest()
            )
            under_21 = conn.execute(
                f"select count(*) from {BASE_SCHEMA}.mips_export_v1 where"
                " patient_date_of_birth::date + interval '21 years' > episode_start_date::date"
            ).fetchone()[0]
    finally:
        reset(project)
    return {
        "exit_code": code,
        "document": document,
        "compared": compared,
        "markdown": render(compared, "markdown"),
        "under_21": under_21,
    }


def test_a_higher_age_threshold_removes_rows(older_patients_and_a_new_key):
    document = older_patients_and_a_new_key["document"]
    under_21 = older_patients_and_a_new_key["under_21"]
    assert older_patients_and_a_new_key["exit_code"] == 1
    assert under_21 > 0
    assert sum(s["only_in_base"] for s in document["slices"]) == under_21
    assert all(s["only_in_head"] == s["changed"] == 0 for s in document["slices"])
    assert document["code_transitions"] == []
    # and of the deliveries, only the new key's file name
    assert [(c["performance_year"], c["state_code"]) for c in document["delivery_changes"]] == [
        (2025, "CA")
    ]


def test_a_registration_change_is_reported_first_as_a_file_name(older_patients_and_a_new_key):
    markdown = older_patients_and_a_new_key["markdown"]
    names = markdown.index("### ⚠️ Delivery names and flags")
    rows = markdown.index("### Rows per year and state")
    assert names < rows
    lines = [line for line in markdown[names:rows].splitlines() if line.startswith("| 2025 | CA")]
    assert len(lines) == 1 and "SFTP file name" in lines[0]
    assert "_Zz9Zz9Zz9Z.csv" in lines[0] and ".csv | Quality_" in lines[0]
    # the name change and nothing else of the deliveries
    [change] = older_patients_and_a_new_key["compared"].delivery_changes
    assert (change.performance_year, change.state_code, change.what) == (
        2025,
        "CA",
        "SFTP file name",
    )
    assert change.head.endswith("_Zz9Zz9Zz9Z.csv") and change.base != change.head


def test_a_bad_base_ref_is_one_line_and_exit_2(clean_repo, profiles_dir):
    repo, _ = clean_repo
    result = run_diff(repo, profiles_dir, "--base", "no-such-ref")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "no-such-ref" in result.output and "Traceback" not in result.output
    code, document = run_json(repo, profiles_dir, "--base", "no-such-ref")
    assert code == 2 and document["ok"] is False and document["exit_code"] == 2
    assert "no-such-ref" in document["error"]["message"]


def test_a_side_schema_that_is_the_target_schema_is_refused(clean_repo, profiles_dir):
    repo, _ = clean_repo
    result = run_diff(repo, profiles_dir, "--head-schema", TARGET_SCHEMA)
    assert result.exit_code == 2
    assert "target's own schema" in result.output


def run_workflow_diff(repo: Path, base: str, profiles_dir: Path, outputs: Path):
    """The workflow's diff step, as GitHub runs it (bash -e), in the repository."""
    if not (repo / ".venv").exists():
        (repo / ".venv").symlink_to(PROJECT_DIR / ".venv")
    environment = {
        **os.environ,
        "BASE_SHA": base,
        "GITHUB_OUTPUT": str(outputs),
        "DBT_PROFILES_DIR": str(profiles_dir),
        "MIPS_DIFF_VARS": VARS,
    }
    return subprocess.run(
        ["bash", "-e", "-c", workflow_diff_script(WORKFLOW)],
        cwd=repo,
        env=environment,
        capture_output=True,
        text=True,
    )


def test_the_ci_recipe_posts_a_failing_test_then_fails_the_job(clean_repo, profiles_dir, tmp_path):
    """The workflow's diff step, as GitHub runs it (bash -e), on a pull request's branch whose
    change fails a data test (the step passes, the comment is posted, a later step fails the
    job); a change that only delivers differently takes the same lines with exit 1."""
    repo, base = clean_repo
    git(repo, "checkout", "--quiet", "-b", "pull-request")
    edit_text(repo / "seeds" / "mips_measure_codes.csv", "\n2025,knee,", "\n2025,knees,")
    git(repo, "commit", "--quiet", "--all", "--message", "2025 knees")
    outputs = tmp_path / "github_output"
    done = run_workflow_diff(repo, base, profiles_dir, outputs)
    # the step itself passes, so that the comment is posted; a later step fails the job
    assert done.returncode == 0, done.stderr
    assert outputs.read_text().splitlines() == ["exit_code=2"]
    comment = (repo / "mips-diff.md").read_text()
    assert comment.startswith(f"## MIPS delivery diff: base {base} ({base[:7]})")
    # a change that fails a data test: the test is named before anything else (the verdict,
    # the run date, the rows the change drops)
    first = comment.index(MEASURE_GROUP_TEST)
    for later in ("**Changes deliveries", "Names as a run on", "### Rows per year and state"):
        assert first < comment.index(later), later
    [line] = [line for line in comment.splitlines() if MEASURE_GROUP_TEST in line]
    assert "mips_measure_codes.measure_group" in line and "1 failing row" in line
    assert "fails on base too" not in line
    steps = next(iter(yaml.safe_load(WORKFLOW.read_text())["jobs"].values()))["steps"]
    on_2 = [step for step in steps if "exit_code == '2'" in step.get("if", "")]
    assert any("gh pr comment" in step["run"] for step in on_2)
    assert any(step["run"].strip().endswith("exit 2") for step in on_2)
    # a change that passes its tests (exit 1, the same lines of the step) is commented on too
    on_1 = [step for step in steps if "exit_code == '1'" in step.get("if", "")]
    assert [step["run"] for step in on_1] == [
        step["run"] for step in on_2 if "gh pr comment" in step["run"]
    ]
    # the one-line error of a diff that could not be made still fails the step itself
    outputs.unlink()
    done = run_workflow_diff(repo, "no-such-ref", profiles_dir, outputs)
    assert done.returncode == 2 and outputs.read_text().splitlines() == ["exit_code=2"]


# The relationships test of the misspelt group: mips_measure_codes.measure_group must be a
# group of mips_body_part_groups.
MEASURE_GROUP_TEST = (
    "relationships_mips_measure_codes_measure_group__measure_group__ref_mips_body_part_groups_"
)


@pytest.fixture(scope="module")
def broken_seed(repo, profiles_dir):
    """2025's knee group misspelt `knees`: the export merely loses 2025's knee rows (which reads
    like a deliberate drop), while the real `dbt build` fails a relationships test. The same change
    in markdown is the CI recipe's comment (test_the_ci_recipe_posts_a_failing_test_…)."""
    project, _ = repo
    edit_text(project / "seeds" / "mips_measure_codes.csv", "\n2025,knee,", "\n2025,knees,")
    try:
        return run_json(project, profiles_dir)
    finally:
        reset(project)


def test_a_failing_data_test_is_in_the_json_with_exit_2(broken_seed):
    code, document = broken_seed
    # the diff was made: its report is the document, the failing test first in its summary
    assert code == 2 and document["exit_code"] == 2 and document["ok"] is False
    assert document["error"] is None and document["fails_tests"] is True
    assert MEASURE_GROUP_TEST in document["summary"]
    [failing] = document["data_tests"]["failing"]
    assert failing == {
        "name": MEASURE_GROUP_TEST,
        "model": "mips_measure_codes",
        "column": "measure_group",
        "head": {"status": "fail", "failing_rows": 1},
        "base": {"status": "pass", "failing_rows": 0},
    }
    # the rest of the report is still there: the knee rows 2025 loses
    assert sum(s["only_in_base"] for s in document["slices"]) > 0


def reported(head: dict, base: dict) -> DiffResult:
    """A diff of one unchanged delivery whose sides' data tests ended as given
    ({test: (status, failing rows)}), as the report renders it: no build needed."""

    def side(outcomes: dict, name: str) -> SideTests:
        return SideTests(
            outcomes={t: Outcome(*o) for t, o in outcomes.items()},
            subjects={t: (t, "mips_measure_codes", "measure_group") for t in outcomes},
            log=Path(f"/{name}/dbt.log"),
        )

    return DiffResult(
        base=Revision("main", "1a2b3c4" + "0" * 33),
        head_label="head (working tree)",
        run_date=dt.date(2025, 1, 4),
        run_time_zone="America/Los_Angeles",
        deliveries_compared=1,
        delivery_changes=[],
        rows=RowComparison([SliceCounts(2025, "CA", unchanged=3)], [], []),
        show_rows=0,
        data_tests=pair_runs(side(head, "head"), side(base, "base")),
    )


def test_a_test_the_base_fails_too_is_still_exit_2_and_says_so():
    result = reported(
        head={"new_failure": ("fail", 3), "old_failure": ("fail", 1), "fine": ("pass", 0)},
        base={"new_failure": ("pass", 0), "old_failure": ("fail", 2), "fine": ("pass", 0)},
    )
    assert result.exit_code == 2 and not result.differs
    markdown = render(result, "markdown")
    lines = markdown.splitlines()
    # the change's own failure first, then the one the base has too
    [new] = [n for n, line in enumerate(lines) if line.startswith("| new_failure |")]
    [old] = [n for n, line in enumerate(lines) if line.startswith("| old_failure |")]
    assert (
        new
        < old
        < lines.index(
            "**No change: the working tree delivers exactly what base "
            "main (1a2b3c4) delivers (1 delivery, 3 rows).**"
        )
    )
    assert "| 3 failing rows | pass |" in lines[new]
    assert (
        "| 1 failing row | 2 failing rows: fails on base too, not this change's doing |"
        in (lines[old])
    )
    assert result.exit_code == 2
    document = json.loads(render(result, "json"))
    assert document["fails_tests"] is True
    assert [t["name"] for t in document["data_tests"]["failing"]] == ["new_failure", "old_failure"]
    assert "new_failure" in document["summary"]
    assert "1 delivery compared" in render(result, "table")


def test_a_test_only_the_base_fails_is_context_not_an_error():
    result = reported(
        head={"fixed": ("pass", 0)}, base={"fixed": ("fail", 4), "gone": ("error", None)}
    )
    assert result.exit_code == 0
    for output_format in ("markdown", "table"):
        report = render(result, output_format)
        assert "Failing data tests".lower() not in report.lower()
        context = report.lower().index("data tests: context")
        assert context < report.index("fixed") and context < report.index("gone")
    document = json.loads(render(result, "json"))
    assert document["fails_tests"] is False
    failing = {t["name"]: (t["head"], t["base"]) for t in document["data_tests"]["failing"]}
    assert failing == {
        "fixed": ({"status": "pass", "failing_rows": 0}, {"status": "fail", "failing_rows": 4}),
        "gone": (None, {"status": "error", "failing_rows": None}),
    }


EXPORT_MODEL = Path("models") / "intermediate" / "int_export_rows.sql"
EXPORT_CONTRACT = Path("models") / "marts" / "_mips__models.yml"
EXPORT_LAYOUTS = Path("macros") / "export_file_columns.sql"


def test_a_removed_or_retyped_export_column_is_reported_first(clean_repo, profiles_dir):
    """Payer renamed Payer Type (its column payer_type) and score a number, not text: the
    columns show as removed, added and retyped, before the header lines they change. Removing
    or retyping a column of the versioned, contracted export is a breaking change dbt refuses
    to compare state across (a new version is the way): its tests could not run, exit 2."""
    repo, _ = clean_repo
    edit_text(repo / EXPORT_LAYOUTS, "'Payer', ", "'Payer Type', ")
    edit_text(repo / EXPORT_MODEL, "file_payer as payer,", "file_payer as payer_type,")
    edit_text(
        repo / EXPORT_MODEL,
        "{{ format_decimal_plain('score', 28, 6) }} as score",
        "cast(score as numeric(28, 6)) as score",
    )
    edit_text(repo / EXPORT_CONTRACT, "      - name: payer\n", "      - name: payer_type\n")
    edit_text(
        repo / EXPORT_CONTRACT,
        'empty without a score."\n        data_type: varchar',
        'empty without a score."\n        data_type: numeric(28, 6)',
    )
    result = run_diff(repo, profiles_dir, "--format", "table")
    assert result.exit_code == 2, result.output
    report = result.stdout
    refused = report.index("data tests of what it changes could not run")
    assert "breaking change to an enforced contract" in report[refused:].splitlines()[0]
    columns = report.index("EXPORT COLUMNS (checked first)")
    assert refused < columns < report.index("DELIVERY NAMES AND FLAGS (checked first)")
    changes = report[columns:].split("\n\n")[0].splitlines()[1:]
    assert [line.split() for line in changes] == [
        ["export", "column", "change", "base", "head"],
        ["-" * 14, "-" * 10, "-" * 7, "-" * 17, "-" * 17],
        ["mips_export_v1", "payer", "removed", "character", "varying"],
        ["mips_export_v1", "score", "retyped", "character", "varying", "numeric(28,6)"],
        ["mips_export_v1", "payer_type", "added", "character", "varying"],
    ]
    assert "Changes deliveries: 3 export column changes" in report
    # score compared as the file writes it (3 against 3.000000); payer is on one side only
    changed = report[report.index("CHANGED COLUMNS") :].split("\n\n")[0]
    assert {line.split()[2] for line in changed.splitlines()[3:]} == {"score"}


def test_an_added_export_column_is_reported_first(clean_repo, profiles_dir):
    """A new last column, Clinic: an additive change of the contract, which dbt accepts."""
    repo, _ = clean_repo
    edit_text(repo / EXPORT_LAYOUTS, "'Instrument', 'Score',", "'Instrument', 'Score', 'Clinic',")
    edit_text(
        repo / EXPORT_MODEL,
        "as score\n",
        "as score,\n        cast(null as {{ dbt.type_string() }}) as clinic\n",
    )
    edit_text(
        repo / EXPORT_CONTRACT,
        "        data_type: varchar\n    versions:\n      - v: 1\n",
        "        data_type: varchar\n      - name: clinic\n        description: The clinic."
        "\n        data_type: varchar\n    versions:\n      - v: 1\n",
    )
    code, document = run_json(repo, profiles_dir)
    assert code == 1, document
    # dbt compares the head with the base's manifest: an added column is no breaking change
    tests = document["data_tests"]
    assert tests["head_error"] is tests["base_error"] is None and tests["head_run"] > 0
    assert document["column_changes"] == [
        {"export": "mips_export_v1", "column": "clinic", "change": "added", "base_type": None,
         "head_type": "character varying"},
    ]  # fmt: skip
    assert {c["what"] for c in document["delivery_changes"]} == {"header line"}
    assert all(not s["changed"] for s in document["slices"])


def test_the_seed_lines_behind_a_transition():
    """Rows, not text: requoting changes no row; a body part that changes group cites the
    groups seed; a row the head lost cites the base's line; a model's doing cites none."""
    codes = (
        "performance_year,measure_group,function_measure_code,pain_measure_code\n"
        '2025,hip_foot_ankle,MSK04,"MSK09"\n2025,knee,MSK05,MSK10\n'
    )
    groups = "body_part_type,measure_group\nhip,hip_foot_ankle\nknee,knee\n"
    requoted = codes.replace('"MSK09"', "MSK09")
    seeds = SeedFiles(
        base={MEASURE_CODES: codes, BODY_PART_GROUPS: groups},
        head={MEASURE_CODES: requoted, BODY_PART_GROUPS: groups},
    )
    assert explaining_lines(seeds, 2025, "pain", "hip_foot_ankle", "hip_foot_ankle") == ()
    moved = SeedFiles(seeds.base, {**seeds.head, BODY_PART_GROUPS: groups.replace(
        "hip,hip_foot_ankle", "hip,knee")})  # fmt: skip
    assert explaining_lines(moved, 2025, "pain", "hip_foot_ankle", "knee") == (
        f"{BODY_PART_GROUPS}:2",
    )
    renumbered = SeedFiles(seeds.base, {**seeds.head, MEASURE_CODES: requoted.replace(
        "knee,MSK05,MSK10", "knee,MSK05,MSK15")})  # fmt: skip
    assert explaining_lines(renumbered, 2025, "pain", "knee", "knee") == (f"{MEASURE_CODES}:3",)
    assert explaining_lines(renumbered, 2025, "function", "knee", "knee") == ()
    regrouped = SeedFiles(seeds.base, {**seeds.head, MEASURE_CODES: requoted.replace(
        "2025,hip_foot_ankle,", "2025,hips,")})  # fmt: skip
    assert explaining_lines(regrouped, 2025, "pain", "hip_foot_ankle", "hips") == (
        f"{MEASURE_CODES}:2",
        f"{MEASURE_CODES}:2 (base)",
    )


def test_a_base_that_already_fails_a_test_is_context(clean_repo, profiles_dir):
    """The base has the misspelt group, the working tree the fix: the base's failure is told,
    and the diff is what the fix changes (exit 1), not an error. (Last in the module: its base
    is another commit, which the diffs after it would each have to build again.)"""
    repo, _ = clean_repo
    git(repo, "checkout", "--quiet", "-b", "broken")
    edit_text(repo / "seeds" / "mips_measure_codes.csv", "\n2025,knee,", "\n2025,knees,")
    git(repo, "commit", "--quiet", "--all", "--message", "2025 knees")
    git(repo, "checkout", "--quiet", "main")
    code, document = run_json(repo, profiles_dir, "--base", "broken")
    assert code == 1 and document["exit_code"] == 1 and document["error"] is None, document
    assert document["fails_tests"] is False
    assert document["data_tests"]["failing"] == [
        {"name": MEASURE_GROUP_TEST, "model": "mips_measure_codes", "column": "measure_group",
         "head": {"status": "pass", "failing_rows": 0},
         "base": {"status": "fail", "failing_rows": 1}},
    ]  # fmt: skip
    assert sum(s["only_in_head"] for s in document["slices"]) > 0
