"""`status` tells the truth: it checks the stored objects, not only the records about them.

Real deliveries to moto's S3 server and an asyncssh SFTP server (the rig of
test_export_faults.py), then the stores are changed behind the loader's back.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

from loader.cli import cli
from tests.support.fault_rig import BUCKET, RUN_DATE, SFTP_NAMES, export
from tests.support.handmade import HANDMADE_SCHEMA

# The retries are real (each attempt reaches the unreachable server); their waits are short.
pytestmark = pytest.mark.usefixtures("quick_retries")

TX_KEY = f"healthmonix/2025/TX/{RUN_DATE}/data.csv"


def run_status(rig, profiles_dir, *extra, s3_url=None, sftp_url=None):  # noqa: F811
    """`mips-loader status` on the rig's stores (or the URLs given), through the CLI."""
    return CliRunner().invoke(
        cli,
        [
            "status",
            "--date",
            RUN_DATE,
            "--s3-url",
            s3_url or f"s3://{BUCKET}/healthmonix",
            "--sftp-url",
            sftp_url or rig["sftp_url"],
            "--profiles-dir",
            str(profiles_dir),
            "--target",
            "dev",
            *extra,
        ],  # fmt: skip
    )


def status(rig, profiles_dir, *extra):  # noqa: F811
    result = run_status(rig, profiles_dir, "--json", *extra)
    document = json.loads(result.stdout)
    rows = {(r["performance_year"], r["state_code"]): r for r in document["deliveries"]}
    return result.exit_code, rows


def delivered(rig, profiles_dir):  # noqa: F811
    result, _ = export(rig, profiles_dir)
    assert result.exit_code == 0, result.output
    code, rows = status(rig, profiles_dir)
    assert code == 0 and rows[(2025, "TX")]["verdict"] == "ok"


def test_a_deleted_snapshot_object_is_missing_in_s3(rig, profiles_dir):  # noqa: F811
    delivered(rig, profiles_dir)
    rig["s3"].delete_object(Bucket=BUCKET, Key=TX_KEY)
    code, rows = status(rig, profiles_dir)
    assert code == 1
    assert rows[(2025, "TX")]["verdict"] == "missing in S3"
    assert rows[(2025, "TX")]["in_s3"] is False
    assert rows[(2023, "CA")]["verdict"] == "ok"


def test_a_replaced_snapshot_object_is_altered_in_s3(rig, profiles_dir):  # noqa: F811
    delivered(rig, profiles_dir)
    original = rig["s3"].get_object(Bucket=BUCKET, Key=TX_KEY)["Body"].read()
    forged = original[:-2] + b"9\n"
    # Same size and even the same sha256 metadata: only reading the bytes back tells.
    rig["s3"].put_object(
        Bucket=BUCKET,
        Key=TX_KEY,
        Body=forged,
        Metadata={"sha256": hashlib.sha256(original).hexdigest()},
    )
    assert status(rig, profiles_dir)[1][(2025, "TX")]["verdict"] == "ok"
    code, rows = status(rig, profiles_dir, "--verify")
    assert code == 1
    assert rows[(2025, "TX")]["verdict"] == "altered in S3"
    assert "read back" in rows[(2025, "TX")]["detail"]


def test_a_same_size_corruption_on_the_server_needs_verify(rig, profiles_dir):  # noqa: F811
    delivered(rig, profiles_dir)
    served = rig["uploads"] / SFTP_NAMES[1]
    data = bytearray(served.read_bytes())
    data[-2] ^= 0x01
    served.write_bytes(bytes(data))
    code, rows = status(rig, profiles_dir)
    assert code == 0, "size alone cannot see it"
    code, rows = status(rig, profiles_dir, "--verify")
    assert code == 1
    assert rows[(2025, "TX")]["verdict"] == "altered on server"
    assert rows[(2023, "CA")]["verdict"] == "ok"


def test_a_truncated_file_on_the_server_is_altered(rig, profiles_dir):  # noqa: F811
    delivered(rig, profiles_dir)
    served = rig["uploads"] / SFTP_NAMES[0]
    served.write_bytes(served.read_bytes()[:10])
    code, rows = status(rig, profiles_dir)
    assert code == 1
    assert rows[(2023, "CA")]["verdict"] == "altered on server"


def test_a_failed_run_today_is_never_ok(rig, profiles_dir, models):  # noqa: F811
    delivered(rig, profiles_dir)
    # Today's run refuses the SFTP upload (the slice fell to zero rows): the file from the
    # last delivery is still on the server, but the latest run failed.
    models.execute(f"delete from {HANDMADE_SCHEMA}.mips_export_v1 where state_code = 'TX'")
    result, report = export(rig, profiles_dir)
    assert result.exit_code == 1
    code, rows = status(rig, profiles_dir)
    assert code == 1
    assert rows[(2025, "TX")]["verdict"] == "latest run failed"
    assert rows[(2025, "TX")]["on_server"] is True
    assert "refused" in rows[(2025, "TX")]["detail"]
    assert rows[(2023, "CA")]["verdict"] == "ok"


