"""The runtime's command line, driven as engines drive it, on stand-in containers.

Until ``create`` exists, a container is a real process the test starts
(``sleep``), recorded in a real store as the container's init, optionally in
a real cgroup of its own.  Every process is killed and reaped and every
group removed at the end, whatever the test did.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from nsprim.cgroup import CGroup
from nsprim.oci.runtime.store import RUNNING, ContainerRecord, Store, process_starttime


def unique(prefix: str = "rt") -> str:
    return f"nsprim-{prefix}-{secrets.token_hex(4)}"


def runtime_command() -> list[str]:
    """The installed ``nsprim-runtime`` console script, as an engine would call it."""
    script = shutil.which("nsprim-runtime", path=os.path.dirname(sys.executable))
    assert script is not None, f"nsprim-runtime is not installed beside {sys.executable}"
    return [script]


class Runtime:
    """Runs ``nsprim-runtime --root ROOT ...`` in a subprocess."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = Store(str(root))

    def __call__(self, *args: str, root: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [*runtime_command(), *(["--root", str(self.root)] if root else []), *args]
        return subprocess.run(cmd, capture_output=True, text=True, input=stdin, timeout=120)

    def ok(self, *args: str, root: bool = True) -> str:
        r = self(*args, root=root)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    def detached(self, *args: str) -> None:
        """``create`` or ``run --detach``: the init keeps the runtime's stdio, so they are files here
        (an engine passes pipes it reads), not pipes a test would wait on for ever."""
        log = self.root.parent / "runtime.err"
        with open(os.devnull, "w") as out, log.open("w") as err:
            r = subprocess.run(
                [*runtime_command(), "--root", str(self.root), *args], stdout=out, stderr=err, timeout=60
            )
        assert r.returncode == 0, (args, log.read_text())

    def status(self, container_id: str) -> str:
        """The container's status, as ``state`` says."""
        return str(json.loads(self.ok("state", container_id))["status"])

    def wait_status(self, container_id: str, want: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.status(container_id) != want:
            assert time.monotonic() < deadline, f"{container_id} never became {want}"
            time.sleep(0.02)

    def fails(self, *args: str, status: int = 1, root: bool = True) -> str:
        """Run a command that must fail with *status* and one line on stderr; return that line."""
        r = self(*args, root=root)
        assert r.returncode == status, (args, r.returncode, r.stdout, r.stderr)
        assert r.stderr.endswith("\n") and r.stderr.count("\n") == 1, r.stderr
        return r.stderr.strip()


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return Runtime(tmp_path / "root")


class StandIn:
    """One stand-in container: its id, its init (a process of the test) and its group."""

    def __init__(self, container_id: str, proc: subprocess.Popen[bytes], group: CGroup | None) -> None:
        self.id = container_id
        self.proc = proc
        self.group = group


class StandIns:
    """Starts stand-in containers in *runtime*'s store, and ends them all."""

    def __init__(self, runtime: Runtime, bundle: Path) -> None:
        self.runtime = runtime
        self.bundle = bundle
        self.started: list[StandIn] = []

    def start(
        self,
        *,
        status: str = RUNNING,
        cgroup: bool = False,
        argv: Sequence[str] = ("sleep", "1000"),
        container_id: str | None = None,
        annotations: dict[str, str] | None = None,
    ) -> StandIn:
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE)
        group = None
        try:
            if cgroup:
                group = CGroup.create(unique("rt-g"), parent=os.environ.get("NSPRIM_CGROUP_PARENT", "/"))
                group.add(proc.pid)
            starttime = process_starttime(proc.pid)
            assert starttime is not None
            record = ContainerRecord(
                id=container_id or unique(),
                bundle=str(self.bundle),
                status=status,
                pid=proc.pid,
                starttime=starttime,
                rootfs=str(self.bundle / "rootfs"),
                cgroup=group.path if group is not None else None,
                cgroup_dirs=tuple(str(d) for d in group.directories.values()) if group is not None else (),
                annotations=annotations,
            )
            self.runtime.store.create(record).close()
        except BaseException:
            self._end(StandIn("", proc, group))
            raise
        box = StandIn(record.id, proc, group)
        self.started.append(box)
        return box

    @staticmethod
    def _end(box: StandIn) -> None:
        if box.group is not None and box.group.exists():
            if box.group.frozen:
                box.group.thaw()
            box.group.kill()
        if box.proc.poll() is None:
            box.proc.kill()
        box.proc.wait()
        if box.proc.stdin is not None:
            box.proc.stdin.close()
        if box.group is not None and box.group.exists():
            box.group.delete(recursive=True, timeout=5.0)

    def close(self) -> None:
        for box in self.started:
            self._end(box)


@pytest.fixture
def standins(runtime: Runtime, tmp_path: Path) -> Iterator[StandIns]:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    boxes = StandIns(runtime, bundle)
    try:
        yield boxes
    finally:
        boxes.close()
