"""The base revision of a diff: a git ref resolved to a commit, checked out beside the project.

The base is built from a clean `git worktree add --detach` in a directory of its own, so the
working tree (uncommitted edits included) is never touched, and nothing of it (an ignored
`profiles.yml`, a `target/`) leaks into the base build.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loader.errors import ConfigurationError

# The branch a pull request goes into: the default base is the merge base with it.
MAIN_BRANCH = "main"


class RevisionError(ConfigurationError):
    """A ref that is not a commit, a project outside git, a worktree git could not add."""


@dataclass(frozen=True)
class Revision:
    """A commit to build: how it was asked for, and what it is."""

    ref: str
    commit: str

    @property
    def label(self) -> str:
        return f"{self.ref} ({self.commit[:7]})"


def _git(directory: Path, *args: str) -> str:
    """git's output; a failure is one line with git's own reason."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise RevisionError(
            "git is not installed: diff builds the base from a git worktree"
        ) from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RevisionError(f"git {args[0]} failed in {directory}: {reason}")
    return done.stdout.strip()


def repository_root(project_dir: Path) -> Path:
    return Path(_git(project_dir, "rev-parse", "--show-toplevel")).resolve()


def resolve_base(project_dir: Path, ref: str | None) -> Revision:
    """`ref` as a commit; without one, the merge base of HEAD with the main branch (on main
    itself that is HEAD: the diff is then "my uncommitted change")."""
    if ref is not None:
        if ref.startswith("-"):
            raise RevisionError(f"--base {ref!r} is not a git ref")
        try:
            commit = _git(project_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except RevisionError:
            raise RevisionError(f"--base {ref!r} is not a commit of {project_dir}") from None
        return Revision(ref=ref, commit=commit)
    for branch in (MAIN_BRANCH, f"origin/{MAIN_BRANCH}"):
        with contextlib.suppress(RevisionError):
            commit = _git(project_dir, "merge-base", "HEAD", branch)
            return Revision(ref=f"merge base with {branch}", commit=commit)
    raise RevisionError(
        f"no branch {MAIN_BRANCH} or origin/{MAIN_BRANCH} shares history with HEAD: pass --base REF"
    )


@contextlib.contextmanager
def base_checkout(project_dir: Path, revision: Revision, tree: Path) -> Iterator[Path]:
    """The project directory of `revision`, checked out in a worktree at `tree` that exists only
    while the block runs (removed afterwards, also on error or interrupt; one a killed run left
    is removed first). The path is the same every time so that dbt's partial parsing of the
    base is reused (a full parse costs seconds)."""
    root = repository_root(project_dir)
    inside = project_dir.resolve().relative_to(root)
    _remove_worktree(root, tree)
    try:
        _git(root, "worktree", "add", "--detach", "--quiet", str(tree), revision.commit)
        yield tree / inside
    finally:
        _remove_worktree(root, tree)


def _remove_worktree(root: Path, tree: Path) -> None:
    with contextlib.suppress(RevisionError):
        _git(root, "worktree", "remove", "--force", str(tree))
    shutil.rmtree(tree, ignore_errors=True)
    with contextlib.suppress(RevisionError):
        _git(root, "worktree", "prune")


def file_at(project_dir: Path, commit: str, relative: str) -> str | None:
    """A file of the project (`relative` to the project directory) as `commit` has it; None
    when it has none."""
    try:
        return _git(project_dir, "show", f"{commit}:./{relative}")
    except RevisionError:
        return None
