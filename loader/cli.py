"""`mips-loader`: the command line. A thin Click layer over the library modules."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import sys
from decimal import Decimal
from pathlib import Path

import click

from loader import signals
from loader.engines.athena_client import AthenaClient
from loader.environment.synthetic import generate
from loader.environment.warehouse import ProjectOptions, open_warehouse, render_target
from loader.errors import (
    EXIT_CODES,
    INTERRUPTED,
    INTERRUPTION,
    TERMINAL,
    USAGE,
    MipsError,
)
from loader.review.builds import DiffError
from loader.run.build_gate import parse_duration
from loader.run.export import (
    DEFAULT_MAX_SHRINK,
    ExportRequest,
    plan_export,
    run_export,
)
from loader.run.report import (
    diff_json,
    error_json,
    export_json,
    export_summary,
    generate_summary,
    status_json,
    status_text,
    sync_forms_json,
    sync_forms_text,
)
from loader.run.status import collect_status
from loader.run.sync_forms import sync_forms
from loader.run.unloads_ahead import DEFAULT_JOBS, MAX_JOBS


def project_options(function):
    """The options every command shares with dbt."""
    function = click.option(
        "--target", "-t", default=None, help="dbt target (default: the profile's default)."
    )(function)
    function = click.option(
        "--profiles-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Directory with profiles.yml (default: $DBT_PROFILES_DIR, the project, ~/.dbt).",
    )(function)
    function = click.option(
        "--project-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("."),
        show_default=True,
        help="The dbt project directory.",
    )(function)
    return function


def _options(project_dir: Path, profiles_dir: Path | None, target: str | None) -> ProjectOptions:
    return ProjectOptions(
        project_dir=project_dir.resolve(),
        profiles_dir=profiles_dir.resolve() if profiles_dir else None,
        target=target,
    )


# The command being run (`export`, `dev start`), which an error's JSON document names.
_COMMAND = contextvars.ContextVar("command", default="mips-loader")


class _Cli(click.Group):
    """Every expected failure ends as one line (or, with --json, one JSON document on stdout)
    and the exit code of its kind (loader/errors.py: 2 usage or configuration, 1 anything
    else). No traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        as_json = _wants_json(argv)
        _COMMAND.set(_command_name(self, argv))
        INTERRUPTED.clear()
        # SIGTERM and SIGHUP (a scheduler's timeout, a closed terminal) unwind like Ctrl-C:
        # temporary files are removed, the run is recorded as interrupted, the summary is
        # printed and the exit code is 1 (loader/signals.py)
        with signals.unwinding():
            try:
                result = super().main(argv, prog_name, complete_var, False, **extra)
                code = result if isinstance(result, int) else 0
            except click.exceptions.NoArgsIsHelpError as error:
                code = error.exit_code  # `mips-loader` alone: its help
                error.show()
            except click.ClickException as error:
                # a usage error is one line like any other error (not Usage/Try/Error)
                kind = USAGE if isinstance(error, click.UsageError) else TERMINAL
                code = _fail(error.format_message(), error.exit_code, kind, as_json)
            except click.Abort:
                code = _fail(
                    "interrupted by a signal", EXIT_CODES[INTERRUPTION], INTERRUPTION, as_json
                )
            except MipsError as error:
                code = _fail(str(error), error.exit_code, error.kind, as_json)
        if standalone_mode:
            sys.exit(code)
        return code


def interrupted_while_starting(argv: list[str]) -> int:
    """A signal came before the command started (loader/__main__.py): one line, or one JSON
    document with --json, and exit 1."""
    _COMMAND.set(_command_name(cli, argv))
    return _fail(
        "interrupted by a signal while starting",
        EXIT_CODES[INTERRUPTION],
        INTERRUPTION,
        _wants_json(argv),
    )


def _wants_json(argv: list[str]) -> bool:
    """`--json`, or `diff --format json`: errors are then one JSON document too."""
    pairs = zip(argv, argv[1:], strict=False)
    return "--json" in argv or "--format=json" in argv or ("--format", "json") in pairs


def _command_name(group: click.Group, argv: list[str]) -> str:
    """`export`, `dev start`: the command words of `argv` (`mips-loader` when none)."""
    words = []
    for arg in argv:
        command = group.commands.get(arg) if isinstance(group, click.Group) else None
        if command is None:
            break
        words.append(arg)
        group = command
    return " ".join(words) or "mips-loader"


