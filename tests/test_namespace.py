"""Namespace: inspect, enter and restore, persist (with iproute2), and bad input."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

import nsprim
from nsprim import Namespace, NamespaceType
from nsprim.errors import ConfigError, NamespaceError, NamespaceTypeError, NoSuchProcessError, StepError
from nsprim.plan import SetNs

from .conftest import requires_root
from .tools import need_tool

pytestmark = requires_root


@pytest.fixture
def sleeper() -> nsprim.Process:
    """A child in new uts, net and ipc namespaces, with hostname `sleeper`."""
    with nsprim.spawn(["sleep", "60"], new={"uts", "net", "ipc"}, hostname="sleeper") as p:
        yield p  # type: ignore[misc]


def test_namespace_types_cover_all_eight_with_kernel_flags() -> None:
    assert {t.value for t in NamespaceType} == {"mnt", "uts", "ipc", "pid", "net", "user", "cgroup", "time"}
    assert NamespaceType.NET.flag == 0x40000000
    assert NamespaceType.MNT.flag == 0x00020000
    assert NamespaceType.parse("network") is NamespaceType.NET
    assert NamespaceType.from_flag(NamespaceType.USER.flag) is NamespaceType.USER


def test_open_inspect_and_compare() -> None:
    parent = f"/proc/{os.getppid()}/ns/net"
    with Namespace.of_pid("self", "net") as a, Namespace.from_path(parent) as b:
        assert a.type is NamespaceType.NET
        assert repr(a).startswith("<Namespace net:[")
        assert str(a) == os.readlink("/proc/self/ns/net")
        assert (a == b) == (os.stat("/proc/self/ns/net").st_ino == os.stat(parent).st_ino)
        assert a.id == nsprim.namespace_ids()[NamespaceType.NET]
        assert hash(a) == hash(a.id)


def test_all_namespaces_of_a_pid(sleeper: nsprim.Process) -> None:
    opened = Namespace.all_of(sleeper.pid)
    try:
        own = nsprim.namespace_ids()
        differs = {t for t, ns in opened.items() if ns.id != own[t]}
        assert differs == {NamespaceType.UTS, NamespaceType.NET, NamespaceType.IPC}
    finally:
        for ns in opened.values():
            ns.close()
    assert nsprim.shares_namespace("self", sleeper.pid, "pid")
    assert not nsprim.shares_namespace("self", sleeper.pid, "net")


def test_enter_and_restore_uts_and_net(sleeper: nsprim.Process) -> None:
    host_name = socket.gethostname()
    host_net = os.readlink("/proc/thread-self/ns/net")
    with sleeper.namespace("uts") as uts, uts.entered():
        assert socket.gethostname() == "sleeper"
    assert socket.gethostname() == host_name
    with sleeper.namespace("net") as net, net.entered():
        assert [name for _, name in socket.if_nameindex()] == ["lo"]
    assert os.readlink("/proc/thread-self/ns/net") == host_net


def test_enter_is_per_thread(sleeper: nsprim.Process) -> None:
    go, done = threading.Event(), threading.Event()
    seen: list[str] = []

    def other() -> None:
        go.wait()
        seen.append(socket.gethostname())
        done.set()

    t = threading.Thread(target=other)
    t.start()  # created before the switch: it keeps the host's namespace
    with sleeper.namespace("uts") as uts, uts.entered():
        go.set()
        done.wait()
        assert socket.gethostname() == "sleeper"
    t.join()
    assert seen == [socket.gethostname()]


def test_enter_mount_namespace_from_threaded_process_is_refused_clearly(sleeper: nsprim.Process) -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with nsprim.spawn(["sleep", "60"], new={"mnt"}) as p, p.namespace("mnt") as mnt:
            with pytest.raises(NamespaceError) as info, mnt.entered():
                pass
            assert info.value.errno == 22
            assert "multi-threaded" in str(info.value)
    finally:
        stop.set()
        t.join()


def test_run_inside_another_process_namespaces(sleeper: nsprim.Process) -> None:
    with sleeper.namespace("uts") as uts, sleeper.namespace("net") as net:
        r = nsprim.run(
            ["sh", "-c", "hostname; cat /proc/self/net/dev | tail -n +3"], join=[uts, net], capture_output=True
        )
    lines = r.stdout.decode().split("\n") if r.stdout else []
    assert lines[0] == "sleeper"
    assert lines[1].strip().startswith("lo:")


def test_join_pid_namespace_of_another_process() -> None:
    with nsprim.spawn(["sleep", "60"], new={"pid", "mnt"}, mount_proc=True) as init:
        with init.namespace("pid") as pidns, init.namespace("mnt") as mnt:
            r = nsprim.run(["sh", "-c", "echo $$; cat /proc/1/comm"], join=[pidns, mnt], capture_output=True)
        assert r.stdout is not None
        pid, comm = r.stdout.decode().split()
        assert int(pid) > 1 and comm == "sleep"


def test_join_as_step_with_wrong_type_is_a_step_error(sleeper: nsprim.Process) -> None:
    with sleeper.namespace("net") as net:
        step = SetNs(net.fd, NamespaceType.UTS.flag, str(net.path))
        with pytest.raises(StepError) as info:
            nsprim.run(["true"], steps=[step])
    assert info.value.errno == 22
    assert "setns" in str(info.value) and "[plan step" in str(info.value)


def test_persist_network_namespace_for_iproute2(sleeper: nsprim.Process) -> None:
    need_tool("ip", "iproute2")
    name = f"nsprim-test-{uuid.uuid4().hex[:8]}"
    with sleeper.namespace("net") as net:
        path = net.persist_net(name)
    try:
        assert path == Path("/run/netns") / name
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert name in listed
        links = subprocess.run(["ip", "netns", "exec", name, "ip", "-o", "link"], capture_output=True, text=True)
        assert links.returncode == 0, links.stderr
        assert [line.split(":")[1].strip() for line in links.stdout.splitlines()] == ["lo"]
        # reopened from the file, it is the same namespace as the process'
        with Namespace.from_path(path, "net") as again, sleeper.namespace("net") as live:
            assert again == live
    finally:
        nsprim.unpersist(path)
    assert not path.exists()
    assert name not in Path("/proc/self/mountinfo").read_text()


def test_persisted_namespace_outlives_its_processes(tmp_path: Path) -> None:
    target = tmp_path / "uts"
    with nsprim.spawn(["sleep", "60"], new={"uts"}, hostname="ghost") as p, p.namespace("uts") as ns:
        ns.persist(target)
    try:
        with Namespace.from_path(target, "uts") as again:
            r = nsprim.run(["hostname"], join=[again], capture_output=True)
        assert r.stdout == b"ghost\n"
    finally:
        nsprim.unpersist(target)
    assert not target.exists()


def test_unknown_pid_is_a_lookup_error() -> None:
    with pytest.raises(NoSuchProcessError) as info:
        Namespace.of_pid(2**22 + 12345, "net")
    assert isinstance(info.value, ProcessLookupError)
    with pytest.raises(NoSuchProcessError):
        nsprim.namespace_ids(2**22 + 12345)
    with pytest.raises(ConfigError):
        Namespace.of_pid(-3, "net")


def test_a_path_that_is_not_a_namespace_file(tmp_path: Path) -> None:
    f = tmp_path / "plain"
    f.write_text("x")
    with pytest.raises(NamespaceTypeError, match="not a namespace file"):
        Namespace.from_path(f)
    with pytest.raises(NamespaceError) as info:
        Namespace.from_path(tmp_path / "missing")
    assert info.value.errno == 2 and str(tmp_path / "missing") in str(info.value)


def test_wrong_namespace_type_is_refused() -> None:
    with pytest.raises(NamespaceTypeError, match="is a net namespace, not a uts namespace"):
        Namespace.from_path("/proc/self/ns/net", "uts")
    with pytest.raises(ConfigError, match="unknown namespace type `bogus`"):
        NamespaceType.parse("bogus")


def test_persist_failure_leaves_no_file(tmp_path: Path) -> None:
    with Namespace.of_pid("self", "mnt") as mnt:
        target = tmp_path / "self-mnt"
        with pytest.raises(NamespaceError):
            mnt.persist(target)  # a mount namespace cannot be bound inside itself
    assert not target.exists()


def test_create_and_join_the_same_type_conflicts(sleeper: nsprim.Process) -> None:
    with sleeper.namespace("net") as net, pytest.raises(ConfigError, match="both create and join"):
        nsprim.spawn(["true"], new={"net"}, join=[net])


def test_unshare_in_a_child_process_only() -> None:
    # unshare() moves the caller: do it in a throwaway child to keep pytest intact.
    code = (
        "import nsprim, socket; nsprim.unshare('uts'); import nsprim._sys as s; "
        "s.sethostname('moved'); print(socket.gethostname())"
    )
    r = nsprim.run([os.sys.executable, "-c", code], capture_output=True)  # type: ignore[attr-defined]
    assert r.stdout == b"moved\n", r.stderr
