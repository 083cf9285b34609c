"""Shared fixtures: one embedded PostgreSQL per test session, isolated from the developer's own.

Every session gets its own MIPS_HOME (cluster data dir) and its own dbt target/log paths, so
test runs never touch `.mips/` or `target/` of the checkout and can run beside each other.
Under pytest-xdist (`make test`: three workers) each worker is such a session: its own cluster,
socket dir, dbt paths and temporary directories. Tests that share an expensive fixture
form one work unit (below), which runs on one worker: the fixture is built once.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from loader.environment.cluster import running_cluster
from loader.environment.dbt_invocation import DbtOutcome
from loader.environment.synthetic import generate
from loader.environment.warehouse import ProjectOptions
from loader.retry import RetryPolicy
from tests.support.handmade import (
    HANDMADE_SCHEMA,
    build_model_deliveries,
    copy_model_deliveries,
    record_build,
    shared_model_deliveries,
)
from tests.support.model_scenarios import PRODUCTION, PRODUCTION_AS_OF, PROJECT_DIR, copy_project
from tests.support.temporary_files import RamBasetemp, ram_basetemp

if TYPE_CHECKING:
    from tests.support.athena_duckdb import AthenaCompilation

# moto, sqlglot, DuckDB, asyncssh and paramiko are imported by the fixtures that use them: the
# controller process of `-n 3` imports this file before it starts the workers, and uses none.

# The modules whose tests share an expensive fixture, by xdist work unit: a unit runs on one
# worker, so the fixture is built once. The production build and the Athena compilation
# (session fixtures) are read by four modules, which share one unit; a module's own fixtures
# (its scenario, its build, its git repository; some tests rely on an earlier test of their
# module) make the module one unit. Every other test is a unit of its own, for whichever
# worker is free.
SHARED_BUILDS = frozenset({"production_build", "athena_compilation"})
SHARED_BUILDS_UNIT = "production-build"
SHARED_BUILD_MODULES = frozenset(
    {"test_athena_duckdb", "test_athena_lint", "test_athena_publication", "test_dbt_build"}
)
WHOLE_MODULES = frozenset(
    {
        "test_build_log",
        "test_configuration_errors",
        "test_contract_tables",
        "test_dev_server",
        "test_diff",
        "test_end_to_end",
        "test_expected_years",
        "test_model_docs",
        "test_publication",
        "test_row_checks",
        "test_sftp_integrity",
        "test_synthetic",
    }
)
# Module fixtures cheap enough to start again on each worker (a moto server, a directory).
CHEAP_MODULE_FIXTURES = frozenset({"moto_endpoint", "dbt_target_per_module"})

# The controller's RAM-disk directory for the run and its lock (held until the process ends).
RAM_BASETEMP = pytest.StashKey[RamBasetemp]()


def work_unit(nodeid: str) -> str:
    """The xdist work unit of a test (its id: `tests/python/test_x.py::test_y[param]`)."""
    module = nodeid.split("::", 1)[0]
    name = Path(module).stem
    if name in SHARED_BUILD_MODULES:
        return SHARED_BUILDS_UNIT
    return module if name in WHOLE_MODULES else nodeid


@pytest.hookimpl(tryfirst=True)  # before pytest's tmpdir plugin reads --basetemp
def pytest_configure(config):
    """Ctrl-C reaches the commands the tests start, however pytest was started: a shell runs
    a background job (`make test &`) with SIGINT ignored, which every child would inherit
    (a caught signal is reset to its default at exec, an ignored one stays ignored).

    The run's temporary files go to a RAM disk when there is one with room
    (tests/support/temporary_files.py)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # the controller's choice; xdist hands each worker a directory under it
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        chosen = ram_basetemp(PROJECT_DIR)
        if chosen is not None:
            config.option.basetemp = str(chosen.path)
            config.stash[RAM_BASETEMP] = chosen


def pytest_sessionfinish(session, exitstatus):
    """A run that passed leaves nothing in memory; one that failed keeps its files there for
    a look (the next run replaces them)."""
    chosen = session.config.stash.get(RAM_BASETEMP, None)
    if chosen is not None and exitstatus == 0:
        shutil.rmtree(chosen.path, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus):
    chosen = terminalreporter.config.stash.get(RAM_BASETEMP, None)
    if chosen is not None and exitstatus != 0:
        terminalreporter.write_line(
            f"The run's temporary files, in memory until the next run: {chosen.path}"
        )


def pytest_xdist_make_scheduler(config, log):
    """xdist's scope scheduling over `work_unit` (its `loadgroup` cannot be used: it renames
    test ids in a way pytest 9.2 ignores). The largest units go first."""
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnits(config, log)


