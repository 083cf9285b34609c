"""`mips-loader`: the command line. A thin Click layer over the library modules."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from loader.warehouse import ProjectOptions, WarehouseConfigError, open_warehouse


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
        project_dir=project_dir.resolve(), profiles_dir=profiles_dir, target=target
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Deliver MIPS quality data to the Healthmonix registry.

    dbt builds the export and the deliveries; this tool unloads each year/state slice,
    puts it in S3, uploads it to the registry's SFTP server, verifies both and reports.
    """


@cli.command(
    "dbt",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@project_options
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
def dbt_command(project_dir, profiles_dir, target, dbt_args) -> None:
    """Run a dbt command with the warehouse up (the embedded cluster for the `dev` target).

    Example: mips-loader dbt build --select staging
    """
    from loader.dbt_invocation import run_dbt

    options = _options(project_dir, profiles_dir, target)
    try:
        with open_warehouse(options):
            outcome = run_dbt(options, list(dbt_args))
    except WarehouseConfigError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(0 if outcome.success else 1)


@cli.command("generate")
@project_options
@click.option("--seed", default=42, show_default=True, help="Random seed: same seed, same data.")
@click.option(
    "--scale", default=1.0, show_default=True, type=float, help="1 is about 10k care plans."
)
@click.option("--app-schema", default="app", show_default=True)
@click.option("--forms-schema", default=None, help="Default: same as --app-schema.")
def generate_command(project_dir, profiles_dir, target, seed, scale, app_schema, forms_schema):
    """Fill the source schemas of a PostgreSQL target with deterministic synthetic data.

    Replaces whatever the source tables held. Example: mips-loader generate --scale 0.1
    """
    from loader.synthetic import generate

    options = _options(project_dir, profiles_dir, target)
    try:
        with open_warehouse(options) as warehouse, warehouse.connect() as conn:
            summary = generate(
                conn,
                seed=seed,
                scale=scale,
                app_schema=app_schema,
                forms_schema=forms_schema or app_schema,
            )
    except WarehouseConfigError as exc:
        raise click.UsageError(str(exc)) from None
    for table, rows in summary.items():
        click.echo(f"{table:<20} {rows:>12,}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
