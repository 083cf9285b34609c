"""Commands not covered elsewhere: generate, the dbt pass-through, and usage errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from loader.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_generate_fills_a_target_schema(profiles_dir, db):
    result = invoke(
        "generate", "--scale", "0.02", "--seed", "3", "--app-schema", "cli_gen",
        "--settings", "none", "--profiles-dir", str(profiles_dir), "--target", "dev",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    counts = dict(line.split() for line in result.output.splitlines())
    assert int(counts["care_plans"].replace(",", "")) == 200
    assert db.execute("select count(*) from cli_gen.care_plans").fetchone()[0] == 200
    healthmonix = db.execute(
        "select count(*) from cli_gen.settings "
        "where key ~ '^healthmonix_[0-9]{4}_(states|integration_enabled|strictly_contained)$'"
    ).fetchone()[0]
    assert healthmonix == 0


def test_dbt_pass_through_runs_dbt_with_the_warehouse_up(profiles_dir, cluster):
    result = invoke("dbt", "debug", "--profiles-dir", str(profiles_dir), "--target", "dev")
    assert result.exit_code == 0


def test_dbt_help_after_a_dbt_command_is_dbts_own(capfd):
    """`mips-loader dbt --help` is the wrapper's help and says how to reach dbt's; --help after
    a dbt command is passed to dbt (no warehouse needed)."""
    ours = invoke("dbt", "--help")
    assert ours.exit_code == 0
    assert "dbt [OPTIONS] [DBT_ARGS]..." in ours.output
    assert "mips-loader dbt build --help" in " ".join(ours.output.split())
    assert invoke("dbt").output == ours.output
    dbts = invoke("dbt", "build", "--help")
    assert dbts.exit_code == 0
    out = capfd.readouterr().out + dbts.output  # dbt writes to the process's stdout
    assert "Run all seeds, models, snapshots, and tests in DAG order" in out
    assert "mips-loader dbt" not in out


def test_missing_profiles_is_a_usage_error(tmp_path):
    result = invoke("plan", "--profiles-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "no profiles.yml" in result.output and "profiles.example.yml" in result.output


def test_unknown_target_is_a_usage_error(profiles_dir):
    result = invoke("plan", "--profiles-dir", str(profiles_dir), "--target", "nope")
    assert result.exit_code == 2
    assert "nope" in result.output


def test_sync_forms_needs_an_athena_target(profiles_dir):
    result = invoke("sync-forms", "--athena-target", "dev", "--profiles-dir", str(profiles_dir))
    assert result.exit_code == 2
    assert "not an Athena target" in result.output


def test_a_diff_that_cannot_start_exits_2_with_the_kind_of_its_cause(profiles_dir):
    """Every failure of diff is 2 (neither "same" nor "different"); the kind is the cause's."""
    result = invoke(
        "diff", "--profiles-dir", str(profiles_dir), "--target", "nope", "--format", "json"
    )
    document = json.loads(result.stdout)
    assert (result.exit_code, document["exit_code"]) == (2, 2)
    assert document["error"]["kind"] == "configuration"
    assert "target 'nope' is not in profile" in document["error"]["message"]
