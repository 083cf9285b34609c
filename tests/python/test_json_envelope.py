"""Every command's --json document, on success and on failure, is the one envelope
(`loader.run.report`: ok, exit_code, command, error, then the command's own fields, lists as
arrays) and satisfies the JSON Schema made from that one definition.

The commands run through the CLI on the hand-made models and local stand-ins for S3 and SFTP;
sync-forms against moto's Athena. `diff` builds both sides for real (minutes: test_diff.py
does that); here its failure runs through the CLI and its success documents come from the
report of two real compared schemas, enveloped as the CLI envelopes them.
"""

from __future__ import annotations

import json

import boto3
import jsonschema
import psycopg
import pytest

from loader.review.diff import DiffRequest, compare_builds
from loader.review.diff_report import render
from loader.review.revisions import Revision
from loader.run.report import COMMAND_FIELDS, ENVELOPE_FIELDS, diff_json, json_schema
from loader.run.sync_forms import FORMS_COLUMNS
from tests.support.athena_moto import CREDENTIALS, REGION, RESULTS_BUCKET
from tests.support.handmade import HANDMADE_SCHEMA as SCHEMA
from tests.support.handmade import record_build
from tests.support.local_runs import RUN_DATE, export, invoke
from tests.support.model_scenarios import PROJECT_DIR
from tests.support.transport_servers import moto_api, queue_athena_results

ENVELOPE = [f.name for f in ENVELOPE_FIELDS]


def valid(result, command: str) -> dict:
    """The one JSON document of stdout, checked against the command's schema and the exit
    status the process gave."""
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator(json_schema(command)).validate(document)
    assert document["exit_code"] == result.exit_code, result.stdout
    assert document["command"] == command
    return document


def failed(result, command: str, code: int, kind: str | None) -> dict:
    document = valid(result, command)
    assert document["exit_code"] == code, result.stdout
    assert kind is None or document["error"]["kind"] == kind, result.stdout
    assert set(document) == set(ENVELOPE), "an error document has only the envelope"
    return document


def test_the_schemas_are_schemas_and_say_something():
    for command in [*COMMAND_FIELDS, "mips-loader"]:
        jsonschema.Draft202012Validator.check_schema(json_schema(command))
    schema = json_schema("status")
    good = {
        "ok": False, "exit_code": 1, "command": "status", "error": None, "verified": False,
        "build": None, "journal_pending": 0, "sftp_unreachable": None, "deliveries": [],
        "expected_years": [{"performance_year": 2026, "missing": ["setting x", "codes"]}],
    }  # fmt: skip
    jsonschema.validate(good, schema)
    wrong = [
        {**good, "ok": True},  # ok is exit_code == 0
        {**good, "exit_code": 0},
        {key: value for key, value in good.items() if key != "deliveries"},
        {**good, "expected_years": [{"missing": "setting x; codes"}]},  # a list as a string
        {**good, "error": {"kind": "usage", "message": "m"}},  # an error without own fields
        {**good, "command": "export"},
        {"succeeded": False, **{k: v for k, v in good.items() if k != "ok"}},
    ]
    for document in wrong:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(document, schema)


def test_export(models, profiles_dir, stores):
    ok = valid(export(profiles_dir, stores, "--json"), "export")
    assert ok["ok"] is True and ok["error"] is None and len(ok["deliveries"]) == 3
    assert isinstance(ok["build"]["marts_built"], list)

    record_build(models, SCHEMA, invocation_id="failed-one", success=False, age="1 minute",
                 failed_nodes="test.healthmonix_mips.unique_x")  # fmt: skip
    refused = valid(export(profiles_dir, stores, "--json"), "export")
    assert refused["exit_code"] == 1 and refused["error"] is None
    assert "failed-one" in refused["refused"]
    assert refused["build"]["failed_nodes"] == ["test.healthmonix_mips.unique_x"]

    s3, _ = stores
    no_sftp = invoke(profiles_dir, "export", "--date", RUN_DATE, "--s3-url", s3.as_uri(), "--json")
    failed(no_sftp, "export", 2, "configuration")
    failed(export(profiles_dir, stores, "--jobs", "0", "--json"), "export", 2, "usage")


def test_plan(models, profiles_dir):
    ok = valid(invoke(profiles_dir, "plan", "--date", RUN_DATE, "--json"), "plan")
    assert ok["ok"] is True and {d["bytes"] for d in ok["deliveries"]} == {None}

    record_build(models, SCHEMA, invocation_id="failed-one", success=False, age="1 minute")
    refused = valid(invoke(profiles_dir, "plan", "--date", RUN_DATE, "--json"), "plan")
    assert refused["exit_code"] == 1 and refused["refused"]
    failed(invoke(profiles_dir, "plan", "--date", "2026-02-30", "--json"), "plan", 2, "usage")


