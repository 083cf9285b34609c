"""Faults during a real export: the run goes on, nothing partial lands, the exit code tells.

Uses the hand-made model tables of conftest.py (2022/CA S3 only; 2023/CA and 2025/TX to SFTP)
against moto's S3 server (behind a fault-injecting proxy) and an asyncssh SFTP server.
"""

from __future__ import annotations

import json

import asyncssh
import pytest

from loopback.ssh import free_port, make_ssh_key
from tests.support.fault_rig import BUCKET, SFTP_NAMES, against_rig, export

# The retries are real (each attempt reaches the misbehaving server); their waits are short.
pytestmark = pytest.mark.usefixtures("quick_retries")


def s3_keys(rig) -> list[str]:
    listing = rig["s3"].list_objects_v2(Bucket=BUCKET, Prefix="healthmonix/")
    return sorted(o["Key"] for o in listing.get("Contents", []))


def data_keys(rig) -> list[str]:
    return [k for k in s3_keys(rig) if k.endswith("/data.csv")]


def on_server(rig) -> list[str]:
    return sorted(p.name for p in rig["uploads"].iterdir())


def test_connection_dropped_mid_upload_is_retried_without_partial_files(rig, profiles_dir):
    rig["faults"].drop_after_bytes = 40
    result, report = export(rig, profiles_dir)
    assert result.exit_code == 0, result.output
    assert rig["faults"].drops == 1
    assert on_server(rig) == SFTP_NAMES, "no .part file left, every file at its final name"
    body = rig["s3"].get_object(Bucket=BUCKET, Key="healthmonix/2025/TX/2026-01-15/data.csv")
    assert (rig["uploads"] / SFTP_NAMES[1]).read_bytes() == body["Body"].read()


def refused_before_writing(rig, profiles_dir, *words):
    """An SFTP problem found by the preflight: exit 2, one error, nothing in S3 or on SFTP."""
    result, _ = export(rig, profiles_dir)
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["error"]["kind"] == "configuration"
    message = document["error"]["message"].lower()
    assert "nothing was written" in message
    assert all(word in message for word in words), message
    assert on_server(rig) == []
    assert s3_keys(rig) == [], "not even the S3 snapshots: nothing is half-delivered"


def failed_command(result) -> tuple[int, str, str]:
    """(exit code, error kind, message) of a command that could not do its work."""
    document = json.loads(result.stdout)
    assert document["ok"] is False, result.output
    return result.exit_code, document["error"]["kind"], document["error"]["message"]


@pytest.mark.parametrize("command", ["export", "status"])
def test_s3_that_cannot_be_reached_is_unreachable_in_every_command(rig, profiles_dir, command):
    rig["proxy"].go_away()
    code, kind, message = failed_command(against_rig(rig, profiles_dir, command))
    assert (code, kind) == (1, "unreachable"), message
    assert "S3 unreachable" in message
    if command == "export":
        assert message.startswith("nothing was written: ")
        assert on_server(rig) == []


@pytest.mark.parametrize("command", ["export", "status"])
def test_a_missing_bucket_is_a_configuration_error_in_every_command(rig, profiles_dir, command):
    result = against_rig(rig, profiles_dir, command, s3_url="s3://no-such-bucket/healthmonix")
    code, kind, message = failed_command(result)
    assert (code, kind) == (2, "configuration"), message
    assert "no-such-bucket" in message
    assert on_server(rig) == []


def test_an_sftp_server_that_cannot_be_reached_at_the_start_is_unreachable(rig, profiles_dir):
    closed = f"sftp://mips@127.0.0.1:{free_port()}/uploads"
    code, kind, message = failed_command(against_rig(rig, profiles_dir, "export", sftp_url=closed))
    assert (code, kind) == (1, "unreachable"), message
    assert message.startswith("nothing was written: ") and "SFTP server unreachable" in message
    assert s3_keys(rig) == [], "nothing is half-delivered"


def test_changed_host_key_is_refused_and_nothing_is_uploaded(rig, profiles_dir):
    impostor = make_ssh_key(rig["tmp"] / "impostor")
    host_port = rig["known_hosts"].read_text().split()[0]
    rig["known_hosts"].write_text(f"{host_port} {impostor.public_key}\n")
    refused_before_writing(rig, profiles_dir, "host key", "changed")


def test_unknown_host_is_refused(rig, profiles_dir):
    rig["known_hosts"].write_text("")
    refused_before_writing(rig, profiles_dir, "host key")


def test_an_unwritable_directory_is_found_before_anything_is_written(rig, profiles_dir):
    rig["faults"].deny_writes = True
    refused_before_writing(rig, profiles_dir)


def test_permission_denied_mid_run_is_terminal_and_the_others_continue(rig, profiles_dir):
    # The preflight's probe passes; then the server denies the first real upload's first write.
    rig["faults"].fault_offset = 0
    rig["faults"].refusal = asyncssh.SFTPPermissionDenied
    rig["faults"].refuse_writes = 1
    result, report = export(rig, profiles_dir)
    assert result.exit_code == 1
    statuses = {d["performance_year"]: d["status"] for d in report["deliveries"]}
    assert statuses == {2022: "ok", 2023: "failed", 2025: "ok"}
    assert on_server(rig) == [SFTP_NAMES[1]]
    assert len(data_keys(rig)) == 3
    runs = [k for k in s3_keys(rig) if "/run-log/" in k]
    assert len(runs) == 3, "every delivery, failed or not, is in the run log"


