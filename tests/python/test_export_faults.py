"""Faults during a real export: the run goes on, nothing partial lands, the exit code tells.

Uses the hand-made model tables of conftest.py (2022/CA S3 only; 2023/CA and 2025/TX to SFTP)
against moto's S3 server (behind a fault-injecting proxy) and an asyncssh SFTP server.
"""

from __future__ import annotations

import json

import asyncssh
import pytest
from click.testing import CliRunner
from transport_servers import (
    SftpFaults,
    asyncssh_sftp_server,
    create_bucket,
    fake_aws_environment,
    make_ssh_key,
    moto_s3_server,
    s3_client,
    s3_fault_proxy,
    write_known_hosts,
)

from loader.cli import cli

BUCKET = "ops-bucket"
RUN_DATE = "2026-01-15"
SFTP_NAMES = ["Quality_17625_egAuLG7aVx_20260115.csv", "Quality_21742_MlUGF8grFd.csv"]


@pytest.fixture
def rig(tmp_path, monkeypatch, models):
    """S3 (via a fault proxy) and SFTP (with injectable faults), env wired for the loader."""
    host_key = make_ssh_key(tmp_path / "host_key")
    client_key = make_ssh_key(tmp_path / "client_key")
    root = tmp_path / "sftp-root"
    (root / "uploads").mkdir(parents=True)
    faults = SftpFaults()
    with moto_s3_server() as endpoint, s3_fault_proxy(endpoint) as proxy, asyncssh_sftp_server(
        root, authorized_client_key=client_key.public_key, host_key=host_key.private_path,
        faults=faults,
    ) as sftp:  # fmt: skip
        create_bucket(endpoint, BUCKET)
        for key, value in fake_aws_environment(proxy.url, tmp_path).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("MIPS_SFTP_KEY_FILE", str(client_key.private_path))
        known_hosts = write_known_hosts(
            tmp_path / "known_hosts", sftp.host, sftp.port, sftp.host_public_key
        )
        monkeypatch.setenv("MIPS_SFTP_KNOWN_HOSTS", str(known_hosts))
        yield {
            "proxy": proxy,
            "faults": faults,
            "s3": s3_client(endpoint),
            "uploads": root / "uploads",
            "known_hosts": known_hosts,
            "sftp_url": f"sftp://mips@{sftp.host}:{sftp.port}/uploads",
            "tmp": tmp_path,
        }


def export(rig, profiles_dir):
    result = CliRunner().invoke(
        cli,
        [
            "export",
            "--date",
            RUN_DATE,
            "--s3-url",
            f"s3://{BUCKET}/healthmonix",
            "--sftp-url",
            rig["sftp_url"],
            "--json",
            "--profiles-dir",
            str(profiles_dir),
            "--target",
            "dev",
        ],  # fmt: skip
        catch_exceptions=False,
    )
    return result, json.loads(result.stdout) if result.stdout.startswith("{") else None


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
