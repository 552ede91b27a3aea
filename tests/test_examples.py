"""The examples that need only a fresh machine run, and leave nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import requires_root

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@requires_root
@pytest.mark.parametrize("name", ["oci_bundle.py"])
def test_the_example_runs(name: str) -> None:
    r = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("hello from bundled as uid 1000") >= 1
