"""The examples that need only a fresh machine run, and leave nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import requires_root

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@requires_root
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("oci_bundle.py", ["hello from bundled as uid 1000"]),
        ("call.py", ["mean: 2.5", "raised ZeroDivisionError inside", "OOM-killed: True"]),
        (
            "untrusted_snippets.py",
            [
                "arithmetic         ok: 332833500",
                "division by zero   raised ZeroDivisionError",
                "spins forever      killed by SIGKILL after",
                "eats memory        killed: out of memory",
                "fork bomb          raised BlockingIOError",
                "phones home        raised OSError: [Errno 101] Network is unreachable",
                "returns an object  refused its result: a result of type pathlib.PosixPath",
            ],
        ),
    ],
)
def test_the_example_runs(name: str, expected: list[str]) -> None:
    r = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert all(line in r.stdout for line in expected), r.stdout


@requires_root
def test_the_async_example_runs_containers_side_by_side_and_cleans_up() -> None:
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "async_containers.py")], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "job 0 is pid 1 in job-0" in r.stdout
    assert "on one loop, 1 thread(s)" in r.stdout
    assert "\nweb\n" in r.stdout
    assert "is gone, and its cgroup with it" in r.stdout
    assert "event: oom_kill (count 1)\nevent: exit, status -9" in r.stdout
