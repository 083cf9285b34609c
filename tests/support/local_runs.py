"""The CLI run against local directories standing in for S3 and the SFTP server."""

from __future__ import annotations

from click.testing import CliRunner

from loader.cli import cli

RUN_DATE = "2026-01-15"


def invoke(profiles_dir, *args):
    runner = CliRunner()
    return runner.invoke(
        cli, [*args, "--profiles-dir", str(profiles_dir), "--target", "dev"], catch_exceptions=False
    )


def export(profiles_dir, stores, *extra, date=RUN_DATE):
    s3, sftp = stores
    return invoke(
        profiles_dir, "export", "--date", date, "--s3-url", s3.as_uri(),
        "--sftp-url", sftp.as_uri(), *extra,
    )  # fmt: skip


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
