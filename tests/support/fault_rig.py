"""S3 behind a fault proxy and an SFTP server with injectable faults, wired for the loader.

conftest's `rig` fixture opens one over the hand-made models; the export-fault, status and
interruption tests drive the CLI against it with `export`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from click.testing import CliRunner

from loader.cli import cli
from loopback.s3 import create_bucket, fake_aws_environment, moto_s3_server, s3_client
from loopback.ssh import make_ssh_key, write_known_hosts
from tests.support.transport_servers import SftpFaults, asyncssh_sftp_server, s3_fault_proxy

BUCKET = "ops-bucket"
RUN_DATE = "2026-01-15"
SFTP_NAMES = ["Quality_17625_egAuLG7aVx_20260115.csv", "Quality_21742_MlUGF8grFd.csv"]


@contextlib.contextmanager
def fault_rig(tmp_path, monkeypatch) -> Iterator[dict]:
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
            "s3_endpoint": endpoint,
            "faults": faults,
            "s3": s3_client(endpoint),
            "uploads": root / "uploads",
            "known_hosts": known_hosts,
            "sftp_url": f"sftp://mips@{sftp.host}:{sftp.port}/uploads",
            "tmp": tmp_path,
        }


def against_rig(
    rig,
    profiles_dir,
    command: str,
    *,
    date: str = RUN_DATE,
    json_output=True,
    s3_url: str = f"s3://{BUCKET}/healthmonix",
    sftp_url: str | None = None,
):
    """`mips-loader <command>` on the rig's S3 bucket and SFTP server (the `dev` target), or
    on the stores the URLs name."""
    return CliRunner().invoke(
        cli,
        [
            command,
            "--date",
            date,
            "--s3-url",
            s3_url,
            "--sftp-url",
            sftp_url or rig["sftp_url"],
            *(["--json"] if json_output else []),
            "--profiles-dir",
            str(profiles_dir),
            "--target",
            "dev",
        ],  # fmt: skip
        catch_exceptions=False,
    )


def export(rig, profiles_dir):
    """An export on the rig: the result and its JSON document (None if it printed none)."""
    result = against_rig(rig, profiles_dir, "export")
    return result, json.loads(result.stdout) if result.stdout.startswith("{") else None
