"""`status` verdicts built by real exports to moto's S3 server and an asyncssh SFTP server,
then deleting a remote file, disabling a year and aging the snapshot."""

from __future__ import annotations

import json

from click.testing import CliRunner

from loader.cli import cli
from tests.support.fault_rig import BUCKET, RUN_DATE, SFTP_NAMES, against_rig, export
from tests.support.handmade import HANDMADE_SCHEMA


def status(rig, profiles_dir, *, date=RUN_DATE):  # noqa: F811
    result = against_rig(rig, profiles_dir, "status", date=date)
    rows = json.loads(result.stdout)["deliveries"]
    return result.exit_code, {(r["performance_year"], r["state_code"]): r for r in rows}


def test_verdicts_after_real_deliveries(rig, profiles_dir, models):  # noqa: F811
    code, before = status(rig, profiles_dir)
    assert code == 1
    assert {k: r["verdict"] for k, r in before.items()} == {
        (2022, "CA"): "disabled",
        (2023, "CA"): "never delivered",
        (2025, "TX"): "never delivered",
    }

    result, _ = export(rig, profiles_dir)
    assert result.exit_code == 0, result.output
    code, fresh = status(rig, profiles_dir)
    assert code == 0
    assert fresh[(2025, "TX")]["verdict"] == "ok"
    assert fresh[(2025, "TX")]["on_server"] is True
    assert fresh[(2025, "TX")]["last_snapshot_rows"] == 10
    assert fresh[(2022, "CA")]["last_snapshot_key"] == "2022/CA/2022-12-31/data.csv"
    # the snapshot's date is its folder's (2022 has a fixed snapshot date); the run is today's
    assert fresh[(2022, "CA")]["last_snapshot_date"] == "2022-12-31"
    assert fresh[(2022, "CA")]["last_snapshot_run_date"] == RUN_DATE
    assert fresh[(2025, "TX")]["last_snapshot_date"] == RUN_DATE
    assert fresh[(2022, "CA")]["verdict"] == "disabled"

    code, aged = status(rig, profiles_dir, date="2026-01-17")
    assert code == 1
    assert {aged[k]["verdict"] for k in [(2023, "CA"), (2025, "TX")]} == {"stale"}
    code, next_day = status(rig, profiles_dir, date="2026-01-16")
    assert code == 0, "yesterday's delivery is still fresh before today's run"

    (rig["uploads"] / SFTP_NAMES[1]).unlink()
    code, missing = status(rig, profiles_dir)
    assert code == 1
    assert missing[(2025, "TX")]["verdict"] == "missing on server"
    assert missing[(2025, "TX")]["on_server"] is False
    assert missing[(2023, "CA")]["verdict"] == "ok"

    models.execute(
        f"update {HANDMADE_SCHEMA}.mips_deliveries set sftp_enabled = false "
        "where performance_year = 2025"
    )
    code, disabled = status(rig, profiles_dir)
    assert code == 0
    assert disabled[(2025, "TX")]["verdict"] == "disabled"

    # every delivery disabled: nothing can be missing, and the table says so row by row
    models.execute(f"update {HANDMADE_SCHEMA}.mips_deliveries set sftp_enabled = false")
    table = CliRunner().invoke(
        cli,
        ["status", "--date", RUN_DATE, "--s3-url", f"s3://{BUCKET}/healthmonix",
         "--profiles-dir", str(profiles_dir), "--target", "dev"],
        catch_exceptions=False,
    )  # fmt: skip
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].startswith("build: dbt build handmade-invocation")
    assert lines[2].split()[:4] == ["year", "state", "last", "snapshot"]
    assert [line.split()[-1] for line in lines[4:]] == ["disabled"] * 3
    assert [line.split()[2] for line in lines[4:]] == ["2022-12-31", RUN_DATE, RUN_DATE]