def test_each_deliverys_run_log_is_listed_once_and_each_record_read_once(rig, profiles_dir):
    """Every listing and every read is a round trip to S3: per delivery, status lists the run
    log once, and reads a record at most once (the newest is both the latest run and, most
    days, the last delivery to the server)."""
    delivered(rig, profiles_dir)
    proxy = rig["proxy"]
    before = len(proxy.requests)
    code, rows = status(rig, profiles_dir)
    assert code == 0
    asked = [unquote(path) for method, path in proxy.requests[before:] if method == "GET"]
    listings = [path for path in asked if "list-type=2" in path and "run-log/" in path]
    reads = [path for path in asked if "list-type=2" not in path and "/run-log/" in path]
    assert len(listings) == len(rows) == 3
    assert reads and len(reads) == len(set(reads)), reads


def test_status_names_the_build(rig, profiles_dir):  # noqa: F811
    delivered(rig, profiles_dir)
    result = run_status(rig, profiles_dir)
    assert result.output.startswith("build: dbt build handmade-invocation, finished ")


def status_document(rig, profiles_dir, *, s3_url=None, sftp_url=None):  # noqa: F811
    result = run_status(rig, profiles_dir, "--json", s3_url=s3_url, sftp_url=sftp_url)
    assert isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, json.loads(result.stdout)


def test_destination_errors_are_one_json_document(rig, profiles_dir):  # noqa: F811
    delivered(rig, profiles_dir)
    code, document = status_document(rig, profiles_dir, s3_url="s3://no-such-bucket/p")
    assert code in (1, 2) and document["ok"] is False
    assert "no-such-bucket" in document["error"]["message"]

    rig["known_hosts"].write_text("")
    code, document = status_document(rig, profiles_dir)
    assert code in (1, 2) and document["ok"] is False
    assert "host key" in document["error"]["message"]


def test_an_unreachable_sftp_server_is_said_once(rig, profiles_dir):  # noqa: F811
    """Nothing listens on port 9: status says once that the server is unreachable and that
    the delivered files' presence is unknown, instead of blaming each file."""
    delivered(rig, profiles_dir)
    down = "sftp://mips@127.0.0.1:9/uploads"
    code, document = status_document(rig, profiles_dir, sftp_url=down)
    assert code == 1 and document["ok"] is False and document["error"] is None
    assert "127.0.0.1:9" in document["sftp_unreachable"]
    assert "unknown" in document["sftp_unreachable"]
    rows = {(r["performance_year"], r["state_code"]): r for r in document["deliveries"]}
    for key in [(2023, "CA"), (2025, "TX")]:
        assert rows[key]["verdict"] == "server unreachable"
        assert rows[key]["on_server"] is None and rows[key]["in_s3"] is True
        assert rows[key]["detail"] is None
    assert rows[(2022, "CA")]["verdict"] == "disabled"

    text = run_status(rig, profiles_dir, sftp_url=down)
    assert text.exit_code == 1
    details = text.output.split("details:")[1].strip().splitlines()
    assert [line for line in details if "unreachable" in line] == [
        f"- {document['sftp_unreachable']} (on server: ?)"
    ], text.output
    assert not any(name in line for line in details for name in SFTP_NAMES)
    table_rows = [line.split() for line in text.output.splitlines() if line.startswith("202")]
    assert [row[-3] for row in table_rows if row[1] != "CA" or row[0] != "2022"] == ["?", "?"]


def test_an_object_without_checksum_metadata_is_not_ok_without_verify(rig, profiles_dir):
    """Missing proof is not proof: an object the loader did not write (no sha256 metadata)
    is not "ok" on its size alone; reading it back decides."""
    delivered(rig, profiles_dir)
    original = rig["s3"].get_object(Bucket=BUCKET, Key=TX_KEY)["Body"].read()
    # the same bytes, copied without the loader's metadata
    rig["s3"].put_object(Bucket=BUCKET, Key=TX_KEY, Body=original)
    code, rows = status(rig, profiles_dir)
    assert code == 1
    assert rows[(2025, "TX")]["verdict"] == "altered in S3"
    assert "no sha256 metadata" in rows[(2025, "TX")]["detail"]
    assert status(rig, profiles_dir, "--verify")[1][(2025, "TX")]["verdict"] == "ok"
    # same size, other bytes, no metadata
    rig["s3"].put_object(Bucket=BUCKET, Key=TX_KEY, Body=original[:-2] + b"9\n")
    assert status(rig, profiles_dir)[1][(2025, "TX")]["verdict"] == "altered in S3"
    code, rows = status(rig, profiles_dir, "--verify")
    assert code == 1 and rows[(2025, "TX")]["verdict"] == "altered in S3"
