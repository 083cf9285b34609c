"""`mips-loader demo` then `mips-loader status`: every production delivery written and ok."""

from __future__ import annotations

import json

from click.testing import CliRunner
from conftest import PROJECT_DIR
from test_end_to_end import PRODUCTION_SLICES

from loader.cli import cli
from loader.demo import demo_options


def test_demo_delivers_everything_and_status_says_ok(profiles_dir, cluster, tmp_path, monkeypatch):
    # The demo builds into the dev target's default schema of the session's own cluster.
    monkeypatch.delenv("MIPS_DEV_SCHEMA", raising=False)
    out = tmp_path / "demo-output"
    demo = CliRunner().invoke(
        cli,
        ["demo", "--scale", "0.05", "--out", str(out), "--project-dir", str(PROJECT_DIR)],
        catch_exceptions=False,
    )
    assert demo.exit_code == 0, demo.output
    assert "run " in demo.stdout and f"{len(PRODUCTION_SLICES)} deliveries" in demo.stdout
    summary_lines = [line.split() for line in demo.stdout.splitlines() if line[:3] == "202"]
    assert sorted((int(f[0]), f[1]) for f in summary_lines) == sorted(PRODUCTION_SLICES)
    assert all(f[-1] in ("ok", "(delivered)") for f in summary_lines)
    sftp_files = sorted(p.name for p in (out / "sftp").iterdir())
    assert len(sftp_files) == len(PRODUCTION_SLICES) - 1  # 2022 is S3 only

    status = CliRunner().invoke(
        cli,
        [
            "status",
            "--s3-url",
            (out / "s3").as_uri(),
            "--sftp-url",
            (out / "sftp").as_uri(),
            "--json",
            "--profiles-dir",
            str(demo_options(PROJECT_DIR).profiles_dir),
            "--project-dir",
            str(PROJECT_DIR),
        ],  # fmt: skip
        catch_exceptions=False,
    )
    assert status.exit_code == 0, status.output
    verdicts = [d["verdict"] for d in json.loads(status.stdout)["deliveries"]]
    assert verdicts.count("ok") == len(PRODUCTION_SLICES) - 1
    assert verdicts.count("disabled") == 1
