"""README and docs stay in step with the command line: every command and option is documented."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from loader.cli import cli

PROJECT = Path(__file__).resolve().parents[2]
# Options every command shares with dbt; documented once.
SHARED = {"--project-dir", "--profiles-dir", "--target", "--help"}


def _command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[str]:
    """`export`, ..., `dev`, `dev start`: every command, a group's subcommands included."""
    paths = []
    for name, command in sorted(group.commands.items()):
        paths.append(" ".join((*prefix, name)))
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
    return paths


def _command(path: str) -> click.Command:
    command = cli
    for name in path.split():
        command = command.commands[name]
    return command


def documentation() -> str:
    paths = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
    return "\n".join(p.read_text() for p in paths)


@pytest.mark.parametrize("name", _command_paths())
def test_every_command_and_option_is_documented(name):
    command = _command(name)
    readme = (PROJECT / "README.md").read_text()
    assert f"mips-loader {name}" in readme, f"README does not show `mips-loader {name}`"
    docs = documentation()
    missing = [
        option
        for parameter in command.params
        for option in parameter.opts
        if option.startswith("--") and option not in SHARED and option not in docs
    ]
    assert not missing, f"`mips-loader {name}` options missing from README/docs: {missing}"


@pytest.mark.parametrize("name", _command_paths())
def test_help_has_an_example(name):
    result = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert result.exit_code == 0
    assert f"Example: mips-loader {name}" in " ".join(result.output.split())


def test_readme_opens_with_the_two_commands():
    head = (PROJECT / "README.md").read_text().split("\n## ")[0]
    assert "make demo" in head and "make test" in head


def test_shared_options_are_documented():
    readme = (PROJECT / "README.md").read_text()
    for option in ("--project-dir", "--profiles-dir", "--target"):
        assert option in readme


def _cli_reference():
    from scripts import cli_reference

    return cli_reference


def test_the_cli_reference_is_every_commands_whole_help():
    """docs/cli.md holds each command's --help exactly as the code prints it (regenerate it
    with `python scripts/cli_reference.py`), so docs and options cannot drift apart."""
    reference = _cli_reference()
    document = (PROJECT / "docs" / "cli.md").read_text()
    assert document == reference.render(document), (
        "docs/cli.md is out of date: run .venv/bin/python scripts/cli_reference.py"
    )
    for name in _command_paths():
        assert f"## mips-loader {name}\n" in document


def test_the_cli_reference_check_fails_on_a_stale_page(tmp_path, monkeypatch):
    reference = _cli_reference()
    stale = tmp_path / "cli.md"
    stale.write_text(
        (PROJECT / "docs" / "cli.md").read_text().replace("--max-shrink", "--max-shrunk")
    )
    monkeypatch.setattr(reference, "REFERENCE", stale)
    assert reference.main(["--check"]) == 1
    assert reference.main([]) == 0 and reference.main(["--check"]) == 0


def test_the_error_kinds_table_is_the_code():
    """docs/loader.md's table of error kinds names every kind with the exit code it has."""
    from loader.errors import EXIT_CODES

    text = (PROJECT / "docs" / "loader.md").read_text()
    table = text[text.index("| kind | exit | cause |") :].split("\n\n")[0]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    documented = {kind.strip().strip("`"): int(code) for kind, code in rows}
    assert documented == EXIT_CODES