def _fail(message: str, code: int, kind: str, as_json: bool) -> int:
    if as_json:
        click.echo(error_json(message, code, kind, _COMMAND.get()))
    else:
        click.echo(f"Error: {message}", err=True)
    return code


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(None, "--version", package_name="healthmonix-mips", prog_name="mips-loader")
def cli() -> None:
    """Deliver MIPS quality data to the Healthmonix registry.

    dbt builds the export and the deliveries; this tool unloads each year/state slice,
    puts it in S3, uploads it to the registry's SFTP server, verifies both and reports.
    """


_DBT_HELP = ("-h", "--help")


@cli.command(
    "dbt",
    # --help after a dbt command is dbt's; this command's own is `mips-loader dbt --help`
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@project_options
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def dbt_command(ctx, project_dir, profiles_dir, target, dbt_args) -> None:
    """Run a dbt command with the warehouse up (the embedded cluster for the `dev` target).

    Everything after the dbt command is dbt's, --help too: `mips-loader dbt build --help`
    is dbt's help of `build`; `mips-loader dbt --help` (or -h, or nothing) is this text.
    While the dev database runs (`make dev`), plain `dbt` works as well.

    Example: mips-loader dbt build --select staging
    """
    if not dbt_args or dbt_args[0] in _DBT_HELP:
        click.echo(ctx.get_help())
        return
    from loader.environment.dbt_invocation import run_dbt  # dbt itself: only this command

    options = _options(project_dir, profiles_dir, target)
    if any(arg in _DBT_HELP for arg in dbt_args):
        outcome = run_dbt(options, list(dbt_args))  # dbt's help: no server needed
    else:
        with open_warehouse(options):
            outcome = run_dbt(options, list(dbt_args))
    sys.exit(0 if outcome.success else 1)


@cli.group("dev")
def dev_group() -> None:
    """This clone's dev database: the embedded PostgreSQL kept running, so that plain `dbt`
    works on the `dev` target in any shell (`make dev`, `make dev-stop`).

    The server belongs to this clone (data in .mips/, or $MIPS_HOME): other clones have their
    own. mips-loader commands run meanwhile use it and never stop it.

    Example: mips-loader dev start --scale 0.2
    """


_project_dir_option = click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The dbt project directory.",
)
# No --target: the dev database serves the `dev` target, which plain dbt uses by default.
_profiles_dir_option = click.option(
    "--profiles-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory with profiles.yml (default: $DBT_PROFILES_DIR, the project, ~/.dbt).",
)


@dev_group.command("start")
@_project_dir_option
@_profiles_dir_option
@click.option(
    "--scale",
    default=1.0,
    show_default=True,
    type=float,
    help="Synthetic data size, when the source schema is empty; 1 is about 10k care plans.",
)
@click.option("--seed", default=42, show_default=True, help="Synthetic data seed.")
def dev_start_command(project_dir, profiles_dir, scale, seed) -> None:
    """Start the dev database (unless it runs), fill the source schema `app` with the demo's
    synthetic data when it is empty, run the daily build (`dbt build --selector daily`) and
    print how to connect. The database keeps running when the build fails. Exit 0, or 1
    when the build failed.

    Example: mips-loader dev start --scale 0.2
    """
    from loader import dev  # dbt itself: only this command

    options = _options(project_dir, profiles_dir, None)
    sys.exit(0 if dev.start(options, scale=scale, seed=seed, echo=click.echo) else 1)


@dev_group.command("stop")
@_project_dir_option
def dev_stop_command(project_dir) -> None:
    """Stop this clone's dev database, after the mips-loader commands that use it. Its data
    stays. Nothing else is stopped: not another clone's, not a server a command runs for its
    own duration.

    Example: mips-loader dev stop
    """
    from loader import dev

    dev.stop(_options(project_dir, None, None), click.echo)


@dev_group.command("status")
@_project_dir_option
@_profiles_dir_option
def dev_status_command(project_dir, profiles_dir) -> None:
    """Say whether this clone's dev database runs, and how to connect to it. Exit 0 when it
    runs, 1 when it does not.

    Example: mips-loader dev status
    """
    from loader import dev

    sys.exit(0 if dev.status(_options(project_dir, profiles_dir, None), click.echo) else 1)


