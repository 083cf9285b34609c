"""README and docs stay in step with the command line: every command and option is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from loader.cli import cli

PROJECT = Path(__file__).resolve().parents[2]
# Options every command shares with dbt; documented once.
SHARED = {"--project-dir", "--profiles-dir", "--target", "--help"}


def documentation() -> str:
    paths = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
    return "\n".join(p.read_text() for p in paths)


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_and_option_is_documented(name):
    command = cli.commands[name]
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


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_help_has_an_example(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert f"Example: mips-loader {name}" in " ".join(result.output.split())


def test_readme_opens_with_the_two_commands():
    head = (PROJECT / "README.md").read_text().split("\n## ")[0]
    assert "make demo" in head and "make test" in head


def test_shared_options_are_documented():
    readme = (PROJECT / "README.md").read_text()
    for option in ("--project-dir", "--profiles-dir", "--target"):
        assert option in readme
