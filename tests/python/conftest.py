"""Shared fixtures: one embedded PostgreSQL per test session, isolated from the developer's own.

Every session gets its own MIPS_HOME (cluster data dir) and its own dbt target/log paths, so
test runs never touch `.mips/` or `target/` of the checkout and can run beside each other.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
import pytest

from loader.cluster import running_cluster
from loader.warehouse import ProjectOptions

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def mips_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("mips-home")
    previous = {k: os.environ.get(k) for k in ("MIPS_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH")}
    os.environ["MIPS_HOME"] = str(home)
    os.environ["DBT_TARGET_PATH"] = str(home / "dbt-target")
    os.environ["DBT_LOG_PATH"] = str(home / "dbt-logs")
    yield home
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def cluster(mips_home):
    """The session's embedded cluster; dbt's `dev` target points at it while it runs."""
    with running_cluster(mips_home / "pgdata") as connection:
        yield connection


@pytest.fixture(scope="session")
def profiles_dir(mips_home) -> Path:
    """The shipped example profile, so tests never depend on a developer's profiles.yml."""
    directory = mips_home / "profiles"
    directory.mkdir()
    shutil.copy(PROJECT_DIR / "profiles.example.yml", directory / "profiles.yml")
    return directory


@pytest.fixture(scope="session")
def project_options(cluster, profiles_dir) -> ProjectOptions:
    """Options for the `dev` target; the cluster is already up, so it is reused, not restarted."""
    return ProjectOptions(project_dir=PROJECT_DIR, profiles_dir=profiles_dir, target="dev")


@pytest.fixture
def db(cluster):
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        yield conn
