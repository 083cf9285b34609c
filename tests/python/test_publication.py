"""Write-audit-publish on real dbt builds: what a build writes reaches `export` only once the
whole build has passed, in one step at its end, and an export reads one build whatever dbt does
beside it. dbt runs as a separate process where it is stopped or raced (a scheduler's view).

The builds share one scenario (SCRATCH, started afresh: scale 0.05) and one good build
(`published`, built once), and run in this module's order: the raced export reads that build
and the racing build publishes after it; the stopped builds publish nothing, so each stop test
starts from the good build published before it, and says so; the failing build comes last.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from loader.cli import cli
from loader.environment.dbt_invocation import run_dbt
from loopback.ssh import make_ssh_key, write_known_hosts
from tests.support.local_runs import files_under
from tests.support.model_scenarios import PROJECT_DIR, SCRATCH, copy_project, seed_partial_parse
from tests.support.processes import postgres_target_env
from tests.support.transport_servers import SftpFaults, asyncssh_sftp_server

PUBLISHED = f"{SCRATCH.models_schema}_published"
MARTS = (
    "mips_deliveries",
    "mips_expected_years",
    "mips_export_v1",
    "mips_export_v1_part_0",
    "mips_export_v1_part_1",
)
DBT = Path(sys.executable).parent / "dbt"
# A data test of the export that sleeps: dbt runs it right after building mips_export_v1, so a
# build can be stopped deterministically between the export's table and its tests.
BLOCKING_TEST = (
    "-- stands in for a long test of the export: the build is stopped while it runs\n"
    "select * from {{ ref('mips_export', v=1) }} where (select pg_sleep(600)) is not null\n"
)


@pytest.fixture(scope="module")
def scenario(cluster, project_options):
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        SCRATCH.fresh(conn, seed=23, scale=0.05)
        yield conn


@pytest.fixture(scope="module")
def blocking_copy(tmp_path_factory, published) -> tuple[Path, Path]:
    """A copy of the project with the sleeping test, and its dbt work directory: the same for
    both stop tests, so the second build reuses the first one's partial parse (dbt saves it
    before it runs a node); the first starts from the good build's, of the same vars and
    profile (only the sleeping test is new to it)."""
    root = tmp_path_factory.mktemp("blocking")
    copy = copy_project(root / "project")
    (copy / "tests" / "dbt" / "zz_blocks_after_the_export.sql").write_text(BLOCKING_TEST)
    seed_partial_parse(SCRATCH.target_path(), root / "dbt" / "target")
    return copy, root / "dbt"


@pytest.fixture
def models_schema(monkeypatch):
    """The loader's `dev` target reads the scenario's models."""
    monkeypatch.setenv("MIPS_DEV_SCHEMA", SCRATCH.models_schema)


@pytest.fixture(scope="module")
def published(scenario, project_options) -> str:
    """The module's good build (its invocation id), published once for the tests after it."""
    outcome = SCRATCH.run(project_options, "build", "--selector", "daily")
    assert outcome.success, outcome.failures or outcome.error
    return outcome.invocation_id


def published_build(db) -> str:
    """The invocation whose marts are published (each published mart carries its id)."""
    [(invocation,)] = db.execute(
        f"select distinct dbt_invocation_id from {PUBLISHED}.mips_deliveries"
    ).fetchall()
    return invocation


def published_digest(db) -> dict[str, tuple]:
    """Each published mart's row count and the md5 of all its rows."""
    return {
        mart: db.execute(
            f"select count(*), md5(string_agg(t::text, E'\\n' order by t::text)) "
            f"from {PUBLISHED}.{mart} t"
        ).fetchone()
        for mart in MARTS
    }


def log_events(db, invocation_id: str) -> list[str]:
    return [
        row[0]
        for row in db.execute(
            f"select event from {SCRATCH.models_schema}.mips_build_log "
            "where invocation_id = %s order by event desc",
            (invocation_id,),
        ).fetchall()
    ]


