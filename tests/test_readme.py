"""The README's Python examples run as written, each in a fresh folder holding the repository's
``configs/`` and ``examples/`` (as the README's commands are run from the repository's folder): what an
example writes (``runs/api-example``) stays in that folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def _examples() -> list:
    """One ``pytest.param`` per ```` ```python ```` block, named by its first line in the README; a block
    that trains (the built-in SmolLM2 weights) is marked slow."""
    text = README.read_text()
    params = []
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        line = text.count("\n", 0, match.start()) + 2
        block = match.group(1)
        marks = [pytest.mark.slow] if "tdpo.train(" in block else []
        params.append(pytest.param(block, line, id=f"README.md:{line}", marks=marks))
    return params


EXAMPLES = _examples()


def test_the_readme_has_python_examples():
    assert EXAMPLES, "the README has no Python example"


@pytest.mark.parametrize(("block", "line"), EXAMPLES)
def test_readme_python_example_runs(block, line, tmp_path, monkeypatch):
    for name in ("configs", "examples"):
        (tmp_path / name).symlink_to(REPO / name, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    code = compile("\n" * (line - 1) + block, str(README), "exec")  # tracebacks name the README's lines
    exec(code, {})
    if "tdpo.train(" in block:  # the run folder is under the example's folder
        assert list((tmp_path / "runs").glob("*/final/model.safetensors"))
