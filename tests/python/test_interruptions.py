"""Runs that end badly: a signal, a lost database. Real processes and the embedded PostgreSQL.

The slow slice is a view whose scan sleeps, so a signal or a lost connection can be timed to
arrive while the loader is streaming it into its private temporary file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from loader.cli import cli
from tests.support.fault_rig import BUCKET, SFTP_NAMES
from tests.support.handmade import HANDMADE_MARTS, record_build
from tests.support.handmade import HANDMADE_SCHEMA as SCHEMA
from tests.support.model_scenarios import PROJECT_DIR
from tests.support.processes import postgres_target_env as target_env

RUN_DATE = "2026-01-15"


def slow_2023(db, seconds: float = 30) -> None:
    """2023/CA reads from a view that sleeps before yielding its rows."""
    db.execute(
        f"create view {SCHEMA}.slow_export as select * from {SCHEMA}.mips_export_v1 "
        f"where (select pg_sleep({seconds})::text) is null"
    )
    db.execute(
        f'update {SCHEMA}.mips_deliveries set export_relation = \'"{SCHEMA}"."slow_export"\' '
        "where performance_year = 2023"
    )
    record_build(db, SCHEMA, marts_built=f"{HANDMADE_MARTS},slow_export")


def wait_for_sleeping_loader(db, process=None, timeout: float = 60) -> int:
    """The backend pid of the loader once it is inside the slow view's pg_sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the loader ended early: {process.communicate()}")
        row = db.execute(
            "select pid from pg_stat_activity where application_name = 'mips-loader' "
            "and wait_event = 'PgSleep'"
        ).fetchone()
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError("the loader never reached the slow slice")


def postgres_target_env(cluster, tmp_path: Path) -> dict[str, str]:
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return target_env(cluster, SCHEMA, TMPDIR=str(scratch))


def loader_process(profiles_dir, stores, env, *extra, target="postgres") -> subprocess.Popen:
    """`mips-loader export` as its own process. On `dev` it joins the session's embedded
    cluster (MIPS_HOME) as a guest, as a command beside `make dev` does."""
    s3, sftp = stores
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loader.cli",
            "export",
            "--date",
            RUN_DATE,
            "--s3-url",
            s3.as_uri(),
            "--sftp-url",
            sftp.as_uri(),
            "--target",
            target,
            "--profiles-dir",
            str(profiles_dir),
            *extra,
        ],  # fmt: skip
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def work_dirs(env) -> list[Path]:
    return sorted(Path(env["TMPDIR"]).glob("mips-export-*"))


def run_log(s3: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((s3 / "run-log").rglob("*.json"))]


@pytest.mark.parametrize(
    ("signum", "target"),
    [
        (signal.SIGTERM, "postgres"),
        (signal.SIGHUP, "postgres"),
        (signal.SIGINT, "postgres"),
        (signal.SIGTERM, "dev"),
        (signal.SIGHUP, "dev"),
    ],
)
def test_a_signal_mid_slice_cleans_up_records_and_reports(
    models, cluster, profiles_dir, stores, tmp_path, signum, target
):
    slow_2023(models)
    env = postgres_target_env(cluster, tmp_path)
    process = loader_process(profiles_dir, stores, env, "--json", "--jobs", "1", target=target)
    wait_for_sleeping_loader(models, process)
    assert len(work_dirs(env)) == 1, "the slice is being written to the private work dir"
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    report = json.loads(stdout)
    assert report.get("interrupted") is True, (stdout, stderr)
    assert report["not_attempted"] == 1 and report["selected"] == 3
    statuses = {d["performance_year"]: d["status"] for d in report["deliveries"]}
    assert statuses == {2022: "ok", 2023: "interrupted"}
    assert work_dirs(env) == [], "no temporary CSV is left behind"
    logged = {(r["performance_year"], r["status"]) for r in run_log(stores[0])}
    assert logged == {(2022, "ok"), (2023, "interrupted")}


