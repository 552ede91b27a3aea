"""The state store: ids, uniqueness, crash safety, locks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.errors import ConfigError, ContainerExistsError, ContainerNotFoundError
from nsprim.oci.runtime.store import ID_MAX, STATE_FILE, ContainerRecord, Store, validate_id

from .conftest import Runtime

# runc's rule, as Go writes it (`[\w+-\.]`: word characters and the range `+` to `.`, so `,` too).
RUNC_ID = re.compile(r"[\w+-\.]+", re.ASCII)
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+,-."


def _runc_accepts(text: str) -> bool:
    return bool(RUNC_ID.fullmatch(text)) and text not in (".", "..") and len(text) <= ID_MAX


@given(st.text(min_size=0, max_size=300))
def test_ids_are_runcs(text: str) -> None:
    if _runc_accepts(text):
        assert validate_id(text) == text
    else:
        with pytest.raises(ConfigError, match="invalid container id"):
            validate_id(text)


@given(st.text(alphabet=ID_ALPHABET, min_size=1, max_size=ID_MAX))
def test_every_id_of_the_alphabet_is_one_path_component(text: str) -> None:
    if text in (".", ".."):
        return
    assert validate_id(text) == text
    store = Store("/nonexistent-root")
    assert os.path.dirname(store.path(text)) == store.root


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "../x", "/abs", "a b", "é", "a\0b", "x" * (ID_MAX + 1)])
def test_invalid_ids_are_refused_before_any_file_is_touched(runtime: Runtime, bad: str) -> None:
    with pytest.raises(ConfigError):
        validate_id(bad)
    if "\0" in bad:
        return  # no command line carries a NUL
    for command in (("state", bad), ("delete", "--force", bad), ("kill", bad)):
        assert "invalid container id" in runtime.fails(*command)
    assert not runtime.root.exists()


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    first = ContainerRecord(id="box", bundle="/first", status="created", pid=1, starttime=1)
    store.create(first).close()
    with pytest.raises(ContainerExistsError, match="container `box` already exists"):
        store.create(ContainerRecord(id="box", bundle="/second"))
    assert store.load("box").bundle == "/first"


def test_unknown_ids(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    with pytest.raises(ContainerNotFoundError, match="container `nope` does not exist"):
        store.load("nope")
    with pytest.raises(ContainerNotFoundError):
        store.lock("nope")


def test_records_round_trip_and_keep_unknown_keys(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    record = ContainerRecord(
        id="rt",
        bundle="/b",
        status="running",
        pid=7,
        starttime=8,
        cgroup="/g",
        cgroup_dirs=("/sys/fs/cgroup/unified/g",),
        annotations={"k": "v"},
        extra={"monitor_pid": 9},
    )
    with store.create(record) as locked:
        assert locked.record.to_json() == record.to_json()
    loaded = store.load("rt")
    assert loaded.to_json() == record.to_json()
    assert loaded.extra == {"monitor_pid": 9}
    data = json.loads((tmp_path / "rt" / STATE_FILE).read_text())
    assert data["version"] == 1 and data["monitor_pid"] == 9


def test_a_malformed_record_is_an_error_naming_the_file(runtime: Runtime) -> None:
    (runtime.root / "bad").mkdir(parents=True)
    (runtime.root / "bad" / STATE_FILE).write_text('{"id": "bad", "status": "runn')
    message = runtime.fails("state", "bad")
    assert message.startswith(f"read `{runtime.root}/bad/{STATE_FILE}`: Bad message (not JSON")
    (runtime.root / "bad" / STATE_FILE).write_text('{"id": "other", "bundle": "/b", "status": "running"}')
    assert "it names container `other`" in runtime.fails("state", "bad")


_WRITER = """
import os, sys
from nsprim.oci.runtime.store import Store
store = Store(sys.argv[1])
big = "x" * int(sys.argv[2])
with store.lock("box") as locked:
    n = 0
    while True:
        n += 1
        locked.save(locked.record.replace(annotations={"n": str(n), "big": big[: (n * 7919) % len(big)]}))
        if n == 1:
            print("writing", flush=True)
"""


def _start_writer(root: Path, size: int) -> subprocess.Popen[str]:
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(root), str(size)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
    return writer


def test_a_writer_killed_mid_write_leaves_a_whole_record(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.create(ContainerRecord(id="box", bundle="/b", status="stopped")).close()
    writer = _start_writer(tmp_path, 8 << 20)
    try:
        # Killed while a temporary record is on disk, where the poll sees one (on a fast file system
        # the writes may all fall between two looks: the kill then lands wherever it lands).
        temp = tmp_path / "box" / f".{STATE_FILE}.{writer.pid}.tmp"
        deadline = time.monotonic() + 10
        while not temp.exists() and time.monotonic() < deadline:
            time.sleep(0.0002)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert writer.stdout is not None
        writer.stdout.close()
    record = store.load("box")  # whole: the last complete record, or the first
    assert record.id == "box" and record.status == "stopped"
    n = int(record.annotations.get("n", "0"))
    assert len(record.annotations.get("big", "")) == ((n * 7919) % (8 << 20) if n else 0)
    # The lock died with its holder.
    with store.lock("box") as locked:
        locked.save(locked.record.replace(status="stopped"))
        locked.remove()  # the killed writer's temporary file goes with the directory
    assert not (tmp_path / "box").exists()


def test_readers_never_see_half_a_record(runtime: Runtime) -> None:
    runtime.store.create(ContainerRecord(id="box", bundle="/b", status="stopped")).close()
    writer = _start_writer(runtime.root, 1 << 20)
    try:
        for _ in range(200):
            assert runtime.store.load("box").status == "stopped"
        for _ in range(5):  # and through the command line, as engines read it
            assert json.loads(runtime.ok("state", "box"))["status"] == "stopped"
    finally:
        writer.kill()
        writer.wait()
        assert writer.stdout is not None
        writer.stdout.close()


def test_commands_that_change_a_container_wait_for_its_lock(runtime: Runtime) -> None:
    runtime.store.create(ContainerRecord(id="box", bundle="/b", status="stopped")).close()
    with runtime.store.lock("box"):
        cmd = [*runtime_argv(runtime), "delete", "box"]
        deleter = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                deleter.wait(timeout=1.0)  # blocked on the lock: it cannot have deleted anything
            assert runtime.store.exists("box")
            # Readers take no lock.
            assert json.loads(runtime.ok("state", "box"))["status"] == "stopped"
        except BaseException:
            deleter.kill()
            deleter.wait()
            raise
    _, err = deleter.communicate(timeout=60)
    assert deleter.returncode == 0, err
    assert not runtime.store.exists("box")


def test_a_waiter_of_a_deleted_container_takes_the_new_one(tmp_path: Path) -> None:
    """A command blocked on the lock of a directory that its holder deletes, and that
    another create makes anew, locks the new directory, never the deleted one."""
    import threading

    store = Store(str(tmp_path))
    store.create(ContainerRecord(id="box", bundle="/old", status="stopped")).close()
    seen: list[str] = []

    def wait_for_the_lock() -> None:
        with store.lock("box") as locked:
            seen.append(locked.record.bundle)

    holder = store.lock("box")
    waiter = threading.Thread(target=wait_for_the_lock)
    try:
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive()  # blocked on the lock
        holder.remove()
        store.create(ContainerRecord(id="box", bundle="/new", status="stopped")).close()
    finally:
        holder.close()
        waiter.join(timeout=30)
    assert seen == ["/new"]


def runtime_argv(runtime: Runtime) -> list[str]:
    from .conftest import runtime_command

    return [*runtime_command(), "--root", str(runtime.root)]
