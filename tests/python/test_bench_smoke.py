"""The benchmark runs end to end at a tiny scale and its contenders agree; no time is checked.

Agreement is the point: the loader's files, the floor's `psql \\copy` files and the worker
replica's files are byte-identical slice by slice, and the monolithic query's table holds the
export model's rows. SFTP legs need the system sshd; without it (and outside CI) they are
skipped, the rest still runs.

The smoke run times the loader to local directories and in the production shape (S3 and
SFTP), and one lever (the loader with one job); the dbt lever that puts the unit
and weekly tests back would only rebuild what the daily build built (test_dbt_build builds
the whole project), so what it adds is checked with `dbt ls` instead.
"""

from __future__ import annotations

import os

import pytest

# `bench` is a top-level package of the checkout (pytest's pythonpath has the root)
from bench import harness, report
from bench.__main__ import document_path
from bench.harness import (
    DBT_LEVERS,
    LOADER_CONFIGS,
    Options,
    loader_configs,
    run_benchmark,
)
from bench.worker_replica import pain_treatment
from loader.environment.dbt_invocation import DAILY_BUILD
from loader.environment.warehouse import ProjectOptions
from tests.support.model_scenarios import PROJECT_DIR, SCRATCH, listed_nodes

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_worker_replica_keeps_the_original_gsub_per_year():
    assert pain_treatment("MSK02", 2024) == "MSK12"
    assert pain_treatment("MSK05", 2023) == "MSK15"
    assert pain_treatment("MSK01", 2025) == "MSK06"
    assert pain_treatment("MSK04", 2025) == "MSK09"


def test_smoke_run_agrees_and_writes_its_document(tmp_path, monkeypatch):
    in_ci = bool(os.environ.get("CI"))
    # what the run times, in order, and where it settles the machine (below)
    events: list[str] = []
    settle, measure, monolithic = harness.settle, harness.measure, harness.run_monolithic
    monkeypatch.setattr(harness, "settle", lambda conn: events.append("settle") or settle(conn))

    def timed_child(command, **kwargs):
        events.append(kwargs["label"])
        return measure(command, **kwargs)

    def timed_statement(conn):
        events.append("monolithic")
        return monolithic(conn)

    monkeypatch.setattr(harness, "measure", timed_child)
    monkeypatch.setattr(harness, "run_monolithic", timed_statement)
    options = Options(
        scale=0.05,
        runs=1,
        home=tmp_path / "home",
        sftp="required" if in_ci else "optional",
        # to keep the suite short: the export to the local directories and the production
        # shape (S3 and SFTP; each alone is only another combination of the same code), and
        # one lever, the one-job export
        loaders=("file", "s3+sftp"),
        levers=("jobs_1",),
        command="pytest tests/python/test_bench_smoke.py",
    )
    result = run_benchmark(options)

    assert result["agreement"] == {
        "monolithic_matches_model": True,
        "floor_matches_loader": True,
        "worker_replica_matches_loader": True,
        "all": True,
    }, result["checks"]
    data = result["data"]
    assert data["export_rows"] > 0 and data["deliveries"] > 0
    monolithic = result["checks"]["monolithic"]
    assert monolithic["model_rows"] == monolithic["monolithic_rows"] == data["export_rows"]
    loader = result["runs_detail"][0]["loader"]
    # without sshd, S3 alone stands in for the production shape (bench.harness.loader_configs)
    expected = {"file", "s3+sftp"} if result["sftp"].startswith("OpenSSH") else {"file", "s3"}
    assert set(loader) == expected
    assert all(run["max_rss_bytes"] > 0 for run in loader.values())
    # the production invocation leaves the unit tests out (the lever puts them back: below)
    assert not [n for n in result["dbt_nodes_slowest"] if n["node"].startswith("unit_test.")]
    levers = result["runs_detail"][0]["levers"]
    assert set(levers) == {"loader_jobs_1"}
    assert levers["loader_jobs_1"]["seconds"] > 0
    assert result["ratios"]["break_even_forms_query_seconds"] is not None
    # every timed contender, the levers' too, starts right after the machine was settled
    timed = [i for i, event in enumerate(events) if event != "settle"]
    assert len(timed) >= 7, events
    assert all(events[i - 1] == "settle" for i in timed), events

    out = tmp_path / "docs" / "benchmarks.md"
    out.parent.mkdir()
    out.write_text(
        f"# Benchmarks\n\nHand-written.\n\n{report.START}\nSTALE-RESULTS\n{report.END}\n\nAfter.\n"
    )
    report.write(out, report.store(result, out), plot=False)
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nHand-written.\n")
    assert text.endswith(f"{report.END}\n\nAfter.\n")
    assert "STALE-RESULTS" not in text and "| 0.05 | yes | yes | yes |" in text
    assert "## Levers, one at a time" in text and "### Break-even Athena latency" in text