def test_an_interrupted_run_says_what_it_set_out_to_do_once(
    models, cluster, profiles_dir, stores, tmp_path
):
    slow_2023(models)
    env = postgres_target_env(cluster, tmp_path)
    process = loader_process(profiles_dir, stores, env, "--jobs", "1")
    wait_for_sleeping_loader(models, process)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"for {RUN_DATE}: 3 deliveries" in stdout.splitlines()[0]
    assert "interrupted by a signal: 1 deliveries not attempted" in stdout
    s3, sftp = stores
    shown = CliRunner().invoke(
        cli,
        ["status", "--date", RUN_DATE, "--s3-url", s3.as_uri(), "--sftp-url", sftp.as_uri(),
         "--profiles-dir", str(profiles_dir), "--target", "dev"],
    )  # fmt: skip
    assert "- 2023/CA: interrupted by a signal" in shown.output.splitlines()
    assert "2023/CA: 2023/CA" not in shown.output


def test_a_signal_while_the_command_starts_is_an_interruption(profiles_dir, stores):
    """The console script handles signals before it imports the command line: a SIGTERM
    while psycopg (part of that import) is being loaded ends in one JSON document, exit 1."""
    s3, sftp = stores
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mips-loader"), "export", "--json",
         "--s3-url", s3.as_uri(), "--sftp-url", sftp.as_uri(),
         "--profiles-dir", str(profiles_dir), "--target", "dev"],
        cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + 30
    while "libpq" not in maps.read_text() and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, (process.returncode, stderr)
    document = json.loads(stdout)
    assert document["error"]["kind"] == "interrupted"
    assert "interrupted by a signal" in document["error"]["message"]
    assert "Traceback" not in stderr


# A signal that cuts an import short inside a package (asyncio, which psycopg imports, after
# some of its submodules have run): the retry must not trip over what that import left behind.
INTERRUPTED_IMPORT = """
import sys


class InterruptOnce:
    fired = False

    def find_spec(self, name, path=None, target=None):
        if name == "asyncio.streams" and not InterruptOnce.fired:
            InterruptOnce.fired = True
            raise KeyboardInterrupt("SIGTERM")  # what loader.signals raises for a SIGTERM
        return None


sys.meta_path.insert(0, InterruptOnce())
sys.argv = ["mips-loader", "export", "--json"]
from loader.__main__ import main

main()
"""


def test_a_signal_that_cuts_an_import_short_is_still_one_interruption():
    """test_a_signal_while_the_command_starts_is_an_interruption lands wherever the start-up
    happens to be; here the interruption comes at one point, deterministically: inside
    asyncio's package, after some of its submodules have run. The half-run modules are
    forgotten before the command line is imported again, so the run still ends in one JSON
    document (before: a traceback, a NameError from asyncio's half-run package or psycopg's
    ImportError "no pq wrapper available", in about one start in four under `make test`)."""
    process = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_IMPORT],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert process.returncode == 1, process.stderr
    assert "Traceback" not in process.stderr
    document = json.loads(process.stdout)
    assert document["error"]["kind"] == "interrupted"
    assert "interrupted by a signal while starting" in document["error"]["message"]


def test_a_signal_stops_the_slices_unloaded_ahead(models, cluster, profiles_dir, stores, tmp_path):
    """With jobs, 2023 unloads on its own connection while 2022 is uploaded: a signal cancels
    that query at once (not after its 30 s), removes its file and starts nothing more.

    Where the signal lands depends on how far 2022 has come when 2023's query is seen asleep:
    during 2022's delivery (2022 interrupted), during 2023's (2022 ok, 2023 interrupted, its
    run waiting for the unload ahead), or between the two (2022 ok; 2023, whose delivery had
    not begun, not attempted like 2025)."""
    slow_2023(models)
    env = postgres_target_env(cluster, tmp_path)
    process = loader_process(profiles_dir, stores, env, "--json", "--jobs", "3")
    wait_for_sleeping_loader(models, process)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert time.monotonic() - signalled < 10, "the unload ahead was cancelled, not waited for"
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    report = json.loads(stdout)
    assert report.get("interrupted") is True, (stdout, stderr)
    statuses = {d["performance_year"]: d["status"] for d in report["deliveries"]}
    assert statuses in ({2022: "interrupted"}, {2022: "ok", 2023: "interrupted"}, {2022: "ok"})
    assert report["not_attempted"] == 3 - len(statuses)
    assert work_dirs(env) == [], "no slice file is left, the one unloaded ahead included"
    s3, sftp = stores
    assert not [p for p in s3.rglob("data.csv") if "/2023/" in str(p) or "/2025/" in str(p)]
    assert not [p for p in sftp.rglob("*") if p.is_file()], "2022 goes to S3 only"
    sleeping = models.execute(
        "select count(*) from pg_stat_activity where application_name = 'mips-loader' "
        "and wait_event = 'PgSleep'"
    ).fetchone()[0]
    assert sleeping == 0, "no query of the run goes on after it"


