"""The scheduler kit under deploy/: the environment template names every variable the code
reads, the wrapper runs the daily sequence with the documented exit policy (end to end on the
embedded PostgreSQL, with file:// stores), and the systemd units, the cron line and the
Airflow DAG are well formed.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import py_compile
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from loader.clock import SYNTHETIC_TIME_ZONE, today_in
from loader.environment.synthetic import generate
from tests.support.model_scenarios import PROJECT_DIR

DEPLOY = PROJECT_DIR / "deploy"
WRAPPER = DEPLOY / "run-daily.sh"
TEMPLATE = DEPLOY / "mips.env.example"
# The wrapper's summary line: the last line of every full run.
SUMMARY = re.compile(
    r"^mips-daily: (?P<verdict>[^;]+); (?P<codes>[^;]+); \d+s; exit (?P<exit>\d+)$"
)

# --- the environment template -------------------------------------------------------------

# Where the code reads a variable: a MIPS_/DBT_ name as a string literal in the loader and the
# DAG (os.environ, getenv, Click's envvar=, a constant such as JOURNAL_ENV), env_var('…') in
# the profile and the dbt project, ${…} or $… in the wrapper.
_PYTHON_NAME = re.compile(r"""["']((?:MIPS|DBT)_[A-Z0-9_]+)["']""")
_JINJA_NAME = re.compile(r"""env_var\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")
_SHELL_NAME = re.compile(r"\$\{?((?:MIPS|DBT)_[A-Z0-9_]+)")
_TEMPLATE_LINE = re.compile(r"^(?:# )?([A-Z][A-Z0-9_]*)=(.*)$")


def variables_read(text: str, kind: str) -> set[str]:
    pattern = {"python": _PYTHON_NAME, "jinja": _JINJA_NAME, "shell": _SHELL_NAME}[kind]
    return set(pattern.findall(text))


def code_variables() -> dict[str, set[str]]:
    """Every variable the code reads, with the files that read it."""
    sources = [(p, "python") for p in sorted((PROJECT_DIR / "loader").rglob("*.py"))]
    sources += [(p, "python") for p in sorted((DEPLOY / "airflow").glob("*.py"))]
    sources += [(PROJECT_DIR / "profiles.example.yml", "jinja")]
    sources += [(PROJECT_DIR / "dbt_project.yml", "jinja")]
    for folder in ("macros", "models"):
        sources += [(p, "jinja") for p in sorted((PROJECT_DIR / folder).rglob("*.sql"))]
        sources += [(p, "jinja") for p in sorted((PROJECT_DIR / folder).rglob("*.yml"))]
    sources += [(WRAPPER, "shell")]
    found: dict[str, set[str]] = {}
    for path, kind in sources:
        for name in variables_read(path.read_text(), kind):
            found.setdefault(name, set()).add(str(path.relative_to(PROJECT_DIR)))
    return found


def template_entries() -> list[tuple[str, str, str]]:
    """(name, value, the comment line above it) of every variable line, commented out or not."""
    lines = TEMPLATE.read_text().splitlines()
    entries = []
    for index, line in enumerate(lines):
        match = _TEMPLATE_LINE.match(line)
        if match:
            entries.append((match[1], match[2], lines[index - 1] if index else ""))
    return entries


def test_the_scan_finds_what_the_code_reads():
    assert variables_read('os.environ.get("MIPS_NEW_THING")', "python") == {"MIPS_NEW_THING"}
    assert variables_read("{{ env_var('MIPS_X', 'd') }}", "jinja") == {"MIPS_X"}
    assert variables_read('x="${MIPS_Y:-}" "$DBT_Z"', "shell") == {"MIPS_Y", "DBT_Z"}
    found = code_variables()
    expected = {"MIPS_PG_HOST", "MIPS_ATHENA_S3_STAGING_DIR", "MIPS_S3_URL", "MIPS_SFTP_URL",
                "MIPS_SFTP_KEY_FILE", "MIPS_JOURNAL_DIR", "MIPS_MAX_BUILD_AGE", "MIPS_EXPORT_JOBS",
                "MIPS_MAX_SHRINK", "DBT_PROFILES_DIR", "MIPS_ENV_FILE", "MIPS_BIN_DIR"}  # fmt: skip
    assert expected <= set(found)


def test_the_env_template_has_every_variable_the_code_reads():
    listed = {name for name, _, _ in template_entries()}
    missing = {
        name: sorted(files) for name, files in code_variables().items() if name not in listed
    }
    assert not missing, f"deploy/mips.env.example lacks {missing}"


def test_every_template_variable_has_a_comment_and_secrets_are_placeholders():
    entries = template_entries()
    assert len({name for name, _, _ in entries}) == len(entries), "a variable listed twice"
    for name, _, comment in entries:
        assert comment.startswith("# ") and not _TEMPLATE_LINE.match(comment), name
    secrets = {name: value for name, value, _ in entries if re.search("PASSWORD$|PASSPHRASE", name)}
    assert set(secrets) >= {"MIPS_PG_PASSWORD", "MIPS_SFTP_PASSWORD", "MIPS_SFTP_KEY_PASSPHRASE"}
    assert set(secrets.values()) == {'"<secret>"'}


def test_the_env_template_loads_in_bash_with_every_line_uncommented(tmp_path):
    """What the wrapper does with it (set -a; .), every optional line switched on: the
    quoting holds (a relation name keeps its double quotes, YAML its braces)."""
    uncommented = tmp_path / "mips.env"
    uncommented.write_text(re.sub(r"(?m)^# ([A-Z][A-Z0-9_]*=)", r"\1", TEMPLATE.read_text()))
    shown = subprocess.run(
        ["bash", "-c", 'set -eu; set -a; . "$1"; env -0', "bash", str(uncommented)],
        capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, check=True,
    )  # fmt: skip
    environment = dict(item.split("=", 1) for item in shown.stdout.split("\0") if "=" in item)
    assert {name for name, _, _ in template_entries()} <= set(environment)
    assert environment["MIPS_ATHENA_FORMS_RELATION"] == '"mips_forms"."patient_forms_mips"'
    assert environment["MIPS_DBT_VARS"] == "{mips_reject_sample_registrations: true}"
    assert environment["MIPS_PG_PASSWORD"] == "<secret>"


# --- the wrapper --------------------------------------------------------------------------


def run_wrapper(env_file: Path, *args: str, env: dict[str, str] | None = None, timeout=1800):
    return subprocess.run(
        ["bash", str(WRAPPER), *args],
        capture_output=True,
        text=True,
        env={**(env or os.environ), "MIPS_ENV_FILE": str(env_file)},
        timeout=timeout,
        check=False,
    )


def summary(result) -> dict[str, str]:
    last = result.stdout.strip().splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, f"not a summary line: {last!r}\n{result.stdout}\n{result.stderr}"
    assert int(match["exit"]) == result.returncode
    codes = dict(part.split("=") for part in match["codes"].split())
    return {"verdict": match["verdict"], **codes}


def test_the_wrapper_is_bash_with_set_u():
    assert subprocess.run(["bash", "-n", str(WRAPPER)], check=False).returncode == 0
    text = WRAPPER.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -u\n" in text
    assert os.access(WRAPPER, os.X_OK)


def test_the_wrapper_says_what_is_wrong_before_any_step(tmp_path):
    missing = run_wrapper(tmp_path / "nope.env")
    assert missing.returncode == 2
    assert missing.stdout.splitlines() == [
        f"mips-daily: FAILED at setup: cannot read the environment file {tmp_path}/nope.env "
        "(MIPS_ENV_FILE); exit 2"
    ]
    env_file = tmp_path / "mips.env"
    env_file.write_text(f"MIPS_BIN_DIR={tmp_path}/no-bin\n")
    no_bin = run_wrapper(env_file)
    assert no_bin.returncode == 2 and "no-bin/dbt is not executable" in no_bin.stdout
    unknown = run_wrapper(env_file, "deploy")
    assert unknown.returncode == 2 and "one of: sync-forms freshness build" in unknown.stderr


def stand_ins(tmp_path: Path) -> Path:
    """dbt and mips-loader stand-ins that print their arguments and exit with the code the
    variable of their step says (FRESHNESS, BUILD, EXPORT, STATUS); BUILD_SECONDS sleeps."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    step = 'case "$1 $2" in "source freshness") s=FRESHNESS;; build*) s=BUILD;; '
    step += "export*) s=EXPORT;; status*) s=STATUS;; *) s=NONE;; esac"
    for program in ("dbt", "mips-loader"):
        script = bin_dir / program
        script.write_text(
            f'#!/bin/sh\necho "{program} $*"\n{step}\n'
            '[ "$s" = BUILD ] && [ -n "${BUILD_SECONDS:-}" ] && exec sleep "$BUILD_SECONDS"\n'
            'eval "exit \\${$s:-0}"\n'
        )
        script.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("codes", "verdict", "exit_code"),
    [
        ({}, "ok", 0),
        ({"FRESHNESS": "1"}, "FAILED at freshness", 1),
        ({"BUILD": "1", "EXPORT": "1", "STATUS": "1"}, "FAILED at build", 1),
        ({"EXPORT": "2", "STATUS": "1"}, "FAILED at export", 2),
        ({"STATUS": "1"}, "FAILED at status", 1),
    ],
)
def test_every_step_runs_and_the_exit_code_is_the_worst_step(tmp_path, codes, verdict, exit_code):
    """The exit policy, with stand-ins for dbt and mips-loader (the real programs: below)."""
    env_file = tmp_path / "mips.env"
    env_file.write_text(f"MIPS_BIN_DIR={stand_ins(tmp_path)}\n")
    result = run_wrapper(env_file, env={**os.environ, **codes})
    assert result.returncode == exit_code, result.stdout
    steps = {"freshness": "0", "build": "0", "export": "0", "status": "0"}
    steps.update({k.lower(): v for k, v in codes.items()})
    assert summary(result) == {"verdict": verdict, **steps}
    # every step ran, in order, with the target and the project
    ran = [line for line in result.stdout.splitlines() if line.startswith(("dbt ", "mips-"))]
    assert [line.split(" --target")[0] for line in ran if "--project-dir" in line] == [
        "dbt source freshness", "dbt build", "mips-loader export", "mips-loader status",
    ]  # fmt: skip


def test_a_sigterm_stops_the_running_step_and_starts_no_other(tmp_path):
    env_file = tmp_path / "mips.env"
    env_file.write_text(f"MIPS_BIN_DIR={stand_ins(tmp_path)}\n")
    process = subprocess.Popen(
        ["bash", str(WRAPPER)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MIPS_ENV_FILE": str(env_file), "BUILD_SECONDS": "30"},
    )
    seen = []
    while not seen or not seen[-1].startswith("dbt build"):  # the stand-in, then its sleep
        line = process.stdout.readline()
        assert line, f"the build step never started: {seen}"
        seen.append(line)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=20)
    assert time.monotonic() - started < 10, "the step was not stopped"
    assert process.returncode == 143
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("mips-daily: INTERRUPTED by SIGTERM; freshness=0 build=143 ")
    assert "export=not-run status=not-run" in last and "mips-loader export" not in stdout


# --- the daily job end to end ---------------------------------------------------------------

APP_SCHEMA = "daily_app"
TARGET_SCHEMA = "daily"


def years_declared_not_reported(today: dt.date) -> list[int]:
    """The years the registry expects today that the production settings (which end at 2025)
    lack: declared not reported, so that a good day's status is all ok."""
    years = [today.year - 1, today.year] if today.month <= 3 else [today.year]
    return [year for year in years if year > 2025]


def test_the_daily_job_end_to_end(cluster, profiles_dir, tmp_path):
    """deploy/run-daily.sh with the test's .venv and cluster: a good day (every step 0, files
    in both stores), then a day whose build fails (export still runs, is refused and records
    it for every delivery, and nothing new reaches S3 or the server; status says so; the
    wrapper exits 1 naming the build). This is the drill of a failed build followed by an
    export, as the scheduler runs it; test_publication names the failing node in the JSON."""
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        generate(conn, seed=7, scale=0.05, app_schema=APP_SCHEMA, forms_schema=APP_SCHEMA)
        for year in years_declared_not_reported(today_in(SYNTHETIC_TIME_ZONE)):
            conn.execute(
                f"insert into {APP_SCHEMA}.settings (id, key, value, setting_type) "
                f"select max(id) + 1, 'healthmonix_{year}_reported', 'false', 'boolean' "
                f"from {APP_SCHEMA}.settings"
            )
    s3, sftp, journal = (tmp_path / name for name in ("s3", "sftp", "journal"))
    for directory in (s3, sftp):
        directory.mkdir()
    env_file = tmp_path / "mips.env"
    env_file.write_text(
        "\n".join(
            [
                f"MIPS_PROJECT_DIR={PROJECT_DIR}",
                f"MIPS_BIN_DIR={Path(sys.executable).parent}",
                "MIPS_TARGET=postgres",
                f'MIPS_DBT_VARS="{{app_schema: {APP_SCHEMA}, forms_schema: {APP_SCHEMA}}}"',
                f"DBT_PROFILES_DIR={profiles_dir}",
                f"MIPS_PG_HOST={cluster.socket_dir}",
                f"MIPS_PG_PORT={cluster.port}",
                f"MIPS_PG_USER={cluster.user}",
                f"MIPS_PG_DATABASE={cluster.dbname}",
                f"MIPS_PG_SCHEMA={TARGET_SCHEMA}",
                f"MIPS_S3_URL={s3.as_uri()}",
                f"MIPS_SFTP_URL={sftp.as_uri()}",
                f"MIPS_JOURNAL_DIR={journal}",
                "",
            ]
        )
    )
    # dbt's target/ and logs of this test's own (the session's serve the dev target)
    env = {
        **os.environ,
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "DBT_LOG_PATH": str(tmp_path / "dbt-logs"),
    }

    good = run_wrapper(env_file, env=env)
    assert summary(good) == {
        "verdict": "ok", "freshness": "0", "build": "0", "export": "0", "status": "0",
    }, good.stdout[-3000:]  # fmt: skip
    assert good.returncode == 0
    assert list(s3.rglob("data.csv")) and list(sftp.glob("Quality_*.csv"))
    assert "ok (delivered)" in good.stdout
    delivered = delivered_files(s3, sftp)
    deliveries = len(list(s3.rglob("data.csv")))

    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(
            f"update {APP_SCHEMA}.settings set value = 'yes' "
            "where key = 'healthmonix_2024_integration_enabled'"
        )
    bad = run_wrapper(env_file, env=env)
    assert bad.returncode == 1, bad.stdout[-3000:]
    assert summary(bad) == {
        "verdict": "FAILED at build", "freshness": "0", "build": "1", "export": "1",
        "status": "1",
    }  # fmt: skip
    assert "refused, nothing uploaded: the latest build of the marts failed" in bad.stdout
    assert "latest run failed" in bad.stdout
    refused = [p for p in (s3 / "run-log").rglob("*.json") if '"refused"' in p.read_text()]
    assert len(refused) == deliveries, "export ran after the failed build, refused every one"
    assert delivered_files(s3, sftp) == delivered, "nothing new in S3 or on the server"


def delivered_files(*stores: Path) -> dict[str, int]:
    """Every file of the stores but the run log, with its modification time (a file uploaded
    again under the same name has a newer one)."""
    return {
        str(path): path.stat().st_mtime_ns
        for store in stores
        for path in store.rglob("*")
        if path.is_file() and "run-log" not in path.relative_to(store).parts
    }


# --- systemd, cron, Airflow -----------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_units_verify(tmp_path):
    """`systemd-analyze verify` on the units, their paths pointed at this checkout (it checks
    that ExecStart= is executable)."""
    for unit in ("mips-daily.service", "mips-daily.timer"):
        text = (DEPLOY / "systemd" / unit).read_text().replace("/opt/mips-loader", str(PROJECT_DIR))
        (tmp_path / unit).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    service = (DEPLOY / "systemd" / "mips-daily.service").read_text()
    assert "ExecStart=/opt/mips-loader/deploy/run-daily.sh\n" in service
    assert "KillMode=mixed" in service and "Type=oneshot" in service
    calendar = subprocess.run(
        ["systemd-analyze", "calendar", "*-*-* 02:00:00 America/Los_Angeles"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert calendar.returncode == 0, calendar.stderr
    timer = (DEPLOY / "systemd" / "mips-daily.timer").read_text()
    assert "OnCalendar=*-*-* 02:00:00 America/Los_Angeles\n" in timer


def test_the_cron_line_runs_the_wrapper_at_two_in_los_angeles():
    lines = [
        line
        for line in (DEPLOY / "cron" / "mips-daily").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert "CRON_TZ=America/Los_Angeles" in lines
    jobs = [line.split(maxsplit=6) for line in lines if "=" not in line.split()[0]]
    assert len(jobs) == 1
    minute, hour, day, month, weekday, user, command = jobs[0]
    assert (minute, hour, day, month, weekday) == ("0", "2", "*", "*", "*")
    assert user == "mips" and "/deploy/run-daily.sh" in command and "flock -n" in command


def test_the_airflow_dag_compiles_and_runs_the_wrappers_steps(tmp_path):
    """Airflow is not installed (nor required): the DAG is compiled and read as a syntax tree."""
    dag_file = DEPLOY / "airflow" / "mips_daily_dag.py"
    py_compile.compile(str(dag_file), cfile=str(tmp_path / "dag.pyc"), doraise=True)
    tree = ast.parse(dag_file.read_text())
    steps = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "STEPS"
    )
    dag_steps = [element.elts[0].value for element in steps.elts]
    wrapper_steps = re.search(r"readonly STEPS=\(([^)]*)\)", WRAPPER.read_text())[1].split()
    assert dag_steps == wrapper_steps
    text = dag_file.read_text()
    assert "TriggerRule.ALL_DONE" in text and '"retries": 0' in text
    assert 'EmptyOperator(task_id="day", trigger_rule=TriggerRule.ALL_SUCCESS)' in text
    requirements = (PROJECT_DIR / "requirements.lock").read_text().lower()
    assert "apache-airflow" not in requirements
    assert "airflow" not in (PROJECT_DIR / "pyproject.toml").read_text().lower()
