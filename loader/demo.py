"""`mips-loader demo`: the whole daily job on a fresh machine, with nothing to configure.

The embedded PostgreSQL (under `<project>/.mips`) gets synthetic data with production-like
settings, dbt builds the project, and every delivery goes to local directories standing in for
S3 and the registry's SFTP server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

from loader.engines import open_engine
from loader.environment.cluster import default_data_dir, running_cluster
from loader.environment.dbt_invocation import DAILY_BUILD, dbt_log_file, run_dbt
from loader.environment.synthetic import generate
from loader.environment.warehouse import EMBEDDED_TARGET, ProjectOptions, render_target
from loader.marts.expected_years import years_needing_a_look
from loader.run.export import ExportRequest, run_export
from loader.run.report import export_summary


def demo_options(project_dir: Path) -> ProjectOptions:
    """The shipped example profile, copied beside the cluster, so a fresh clone needs no setup."""
    profiles_dir = default_data_dir(project_dir).parent / "profiles"
    profiles_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(project_dir / "profiles.example.yml", profiles_dir / "profiles.yml")
    return ProjectOptions(
        project_dir=project_dir, profiles_dir=profiles_dir, target=EMBEDDED_TARGET
    )


def run_demo(
    project_dir: Path,
    out: Path,
    *,
    scale: float,
    seed: int,
    echo: Callable[[str], None],
    as_of: dt.date | None = None,
    export_progress: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
):
    """`as_of`: the synthetic data's "today" (None: today in Los Angeles), see generate().
    `export_progress()` gives the export's progress callback (the CLI's live display on a
    terminal); by default there is none."""
    options = demo_options(project_dir)
    s3_dir, sftp_dir = out / "s3", out / "sftp"
    s3_dir.mkdir(parents=True, exist_ok=True)
    sftp_dir.mkdir(parents=True, exist_ok=True)
    with running_cluster(default_data_dir(project_dir)):
        warehouse = render_target(options)
        echo(f"1/3 generating synthetic engine data (scale {scale}, seed {seed})")
        with warehouse.session(autocommit=True) as conn:
            counts = generate(
                conn, seed=seed, scale=scale, app_schema="app", forms_schema="app", as_of=as_of
            )
        echo("    " + ", ".join(f"{table} {rows:,}" for table, rows in counts.items()))
        echo("2/3 dbt build --selector daily")
        # dbt's node lines go to its log only; errors still reach the terminal
        outcome = run_dbt(options, list(DAILY_BUILD), quiet=True)
        echo(f"    {outcome.summary()}  (every node: {dbt_log_file(project_dir)})")
        for line in outcome.warning_lines():
            echo(f"    {line}")
        if not outcome.success:
            raise SystemExit(f"dbt build failed: {outcome.error or 'see the output above'}")
        echo("3/3 exporting every delivery")
        request = ExportRequest(
            run_date=None,
            s3_url=s3_dir.as_uri(),
            sftp_url=sftp_dir.as_uri(),
        )
        with export_progress() as progress:
            report = run_export(warehouse, request, progress=progress or (lambda step: None))
        # What `status` will say about the calendar: on a fresh demo, the current year is not
        # configured (the demo's settings are production's, which end at 2025).
        with open_engine(warehouse) as engine, engine.published() as read:
            report.expected_years = years_needing_a_look(read.expected_years(), report.run_date)
    echo("")
    echo(export_summary(report))
    echo("")
    echo(f"S3 stand-in:   {s3_dir}  (data.csv and manifest.json per year/state/date)")
    echo(f"SFTP stand-in: {sftp_dir}  (the files the registry would receive)")
    echo(
        f"Check them:    .venv/bin/mips-loader status --s3-url {s3_dir.as_uri()} "
        f"--sftp-url {sftp_dir.as_uri()} --profiles-dir {options.profiles_dir}"
    )
    return report
