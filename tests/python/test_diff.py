"""`mips-loader diff`: a change to the models, reported as what it does to the delivered files.

One git repository (a copy of the project, committed on `main`) and one source data set serve
every test; each scenario edits the working tree, runs the command on the embedded cluster
(both sides built for real) and puts the repository back. Every scenario builds into the same
two schemas, so dbt's partial parsing of both sides is reused from one build to the next.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from loader.cli import cli
from loader.environment.synthetic import generate
from loader.environment.warehouse import ProjectOptions
from loader.review.diff import DiffRequest, compare_builds
from loader.review.diff_report import render
from loader.review.revisions import Revision
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


@pytest.fixture(scope="module")
def seed_change(repo, profiles_dir, cluster):
    """2025's neck pain code renumbered (MSK06 → MSK16): the command's JSON, then the same
    builds compared again in every format, without and with example rows."""
    project, base = repo
    renumber_pain_code(project, "2025", "neck", "MSK16")
    try:
        code, document = run_json(project, profiles_dir)
    finally:
        reset(project)
    revision = Revision(ref="main", commit=base)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        plain = compare_builds(conn, revision, "head", BASE_SCHEMA, HEAD_SCHEMA, DiffRequest())
        shown = compare_builds(
            conn, revision, "head", BASE_SCHEMA, HEAD_SCHEMA, DiffRequest(show_rows=2)
        )
        neck_2025 = conn.execute(
            f"select count(*) from {BASE_SCHEMA}.mips_export_v1"
            " where performance_year = 2025 and treatment = 'MSK06'"
        ).fetchone()[0]
        values = patient_values(conn, BASE_SCHEMA)
    return {
        "exit_code": code,
        "document": document,
        "outputs": {f: render(plain, f) for f in ("markdown", "table", "json")},
        "shown": shown,
        "shown_outputs": {f: render(shown, f) for f in ("markdown", "table", "json")},
        "neck_2025_rows": neck_2025,
        "patient_values": values,
    }


def test_a_renumbered_pain_code_changes_that_years_pain_rows_only(seed_change):
    document = seed_change["document"]
    assert seed_change["exit_code"] == 1 and document["differs"] is True
    assert document["delivery_changes"] == []
    assert document["code_transitions"] == [
        {"performance_year": 2025, "measure_kind": "pain", "base_code": "MSK06",
         "head_code": "MSK16", "rows": seed_change["neck_2025_rows"]},
    ]  # fmt: skip
    assert seed_change["neck_2025_rows"] > 0
    changed = [s for s in document["slices"] if s["changed"] or s["only_in_base"]]
    assert {s["performance_year"] for s in changed} == {2025}
    for slice_ in document["slices"]:
        assert slice_["only_in_base"] == slice_["only_in_head"] == 0
        assert slice_["changed_columns"] == (
            {"treatment": slice_["changed"]} if slice_["changed"] else {}
        )
    assert sum(s["changed"] for s in document["slices"]) == seed_change["neck_2025_rows"]
    markdown = seed_change["outputs"]["markdown"]
    assert f"- 2025 pain MSK06 → MSK16: {seed_change['neck_2025_rows']:,} rows" in markdown
    assert "Delivery names and flags" not in markdown


def test_no_patient_value_is_printed_without_show_rows(seed_change):
    values = seed_change["patient_values"]
    document = json.loads(seed_change["outputs"]["json"])
    assert "examples" not in document and "examples" not in seed_change["document"]
    assert not json_strings(document) & values
    assert not json_strings(seed_change["document"]) & values
    # counts, years, and numbers of deliveries ("17 other deliveries: no row changes")
    allowed = printed_numbers(document) | {str(n) for n in range(document["deliveries_compared"])}
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


def test_a_higher_age_threshold_removes_rows(clean_repo, profiles_dir, db):
    repo, _ = clean_repo
    edit_text(
        repo / "models" / "intermediate" / "care_plans" / "int_care_plans_in_scope.sql",
        "dbt.dateadd('year', 18,",
        "dbt.dateadd('year', 21,",
    )
    code, document = run_json(repo, profiles_dir)
    assert code == 1
    under_21 = db.execute(
        f"select count(*) from {BASE_SCHEMA}.mips_export_v1"
        " where patient_date_of_birth::date + interval '21 years' > episode_start_date::date"
    ).fetchone()[0]
    assert under_21 > 0
    assert sum(s["only_in_base"] for s in document["slices"]) == under_21
    assert all(s["only_in_head"] == s["changed"] == 0 for s in document["slices"])
    assert document["delivery_changes"] == [] and document["code_transitions"] == []


def test_a_registration_change_is_reported_first_as_a_file_name(clean_repo, profiles_dir, db):
    repo, base = clean_repo

    def new_key(rows):
        for row in rows:
            if (row["performance_year"], row["state_code"]) == ("2025", "CA"):
                row["integration_key"] = "Zz9Zz9Zz9Z"
        return rows

    edit_seed(ProjectOptions(project_dir=repo), "mips_registrations", new_key)
    renumber_pain_code(repo, "2024", "knee", "MSK10")  # and some rows change too
    result = run_diff(repo, profiles_dir)
    assert result.exit_code == 1, result.output
    markdown = result.stdout
    names = markdown.index("### ⚠️ Delivery names and flags")
    assert names < markdown.index("### Rows per year and state")
    lines = [line for line in markdown[names:].splitlines() if line.startswith("| 2025 | CA")]
    assert len(lines) == 1 and "SFTP file name" in lines[0]
    assert "_Zz9Zz9Zz9Z.csv" in lines[0] and ".csv | Quality_" in lines[0]
    # the same builds, compared again: the name change and nothing else of the deliveries
    result = compare_builds(
        db, Revision("main", base), "head", BASE_SCHEMA, HEAD_SCHEMA, DiffRequest()
    )
    [change] = result.delivery_changes
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


def test_the_ci_recipe_produces_the_comment(clean_repo, profiles_dir, tmp_path):
    """The workflow's diff step, as GitHub runs it (bash -e), on a pull request's branch."""
    repo, base = clean_repo
    git(repo, "checkout", "--quiet", "-b", "pull-request")
    renumber_pain_code(repo, "2023", "shoulder", "MSK07")
    git(repo, "commit", "--quiet", "--all", "--message", "2023 shoulder pain is MSK07")
    (repo / ".venv").symlink_to(PROJECT_DIR / ".venv")
    outputs = tmp_path / "github_output"
    environment = {
        **os.environ,
        "BASE_SHA": base,
        "GITHUB_OUTPUT": str(outputs),
        "DBT_PROFILES_DIR": str(profiles_dir),
        "MIPS_DIFF_VARS": VARS,
    }
    done = subprocess.run(
        ["bash", "-e", "-c", workflow_diff_script(WORKFLOW)],
        cwd=repo,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert outputs.read_text().splitlines() == ["exit_code=1"]
    comment = (repo / "mips-diff.md").read_text()
    assert comment.startswith(f"## MIPS delivery diff: base {base} ({base[:7]})")
    assert "- 2023 pain MSK12 → MSK07:" in comment
