"""`mips-loader demo` then `mips-loader status`: every production delivery written and ok,
and every performance year the registry expects today that the demo's settings lack named."""

from __future__ import annotations

import datetime as dt
import json
import re

from click.testing import CliRunner

from loader.cli import cli
from loader.clock import SYNTHETIC_TIME_ZONE, today_in
from loader.demo import demo_options
from tests.support.model_scenarios import PRODUCTION_SLICES, PROJECT_DIR


def test_demo_delivers_everything_and_status_names_unconfigured_years(
    profiles_dir, cluster, tmp_path, monkeypatch
):
    # The demo builds into the dev target's default schema of the session's own cluster.
    monkeypatch.delenv("MIPS_DEV_SCHEMA", raising=False)
    out = tmp_path / "demo-output"
    demo = CliRunner().invoke(
        cli,
        ["demo", "--scale", "0.05", "--out", str(out), "--project-dir", str(PROJECT_DIR)],
        catch_exceptions=False,
    )
    assert demo.exit_code == 0, demo.output
    # dbt's summary, not a line per node (those are in the log)
    counts = re.search(r"PASS=(\d+) WARN=(\d+) ERROR=0 SKIP=0 NO-OP=(\d+) TOTAL=(\d+)", demo.stdout)
    assert counts, demo.stdout
    passed, warned, no_op, total = map(int, counts.groups())
    assert passed + warned + no_op == total
    # each warning says what it means (the test's description), not only its name
    warnings = [line.strip() for line in demo.stdout.splitlines() if "warning: " in line]
    assert len(warnings) == warned
    mapped = [w for w in warnings if w.startswith("warning: assert_body_part_types_are_mapped")]
    # the demo's data has care plans of an unmapped body part (its generator's own)
    assert mapped and all("left out of the export" in w and "row" in w for w in mapped), warnings
    assert "START sql" not in demo.stdout and "OK created" not in demo.stdout
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
    document = json.loads(status.stdout)
    verdicts = [d["verdict"] for d in document["deliveries"]]
    assert verdicts.count("ok") == len(PRODUCTION_SLICES) - 1
    assert verdicts.count("disabled") == 1
    # The demo's settings end at 2025, as production's do: status tells the truth about
    # every later year the registry expects today, and that alone makes it exit 1.
    unconfigured = unconfigured_years_expected(today_in(SYNTHETIC_TIME_ZONE))
    assert [y["performance_year"] for y in document["expected_years"]] == unconfigured
    assert {y["readiness"] for y in document["expected_years"]} <= {"not configured"}
    assert status.exit_code == (1 if unconfigured else 0), status.output


def unconfigured_years_expected(today: dt.date) -> list[int]:
    """Years after 2025 whose registry window holds `today`: the current one, and from
    January to March the previous one."""
    years = [today.year - 1, today.year] if today.month <= 3 else [today.year]
    return [year for year in years if year > 2025]