def dbt_build_process(
    cluster, profiles_dir, project_dir: Path, work_dir: Path, target_path: Path | None = None
):
    """`dbt build --selector daily` of `project_dir` into the scenario, as its own process
    (its target/ in `work_dir` unless given)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    log = (work_dir / "dbt-output.txt").open("w")
    return subprocess.Popen(
        [
            str(DBT),
            "build",
            "--selector",
            "daily",
            "--vars",
            SCRATCH.dbt_vars(),
            "--project-dir",
            str(project_dir),
            "--profiles-dir",
            str(profiles_dir),
            "--target",
            "dev",
            "--target-path",
            str(target_path or work_dir / "target"),
            "--log-path",
            str(work_dir / "logs"),
        ],  # fmt: skip
        env={
            **os.environ,
            "MIPS_PG_SOCKET_DIR": str(cluster.socket_dir),
            "MIPS_DEV_SCHEMA": SCRATCH.models_schema,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=project_dir,
    )


def wait_for(condition, what: str, process=None, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended before {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def backend(db, where: str):
    """The first server process matching `where` (a condition on pg_stat_activity), or None."""
    return db.execute(f"select pid from pg_stat_activity where {where}").fetchone()


def newest_invocation(db) -> str:
    return db.execute(
        f"select invocation_id from {SCRATCH.models_schema}.mips_build_log "
        "order by started_at desc limit 1"
    ).fetchone()[0]


@contextlib.contextmanager
def sources_changed(db):
    """The sources change under the published build: a third of the visits are cancelled."""
    appointments = f"{SCRATCH.app_schema}.appointments"
    db.execute(f"update {appointments} set status = 'cancelled' where id % 3 = 0")
    try:
        yield
    finally:
        db.execute(
            f"update {appointments} set status = 'completed' "
            "where id % 3 = 0 and status = 'cancelled'"
        )


def slice_digests(report: dict) -> dict[tuple[int, str], str]:
    return {(d["performance_year"], d["state_code"]): d["sha256"] for d in report["deliveries"]}


def invoke(profiles_dir, *args):
    return CliRunner().invoke(
        cli, [*args, "--profiles-dir", str(profiles_dir), "--target", "dev"],
        catch_exceptions=False,
    )  # fmt: skip


def stores(tmp_path):
    s3, sftp = tmp_path / "s3", tmp_path / "sftp"
    s3.mkdir(exist_ok=True)
    sftp.mkdir(exist_ok=True)
    return ["--s3-url", s3.as_uri(), "--sftp-url", sftp.as_uri()], s3, sftp


def test_a_build_during_an_export_publishes_after_it_and_the_run_reads_one_build(
    scenario, published, cluster, profiles_dir, models_schema, tmp_path
):
    db = scenario
    # the module's good build is published and exported (the first test to export: the
    # tests after it stop or fail builds); a second build runs while the export does
    first = published
    options, s3, _ = stores(tmp_path)
    dry = invoke(profiles_dir, "export", *options, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["build"]["invocation_id"] == first == published_build(db)
    first_bytes = slice_digests(json.loads(dry.stdout))
    host_key, client_key = make_ssh_key(tmp_path / "host"), make_ssh_key(tmp_path / "client")
    faults = SftpFaults()
    faults.hold_writes.set()  # the first SFTP upload stalls until the test lets it go
    (tmp_path / "sftp-root" / "uploads").mkdir(parents=True)
    with sources_changed(db), asyncssh_sftp_server(
        tmp_path / "sftp-root", authorized_client_key=client_key.public_key,
        host_key=host_key.private_path, faults=faults,
    ) as server:  # fmt: skip
        known_hosts = write_known_hosts(
            tmp_path / "known_hosts", server.host, server.port, server.host_public_key
        )
        env = postgres_target_env(
            cluster, SCRATCH.models_schema,
            MIPS_SFTP_KEY_FILE=str(client_key.private_path),
            MIPS_SFTP_KNOWN_HOSTS=str(known_hosts),
        )  # fmt: skip
        export = subprocess.Popen(
            [
                sys.executable, "-m", "loader.cli", "export", "--json",
                "--s3-url", s3.as_uri(),
                "--sftp-url", f"sftp://mips@{server.host}:{server.port}/uploads",
                "--target", "postgres", "--profiles-dir", str(profiles_dir),
            ],
            cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        wait_for(faults.writes_held.is_set, "the export's first SFTP upload", export)
        # the in-process builds' target/: its partial parse is of the same project and vars
        build = dbt_build_process(
            cluster, profiles_dir, PROJECT_DIR, tmp_path / "dbt", SCRATCH.target_path()
        )
        # the build runs its models and tests, then its publication waits for the export
        # (pg_stat_activity keeps the statement's first 1 kB: the log table is named there)
        waiting = wait_for(
            lambda: backend(db, "wait_event_type = 'Lock' and query like '%\"mips_build_log\"%'"),
            "the publication to wait for the export",
            build,
            timeout=180,
        )
        second = newest_invocation(db)
        assert waiting and log_events(db, second) == ["started"]
        faults.hold_writes.clear()
        stdout, stderr = export.communicate(timeout=180)
        assert build.wait(180) == 0
    assert export.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["build"]["invocation_id"] == first
    assert slice_digests(report) == first_bytes, "every slice is the first build's"
    logged = [json.loads(p.read_text()) for p in (s3 / "run-log").rglob("*.json")]
    assert len(logged) == 25 and {r["dbt_invocation_id"] for r in logged} == {first}
    # and once the export ended, the second build published
    assert log_events(db, second) == ["started", "finished"]
    after = invoke(profiles_dir, "export", *options, "--dry-run", "--json")
    assert json.loads(after.stdout)["build"]["invocation_id"] == second
    assert slice_digests(json.loads(after.stdout)) != first_bytes


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_build_stopped_before_the_export_is_tested_publishes_nothing(
    scenario, published, cluster, profiles_dir, models_schema, blocking_copy, tmp_path, signum
):
    db = scenario
    # a good build is what is published: the module's, or the one published after the export
    # of the test before (a build stopped before published nothing)
    published_by = published_build(db)
    assert log_events(db, published_by) == ["started", "finished"]
    before = published_digest(db)
    with sources_changed(db):
        build = dbt_build_process(cluster, profiles_dir, *blocking_copy)
        sleeper = wait_for(
            lambda: backend(db, "wait_event = 'PgSleep' and query like '%pg_sleep(600)%'"),
            "the export's tests",
            build,
        )
        build.send_signal(signum)
        build.wait(60)
        # a killed client leaves its query sleeping on the server; end it
        db.execute("select pg_terminate_backend(%s)", (sleeper[0],))
        stopped = newest_invocation(db)
        assert stopped != published_by and log_events(db, stopped) == ["started"]
        # the build had replaced its own export (the view of the published one) by the view
        # of the two parts it had built ...
        kinds = dict(
            db.execute(
                "select c.relname, c.relkind from pg_class c "
                "join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = %s and c.relname like 'mips_export_v1%%' "
                "and c.relkind in ('r', 'v')",
                (SCRATCH.models_schema,),
            ).fetchall()
        )
        assert kinds == {
            "mips_export_v1": "v",
            "mips_export_v1_part_0": "r",
            "mips_export_v1_part_1": "r",
        }
        definition = db.execute(
            "select pg_get_viewdef(%s::regclass)", (f"{SCRATCH.models_schema}.mips_export_v1",)
        ).fetchone()[0]
        assert PUBLISHED not in definition and "mips_export_v1_part_1" in definition
        # ... and nothing it wrote reached the published marts
        assert published_digest(db) == before

        options, s3, sftp = stores(tmp_path)
        result = invoke(profiles_dir, "export", *options, "--json")
        assert result.exit_code == 1, result.output
        report = json.loads(result.stdout)
        assert "never finished" in report["refused"] and stopped in report["refused"]
        assert [d["status"] for d in report["deliveries"]] == ["refused"] * 25
        assert files_under(sftp) == []
        assert [f for f in files_under(s3) if not f.startswith("run-log/")] == []
        plan = invoke(profiles_dir, "plan")
        assert plan.exit_code == 1 and f"{stopped}, started" in plan.output
        assert "never finished" in plan.output
        status = invoke(profiles_dir, "status", *options)
        assert f"build: dbt build (selector=daily) {stopped}, started" in status.output


def test_a_failing_test_is_named_first_by_export_plan_and_status(
    scenario, published, profiles_dir, project_options, models_schema, tmp_path
):
    db = scenario
    clinicians = f"{SCRATCH.app_schema}.clinicians"
    db.execute(f"alter table {clinicians} drop constraint if exists clinicians_npi_check")
    first = db.execute(f"select id, npi from {clinicians} order by id limit 1").fetchone()
    db.execute(f"update {clinicians} set npi = left(npi, 9) where id = %s", (first[0],))
    try:
        failed = SCRATCH.run(project_options, "build", "--selector", "daily")
    finally:
        db.execute(f"update {clinicians} set npi = %s where id = %s", (first[1], first[0]))
    assert not failed.success
    options, _, _ = stores(tmp_path)
    named = "test matches_pattern_stg_app__clinicians_npi"
    exported = invoke(profiles_dir, "export", *options, "--json")
    assert exported.exit_code == 1
    refused = json.loads(exported.stdout)["refused"]
    assert refused.startswith(f"the latest build of the marts failed: {named}"), refused
    assert re.search(r"clinician_id errored; \+\d+ skipped \(dbt build \(selector=daily\)", refused)
    assert json.loads(exported.stdout)["build"]["failed_nodes"][0].startswith(
        "test.healthmonix_mips.matches_pattern_stg_app__clinicians_npi"
    )
    plan = invoke(profiles_dir, "plan")
    assert (
        plan.exit_code == 1
        and f"export would refuse: the latest build of the marts failed: {named}" in plan.output
    )
    status = invoke(profiles_dir, "status", *options)
    assert f"; failed: {named}" in status.output.splitlines()[0]


def test_the_snapshot_is_taken_after_the_locks(cluster):
    """What the consistent read relies on: in a REPEATABLE READ transaction, LOCK (and
    SAVEPOINT) take no snapshot, so what commits between the locks and the first read is seen,
    and nothing after it."""
    with (
        psycopg.connect(cluster.conninfo(), autocommit=True) as reader,
        psycopg.connect(cluster.conninfo(), autocommit=True) as writer,
    ):
        writer.execute("drop table if exists snapshot_probe")
        writer.execute("create table snapshot_probe (n int)")
        reader.execute("begin isolation level repeatable read read only")
        reader.execute("savepoint probe")
        reader.execute("lock table snapshot_probe in access share mode")
        reader.execute("release savepoint probe")
        writer.execute("insert into snapshot_probe values (1)")
        assert reader.execute("select count(*) from snapshot_probe").fetchone()[0] == 1
        writer.execute("insert into snapshot_probe values (2)")
        assert reader.execute("select count(*) from snapshot_probe").fetchone()[0] == 1
        reader.execute("rollback")
        writer.execute("drop table snapshot_probe")


def test_the_export_in_one_table_or_in_two_parts_publishes_the_same_rows(
    scenario, published, project_options
):
    """Var `mips_export_in_parts: false` (the benchmark's lever) builds the export as one table
    again, and the next build as the view of its two parts: each publishes over the other's
    kind of relation, with the same rows."""
    db = scenario

    def export_kind_and_rows():
        kind = db.execute(
            "select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = %s and c.relname = 'mips_export_v1'",
            (PUBLISHED,),
        ).fetchone()[0]
        rows = db.execute(
            "select count(*), md5(string_agg(t::text, E'\\n' order by t::text)) "
            f"from {PUBLISHED}.mips_export_v1 t"
        ).fetchone()
        return kind, rows

    assert export_kind_and_rows()[0] == "v"
    one_table_vars = json.dumps({**json.loads(SCRATCH.dbt_vars()), "mips_export_in_parts": False})
    with SCRATCH.models_environment():
        one_table = run_dbt(
            project_options,
            ["build", "--selector", "daily", "--vars", one_table_vars]
            + ["--target-path", str(SCRATCH.target_path())],
            quiet=True,
        )
    assert one_table.success, one_table.failures or one_table.error
    assert published_build(db) == one_table.invocation_id
    kind, rows = export_kind_and_rows()
    assert kind == "r" and rows[0] > 0
    in_parts = SCRATCH.run(project_options, "build", "--selector", "daily")
    assert in_parts.success, in_parts.failures or in_parts.error
    assert published_build(db) == in_parts.invocation_id
    assert export_kind_and_rows() == ("v", rows)