@dev_group.command("serve")
@_project_dir_option
def dev_serve_command(project_dir) -> None:
    """Run the dev database in the foreground until Ctrl-C or SIGTERM (what `dev start` runs
    in the background). Its log is on stdout.

    Example: mips-loader dev serve
    """
    from loader import dev

    dev.serve(_options(project_dir, None, None), click.echo)


@cli.command("generate")
@click.option("--seed", default=42, show_default=True, help="Random seed: same seed, same data.")
@click.option(
    "--scale", default=1.0, show_default=True, type=float, help="1 is about 10k care plans."
)
@click.option(
    "--app-schema",
    default="app",
    show_default=True,
    help="The schema that receives the application's tables (dbt var app_schema); created "
    "if missing.",
)
@click.option(
    "--forms-schema",
    default=None,
    help="The schema that receives patient_forms_mips (dbt var forms_schema). Default: same "
    "as --app-schema.",
)
@click.option(
    "--settings",
    type=click.Choice(["production", "none"]),
    default="production",
    show_default=True,
    help="The healthmonix_* settings rows: as in production, or none (like alpha).",
)
@project_options
def generate_command(
    project_dir, profiles_dir, target, seed, scale, app_schema, forms_schema, settings
):
    """Fill the source schemas of a PostgreSQL target with deterministic synthetic data.

    Replaces whatever the source tables held. Example: mips-loader generate --scale 0.1
    """
    options = _options(project_dir, profiles_dir, target)
    with open_warehouse(options) as warehouse, warehouse.session() as conn:
        summary = generate(
            conn,
            seed=seed,
            scale=scale,
            app_schema=app_schema,
            forms_schema=forms_schema or app_schema,
            settings=settings,
        )
    click.echo(generate_summary(summary))


def _selection_options(function):
    function = click.option(
        "--state",
        "states",
        multiple=True,
        help="Only this state (postal code); repeatable. Default: every configured state.",
    )(function)
    function = click.option(
        "--year",
        "years",
        multiple=True,
        type=int,
        help="Only this performance year; repeatable. Default: every configured year.",
    )(function)
    return function


def _date_option(help_text: str, name: str = "run_date"):
    return click.option(
        "--date", name, type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help=help_text
    )


def _json_option(what: str):
    return click.option("--json", "as_json", is_flag=True, help=f"Print the {what} as JSON.")


_s3_url_option = click.option(
    "--s3-url",
    envvar="MIPS_S3_URL",
    default=None,
    help="s3://bucket/prefix (bucket only: prefix business-operations/healthmonix) "
    "or file:///abs/dir. Env: MIPS_S3_URL.",
)
_sftp_url_option = click.option(
    "--sftp-url",
    envvar="MIPS_SFTP_URL",
    default=None,
    help="sftp://user@host[:port]/dir or file:///abs/dir. Env: MIPS_SFTP_URL.",
)


_max_build_age_option = click.option(
    "--max-build-age",
    default="24h",
    envvar="MIPS_MAX_BUILD_AGE",
    show_default=True,
    help="Refuse to deliver from a dbt build that finished longer ago than this "
    "(by the clock, not --date): 90m, 24h, 2d. Env: MIPS_MAX_BUILD_AGE.",
)


def _export_request(years, states, run_date, s3_url, sftp_url, **extra) -> ExportRequest:
    if "max_build_age" in extra:
        extra["max_build_age"] = parse_duration(extra["max_build_age"])
    return ExportRequest(
        run_date=run_date.date() if run_date else None,
        s3_url=s3_url,
        sftp_url=sftp_url,
        years=tuple(years),
        states=tuple(s.upper() for s in states),
        **extra,
    )


def _progress(message: str) -> None:
    # A terminal gets progress; a scheduler's log gets only the summary (no patient data either).
    if sys.stderr.isatty():
        click.echo(message, err=True)


@contextlib.contextmanager
def _export_progress(as_json: bool):
    """The live display for a person at a terminal (stdout and stderr both terminals, no
    --json); otherwise the plain lines, on stderr when it is a terminal."""
    if as_json or not (sys.stdout.isatty() and sys.stderr.isatty()):
        yield _progress
        return
    from loader.run.live_display import LiveExportDisplay  # rich: only for a terminal

    with LiveExportDisplay() as display:
        yield display.update