def test_status(models, profiles_dir, stores):
    s3, sftp = stores
    urls = ("--s3-url", s3.as_uri(), "--sftp-url", sftp.as_uri())
    # 2026 expected and not configured: its missing parts are an array
    models.execute(
        f"update {SCHEMA}.mips_expected_years set readiness = 'not configured', "
        "missing = 'setting healthmonix_2026_states; a mips_program_years row' "
        "where performance_year = 2026"
    )
    before = valid(invoke(profiles_dir, "status", "--date", RUN_DATE, *urls, "--json"), "status")
    assert before["exit_code"] == 1 and before["error"] is None
    assert {d["verdict"] for d in before["deliveries"]} == {"never delivered", "disabled"}
    assert before["expected_years"][0]["missing"] == [
        "setting healthmonix_2026_states",
        "a mips_program_years row",
    ]

    models.execute(f"update {SCHEMA}.mips_expected_years set readiness = 'configured'")
    assert export(profiles_dir, stores).exit_code == 0
    after = valid(invoke(profiles_dir, "status", "--date", RUN_DATE, *urls, "--json"), "status")
    assert after["ok"] is True and after["expected_years"] == []

    failed(invoke(profiles_dir, "status", "--json"), "status", 2, "usage")  # no S3 store
    failed(invoke(profiles_dir, "status", "--s3-url", "ftp://x", "--json"), "status", 2,
           "configuration")  # fmt: skip


@pytest.fixture
def athena(moto_endpoint, monkeypatch):
    """The profile's `athena` target on moto's Athena: the next query returns `FORMS`."""
    moto_api(moto_endpoint, "/moto-api/reset")
    for key, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "MIPS_ATHENA_REGION": REGION,
        "MIPS_ATHENA_S3_STAGING_DIR": f"s3://{RESULTS_BUCKET}/staging/",
    }.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=moto_endpoint, **CREDENTIALS).create_bucket(
        Bucket=RESULTS_BUCKET
    )
    return moto_endpoint


def test_sync_forms(athena, db, profiles_dir):
    db.execute("drop schema if exists envelope_forms cascade")
    form = ["1", "101", "11", "21", "LEFS", "42.5", "3", "2025-03-01 10:00:00.000"]
    queue_athena_results(athena, (list(FORMS_COLUMNS), [form]))
    sync = ("sync-forms", "--forms-schema", "envelope_forms", "--json")
    ok = valid(invoke(profiles_dir, *sync), "sync-forms")
    assert ok["ok"] is True and ok["rows_written"] == 1

    failed(invoke(profiles_dir, *sync, "--athena-target", "dev"), "sync-forms", 2, "usage")
    # the results bucket is gone: Athena's answer cannot be read (a missing bucket is a
    # configuration error, exit 2, in every command: docs/loader.md)
    bucket = boto3.resource("s3", endpoint_url=athena, **CREDENTIALS).Bucket(RESULTS_BUCKET)
    bucket.objects.all().delete()
    bucket.delete()
    broken = invoke(profiles_dir, *sync)
    assert broken.exit_code == 2, broken.stdout
    assert valid(broken, "sync-forms")["error"]["kind"] == "configuration"
    db.execute("drop schema if exists envelope_forms cascade")


def test_diff(models, cluster, profiles_dir):
    failed(
        invoke(
            profiles_dir, "diff", "--project-dir", str(PROJECT_DIR), "--base", "no-such-ref",
            "--format", "json",
        ),
        "diff", 2, None,  # whatever kind a failed diff is, it exits 2
    )  # fmt: skip

    # two sides' marts: the hand-made deliveries, an export of two visits per delivery (three
    # rows each, as the comparison keys them); the head's TX pain scores differ
    revision = Revision(ref="main", commit="0" * 40)
    for schema, tx_score in (("envelope_base", "3"), ("envelope_head", "4")):
        side_marts(models, schema, tx_score)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        same = compare_builds(
            conn, revision, "head", "envelope_base", "envelope_base", DiffRequest()
        )
        changed = compare_builds(
            conn, revision, "head", "envelope_base", "envelope_head", DiffRequest()
        )
    assert changed.differs and not same.differs
    for result, code in ((same, 0), (changed, 1)):
        document = json.loads(diff_json(render(result, "json"), code))
        jsonschema.Draft202012Validator(json_schema("diff")).validate(document)
        assert (document["ok"], document["differs"]) == (code == 0, code == 1)
    for schema in ("envelope_base", "envelope_head"):
        models.execute(f"drop schema {schema} cascade")


def side_marts(db, schema: str, tx_score: str) -> None:
    db.execute(f"drop schema if exists {schema} cascade")
    db.execute(f"create schema {schema}")
    db.execute(f"create table {schema}.mips_deliveries as table {SCHEMA}.mips_deliveries")
    db.execute(
        f'update {schema}.mips_deliveries set export_relation = \'"{schema}"."mips_export_v1"\''
    )
    db.execute(
        f"""
        create table {schema}.mips_export_v1 as
        select d.performance_year, d.state_code, (visit - 1) * 3 + kind as file_row_number,
            visit::text as visit_id, (array['MSK01', 'MSK06', 'LOS'])[kind] as treatment,
            case when d.state_code = 'TX' and kind = 2 then %s else '3' end as score
        from {schema}.mips_deliveries as d, generate_series(1, 2) as visit,
            generate_series(1, 3) as kind
        """,
        (tx_score,),
    )
    # the measure kind of every export row, as dbt's int_visit_measures_unioned states it
    db.execute(
        f"""
        create table {schema}.int_visit_measures_unioned as
        select e.performance_year, e.state_code, e.file_row_number,
            (e.file_row_number - 1) % 3 + 1 as measure_order,
            (array['function', 'pain', 'length_of_stay'])[(e.file_row_number - 1) % 3 + 1]
                as measure_kind
        from {schema}.mips_export_v1 as e
        """
    )


def test_an_unknown_command(profiles_dir):
    document = failed(invoke(profiles_dir, "nosuch", "--json"), "mips-loader", 2, "usage")
    assert "nosuch" in document["error"]["message"]