def test_s3_returning_500_then_succeeding(rig, profiles_dir):
    rig["proxy"].fail("PUT", status=500, code="InternalError", times=2)
    result, report = export(rig, profiles_dir)
    assert result.exit_code == 0, result.output
    assert len(data_keys(rig)) == 3
    assert on_server(rig) == SFTP_NAMES


def test_an_s3_snapshot_refused_leaves_nothing_at_the_registry(rig, profiles_dir):
    """S3 refusing 2023/CA's file: nothing reaches the registry for it (its SFTP leg, which
    runs beside the S3 one, is withheld before the rename and its .part removed), the other
    deliveries go on."""
    rig["proxy"].fail("PUT", status=403, code="AccessDenied", query_contains="/2023/CA/")
    result, report = export(rig, profiles_dir)
    assert result.exit_code == 1, result.output
    by_year = {d["performance_year"]: d for d in report["deliveries"]}
    assert {year: d["status"] for year, d in by_year.items()} == {
        2022: "ok",
        2023: "failed",
        2025: "ok",
    }
    assert by_year[2023]["sftp_outcome"] == "not attempted"
    assert "AccessDenied" in by_year[2023]["error"]
    assert on_server(rig) == [SFTP_NAMES[1]]
    # only ever written under a temporary name, and that is gone (on_server lists it too)
    written = [p for p in rig["faults"].opened_for_write if SFTP_NAMES[0] in p]
    assert all(".part" in p.rsplit("/", 1)[-1] for p in written), written
    assert len(data_keys(rig)) == 2


def test_the_registrys_file_takes_its_name_only_once_the_s3_snapshot_is_stored(rig, profiles_dir):
    """The S3 and SFTP legs of a slice overlap, the rename waits for S3: 2023/CA's S3 PUT is
    slow and refused once (503, retried), so the SFTP leg has its bytes stored and read back
    long before; when the file takes its final name the snapshot is already in S3."""
    snapshot = "healthmonix/2023/CA/2026-01-15/data.csv"
    rig["proxy"].delay("PUT", 1.0, query_contains=f"/{snapshot}")
    rig["proxy"].fail("PUT", status=503, code="SlowDown", query_contains=f"/{snapshot}")
    in_s3_at_rename = {}

    def renamed(path: str) -> None:
        if SFTP_NAMES[0] in path:
            in_s3_at_rename[path] = snapshot in data_keys(rig)

    rig["faults"].after_rename = renamed
    result, report = export(rig, profiles_dir)
    assert result.exit_code == 0, result.output
    assert rig["proxy"].count("PUT", f"/{snapshot}") == 2
    assert list(in_s3_at_rename.values()) == [True]
    assert on_server(rig) == sorted(SFTP_NAMES)


def test_s3_lost_after_an_sftp_upload_keeps_the_record_and_stops_the_run(
    rig, profiles_dir, monkeypatch, tmp_path
):
    """2023/CA's file reaches the registry, then S3 disappears before its manifest is written:
    the record goes to the local journal, the run starts nothing more and says why once;
    with S3 back, `status` shows the file delivered and the next export stores the record."""
    journal = tmp_path / "journal"
    monkeypatch.setenv("MIPS_JOURNAL_DIR", str(journal))
    rig["faults"].after_rename = lambda name: rig["proxy"].go_away()
    result, report = export(rig, profiles_dir)
    assert result.exit_code == 1, result.output
    statuses = {d["performance_year"]: d["status"] for d in report["deliveries"]}
    assert statuses == {2022: "ok", 2023: "failed", 2025: "not attempted"}
    assert report["not_attempted"] == 1 and "unreachable" in report["stopped"]
    ca = next(d for d in report["deliveries"] if d["performance_year"] == 2023)
    assert ca["sftp_outcome"] == "delivered" and "local journal" in ca["error"]
    assert on_server(rig) == [SFTP_NAMES[0]]
    assert len(list(journal.rglob("*.json"))) == 1
    # S3 is back (the proxy stays gone: the loader now talks to the store directly)
    monkeypatch.setenv("MIPS_S3_ENDPOINT_URL", rig["s3_endpoint"])
    shown = json.loads(against_rig(rig, profiles_dir, "status").stdout)
    rows = {(r["performance_year"], r["state_code"]): r for r in shown["deliveries"]}
    assert rows[(2023, "CA")]["last_sftp_file_name"] == SFTP_NAMES[0]
    assert rows[(2023, "CA")]["verdict"] == "ok"
    assert shown["journal_pending"] == 1
    again, document = export(rig, profiles_dir)
    assert again.exit_code == 0, again.output
    assert document["journal_replayed"] == 1 and list(journal.rglob("*.json")) == []
    logged = [
        json.loads(rig["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read())
        for key in s3_keys(rig)
        if "/run-log/2023/CA/" in key
    ]
    assert any(r["run_id"] == report["run_id"] and r["sftp_outcome"] == "delivered" for r in logged)
