"""The loader's export, plan and status on hand-made model tables, through the command line.

The tables imitate dbt's `mips_deliveries` and `mips_export_v1` so these tests pin the loader's
own behaviour (transport, records, exit codes) independently of the models; the end-to-end
tests in test_end_to_end.py run the real models.
"""

from __future__ import annotations

import json
import os

import psycopg
import pytest

from loader.engines.locks import EXPORT_LOCK_KEY
from loader.engines.postgres import read_deliveries
from loader.run.stores import s3_store_url
from tests.support.handmade import HANDMADE_MARTS, record_build
from tests.support.handmade import HANDMADE_SCHEMA as SCHEMA
from tests.support.local_runs import RUN_DATE, export, files_under, invoke


def test_export_writes_every_delivery_with_spec_names(models, profiles_dir, stores):
    s3, sftp = stores
    result = export(profiles_dir, stores)
    assert result.exit_code == 0, result.output
    assert files_under(sftp) == [
        "Quality_17625_egAuLG7aVx_20260115.csv",
        "Quality_21742_MlUGF8grFd.csv",
    ]
    data = [f for f in files_under(s3) if not f.startswith("run-log/")]
    assert data == [
        "2022/CA/2022-12-31/data.csv",
        "2022/CA/2022-12-31/manifest.json",
        "2023/CA/2026-01-15/data.csv",
        "2023/CA/2026-01-15/manifest.json",
        "2025/TX/2026-01-15/data.csv",
        "2025/TX/2026-01-15/manifest.json",
    ]
    assert (s3 / "2025/TX/2026-01-15/data.csv").read_bytes() == (
        sftp / "Quality_21742_MlUGF8grFd.csv"
    ).read_bytes()
    assert (s3 / "2022/CA/2022-12-31/data.csv").read_bytes() == (
        b"Patient ID,Treatment,Score\n1,MSK01,3\n2,MSK01,3\n3,MSK01,3\n"
    )
    manifest = json.loads((s3 / "2023/CA/2026-01-15/manifest.json").read_text())
    assert manifest["rows"] == 5
    assert manifest["sftp_file_name"] == "Quality_17625_egAuLG7aVx_20260115.csv"
    assert manifest["sftp_outcome"] == "delivered"
    assert manifest["status"] == "ok"
    assert manifest["dbt_invocation_id"] == "handmade-invocation"
    assert len([f for f in files_under(s3) if f.startswith("run-log/")]) == 3
    summary = {
        line.split()[0] + line.split()[1]: line.split()
        for line in result.output.splitlines()
        if line[:2] == "20"
    }
    assert summary["2025TX"][2:7] == [
        "10",
        summary["2025TX"][3],
        "2025/TX/2026-01-15/data.csv",
        "Quality_21742_MlUGF8grFd.csv",
        "ok",
    ]
    assert summary["2022CA"][4:7] == ["2022/CA/2022-12-31/data.csv", "-", "ok"]


