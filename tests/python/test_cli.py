"""Commands not covered elsewhere: generate, the dbt pass-through, and usage errors."""

from __future__ import annotations

import json

import click
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


def test_a_usage_error_is_one_line(tmp_path):
    """Like every other error: `Error: …` on stderr and exit 2, not Usage/Try/blank/Error;
    with --json one JSON document on stdout."""
    for args in (["export", "--jobs", "0"], ["plan", "--date", "2026-13-01"], ["nosuch"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("Error: "), result.stderr
    jobs = CliRunner().invoke(cli, ["export", "--jobs", "0"])
    assert "'--jobs' / '-j': 0 is not in the range" in jobs.stderr

    as_json = CliRunner().invoke(cli, ["plan", "--date", "2026-13-01", "--json"])
    assert as_json.exit_code == 2 and as_json.stderr == ""
    document = json.loads(as_json.stdout)
    assert document["command"] == "plan" and document["error"]["kind"] == "usage"
    assert "--date" in document["error"]["message"]


def test_version_is_the_packages():
    from importlib.metadata import version

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"mips-loader, version {version('healthmonix-mips')}\n"


def test_the_project_options_come_last_on_every_command():
    """--project-dir, --profiles-dir and --target close every command's option list, as dbt's
    users expect them in one place (only --help after them)."""
    project = ["--project-dir", "--profiles-dir", "--target"]
    for name, command in cli.commands.items():
        options = [p.opts[0] for p in command.params if isinstance(p, click.Option)]
        shared = [o for o in options if o in project]
        if shared:
            assert options[-len(shared) :] == shared, name


def test_the_program_alone_shows_its_help():
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 2
    assert "Usage: " in result.output and "Commands:" in result.output


def test_the_export_help_says_how_slices_are_unloaded():
    """MIPS_PSQL changes how export reads the warehouse; its --help says so (docs/loader.md)."""
    result = CliRunner().invoke(cli, ["export", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "unloaded by a psql child" in text and "$MIPS_PSQL" in text and "`off`" in text


def test_a_diff_that_cannot_start_exits_2_with_the_kind_of_its_cause(profiles_dir):
    """Every failure of diff is 2 (neither "same" nor "different"); the kind is the cause's."""
    result = invoke(
        "diff", "--profiles-dir", str(profiles_dir), "--target", "nope", "--format", "json"
    )
    document = json.loads(result.stdout)
    assert (result.exit_code, document["exit_code"]) == (2, 2)
    assert document["error"]["kind"] == "configuration"
    assert "target 'nope' is not in profile" in document["error"]["message"]


def test_dbt_behavior_flags_are_named_as_dbt_common_names_them():
    """run_dbt names a behavior flag's declaring module from the frames' globals instead of
    dbt-common's inspect.stack() (loader/environment/dbt_invocation.py): the same name."""
    from dbt_common.behavior_flags import BehaviorFlagRendered

    from loader.environment.dbt_invocation import _name_behavior_flags_cheaply

    _name_behavior_flags_cheaply()
    flag = {"name": "mips_probe_flag", "default": True, "description": "a probe"}
    named = BehaviorFlagRendered(flag, {})._behavior_change_event.flag_source
    dbt_commons_own = BehaviorFlagRendered._default_source.replaces()
    assert named == dbt_commons_own == __name__
