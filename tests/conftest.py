"""Shared by every test folder.

Every test folder is a package, so helpers are imported by their full name from any working directory
(pytest puts the repository's folder on ``sys.path``): ``tests.tiny_models`` (the tiny Llama models and
tokenizer), ``tests.train_fixtures`` (the training engine's tiny run), ``tests.evaluation.fake_chat_server``.

No test writes into the working directory or the repository: every file goes under pytest's ``tmp_path``
(and the tdpo cache, ``$TDPO_CACHE`` or ``~/.cache/tdpo``). :func:`nothing_written_outside_tmp_path`
fails the run, naming them, when files or folders appear in the repository (two levels deep) or in a
working directory inside it while the tests run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IGNORED = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}
"""Names never looked into: git's and the tools' own folders, Python's byte-code caches."""

def _entries(folder: Path, depth: int = 2) -> set[str]:
    """The paths (relative to ``folder``) of its files and folders down to ``depth`` levels, without
    :data:`IGNORED`."""
    found: set[str] = set()
    try:
        children = [c for c in os.scandir(folder) if c.name not in IGNORED]
    except OSError:
        return found
    for child in children:
        found.add(child.name)
        if depth > 1 and child.is_dir(follow_symlinks=False):
            found.update(f"{child.name}/{name}" for name in _entries(Path(child.path), depth - 1))
    return found


def _watched() -> list[Path]:
    """The repository, and the working directory when it is inside the repository."""
    cwd = Path.cwd().resolve()
    return [REPO] if cwd == REPO else [REPO, cwd] if REPO in cwd.parents else [REPO]


@pytest.fixture(scope="session", autouse=True)
def nothing_written_outside_tmp_path():
    """Fail (at the teardown of the session's last test) when files or folders appeared in the repository
    or the working directory while the tests ran, naming them."""
    before = {folder: _entries(folder) for folder in _watched()}
    yield
    new = [f"{folder / name}" for folder, names in before.items() for name in sorted(_entries(folder) - names)]
    if new:
        pytest.fail(f"tests wrote into the repository or the working directory: {', '.join(new)}", pytrace=False)