def test_sigkill_leaves_a_work_dir_the_next_run_removes(
    models, cluster, profiles_dir, stores, tmp_path
):
    slow_2023(models)
    env = postgres_target_env(cluster, tmp_path)
    process = loader_process(profiles_dir, stores, env)
    backend = wait_for_sleeping_loader(models, process)
    process.kill()
    process.wait(30)
    # The dead client's query runs on (and holds the run lock) until the server notices.
    models.execute("select pg_terminate_backend(%s)", (backend,))
    [left] = work_dirs(env)
    assert left.name.startswith(f"mips-export-{process.pid}-")
    foreign = Path(env["TMPDIR"]) / "mips-export-notapid-x"
    foreign.mkdir()

    slow_2023_off = f"update {SCHEMA}.mips_deliveries set export_relation = "
    models.execute(slow_2023_off + f'\'"{SCHEMA}"."mips_export_v1"\' where performance_year = 2023')
    rerun = loader_process(profiles_dir, stores, env)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stdout + stderr
    assert work_dirs(env) == [foreign], "the dead run's directory is gone, nothing else"


@pytest.mark.parametrize("as_json", [False, True])
def test_database_lost_mid_run_still_reports_every_delivery(models, profiles_dir, stores, as_json):
    slow_2023(models)

    def terminate_the_loader():
        # every connection of the run: the one unloading 2023 (a psql child's) and the run's own
        with psycopg.connect(models.info.dsn, autocommit=True) as admin:
            wait_for_sleeping_loader(admin)
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where application_name = 'mips-loader'"
            )

    killer = threading.Thread(target=terminate_the_loader)
    killer.start()
    s3, sftp = stores
    result = CliRunner().invoke(
        cli,
        [
            "export",
            "--date",
            RUN_DATE,
            "--s3-url",
            s3.as_uri(),
            "--sftp-url",
            sftp.as_uri(),
            "--profiles-dir",
            str(profiles_dir),
            "--target",
            "dev",
            *(["--json"] if as_json else []),
        ],  # fmt: skip
    )
    killer.join(60)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    if as_json:
        statuses = {
            d["performance_year"]: d["status"] for d in json.loads(result.stdout)["deliveries"]
        }
        assert statuses == {2022: "ok", 2023: "failed", 2025: "failed"}
    else:
        assert "- 2023/CA: AdminShutdown: terminating connection" in result.output
        assert "2025/TX" in result.output