def test_the_loader_configurations_a_run_times():
    """`file` always (its files are compared); without SFTP, S3 alone stands in for the
    production shape."""
    assert loader_configs(tuple(LOADER_CONFIGS), has_sftp=True) == list(LOADER_CONFIGS)
    assert loader_configs(tuple(LOADER_CONFIGS), has_sftp=False) == ["file", "s3"]
    assert loader_configs(("s3+sftp",), has_sftp=True) == ["file", "s3+sftp"]
    assert loader_configs(("s3+sftp",), has_sftp=False) == ["file", "s3"]
    assert loader_configs(("sftp",), has_sftp=False) == ["file"]


def test_a_smoke_run_leaves_the_published_results_alone(tmp_path):
    """`python -m bench --smoke` writes its document and results under its home, not into
    docs/benchmarks.md (which `make bench` regenerates); `--out` still decides when given."""
    home = tmp_path / "home"
    assert document_path(None, home, smoke=True) == home / "smoke" / "benchmarks.md"
    assert document_path(None, home, smoke=False) == PROJECT_DIR / "docs" / "benchmarks.md"
    assert document_path(tmp_path / "b.md", home, smoke=True) == tmp_path / "b.md"


def test_the_build_lever_puts_the_unit_and_weekly_tests_back(profiles_dir):
    """What the smoke run no longer builds: the lever's `dbt build` runs the daily build's
    nodes and at least 22 more, the unit tests and the weekly tests among them."""
    command, *selection = DBT_LEVERS["with_unit_and_weekly_tests"]
    assert command == DAILY_BUILD[0] == "build"
    options = ProjectOptions(project_dir=PROJECT_DIR, profiles_dir=profiles_dir, target="dev")
    with SCRATCH.models_environment():  # SCRATCH's parse, if the worker has made it
        daily = set(listed_nodes(options, *DAILY_BUILD[1:], *SCRATCH.dbt_args()))
        lever = set(listed_nodes(options, *selection, *SCRATCH.dbt_args()))
    added = lever - daily
    assert daily < lever and len(added) >= 22
    assert any(node.startswith("unit_test.") for node in added)
    assert not any(node.startswith("unit_test.") for node in daily)


def test_each_contender_starts_after_the_server_checkpointed(db):
    """`settle`, run before every timed contender, asks the server for a checkpoint (its dirty
    buffers written out) before the kernel's sync; the smoke run above goes through it."""
    latest = "select checkpoint_lsn from pg_control_checkpoint()"
    before = db.execute(latest).fetchone()[0]
    harness.settle(db)
    assert db.execute(latest).fetchone()[0] > before


def test_after_the_one_table_lever_only_what_the_publication_names_stays_published(db):
    """After the lever that publishes the export as one table, the parts the build before it
    published are dropped (untimed), so the next build drops one export, as a daily build does:
    whatever the published schema holds that the newest publication (the build log's) does not
    name. The marts it names stay, and nothing is dropped while they are all there is."""
    from bench.harness import drop_stale_published_marts
    from tests.support.handmade import record_build

    built, published = "bench_built_probe", "bench_published_probe"
    for schema in (built, published):
        db.execute(f"drop schema if exists {schema} cascade")
        db.execute(f"create schema {schema}")
    try:
        parts = ("mips_export_v1_part_0", "mips_export_v1_part_1")
        for part in parts:
            db.execute(f"create table {published}.{part} as select 1 as file_row_number")
        db.execute(
            f"create view {published}.mips_export_v1 as select * from {published}.{parts[0]} "
            f"union all select * from {published}.{parts[1]}"
        )
        record_build(db, built, marts_built=",".join(("mips_export_v1", *parts)), published=True)
        db.execute(f"update {built}.mips_build_log set published_schema = %s", (published,))
        assert drop_stale_published_marts(db, built) == []
        assert db.execute(f"select count(*) from {published}.mips_export_v1").fetchone() == (2,)

        # the lever's publication: the export as one table, the parts left behind
        db.execute(f"drop view {published}.mips_export_v1")
        db.execute(f"create table {published}.mips_export_v1 as select 1 as file_row_number")
        db.execute(f"delete from {built}.mips_build_log")
        record_build(db, built, invocation_id="lever", marts_built="mips_export_v1", published=True)
        db.execute(f"update {built}.mips_build_log set published_schema = %s", (published,))
        assert drop_stale_published_marts(db, built) == list(parts)
        left = db.execute(
            "select table_name from information_schema.tables where table_schema = %s",
            (published,),
        ).fetchall()
        assert left == [("mips_export_v1",)]
    finally:
        for schema in (built, published):
            db.execute(f"drop schema {schema} cascade")
