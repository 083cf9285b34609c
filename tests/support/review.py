"""A throwaway git repository holding a copy of the dbt project, for `mips-loader diff` tests.

Its `main` branch has one commit, the project as shipped: the base. A test edits the working
tree (or commits on a branch), runs the diff, and puts the repository back with `reset`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.model_scenarios import copy_project


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def project_repository(directory: Path) -> tuple[Path, str]:
    """The project copied to `directory`, committed on `main`; returns (repo, base commit)."""
    copy_project(directory)
    git(directory, "init", "--quiet", "--initial-branch", "main")
    git(directory, "config", "user.email", "diff-tests@example.com")
    git(directory, "config", "user.name", "diff tests")
    git(directory, "add", "--all")
    git(directory, "commit", "--quiet", "--message", "base")
    return directory, git(directory, "rev-parse", "HEAD")


def reset(repo: Path) -> None:
    """Back to `main` as committed: edits, new files and branches gone."""
    git(repo, "checkout", "--quiet", "--force", "main")
    git(repo, "clean", "--quiet", "--force", "-d")
    for branch in git(repo, "branch", "--format", "%(refname:short)").splitlines():
        if branch != "main":
            git(repo, "branch", "--quiet", "-D", branch)


def edit_text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {path}"
    path.write_text(text.replace(old, new))


def workflow_diff_script(workflow: Path) -> str:
    """The `run:` script of the workflow step that invokes `mips-loader diff`."""
    import yaml

    steps = [
        step
        for job in yaml.safe_load(workflow.read_text())["jobs"].values()
        for step in job["steps"]
        if "mips-loader diff" in step.get("run", "")
    ]
    assert len(steps) == 1, f"{workflow}: {len(steps)} steps run mips-loader diff"
    return steps[0]["run"]
