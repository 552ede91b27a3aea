"""The generated spec, against what the real runc writes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from nsprim.oci import Spec, State, Status, default_spec

from ..tools import need_tool


@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_is_what_runc_spec_writes(tmp_path: Path, rootless: bool) -> None:
    runc = need_tool("runc", "runc")
    subprocess.run([runc, "spec", *(["--rootless"] if rootless else [])], cwd=tmp_path, check=True)
    theirs = json.loads((tmp_path / "config.json").read_text())
    ours = default_spec(rootless=rootless).to_dict()
    for doc in (theirs, ours):
        doc.pop("ociVersion")
        doc.pop("hostname")
    assert ours == theirs
    assert Spec.from_dict({"ociVersion": "1.0.2-dev", **theirs}).replace(oci_version="1.3.0") == default_spec(
        rootless=rootless
    ).replace(hostname="")


def test_rootless_maps_the_caller() -> None:
    linux = default_spec(rootless=True).linux
    assert linux is not None
    assert linux.uid_mappings[0].host_id == os.getuid()
    assert linux.gid_mappings[0].host_id == os.getgid()


def test_state_round_trip() -> None:
    state = State(id="box", status=Status.CREATED, pid=42, bundle="/b", annotations={"k": "v"})
    assert State.loads(state.dumps()) == state
    assert state.to_dict() == {
        "ociVersion": "1.3.0",
        "id": "box",
        "status": "created",
        "pid": 42,
        "bundle": "/b",
        "annotations": {"k": "v"},
    }
    assert State(id="x", status=Status.STOPPED, pid=0, bundle="/b").to_dict()["pid"] == 0
