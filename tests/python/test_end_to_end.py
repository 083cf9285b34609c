"""End to end on the embedded PostgreSQL: generated data → the daily `dbt build` → export to a
real S3 API (moto's server) and a real SFTP server (asyncssh), then `status`.

Every delivery's S3 object and SFTP file must be byte-identical to each other and to the export
model's slice, under exactly the names SPEC §6 gives.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from loader.cli import cli
from loader.environment.dbt_invocation import DAILY_BUILD
from loopback.s3 import create_bucket, fake_aws_environment, moto_s3_server, s3_client
from loopback.ssh import make_ssh_key, write_known_hosts
from tests.support.handmade import copy_model_deliveries, record_build
from tests.support.model_scenarios import PRODUCTION_SLICES, SCRATCH
from tests.support.transport_servers import asyncssh_sftp_server

APP_SCHEMA = SCRATCH.app_schema
TARGET_SCHEMA = SCRATCH.models_schema
BUCKET = "ops-bucket"
PREFIX = "business-operations/healthmonix"
RUN_DATE = "2026-01-15"


@pytest.fixture(scope="module")
def built(cluster, project_options):
    """SCRATCH afresh (generated data in APP_SCHEMA), its daily build into TARGET_SCHEMA; the
    loader's `dev` target reads it while the module runs."""
    saved = os.environ.get("MIPS_DEV_SCHEMA")
    os.environ["MIPS_DEV_SCHEMA"] = TARGET_SCHEMA
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        SCRATCH.fresh(conn, seed=11, scale=0.1)
    outcome = SCRATCH.run(project_options, *DAILY_BUILD)
    assert outcome.success, outcome.error
    yield
    if saved is None:
        os.environ.pop("MIPS_DEV_SCHEMA", None)
    else:
        os.environ["MIPS_DEV_SCHEMA"] = saved


@pytest.fixture
def servers(tmp_path, monkeypatch):
    """A moto S3 server with a bucket and an asyncssh SFTP server; env set for the loader."""
    host_key = make_ssh_key(tmp_path / "host_key")
    client_key = make_ssh_key(tmp_path / "client_key")
    sftp_root = tmp_path / "sftp-root"
    (sftp_root / "uploads").mkdir(parents=True)
    with (
        moto_s3_server() as endpoint,
        asyncssh_sftp_server(
            sftp_root, authorized_client_key=client_key.public_key, host_key=host_key.private_path
        ) as sftp,
    ):
        for key, value in fake_aws_environment(endpoint, tmp_path).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("MIPS_SFTP_KEY_FILE", str(client_key.private_path))
        known_hosts = write_known_hosts(
            tmp_path / "known_hosts", sftp.host, sftp.port, sftp.host_public_key
        )
        monkeypatch.setenv("MIPS_SFTP_KNOWN_HOSTS", str(known_hosts))
        create_bucket(endpoint, BUCKET)
        yield {
            "s3_url": f"s3://{BUCKET}/{PREFIX}",
            "sftp_url": f"sftp://mips@{sftp.host}:{sftp.port}/uploads",
            "s3": s3_client(endpoint),
            "sftp_dir": sftp_root / "uploads",
        }


def invoke(profiles_dir, *args):
    result = CliRunner().invoke(
        cli, [*args, "--profiles-dir", str(profiles_dir), "--target", "dev"], catch_exceptions=False
    )
    return result


def export_slice(conn, relation: str, header: str, year: int, state: str) -> bytes:
    """The slice straight from the export model, as the spec's file layout."""
    columns = [
        c.name
        for c in conn.execute(
            sql.SQL("select * from {} where false").format(sql.SQL(relation))
        ).description
        if c.name not in ("performance_year", "state_code", "file_row_number")
    ]
    query = sql.SQL(
        "copy (select {} from {} where performance_year = {} and state_code = {} "
        "order by file_row_number) to stdout (format csv)"
    ).format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(relation),
        sql.Literal(year),
        sql.Literal(state),
    )
    with conn.cursor() as cursor, cursor.copy(query) as copy:
        return (header + "\n").encode() + b"".join(bytes(chunk) for chunk in copy)