@cli.command("export")
@_selection_options
@_date_option("Run date (default: today in the models' run_time_zone, dbt var mips_time_zone).")
@_s3_url_option
@_sftp_url_option
@click.option("--dry-run", is_flag=True, help="Unload and count every slice; write nothing.")
@click.option(
    "--allow-shrink",
    is_flag=True,
    help="Upload to SFTP even if a slice shrank past --max-shrink since its last delivery.",
)
@click.option(
    "--max-shrink",
    type=click.FloatRange(0, 1),
    default=float(DEFAULT_MAX_SHRINK),
    envvar="MIPS_MAX_SHRINK",
    show_default=True,
    help="Largest row-count drop (fraction) accepted for an SFTP upload.",
)
@_max_build_age_option
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, MAX_JOBS),
    default=DEFAULT_JOBS,
    envvar="MIPS_EXPORT_JOBS",
    show_default=True,
    help="Slices in flight: the one being uploaded plus up to JOBS-1 unloaded ahead of it "
    "(1: one slice at a time). Env: MIPS_EXPORT_JOBS.",
)
@_json_option("summary")
@project_options
def export_command(
    project_dir,
    profiles_dir,
    target,
    years,
    states,
    run_date,
    s3_url,
    sftp_url,
    dry_run,
    allow_shrink,
    max_shrink,
    max_build_age,
    jobs,
    as_json,
):
    """Deliver every configured year/state slice: S3 snapshot, then SFTP where enabled.

    Reads the published marts (those of the last dbt build whose every node passed), one
    build for the whole run, and delivers only if that build is the newest build of the
    marts and younger than --max-build-age (the publish gate); otherwise uploads nothing and
    exits 1. A record S3 will not take is kept in a local journal ($MIPS_JOURNAL_DIR) and
    written by the next export. On PostgreSQL each slice is unloaded by a psql child in the
    run's snapshot ($MIPS_PSQL names another psql; `off` unloads in the loader's process).

    Exit status: 0 all deliveries succeeded, 1 any failed or the gate refused, 2 usage or
    configuration error (nothing written).

    Example: mips-loader export --year 2025 --s3-url s3://ops-bucket/business-operations/healthmonix
    """
    request = _export_request(
        years,
        states,
        run_date,
        s3_url,
        sftp_url,
        dry_run=dry_run,
        allow_shrink=allow_shrink,
        max_shrink=Decimal(str(max_shrink)),
        max_build_age=max_build_age,
        jobs=jobs,
    )

    def export(warehouse):
        with _export_progress(as_json) as progress:
            return run_export(warehouse, request, progress=progress)

    report = _run(export, _options(project_dir, profiles_dir, target))
    code = 0 if report.succeeded else 1
    click.echo(export_json(report, "export", code) if as_json else export_summary(report))
    sys.exit(code)


@cli.command("plan")
@_selection_options
@_date_option("Run date (default: today in the models' run_time_zone).")
@_max_build_age_option
@_json_option("plan")
@project_options
def plan_command(
    project_dir, profiles_dir, target, years, states, run_date, max_build_age, as_json
):
    """Show what `export` would deliver (keys, file names, row counts, the published build they
    come from, and why the gate would refuse: a build that failed, naming its failing nodes
    first, or never finished) and the performance years expected on the date that are not
    configured or declared not reported; writes nothing. Any --date is accepted, so a new
    year can be checked before it starts.

    Exit status: 0 export would deliver, 1 the publish gate would refuse, 2 usage error.

    Example: mips-loader plan --date 2027-01-04 --year 2027
    """
    request = _export_request(years, states, run_date, None, None, max_build_age=max_build_age)
    report = _run(
        lambda warehouse: plan_export(warehouse, request),
        _options(project_dir, profiles_dir, target),
    )
    code = 1 if report.refused else 0
    click.echo(export_json(report, "plan", code) if as_json else export_summary(report))
    sys.exit(code)