def pytest_collection_modifyitems(items):
    """Refuses a test that uses the shared builds or another module-scoped fixture outside
    the work unit that builds it once (the lists above)."""
    wrong = []
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        unit = work_unit(item.nodeid)
        if set(info.names_closure) & SHARED_BUILDS:
            if unit != SHARED_BUILDS_UNIT:
                wrong.append(f"{item.nodeid}: uses {sorted(SHARED_BUILDS)}, not in their unit")
        elif unit == item.nodeid and any(
            definition.scope == "module" and name not in CHEAP_MODULE_FIXTURES
            for name, definitions in info.name2fixturedefs.items()
            for definition in definitions
        ):
            wrong.append(f"{item.nodeid}: uses a module-scoped fixture, its module is no unit")
    if wrong:
        raise pytest.UsageError("\n".join(["tests/python/conftest.py, work units:", *wrong]))


@pytest.fixture(scope="session")
def mips_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("mips-home")
    environment = {
        "MIPS_HOME": home,
        "DBT_TARGET_PATH": home / "dbt-target",
        "DBT_LOG_PATH": home / "dbt-logs",
        # records S3 would not take wait here, not in the user's journal another worker reads
        "MIPS_JOURNAL_DIR": home / "journal",
    }
    # dbt's file log at warn: its warnings and errors, not each node's line (info, ≈ 6% of a
    # small build's time) nor each statement and event (debug, a tenth); no test reads them,
    # and a failed node's message is in the test's own outcome (a developer's own
    # DBT_LOG_LEVEL_FILE wins, e.g. `DBT_LOG_LEVEL_FILE=debug make test`; `diff` sets debug
    # for its sides itself)
    environment["DBT_LOG_LEVEL_FILE"] = os.environ.get("DBT_LOG_LEVEL_FILE") or "warn"
    # nor dbt's JSON artifacts (manifest.json, written twice per command, and run_results.json:
    # ≈ 0.3-0.5 s of each of the suite's few hundred dbt commands); what reads them asks for
    # them (`--write-json`: diff's sides, the Athena compilation, freshness's sources.json)
    environment["DBT_WRITE_JSON"] = os.environ.get("DBT_WRITE_JSON") or "false"
    # nor dbt's anonymous usage events (a uuid and an event per node; no network here anyway)
    environment["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    previous = {k: os.environ.get(k) for k in environment}
    os.environ.update({k: str(v) for k, v in environment.items()})
    yield home
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module", autouse=True)
def dbt_target_per_module(request, mips_home):
    """Each module's dbt runs get a target/ of their own: dbt keeps its partial parse only while
    the vars and the profile (the schema in MIPS_DEV_SCHEMA) stay the same, and modules build
    their own scenarios, so modules sharing one worker's target/ would each parse the whole
    project again (≈ 3 s a parse) whenever they take turns."""
    previous = os.environ["DBT_TARGET_PATH"]
    os.environ["DBT_TARGET_PATH"] = str(mips_home / "dbt-target" / request.module.__name__)
    yield
    os.environ["DBT_TARGET_PATH"] = previous


@pytest.fixture(scope="session")
def cluster(mips_home):
    """The session's embedded cluster; dbt's `dev` target points at it while it runs."""
    with running_cluster(mips_home / "pgdata") as connection:
        yield connection


@pytest.fixture(scope="session")
def profiles_dir(mips_home) -> Path:
    """The shipped example profile, so tests never depend on a developer's profiles.yml."""
    directory = mips_home / "profiles"
    directory.mkdir(exist_ok=True)
    shutil.copy(PROJECT_DIR / "profiles.example.yml", directory / "profiles.yml")
    return directory


@pytest.fixture(scope="session")
def project_options(cluster, profiles_dir) -> ProjectOptions:
    """Options for the `dev` target; the cluster is already up, so it is reused, not restarted."""
    return ProjectOptions(project_dir=PROJECT_DIR, profiles_dir=profiles_dir, target="dev")


@pytest.fixture(scope="session")
def production_build(cluster, project_options) -> DbtOutcome:
    """`dbt build` of production-like data (scale 0.1, production settings) into `build`.

    Built once per session: test_dbt_build checks it against an oracle, test_athena_duckdb
    runs the Athena SQL over the same source rows. Nobody writes to its schemas.
    """
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        generate(
            conn,
            seed=11,
            scale=0.1,
            app_schema=PRODUCTION.app_schema,
            forms_schema=PRODUCTION.forms_schema,
            settings="production",
            as_of=PRODUCTION_AS_OF,
        )
    return PRODUCTION.run(project_options, "build")


@pytest.fixture(scope="session")
def athena_compilation(tmp_path_factory, profiles_dir) -> AthenaCompilation:
    """The project compiled for the `athena` target, offline, once per session."""
    from tests.support.athena_duckdb import compile_for_athena

    target = tmp_path_factory.mktemp("athena-target")
    return compile_for_athena(PROJECT_DIR, target, profiles_dir)


@pytest.fixture
def project_copy(tmp_path, monkeypatch, project_options) -> ProjectOptions:
    """A copy of the dbt project whose seeds a test may edit, with its own target dir."""
    copy = copy_project(tmp_path / "project")
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    return ProjectOptions(project_dir=copy, profiles_dir=project_options.profiles_dir, target="dev")


@pytest.fixture
def db(cluster):
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def model_deliveries(cluster, profiles_dir, tmp_path_factory) -> str:
    """The schema where the real `mips_deliveries` model was built from the hand-made
    deliveries' settings (tests/support/handmade.py): once per run, by the first worker that
    needs it; the other workers load its rows (a dbt parse and build each fewer)."""
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:

        def build() -> str:
            return build_model_deliveries(conn, profiles_dir, tmp_path_factory.mktemp("deliveries"))

        if os.environ.get("PYTEST_XDIST_WORKER") is None:
            return build()
        # the run's base temporary directory, which every worker's lies under
        shared = tmp_path_factory.getbasetemp().parent / "model-deliveries"
        return shared_model_deliveries(conn, shared, build)


@pytest.fixture
def models(db, monkeypatch, model_deliveries):
    """Three deliveries: 2022/CA (fixed snapshot date, S3 only), 2023/CA and 2025/TX (SFTP),
    named by the real deliveries model; their export rows hand-made."""
    db.execute(f"drop schema if exists {HANDMADE_SCHEMA} cascade")
    db.execute(f"create schema {HANDMADE_SCHEMA}")
    db.execute(
        f"create table {HANDMADE_SCHEMA}.mips_export_v1 (performance_year int, state_code text, "
        'file_row_number bigint, "Patient ID" text, "Treatment" text, "Score" text)'
    )
    rows = [(2022, "CA", n, str(n), "MSK01", "3") for n in range(1, 4)]
    rows += [(2023, "CA", n, str(n), "LOS", str(n)) for n in range(1, 6)]
    rows += [(2025, "TX", n, str(n), "MSK06", None) for n in range(1, 11)]
    with db.cursor() as cursor:
        cursor.executemany(
            f"insert into {HANDMADE_SCHEMA}.mips_export_v1 values (%s,%s,%s,%s,%s,%s)", rows
        )
    copy_model_deliveries(
        db,
        model_deliveries,
        HANDMADE_SCHEMA,
        export_relation=f'"{HANDMADE_SCHEMA}"."mips_export_v1"',
        file_header="Patient ID,Treatment,Score",
    )
    # every year the calendar can ask about is configured: status and plan show no year rows
    db.execute(
        f"""
        create table {HANDMADE_SCHEMA}.mips_expected_years as
        select year as performance_year, make_date(year, 1, 1) as expected_from,
            make_date(year + 1, 3, 31) as expected_until, 'configured' as readiness,
            null::text as missing, null::text as declared_not_reported_by,
            'America/Los_Angeles' as run_time_zone
        from generate_series(2022, 2027) as year
        """
    )
    record_build(db, HANDMADE_SCHEMA)
    monkeypatch.setenv("MIPS_DEV_SCHEMA", HANDMADE_SCHEMA)
    # a developer's own stores, or psql choice (the tests choose the unload path themselves)
    for variable in ("MIPS_S3_URL", "MIPS_SFTP_URL", "MIPS_PSQL"):
        monkeypatch.delenv(variable, raising=False)
    return db


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's S3 (and Athena) server on loopback, one per test module."""
    from loopback.s3 import moto_s3_server

    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def rig(tmp_path, monkeypatch, models):
    """The hand-made models exported to S3 behind a fault proxy and a faulty SFTP server."""
    from tests.support.fault_rig import fault_rig

    with fault_rig(tmp_path, monkeypatch) as wired:
        yield wired


@pytest.fixture
def quick_retries(monkeypatch):
    """The loader's retry policy with its waits cut to a hundredth: as many attempts against
    the same real servers, without seconds of back-off between them (the waits themselves are
    test_destinations')."""
    delay = RetryPolicy.delay
    monkeypatch.setattr(RetryPolicy, "delay", lambda policy, attempt: delay(policy, attempt) / 100)


@pytest.fixture
def stores(tmp_path):
    """Local directories standing in for S3 and the SFTP server: (s3, sftp)."""
    s3, sftp = tmp_path / "s3", tmp_path / "sftp"
    s3.mkdir()
    sftp.mkdir()
    return s3, sftp