def test_every_delivery_lands_identical_in_s3_and_sftp(built, servers, profiles_dir, db):
    result = invoke(
        profiles_dir, "export", "--date", RUN_DATE, "--s3-url", servers["s3_url"],
        "--sftp-url", servers["sftp_url"], "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    deliveries = {(d["performance_year"], d["state_code"]): d for d in report["deliveries"]}
    assert sorted(deliveries) == sorted(PRODUCTION_SLICES)

    relation, header = db.execute(
        sql.SQL("select distinct export_relation, file_header from {}").format(
            sql.Identifier(TARGET_SCHEMA, "mips_deliveries")
        )
    ).fetchone()
    assert header.startswith("Practice TIN,Provider NPI,Patient ID,Patient Date Of Birth,")
    on_server = sorted(p.name for p in servers["sftp_dir"].iterdir())
    expected_names = []
    for (year, state), delivery in deliveries.items():
        snapshot = "2022-12-31" if year == 2022 else RUN_DATE
        assert delivery["s3_key"] == f"{year}/{state}/{snapshot}/data.csv"
        s3_body = (
            servers["s3"]
            .get_object(Bucket=BUCKET, Key=f"{PREFIX}/{delivery['s3_key']}")["Body"]
            .read()
        )
        expected = export_slice(db, relation, header, year, state)
        assert s3_body == expected, f"{year}/{state}: S3 bytes differ from the export slice"
        assert delivery["rows"] == len(list(csv.reader(io.StringIO(expected.decode())))) - 1
        name = delivery["sftp_file_name"]
        if year == 2022:
            assert name is None and delivery["sftp_outcome"] == "disabled"
            continue
        suffix = "_20260115" if year == 2023 else ""
        assert re.fullmatch(rf"Quality_\d+_[A-Za-z0-9]{{10}}{suffix}\.csv", name), name
        assert (servers["sftp_dir"] / name).read_bytes() == s3_body
        expected_names.append(name)
    assert on_server == sorted(expected_names), "nothing but the delivered files on the server"
    assert deliveries[(2025, "CA")]["rows"] > 0

    status = invoke(
        profiles_dir, "status", "--date", RUN_DATE, "--s3-url", servers["s3_url"],
        "--sftp-url", servers["sftp_url"],
    )  # fmt: skip
    # every delivery is fine; what needs attention is 2026, a year nobody configured yet
    assert status.exit_code == 1, status.output
    assert status.output.startswith("build: dbt build ")
    table = [line.split() for line in status.output.splitlines() if line[:2] == "20"]
    # a year row's verdict is two words; its empty cells take no tokens
    verdicts = [" ".join(cells[-2:]) if cells[1] == "all" else cells[-1] for cells in table]
    assert verdicts.count("ok") == len(PRODUCTION_SLICES) - 1
    assert verdicts.count("disabled") == 1
    assert table[-1][:2] == ["2026", "all"] and verdicts[-1] == "not configured"
    assert len(verdicts) == len(PRODUCTION_SLICES) + 1


def test_hostile_text_survives_the_whole_path(
    cluster, db, servers, profiles_dir, monkeypatch, model_deliveries
):
    """Commas, quotes, newlines, non-ASCII and a leading '=' go through COPY, S3 and SFTP."""
    hostile = ["a,b", 'say "hi"', "line\nbreak", "crlf\r\nend", "ñandú 東京 🙂", "=1+2", "", None]
    db.execute("drop schema if exists hostile_t cascade")
    db.execute("create schema hostile_t")
    db.execute(
        "create table hostile_t.mips_export_v1 (performance_year int, state_code text, "
        'file_row_number bigint, "Patient ID" text, "Instrument" text)'
    )
    for number, value in enumerate(hostile, start=1):
        db.execute(
            "insert into hostile_t.mips_export_v1 values (2025, 'TX', %s, %s, %s)",
            (number, str(number), value),
        )
    copy_model_deliveries(
        db,
        model_deliveries,
        "hostile_t",
        slices=[(2025, "TX")],
        export_relation='"hostile_t"."mips_export_v1"',
        file_header="Patient ID,Instrument",
        invocation_id="hostile-build",
    )
    record_build(
        db, "hostile_t", invocation_id="hostile-build", marts_built="mips_deliveries,mips_export_v1"
    )
    monkeypatch.setenv("MIPS_DEV_SCHEMA", "hostile_t")
    result = invoke(
        profiles_dir, "export", "--date", RUN_DATE, "--s3-url", servers["s3_url"],
        "--sftp-url", servers["sftp_url"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = (servers["sftp_dir"] / "Quality_21742_MlUGF8grFd.csv").read_bytes()
    s3_body = (
        servers["s3"]
        .get_object(Bucket=BUCKET, Key=f"{PREFIX}/2025/TX/{RUN_DATE}/data.csv")["Body"]
        .read()
    )
    assert body == s3_body
    parsed = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    # An empty string is quoted ("") and a NULL is an empty field: both read back as "".
    assert [row[1] for row in parsed[1:]] == ["" if v is None else v for v in hostile]
    assert b'"=1+2"' not in body and b"\n8,\n" in body