@cli.command("demo")
@click.option(
    "--scale",
    default=1.0,
    show_default=True,
    type=float,
    help="Synthetic data size; 1 is about 10k care plans.",
)
@click.option("--seed", default=42, show_default=True, help="Synthetic data seed.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Where the S3 and SFTP stand-ins are written.",
)
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The dbt project directory.",
)
def demo_command(scale, seed, out, project_dir):
    """Run the whole job on a fresh machine: embedded PostgreSQL, synthetic data, dbt build,
    export to local stand-ins for S3 and SFTP under --out.

    Example: mips-loader demo --scale 0.2 --out /tmp/mips-demo
    """
    from loader.demo import run_demo  # dbt itself: only this command

    report = run_demo(
        project_dir.resolve(),
        out.resolve(),
        scale=scale,
        seed=seed,
        echo=click.echo,
        export_progress=lambda: _export_progress(as_json=False),
    )
    sys.exit(0 if report.succeeded else 1)


@cli.command("status")
@_selection_options
@_s3_url_option
@_sftp_url_option
@click.option(
    "--max-age-days",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="A delivery older than this many days before today is stale.",
)
@_date_option("Judge as of this date (default: today in the models' run_time_zone).", "today")
@click.option(
    "--verify",
    is_flag=True,
    help="Read both stored files back and compare their SHA-256 with the delivery's.",
)
@_json_option("status")
@project_options
def status_command(
    project_dir,
    profiles_dir,
    target,
    years,
    states,
    s3_url,
    sftp_url,
    max_age_days,
    today,
    verify,
    as_json,
):
    """For every configured year and state: the last S3 snapshot (the object present with the
    manifest's size and checksum), the last SFTP delivery, whether that file is on the server
    now (its size; with --verify its bytes read back and hashed), and a verdict: ok, stale,
    missing on server, altered on server, missing in S3, altered in S3, latest run failed,
    never delivered, disabled, server unreachable (said once; whether the files are there is
    unknown). Also one row per performance year expected on the date (the current one;
    January to March also the previous one) that has no settings: not configured, or not
    reported when declared so. Reads only.

    Exit status: 0 every delivery is ok or disabled and every expected year configured or not
    reported, 1 anything else, 2 usage or configuration error.

    Example: mips-loader status --year 2025 --verify --json
    """
    if not s3_url:
        raise click.UsageError("no S3 store: pass --s3-url or set MIPS_S3_URL")

    def action(warehouse):
        return collect_status(
            warehouse,
            s3_url,
            sftp_url,
            today=today.date() if today else None,
            max_age_days=max_age_days,
            years=tuple(years),
            states=tuple(s.upper() for s in states),
            verify=verify,
        )

    report = _run(action, _options(project_dir, profiles_dir, target))
    code = 0 if report.ok else 1
    click.echo(status_json(report, code) if as_json else status_text(report))
    sys.exit(code)


@cli.command("sync-forms")
@click.option(
    "--athena-target",
    default="athena",
    show_default=True,
    help="The dbt target (same profile) whose Athena holds the forms.",
)
@click.option(
    "--source-relation",
    default='"mips_forms"."patient_forms_mips"',
    show_default=True,
    envvar="MIPS_ATHENA_FORMS_RELATION",
    help="The forms table in Athena. Env: MIPS_ATHENA_FORMS_RELATION.",
)
@click.option(
    "--forms-schema",
    default="app",
    show_default=True,
    help="The PostgreSQL schema that receives patient_forms_mips (dbt var forms_schema).",
)
@click.option(
    "--overlap-days",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Re-read forms completed this many days before the newest one already copied.",
)
@_json_option("report")
@project_options
def sync_forms_command(
    project_dir,
    profiles_dir,
    target,
    athena_target,
    source_relation,
    forms_schema,
    overlap_days,
    as_json,
):
    """Copy patient_forms_mips from Athena into the PostgreSQL target (incremental by
    completed_at, idempotent; a failed sync leaves the previous forms intact).

    Example: mips-loader sync-forms --target postgres --forms-schema app
    """
    athena_options = _options(project_dir, profiles_dir, athena_target)
    athena = render_target(athena_options)
    if athena.adapter_type != "athena":
        raise click.UsageError(f"--athena-target '{athena_target}' is not an Athena target")

    def action(warehouse):
        with warehouse.session(autocommit=True) as conn:
            return sync_forms(
                AthenaClient(athena.settings),
                conn,
                forms_schema=forms_schema,
                source_relation=source_relation,
                overlap=dt.timedelta(days=overlap_days),
            )

    report = _run(action, _options(project_dir, profiles_dir, target))
    click.echo(sync_forms_json(report) if as_json else sync_forms_text(report))


