"""The daily job as an Airflow DAG: the steps of deploy/run-daily.sh as tasks.

Each task runs one step through the wrapper (`run-daily.sh build`), so the command lines, the
environment file and the binaries are the wrapper's, as under cron or systemd. Copy this file
to the DAGs folder of an Airflow 2.4+ deployment whose workers have this repository at
MIPS_PROJECT_DIR (default /opt/mips-loader) and the environment file at MIPS_ENV_FILE.

How exit codes become task outcomes (the commands' own: 0 done, 1 something failed or needs
attention, 2 usage or configuration error):

- every step: 0 succeeds; 1 or 2 fails the task, with no retry (a retry cannot fix a failed
  test, a refused gate or a bad setting; a lost connection is retried inside the loader);
- every step runs whatever happened before it (trigger rule `all_done`): `export` after a
  failed build is refused by its own gate and records the refusal, and `status` always runs;
- `status` failing is the alert (its exit code is what the runbook alerts on: with
  `email_on_failure`, or an `on_failure_callback` of your own);
- `day` fails unless every step succeeded, so the DAG run's state says how the day went (as the
  wrapper's exit code does); a red `freshness` with a green `status` means the data was late
  but what was delivered is consistent.

A task stopped by its timeout gets SIGTERM, which mips-loader handles like Ctrl-C: the run is
recorded as interrupted, its temporary files removed.
"""

from __future__ import annotations

import datetime as dt
import os

import pendulum
from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.empty import EmptyOperator
from airflow.utils.trigger_rule import TriggerRule

PROJECT_DIR = os.environ.get("MIPS_PROJECT_DIR", "/opt/mips-loader")
ENV_FILE = os.environ.get("MIPS_ENV_FILE", "/etc/mips-loader/mips.env")
WRAPPER = f"{PROJECT_DIR}/deploy/run-daily.sh"

# (wrapper step = task id, timeout), in deploy/run-daily.sh's order; sync-forms succeeds
# without doing anything unless MIPS_SYNC_FORMS_SCHEMA is set in the environment file
STEPS = (
    ("sync-forms", dt.timedelta(hours=1)),
    ("freshness", dt.timedelta(minutes=30)),
    ("build", dt.timedelta(hours=3)),
    ("export", dt.timedelta(hours=3)),
    ("status", dt.timedelta(hours=1)),
)

with DAG(
    dag_id="mips_daily",
    description="dbt build, export to S3 and the registry's SFTP server, status",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Los_Angeles"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0, "email_on_failure": True},
    tags=["mips"],
) as dag:
    steps = []
    for step, timeout in STEPS:
        steps.append(
            BashOperator(
                task_id=step.replace("-", "_"),
                # not ending in .sh: Airflow would read a command ending so as a template file
                bash_command=f"{WRAPPER} {step}",
                env={"MIPS_ENV_FILE": ENV_FILE},
                append_env=True,
                cwd=PROJECT_DIR,
                execution_timeout=timeout,
                # each step runs whatever happened before it, as in the wrapper
                trigger_rule=TriggerRule.ALL_DONE if steps else TriggerRule.ALL_SUCCESS,
            )
        )
        if len(steps) > 1:
            steps[-2] >> steps[-1]

    # the day's verdict: upstream_failed (the DAG run failed) unless every step succeeded
    day = EmptyOperator(task_id="day", trigger_rule=TriggerRule.ALL_SUCCESS)
    steps >> day
