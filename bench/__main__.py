"""`python -m bench --scale N [--runs K] [--out docs/benchmarks.md] [--smoke]` (`make bench`).

Generates (or reuses) the synthetic data set of that scale on an embedded PostgreSQL under
--home, times the daily run and its yardsticks, checks they all produce the same files, stores
the scale's results beside --out and regenerates the measured part of --out.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click

from bench import report
from bench.harness import ALL_LEVERS, PROJECT_DIR, Options, run_benchmark

SMOKE_SCALE = 0.05


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--scale", type=float, default=None, help="Data size; 1 is ~10k care plans.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The document; results of every scale are kept in <out dir>/<out stem>/results.json. "
    "Default: docs/benchmarks.md; with --smoke, <home>/smoke/benchmarks.md (a smoke run leaves "
    "the published results alone).",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=PROJECT_DIR / ".mips" / "bench",
    show_default=True,
    help="The benchmark's cluster, stores and logs (the data set is reused across invocations).",
)
@click.option("--no-worker", is_flag=True, help="Skip the worker replica (slow at large scales).")
@click.option("--profile", is_flag=True, help="Also run one loader export under cProfile.")
@click.option(
    "--levers",
    is_flag=True,
    help="Also time each lever undone on its own: unit tests, logged tables, no partial "
    "parse, --jobs 1 and 3, glibc's allocator as it is, the unload in the loader's process.",
)
@click.option(
    "--smoke",
    is_flag=True,
    help=f"One run at scale {SMOKE_SCALE} (unless given); SFTP legs skipped if sshd is missing.",
)
@click.option("--plot/--no-plot", default=True, help="Draw <out stem>/growth.png (matplotlib).")
@click.option("--report-only", is_flag=True, help="Only regenerate --out from the stored results.")
def main(scale, runs, seed, out, home, no_worker, profile, levers, smoke, plot, report_only):
    """Benchmark the daily run against the worker it replaces, the floor and one big query.

    Example: python -m bench --scale 1 --runs 3
    """
    out = document_path(out, home, smoke)
    if report_only:
        report.write(out, report.load(out), plot=plot)
        return
    if scale is None:
        scale = SMOKE_SCALE if smoke else 1.0
    if smoke:
        runs = 1
    options = Options(
        scale=scale,
        runs=runs,
        seed=seed,
        home=home,
        worker=not no_worker,
        sftp="optional" if smoke else "required",
        profile=profile,
        levers=ALL_LEVERS if levers else (),
        command=_command_line(),
        progress=lambda message: click.echo(f"[{time.strftime('%H:%M:%S')}] {message}", err=True),
    )
    result = run_benchmark(options)
    scales = report.store(result, out)
    report.write(out, scales, plot=plot)
    click.echo(f"results: {report.results_path(out)}; document: {out}", err=True)
    agreement = result["agreement"]
    if not agreement["all"]:
        click.echo(f"contenders disagree: {agreement}", err=True)
        sys.exit(1)


def document_path(out: Path | None, home: Path, smoke: bool) -> Path:
    """The document a run writes: `--out`, else the project's docs/benchmarks.md, or for a
    smoke run (a tiny scale, one run: a check, not a measurement) one under its home."""
    if out is not None:
        return out
    return home / "smoke" / "benchmarks.md" if smoke else PROJECT_DIR / "docs" / "benchmarks.md"


def _command_line() -> str:
    arguments = [a for a in sys.argv[1:]]
    return shlex.join(["python", "-m", "bench", *arguments])


if __name__ == "__main__":
    main()