@cli.command("diff")
@click.option(
    "--base",
    "base_ref",
    default=None,
    help="The git ref to compare with (default: the merge base of HEAD with main; on main, "
    "HEAD: the uncommitted change).",
)
@_selection_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["markdown", "table", "json"]),
    default="markdown",
    show_default=True,
    help="Markdown (a pull-request comment), an aligned plain table, or one JSON document.",
)
@click.option(
    "--show-rows",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Show at most N differing rows per delivery, base and head side by side. "
    "PATIENT DATA: without it the output has none.",
)
@click.option(
    "--base-schema",
    default=None,
    help="Schema the base is built into (default: <target schema>_diff_base).",
)
@click.option(
    "--head-schema",
    default=None,
    help="Schema the working tree is built into (default: <target schema>_diff_head).",
)
@click.option(
    "--rebuild-base",
    is_flag=True,
    help="Build the base again even when the last diff built the same commit into the base "
    "schema from the same source data (by default that build is reused).",
)
@click.option(
    "--vars",
    "dbt_vars",
    default=None,
    envvar="MIPS_DIFF_VARS",
    help="dbt vars for both builds, as YAML (like dbt's --vars); app_schema and forms_schema "
    "name the source data (default app). Env: MIPS_DIFF_VARS.",
)
@project_options
def diff_command(
    project_dir,
    profiles_dir,
    target,
    base_ref,
    years,
    states,
    output_format,
    show_rows,
    base_schema,
    head_schema,
    rebuild_base,
    dbt_vars,
):
    """Show what the working tree's models change in the delivered files, against a base git
    revision: first every export column added, removed or retyped and every change of a
    delivery's S3 key, SFTP file name, SFTP flag or header line; then per year and state the
    rows only in base, only in head, changed and unchanged (keyed by visit and measure kind),
    the measure-code transitions (measure group, the seed lines that changed, the SFTP files
    they change) and the changed columns. Both are built into their own schemas over the same
    source data (on `dev`, the embedded cluster, with the demo's data when it has none; the
    base schema an earlier diff built of the same commit from the same data is reused); then
    the working tree runs the data tests of what the change touches (dbt's state:modified+
    against the base's manifest) and the base the same tests; a test the working tree fails
    leads the report. See docs/reviewing-changes.md.

    Exit status: 0 no difference, 1 differences, 2 error: the working tree fails a data test
    or dbt would not run its tests (the whole report, that first; a test the base fails too
    included, one only the base fails is context), or no diff could be made (usage,
    configuration, failed build, bad ref).

    Example: mips-loader diff --base main --year 2025 --format table
    """
    from loader.review.diff import DiffRequest, run_diff  # dbt itself: only this command
    from loader.review.diff_report import render

    request = DiffRequest(
        base_ref=base_ref,
        years=tuple(years),
        states=tuple(s.upper() for s in states),
        show_rows=show_rows,
        base_schema=base_schema,
        head_schema=head_schema,
        dbt_vars=_yaml_vars(dbt_vars),
        rebuild_base=rebuild_base,
    )
    options = _options(project_dir, profiles_dir, target)
    try:
        result = _run(
            lambda warehouse: run_diff(warehouse, options, request, progress=_progress), options
        )
    except KeyboardInterrupt:
        raise DiffError("interrupted by a signal").with_kind(INTERRUPTION) from None
    except DiffError:
        raise  # run_diff's own, already one line
    except MipsError as error:
        # opening the warehouse failed. Every failure is 2: a diff that could not be made must
        # not read as "changes" (1); the kind stays the cause's
        raise DiffError(str(error)).keeping_kind_of(error) from None
    code = result.exit_code
    rendered = render(result, output_format)
    click.echo(diff_json(rendered, code) if output_format == "json" else rendered)
    sys.exit(code)


def _yaml_vars(text: str | None) -> dict:
    import yaml

    try:
        value = yaml.safe_load(text) if text else {}
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise click.UsageError("--vars must be a YAML mapping, like '{app_schema: app}'")
    return value


def _run(action, options: ProjectOptions):
    """Open the warehouse and run the action; `_Cli.main` turns expected failures into one
    clear message and the contract's exit code."""
    with open_warehouse(options) as warehouse:
        return action(warehouse)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
