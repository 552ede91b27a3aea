"""``state``, ``list``, ``kill``, ``delete``, ``ps``, ``pause``, ``resume`` on stand-in containers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsprim.cgroup import CGroup
from nsprim.oci.runtime.store import CREATED, CREATING, RUNNING, ContainerRecord, process_starttime

from ..conftest import requires_root
from .conftest import Runtime, StandIns, unique

pytestmark = requires_root


def _state(runtime: Runtime, container_id: str) -> dict[str, object]:
    doc = json.loads(runtime.ok("state", container_id))
    assert isinstance(doc, dict)
    return doc


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """True once *pid* has ended (a zombie counts: its parent reaps it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_state_is_the_specs_document(runtime: Runtime, standins: StandIns) -> None:
    box = standins.start(annotations={"org.example.k": "v"})
    doc = _state(runtime, box.id)
    assert doc == {
        "ociVersion": "1.3.0",
        "id": box.id,
        "pid": box.proc.pid,
        "status": "running",
        "bundle": str(standins.bundle),
        "rootfs": str(standins.bundle / "rootfs"),
        "created": doc["created"],
        "annotations": {"org.example.k": "v"},
        "owner": "",
    }
    assert isinstance(doc["created"], str) and doc["created"].endswith("Z")


def test_state_of_an_ended_init_is_stopped(runtime: Runtime, standins: StandIns) -> None:
    box = standins.start()
    box.proc.kill()
    assert _gone(box.proc.pid)
    # Not reaped yet: a zombie has ended.
    assert _state(runtime, box.id)["status"] == "stopped"
    box.proc.wait()
    doc = _state(runtime, box.id)
    assert (doc["status"], doc["pid"]) == ("stopped", 0)


def test_a_reused_pid_is_not_the_container(runtime: Runtime, standins: StandIns) -> None:
    """The recorded start time differs from the live process's: the pid was reused, the container is stopped."""
    proc = subprocess.Popen(["sleep", "1000"])
    try:
        starttime = process_starttime(proc.pid)
        assert starttime is not None
        record = ContainerRecord(id=unique(), bundle="/b", status=RUNNING, pid=proc.pid, starttime=starttime - 1)
        runtime.store.create(record).close()
        assert _state(runtime, record.id)["status"] == "stopped"
        runtime.fails("kill", record.id, "KILL")
        assert proc.poll() is None  # the process that reused the pid was not signalled
    finally:
        proc.kill()
        proc.wait()


def test_list_as_table_json_and_ids(runtime: Runtime, standins: StandIns) -> None:
    a, b = standins.start(container_id="aa-" + unique()), standins.start(container_id="bb-" + unique())
    b.proc.kill()
    b.proc.wait()
    lines = runtime.ok("list").splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in rows] == [
        (a.id, str(a.proc.pid), "running", str(standins.bundle), "root"),
        (b.id, "0", "stopped", str(standins.bundle), "root"),
    ]
    # Columns line up, as Go's tabwriter aligns them.
    starts = [lines[0].index(h) for h in ("PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    for line in lines[1:]:
        assert all(line[p - 1] == " " and line[p] != " " for p in starts), line
    docs = json.loads(runtime.ok("list", "--format", "json"))
    assert [(d["id"], d["status"], d["owner"]) for d in docs] == [(a.id, "running", "root"), (b.id, "stopped", "root")]
    assert runtime.ok("list", "-q").split() == [a.id, b.id]
    assert runtime.ok("list", "-f=json", "-q").split() == [a.id, b.id]


def test_list_of_an_empty_or_missing_root(runtime: Runtime) -> None:
    assert runtime.ok("list").split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert json.loads(runtime.ok("list", "--format", "json")) == []
    assert not runtime.root.exists()  # reading creates nothing


def test_kill_sends_sigterm_by_default_and_refuses_a_stopped_container(runtime: Runtime, standins: StandIns) -> None:
    box = standins.start()
    runtime.ok("kill", box.id)
    assert box.proc.wait(timeout=10) == -signal.SIGTERM
    message = runtime.fails("kill", box.id)
    assert f"kill container `{box.id}`: it is stopped" in message
    runtime.ok("kill", "--all", box.id, "KILL")  # runc's exception: --all signals whatever is left


@pytest.mark.parametrize("spelled", ["9", "KILL", "SIGKILL", "kill", "SigKill"])
def test_kill_takes_numbers_and_names(runtime: Runtime, standins: StandIns, spelled: str) -> None:
    box = standins.start()
    runtime.ok("kill", box.id, spelled)
    assert box.proc.wait(timeout=10) == -signal.SIGKILL


def test_kill_all_signals_every_process_of_the_group(runtime: Runtime, standins: StandIns) -> None:
    box = standins.start(cgroup=True, argv=("sh", "-c", "read x; sleep 1000 & exec sleep 1000"))
    assert box.proc.stdin is not None and box.group is not None
    box.proc.stdin.write(b"go\n")
    box.proc.stdin.flush()
    deadline = time.monotonic() + 10
    while len(box.group.procs()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = box.group.procs()
    assert len(pids) == 2
    assert json.loads(runtime.ok("ps", "--format", "json", box.id)) == pids
    table = runtime.ok("ps", box.id).splitlines()
    assert "PID" in table[0].split() and sorted(int(line.split()[1]) for line in table[1:]) == pids
    runtime.ok("kill", "--all", box.id, "TERM")
    assert box.proc.wait(timeout=10) == -signal.SIGTERM
    assert all(_gone(p) for p in pids)


def test_bad_signal_is_refused_and_nothing_is_sent(runtime: Runtime, standins: StandIns) -> None:
    box = standins.start()
    assert "unknown signal `SIGNOPE`" in runtime.fails("kill", box.id, "SIGNOPE")
    assert "unknown signal `65`" in runtime.fails("kill", box.id, "65")
    assert box.proc.poll() is None


def test_delete_refuses_a_running_container_without_force(runtime: Runtime, standins: StandIns) -> None:
    box = standins.start(cgroup=True)
    assert box.group is not None
    message = runtime.fails("delete", box.id)
    assert message == f"delete container `{box.id}`: it is running (stop it first, or use --force)"
    assert box.proc.poll() is None and runtime.store.exists(box.id)
    runtime.ok("delete", "--force", box.id)
    assert box.proc.wait(timeout=10) == -signal.SIGKILL
    assert not runtime.store.exists(box.id)
    assert not box.group.exists()  # its cgroup went with it
    runtime.fails("state", box.id)


def test_delete_of_a_stopped_container(runtime: Runtime, standins: StandIns) -> None:
    box = standins.start()
    box.proc.terminate()
    box.proc.wait()
    runtime.ok("delete", box.id)
    assert not (runtime.root / box.id).exists()
    assert f"container `{box.id}` does not exist" in runtime.fails("delete", box.id)
    runtime.ok("delete", "--force", box.id)  # as runc: nothing to delete is no error with --force


def test_delete_of_a_created_container_kills_it(runtime: Runtime, standins: StandIns) -> None:
    """As runc: a created container's init only waits, and delete ends it without --force."""
    box = standins.start(status=CREATED)
    assert _state(runtime, box.id)["status"] == "created"
    runtime.ok("delete", box.id)
    assert box.proc.wait(timeout=10) == -signal.SIGKILL


def test_pause_and_resume_freeze_the_group(runtime: Runtime, standins: StandIns) -> None:
    box = standins.start(cgroup=True)
    assert box.group is not None
    assert "resume needs a paused container" in runtime.fails("resume", box.id)
    runtime.ok("pause", box.id)
    assert box.group.frozen
    assert _state(runtime, box.id)["status"] == "paused"
    assert "it is paused" in runtime.fails("pause", box.id)
    assert "it is paused" in runtime.fails("delete", box.id)
    runtime.ok("resume", box.id)
    assert not box.group.frozen
    assert _state(runtime, box.id)["status"] == "running"
    runtime.ok("pause", box.id)
    runtime.ok("delete", "-f", box.id)  # a frozen group is thawed so that its processes can die
    assert box.proc.wait(timeout=10) == -signal.SIGKILL
    assert not box.group.exists()


def test_pause_without_a_cgroup_says_so(runtime: Runtime, standins: StandIns) -> None:
    box = standins.start()
    assert "has no cgroup to freeze" in runtime.fails("pause", box.id)


def test_delete_force_cleans_up_after_a_runtime_killed_mid_create(runtime: Runtime, tmp_path: Path) -> None:
    """A creator that recorded `creating`, started the init in a new cgroup, and was SIGKILLed."""
    container_id = unique()
    group_name = unique("rt-g")
    parent = os.environ.get("NSPRIM_CGROUP_PARENT", "/")
    script = f"""
import os, signal, subprocess
from nsprim.cgroup import CGroup
from nsprim.oci.runtime.store import ContainerRecord, Store, process_starttime
me = os.getpid()
locked = Store({str(runtime.root)!r}).create(ContainerRecord(
    id={container_id!r}, bundle="/b", creator_pid=me, creator_starttime=process_starttime(me)))
group = CGroup.create({group_name!r}, parent={parent!r})
init = subprocess.Popen(["sleep", "1000"], start_new_session=True, stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
group.add(init.pid)
locked.save(locked.record.replace(pid=init.pid, starttime=process_starttime(init.pid), cgroup=group.path,
    cgroup_dirs=tuple(str(d) for d in group.directories.values())))
print(init.pid, flush=True)
os.kill(me, signal.SIGKILL)
"""
    creator = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert creator.returncode == -signal.SIGKILL, creator.stderr
    init_pid = int(creator.stdout)
    group = CGroup.open(f"{parent.rstrip('/')}/{group_name}")
    try:
        assert group.procs() == [init_pid]
        doc = _state(runtime, container_id)
        assert doc["status"] == "stopped"  # its creator is gone: the create failed
        runtime.ok("delete", "--force", container_id)
        assert _gone(init_pid)
        assert not group.exists()
        assert not runtime.store.exists(container_id)
    finally:
        if group.exists():
            group.kill()
            group.delete(recursive=True, timeout=5.0)


def test_a_create_in_progress_is_creating(runtime: Runtime) -> None:
    me = os.getpid()
    starttime = process_starttime(me)
    assert starttime is not None
    record = ContainerRecord(id=unique(), bundle="/b", creator_pid=me, creator_starttime=starttime)
    runtime.store.create(record).close()
    doc = _state(runtime, record.id)
    assert (doc["status"], doc["pid"]) == (CREATING, 0)
    assert "it is creating" in runtime.fails("kill", record.id)
    assert "it is creating" in runtime.fails("delete", record.id)


def test_delete_force_removes_a_directory_without_record(runtime: Runtime) -> None:
    """A create killed between its mkdir and its first write leaves an empty directory."""
    (runtime.root / "half").mkdir(parents=True)
    assert "container `half` does not exist" in runtime.fails("state", "half")
    assert runtime.ok("list", "-q") == ""
    runtime.fails("delete", "half")
    runtime.ok("delete", "--force", "half")
    assert not (runtime.root / "half").exists()
