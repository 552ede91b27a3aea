"""The suite's leak check fails a test for what it left: run on tests that leak, in a pytest of their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from .conftest import requires_root

INNER = """
import ctypes
import os

import nsprim.fs.mount
from nsprim.container.procview import view_directory
from nsprim.container.host import state_dir


def test_dumpability_changed():
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0


def test_dumpability_is_back():
    assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 1


def test_state_entry_left():
    (state_dir() / "left-behind").mkdir(parents=True)


def test_container_entry_left():
    (state_dir() / "containers" / "c-left").mkdir(parents=True)


def test_proc_view_entry_left():
    view_directory(state_dir(), "nsprim-left").mkdir(parents=True)


def test_shared_state_is_allowed():
    state_dir().mkdir(parents=True, exist_ok=True)
    for name in ("userns.lock", "veth.lock"):
        (state_dir() / name).touch()
    for name in ("containers", "root"):
        (state_dir() / name).mkdir(exist_ok=True)


def test_mount_left(tmp_path):
    (tmp_path / "m").mkdir()
    nsprim.fs.mount.mount("tmpfs", tmp_path / "m", "tmpfs")
    os.environ["INNER_MOUNT"] = str(tmp_path / "m")


def test_mount_was_undone():
    with open("/proc/self/mountinfo") as f:
        assert not any(line.split()[4] == os.environ["INNER_MOUNT"] for line in f)
"""


@requires_root
def test_a_test_that_leaks_fails_and_the_leak_is_undone(tmp_path: Path) -> None:
    here = Path(__file__).parent
    suite = tmp_path / "tests"
    suite.mkdir()
    for name in ("__init__.py", "conftest.py", "tools.py"):
        shutil.copy(here / name, suite / name)
    (suite / "test_inner.py").write_text(INNER)
    report = tmp_path / "report.xml"
    env = {**os.environ, "NSPRIM_STATE_DIR": str(tmp_path / "state")}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", "tests"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).iter("testcase"):
        failed = case.find("failure")
        if failed is None:
            failed = case.find("error")
        outcomes[case.get("name", "")] = "passed" if failed is None else failed.get("message", "failed")
    assert set(outcomes) == {
        "test_dumpability_changed",
        "test_dumpability_is_back",
        "test_state_entry_left",
        "test_container_entry_left",
        "test_proc_view_entry_left",
        "test_shared_state_is_allowed",
        "test_mount_left",
        "test_mount_was_undone",
    }, r.stdout + r.stderr
    assert "dumpability changed from 1 to 0" in outcomes["test_dumpability_changed"]
    assert "state directory entries left" in outcomes["test_state_entry_left"]
    assert "left-behind" in outcomes["test_state_entry_left"]
    assert "c-left" in outcomes["test_container_entry_left"]
    assert "state-procview/nsprim-left" in outcomes["test_proc_view_entry_left"]
    assert "mounts left" in outcomes["test_mount_left"]
    for name in ("test_dumpability_is_back", "test_shared_state_is_allowed", "test_mount_was_undone"):
        assert outcomes[name] == "passed", (name, outcomes[name])