def test_export_json_shape(models, profiles_dir, stores):
    result = export(profiles_dir, stores, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True and report["command"] == "export" and report["error"] is None
    assert report["run_date"] == RUN_DATE
    by_slice = {(d["performance_year"], d["state_code"]): d for d in report["deliveries"]}
    assert set(by_slice) == {(2022, "CA"), (2023, "CA"), (2025, "TX")}
    assert by_slice[(2022, "CA")]["sftp_outcome"] == "disabled"
    assert by_slice[(2022, "CA")]["sftp_file_name"] is None
    assert by_slice[(2025, "TX")]["rows"] == 10
    assert set(by_slice[(2025, "TX")]) >= {"rows", "bytes", "sha256", "s3_key", "status", "error"}


def test_selection_by_year_and_state(models, profiles_dir, stores):
    result = export(profiles_dir, stores, "--year", "2025", "--state", "tx", "--json")
    assert result.exit_code == 0, result.output
    assert [
        (d["performance_year"], d["state_code"]) for d in json.loads(result.output)["deliveries"]
    ] == [(2025, "TX")]


def test_plan_and_dry_run_write_nothing(models, profiles_dir, stores):
    s3, sftp = stores
    plan = invoke(profiles_dir, "plan", "--date", RUN_DATE)
    assert plan.exit_code == 0, plan.output
    assert "Quality_17625_egAuLG7aVx_20260115.csv" in plan.output
    assert "2022/CA/2022-12-31/data.csv" in plan.output
    dry = export(profiles_dir, stores, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert {d["status"] for d in json.loads(dry.output)["deliveries"]} == {"dry run"}
    assert files_under(s3) == [] and files_under(sftp) == []


def test_missing_destinations_are_usage_errors(models, profiles_dir, stores):
    s3, _ = stores
    no_s3 = invoke(profiles_dir, "export", "--date", RUN_DATE)
    assert no_s3.exit_code == 2
    assert "--s3-url" in no_s3.output
    no_sftp = invoke(profiles_dir, "export", "--date", RUN_DATE, "--s3-url", s3.as_uri())
    assert no_sftp.exit_code == 2
    assert "2023/CA" in no_sftp.output and "--sftp-url" in no_sftp.output
    bad = invoke(profiles_dir, "export", "--s3-url", "ftp://nope", "--sftp-url", "file:///tmp")
    assert bad.exit_code == 2
    assert files_under(s3) == []


def test_one_failed_delivery_does_not_stop_the_others(models, profiles_dir, stores):
    # 2023/CA's slice is a relation that fails when it is read.
    models.execute(
        f"create view {SCHEMA}.broken as select * from {SCHEMA}.mips_export_v1 "
        "where (select 1 / 0) = 1"
    )
    models.execute(
        f'update {SCHEMA}.mips_deliveries set export_relation = \'"{SCHEMA}"."broken"\' '
        "where performance_year = 2023"
    )
    record_build(models, SCHEMA, marts_built=f"{HANDMADE_MARTS},broken")
    result = export(profiles_dir, stores, "--json")
    assert result.exit_code == 1
    by_year = {d["performance_year"]: d for d in json.loads(result.output)["deliveries"]}
    assert by_year[2023]["status"] == "failed"
    assert "2023/CA" in by_year[2023]["error"]
    assert by_year[2022]["status"] == by_year[2025]["status"] == "ok"


def test_shrink_guard_refuses_sftp_but_writes_the_snapshot(models, profiles_dir, stores):
    s3, sftp = stores
    assert export(profiles_dir, stores).exit_code == 0
    models.execute(
        f"delete from {SCHEMA}.mips_export_v1 where performance_year = 2025 and file_row_number > 7"
    )
    shrunk = export(profiles_dir, stores, "--json", date="2026-01-16")
    assert shrunk.exit_code == 1
    tx = next(d for d in json.loads(shrunk.output)["deliveries"] if d["state_code"] == "TX")
    assert tx["sftp_outcome"] == "refused: shrink"
    assert "from 10" in tx["error"] and "to 7" in tx["error"]
    assert (s3 / "2025/TX/2026-01-16/data.csv").exists()
    assert (sftp / "Quality_21742_MlUGF8grFd.csv").read_bytes().count(b"\n") == 11
    allowed = export(profiles_dir, stores, "--allow-shrink", date="2026-01-16")
    assert allowed.exit_code == 0, allowed.output
    assert (sftp / "Quality_21742_MlUGF8grFd.csv").read_bytes().count(b"\n") == 8


def test_a_concurrent_export_is_refused(models, profiles_dir, stores, cluster):
    s3, _ = stores
    with psycopg.connect(cluster.conninfo(), autocommit=True) as other:
        other.execute("select pg_advisory_lock(%s)", (EXPORT_LOCK_KEY,))
        result = export(profiles_dir, stores)
    assert result.exit_code == 1
    assert "another mips-loader export is running" in result.output
    assert files_under(s3) == []


def test_no_secret_or_row_in_output(models, profiles_dir, stores, monkeypatch):
    monkeypatch.setenv("MIPS_SFTP_PASSWORD", "hunter2-secret")
    result = export(profiles_dir, stores)
    assert "hunter2-secret" not in result.output
    assert "MSK06" not in result.output  # export rows never reach the output
    assert os.environ["MIPS_DEV_SCHEMA"] == SCHEMA


@pytest.mark.parametrize(
    "option, url, secret",
    [
        ("--sftp-url", "sftp://u:hun/ter2@127.0.0.1:22/x", "hun/ter2"),
        ("--sftp-url", "sftp://u:a?b#c@127.0.0.1/x", "a?b#c"),
        ("--sftp-url", "sftp://u:p@ss@127.0.0.1/x", "p@ss"),
        ("--s3-url", "s3://AKIAEXAMPLE:se/cret@ops-bucket/p", "se/cret"),
        ("--s3-url", "s3://AKIAEXAMPLE:secret@ops-bucket/p", "secret"),
        ("--s3-url", "file://user:pw#1@/tmp/store", "pw#1"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_a_url_with_a_password_is_refused_without_echoing_it(
    models, profiles_dir, stores, option, url, secret, as_json
):
    s3, sftp = stores
    urls = {"--s3-url": s3.as_uri(), "--sftp-url": sftp.as_uri(), option: url}
    args = ["export", "--date", RUN_DATE, *[x for pair in urls.items() for x in pair]]
    result = invoke(profiles_dir, *args, *(["--json"] if as_json else []))
    assert result.exit_code == 2, result.output
    assert secret not in result.output
    if as_json:
        assert json.loads(result.stdout)["error"]["kind"] == "configuration"
    assert files_under(s3) == [] and files_under(sftp) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://ops-bucket", "s3://ops-bucket/business-operations/healthmonix"),
        ("s3://ops-bucket/", "s3://ops-bucket/business-operations/healthmonix"),
        ("s3://ops-bucket/other/prefix", "s3://ops-bucket/other/prefix"),
        ("file:///tmp/store", "file:///tmp/store"),
    ],
)
def test_an_s3_url_without_prefix_gets_the_models_default_prefix(models, url, expected):
    deliveries = read_deliveries(models, SCHEMA)
    assert s3_store_url(url, deliveries) == expected