@pytest.mark.parametrize("as_json", [False, True])
def test_database_down_is_one_line(profiles_dir, stores, tmp_path, as_json, monkeypatch):
    monkeypatch.setenv("MIPS_PG_HOST", "127.0.0.1")
    monkeypatch.setenv("MIPS_PG_PORT", "9")  # discard: nothing listens there
    monkeypatch.setenv("MIPS_PG_USER", "loader")
    monkeypatch.setenv("MIPS_PG_PASSWORD", "s3cr3t-pw")
    monkeypatch.setenv("MIPS_PG_DATABASE", "mips")
    s3, sftp = stores
    result = CliRunner().invoke(
        cli,
        [
            "export",
            "--s3-url",
            s3.as_uri(),
            "--sftp-url",
            sftp.as_uri(),
            "--profiles-dir",
            str(profiles_dir),
            "--target",
            "postgres",
            *(["--json"] if as_json else []),
        ],  # fmt: skip
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "s3cr3t-pw" not in result.output
    if as_json:
        document = json.loads(result.stdout)
        assert document["ok"] is False
        assert "127.0.0.1" in document["error"]["message"]
    else:
        [line] = [line for line in result.output.splitlines() if line.strip()]
        assert line.startswith("Error: ") and "127.0.0.1" in line


def export_on_rig(rig, env: dict[str, str], profiles_dir: Path) -> subprocess.Popen:
    """`export --json` of the hand-made models to the fault rig's S3 and SFTP, as a process."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "loader.cli", "export", "--date", RUN_DATE,
            "--s3-url", f"s3://{BUCKET}/healthmonix", "--sftp-url", rig["sftp_url"], "--json",
            "--target", "postgres", "--profiles-dir", str(profiles_dir),
        ],  # fmt: skip
        cwd=PROJECT_DIR, env={**env, **os.environ, "TMPDIR": env["TMPDIR"]},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sigterm_mid_sftp_upload_leaves_no_part_file(rig, cluster, profiles_dir, tmp_path):  # noqa: F811
    """A slow registry server: SIGTERM while the `.part` file grows on it."""
    rig["faults"].write_delay = 0.5
    env = postgres_target_env(cluster, tmp_path)
    process = export_on_rig(rig, env, profiles_dir)
    deadline = time.monotonic() + 60
    while not [p for p in rig["uploads"].iterdir() if p.name.startswith(".Quality_")]:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no upload started"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    report = json.loads(stdout)
    assert report["interrupted"] is True
    assert [p.name for p in rig["uploads"].iterdir() if ".part" in p.name] == []
    assert work_dirs(env) == []


def test_sigterm_while_the_sftp_leg_waits_for_s3_leaves_nothing_at_the_registry(
    rig, cluster, profiles_dir, tmp_path
):
    """The two legs of a slice overlap: 2023/CA's S3 PUT is slow, so its SFTP upload is
    stored, read back and held before the rename when SIGTERM comes. The run ends as
    interrupted, no file of 2023/CA is on the registry's server, under its name or a
    temporary one."""
    rig["proxy"].delay("PUT", 3.0, query_contains="/2023/CA/2026-01-15/data.csv")
    env = postgres_target_env(cluster, tmp_path)
    process = export_on_rig(rig, env, profiles_dir)
    deadline = time.monotonic() + 60
    while not (
        rig["proxy"].count("PUT", "/2023/CA/2026-01-15/data.csv")
        and [p for p in rig["uploads"].iterdir() if p.name.startswith(f".{SFTP_NAMES[0]}")]
    ):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the two legs did not start"
        time.sleep(0.05)
    time.sleep(0.5)  # a small file: its SFTP leg is at the rename, waiting for S3
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    report = json.loads(stdout)
    assert report["interrupted"] is True
    ca = next(d for d in report["deliveries"] if d["performance_year"] == 2023)
    assert ca["status"] == "interrupted"
    assert [p.name for p in rig["uploads"].iterdir() if SFTP_NAMES[0] in p.name] == []
    assert work_dirs(env) == []


def test_the_embedded_clusters_owner_hears_a_signal_like_every_command(tmp_path):
    """The process that starts the embedded cluster (a command on `dev`) handles SIGTERM with
    the one handler (loader/signals.py): it sets INTERRUPTED, which the run asks when psycopg
    turns the KeyboardInterrupt into an error of its own."""
    from loader import signals
    from loader.environment.cluster import running_cluster
    from loader.errors import INTERRUPTED

    INTERRUPTED.clear()
    previous = signals.install(())  # nothing installed: the cluster's own handlers decide
    try:
        with pytest.raises(KeyboardInterrupt), running_cluster(tmp_path / "pgdata", throwaway=True):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises at once
        assert INTERRUPTED.is_set()
    finally:
        signals.restore(previous)
        INTERRUPTED.clear()


def test_a_signal_between_two_deliveries_ends_in_the_runs_own_report(models, profiles_dir, stores):
    """A signal that lands between two deliveries (the first done, the next not yet begun)
    still ends the run as interrupted, in its own report: the first ok, the rest not attempted.
    The real SIGTERM is sent when the run starts its second delivery's record (a profile hook
    only says when; nothing of the loader is replaced)."""
    import loader.run.export as export_module

    started = []

    def send_at_second_record(frame, event, arg):
        if event == "call" and frame.f_code is export_module._new_record.__code__:
            started.append(frame)
            if len(started) == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    s3, sftp = stores
    sys.setprofile(send_at_second_record)
    try:
        result = CliRunner().invoke(
            cli,
            ["export", "--json", "--jobs", "1", "--date", RUN_DATE, "--s3-url", s3.as_uri(),
             "--sftp-url", sftp.as_uri(), "--profiles-dir", str(profiles_dir), "--target", "dev"],
        )  # fmt: skip
    finally:
        sys.setprofile(None)
    assert len(started) == 2
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report.get("interrupted") is True, result.stdout
    assert [d["status"] for d in report["deliveries"]] == ["ok"]
    assert report["not_attempted"] == 2 and report["selected"] == 3
    assert {(r["performance_year"], r["status"]) for r in run_log(s3)} == {(2022, "ok")}
