"""A deliveries row is checked before anything is named after it; names come from its templates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest

from loader.marts.deliveries import DeliveriesError, Delivery
from loader.run.records import DeliveryRecord
from loader.run.stores import StoreConfigError, s3_store_url

ROW = Delivery(
    performance_year=2025,
    state_code="TX",
    export_relation='"mips"."analytics"."mips_export_v1"',
    s3_key_template="2025/TX/{run_date}/data.csv",
    manifest_key_template="2025/TX/{run_date}/manifest.json",
    snapshot_prefix="2025/TX/",
    run_log_key_template="run-log/2025/TX/{run_date}T{run_time}-{run_id}.json",
    run_log_prefix="run-log/2025/TX/",
    sftp_enabled=True,
    sftp_file_name_template="Quality_21742_MlUGF8grFd_{run_date_compact}.csv",
    file_header="Patient ID,Score",
    s3_default_prefix="business-operations/healthmonix",
    dbt_invocation_id="inv-1",
)
RUN_DATE = dt.date(2026, 1, 15)
# One delivery's record, all but its time (recorded when made).
RECORD = dict(
    performance_year=2025, state_code="TX", run_id="abc123", run_date="2026-01-15",
    dbt_invocation_id="inv-1", s3_key="2025/TX/2026-01-15/data.csv", rows=1, bytes=10,
    sha256="0" * 64, sftp_file_name=None, sftp_outcome="disabled", status="ok",
)  # fmt: skip


def test_every_name_comes_from_the_templates():
    assert ROW.s3_key(RUN_DATE) == "2025/TX/2026-01-15/data.csv"
    assert ROW.manifest_key(RUN_DATE) == "2025/TX/2026-01-15/manifest.json"
    assert ROW.manifest_file_name() == "manifest.json"
    assert ROW.sftp_file_name(RUN_DATE) == "Quality_21742_MlUGF8grFd_20260115.csv"
    key = ROW.run_log_key("2026-01-15", "2026-01-15T10:04:05.123Z", "abc123")
    assert key == "run-log/2025/TX/2026-01-15T100405.123Z-abc123.json"
    # a record from before milliseconds keeps its key
    key = ROW.run_log_key("2026-01-15", "2026-01-15T10:04:05Z", "abc123")
    assert key == "run-log/2025/TX/2026-01-15T100405Z-abc123.json"


def test_two_runs_of_one_second_sort_in_the_order_they_ran():
    """The run log is read newest first by key: within one second the time's milliseconds
    decide, not the run ids (random), which decided before (status then took an older run
    for the latest)."""
    first, second = DeliveryRecord(**RECORD), DeliveryRecord(**RECORD)
    while second.recorded_at == first.recorded_at:
        second = DeliveryRecord(**RECORD)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.recorded_at)
    keys = [
        ROW.run_log_key("2026-01-15", "2026-01-15T10:04:05.100Z", "ffffffffffff"),
        ROW.run_log_key("2026-01-15", "2026-01-15T10:04:05.900Z", "000000000000"),
        ROW.run_log_key("2026-01-15", first.recorded_at, "ffffffffffff"),
        ROW.run_log_key("2026-01-15", second.recorded_at, "000000000000"),
    ]
    assert keys[1] > keys[0] and keys[3] > keys[2]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("s3_key_template", "2025/TX/{run_id}/data.csv", "unknown placeholder(s) {run_id}"),
        ("run_log_key_template", "run-log/2025/TX/{run_date_compact}.json",
         "known: {run_date}, {run_time}, {run_id}"),
        ("snapshot_prefix", "2025/{run_date}/", "snapshot_prefix has unknown placeholder"),
        ("manifest_key_template", "2024/TX/{run_date}/manifest.json",
         "manifest_key_template is not below snapshot_prefix"),
        ("run_log_key_template", "logs/2025/TX/{run_date}T{run_time}-{run_id}.json",
         "run_log_key_template is not below run_log_prefix"),
        ("s3_default_prefix", "business operations", "characters a file name must not have"),
        ("sftp_file_name_template", "dir/Quality.csv", "must not contain '/'"),
    ],
)  # fmt: skip
def test_a_template_the_loader_cannot_stand_behind_is_refused(field, value, message):
    with pytest.raises(DeliveriesError, match=re.escape(message)):
        dataclasses.replace(ROW, **{field: value})


def test_a_bare_bucket_gets_the_one_prefix_the_deliveries_state():
    assert s3_store_url("s3://ops", [ROW]) == "s3://ops/business-operations/healthmonix"
    assert s3_store_url("s3://ops/given", [ROW]) == "s3://ops/given"
    disagreeing = dataclasses.replace(ROW, s3_default_prefix="elsewhere")
    with pytest.raises(StoreConfigError, match="names no prefix and the deliveries state"):
        s3_store_url("s3://ops", [ROW, disagreeing])
    with pytest.raises(StoreConfigError, match="state none"):
        s3_store_url("s3://ops", [])
