"""What the messages say: a command not found names the PATH searched (the container's), a
timeout says the container was killed."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import nsprim
from nsprim.container import Container
from nsprim.errors import ExecutableNotFoundError, TimeoutExpired

from ..conftest import requires_root

pytestmark = requires_root

SRC = str(Path(nsprim.__file__).resolve().parent.parent)
ENV = {**os.environ, "PYTHONPATH": SRC}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_not_found_names_the_containers_path() -> None:
    with pytest.raises(ExecutableNotFoundError) as exc:
        Container(["no-such-command-xyz"]).host_root().run()
    assert f"exec `no-such-command-xyz`: not found in the container's PATH `{DEFAULT_PATH}`" in str(exc.value)
    assert str(pickle.loads(pickle.dumps(exc.value))) == str(exc.value)
    r = subprocess.run(
        [sys.executable, "-m", "nsprim", "run", "-e", "PATH=/usr/bin:/bin", "--", "no-such-command-xyz"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert r.returncode == 127
    assert r.stderr.count("\n") == 1
    assert "exec `no-such-command-xyz`: not found in the container's PATH `/usr/bin:/bin`" in r.stderr


def test_run_timeout_says_the_container_was_killed() -> None:
    with pytest.raises(TimeoutExpired) as exc:
        Container(["sleep", "60"]).host_root().run(timeout=0.5)
    assert exc.value.killed
    assert "killed after 0.5 s timeout" in str(exc.value) and "still running" not in str(exc.value)
