"""CGroup lifecycle on the real kernel: create, open, nest, add, delete, rollback, and bad input."""

from __future__ import annotations

import errno
import os

import pytest

from nsprim.cgroup import (
    ROOT,
    CGroup,
    CGroupBusyError,
    CGroupMode,
    Controller,
    CpuResources,
    IoDeviceLimit,
    IoResources,
    MemoryResources,
    PidsResources,
    Resources,
    host_info,
)
from nsprim.errors import ConfigError, SyscallError, UnsupportedError

from .conftest import SESSION_PREFIX, Children, need

pytestmark = pytest.mark.cgroup_v2

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"


def test_host_info_describes_the_host() -> None:
    info = host_info()
    assert info.mode in (CGroupMode.UNIFIED, CGroupMode.HYBRID, CGroupMode.LEGACY)
    text = str(info)
    assert f"cgroup mode: {info.mode.value}" in text
    for c, h in info.controllers.items():
        assert c.value in text
        assert h.mount_point.is_dir()
    if info.mode is CGroupMode.HYBRID:
        assert info.unified is not None and any(h.version == 1 for h in info.hierarchies)
    # The process's own cgroups come from /proc/self/cgroup.
    for h, path in info.cgroups:
        assert h.directory(path).is_dir()


def test_create_spans_the_hierarchies_and_add_moves_the_process(base: CGroup, children: Children) -> None:
    info = base.host
    expected = {h for h in info.hierarchies if h.controllers or h.version == 2}
    assert set(base.directories) == expected
    assert set(info.controllers) >= base.controllers >= {c for c, h in info.controllers.items() if h.version == 1}
    for d in base.directories.values():
        assert d.name == base.name and d.is_dir()
    child = children.start(SLEEPER, base)
    assert child.readline() == "up"
    assert base.procs() == [child.pid]
    assert CGroup.from_pid(child.pid) == base
    assert CGroup.open(base.path) == base
    with open(f"/proc/{child.pid}/cgroup") as f:
        lines = f.read().splitlines()
    for h in expected:
        assert any(line.endswith(":" + base.path) for line in lines), (h, lines)


def test_nested_groups_and_recursive_delete(base: CGroup, children: Children) -> None:
    mid = base.child("mid")
    leaf = CGroup.create("leaf", mid, Resources(pids=PidsResources(max=5)) if base.version_of("pids") else None)
    assert leaf.path == base.path + "/mid/leaf"
    assert base.children() == ["mid"]
    with pytest.raises(CGroupBusyError, match="child groups"):
        mid.delete()
    child = children.start(SLEEPER, leaf)
    assert child.readline() == "up"
    assert mid.procs(recursive=True) == [child.pid]
    assert mid.populated
    with pytest.raises(CGroupBusyError, match="still inside"):
        mid.delete(recursive=True)
    assert leaf.exists()
    leaf.kill()
    assert child.wait() == -9
    mid.delete(recursive=True, timeout=5)
    assert not mid.exists() and not leaf.exists()
    assert base.children() == []


def test_context_manager_kills_and_removes(base: CGroup, children: Children) -> None:
    with base.child("ctx") as cg:
        child = children.start(SLEEPER, cg)
        assert child.readline() == "up"
        dirs = list(cg.directories.values())
    assert child.wait() == -9
    assert not any(d.exists() for d in dirs)


def test_wait_empty_returns_when_the_last_process_exits(base: CGroup, children: Children) -> None:
    child = children.start("print('bye', flush=True)\n", base)
    assert child.readline() == "bye"
    assert child.wait() == 0
    base.wait_empty(timeout=10)
    assert base.procs() == [] and not base.populated


def test_wait_empty_times_out(base: CGroup, children: Children) -> None:
    child = children.start(SLEEPER, base)
    assert child.readline() == "up"
    with pytest.raises(TimeoutError, match="empty"):
        base.wait_empty(timeout=0.2)


def test_delete_with_live_process_is_a_typed_error(base: CGroup, children: Children) -> None:
    child = children.start(SLEEPER, base)
    assert child.readline() == "up"
    with pytest.raises(CGroupBusyError) as info:
        base.delete(timeout=0.1)
    assert info.value.errno == errno.EBUSY
    assert isinstance(info.value, SyscallError) and "delete `" in str(info.value)
    assert base.exists()  # nothing was removed; the fixture kills and removes it


@pytest.mark.parametrize("name", ["../escape", "..", ".", "a/b", "/abs", "", "x\0y", "x" * 256])
def test_bad_names_touch_nothing(base: CGroup, name: str) -> None:
    with pytest.raises(ConfigError):
        CGroup.create(name, base)
    with pytest.raises(ConfigError):
        CGroup.open("/" + base.path + "/../..")
    assert base.children() == []


def test_unknown_controller_touches_nothing(base: CGroup) -> None:
    with pytest.raises(ConfigError, match="unknown cgroup controller `bogus`"):
        CGroup.create("x", base, controllers=["memory", "bogus"])
    assert base.children() == []


def test_missing_controller_is_unsupported(base: CGroup) -> None:
    missing = [
        c
        for c in (Controller.RDMA, Controller.MISC, Controller.PERF_EVENT, Controller.HUGETLB)
        if c not in base.host.controllers
    ]
    if not missing:
        pytest.skip("this host has every controller")
    with pytest.raises(UnsupportedError, match=f"`{missing[0].value}`.*mode: {base.host.mode.value}"):
        CGroup.create("x", base, controllers=[missing[0]])
    assert base.children() == []


def test_v2_only_memory_settings(base: CGroup) -> None:
    version = need(base.host, "memory")
    res = Resources(memory=MemoryResources(max="64M", high="48M", low="1M", oom_group=True))
    if version == 1:
        with pytest.raises(UnsupportedError, match=r"memory\.high.*host mode"):
            CGroup.create("v2only", base, res)
        assert base.children() == []
    else:
        cg = CGroup.create("v2only", base, res)
        d = cg.directory("memory")
        assert (d / "memory.high").read_text().strip() == str(48 << 20)
        assert (d / "memory.oom.group").read_text().strip() == "1"
        cg.delete()


def test_failed_write_rolls_back_every_directory(base: CGroup) -> None:
    need(base.host, "io")
    # No such block device: the kernel rejects the write after the directories were made.
    res = Resources(io=IoResources(limits=(IoDeviceLimit(4095, 4095, rbps="1M"),)))
    with pytest.raises(SyscallError) as info:
        CGroup.create("rollback", base, res)
    assert "write `" in str(info.value) and "io" in str(info.value)
    assert base.children() == []
    for d in base.directories.values():
        assert not (d / "rollback").exists()


def test_existing_directory_in_one_hierarchy_rolls_back_the_others(base: CGroup) -> None:
    dirs = list(base.directories.items())
    if len(dirs) < 2:
        pytest.skip("a single hierarchy: nothing to roll back across")
    _last_h, last_d = dirs[-1]
    os.mkdir(last_d / "clash")
    try:
        with pytest.raises(SyscallError) as info:
            CGroup.create("clash", base)
        assert info.value.errno == errno.EEXIST and "mkdir" in str(info.value)
        for h, d in dirs[:-1]:
            assert not (d / "clash").exists(), h
        assert (last_d / "clash").exists()  # not ours to remove
        again = CGroup.create("clash", base, exist_ok=True)
        assert all((d / "clash").is_dir() for _h, d in dirs)
        again.delete()
    finally:
        if (last_d / "clash").exists():
            os.rmdir(last_d / "clash")


def test_open_missing_group() -> None:
    with pytest.raises(SyscallError) as info:
        CGroup.open("/nsprim-test-does-not-exist")
    assert info.value.errno == errno.ENOENT


def test_create_under_missing_parent(base: CGroup) -> None:
    with pytest.raises(SyscallError) as info:
        CGroup.create("x", base.path + "/nope")
    assert info.value.errno == errno.ENOENT
    assert base.children() == []


def test_create_at_root_then_delete() -> None:
    name = SESSION_PREFIX + "rootlevel"
    cg = CGroup.create(name, ROOT)
    try:
        assert cg.path == "/" + name
    finally:
        cg.delete()
    assert not cg.exists()


def test_v1_child_quota_above_parent_is_explained_and_rolled_back(base: CGroup) -> None:
    if need(base.host, "cpu") != 1:
        pytest.skip("only cgroup v1 forbids a child quota above its parent's")
    parent = base.child("slow", Resources(cpu=CpuResources(cpus=0.2)))
    with pytest.raises(SyscallError, match="may not exceed its parent") as info:
        CGroup.create("fast", parent, Resources(cpu=CpuResources(cpus=1.0)))
    assert info.value.errno == errno.EINVAL and "cpu.cfs_quota_us" in str(info.value)
    assert parent.children() == []


THREADED = """\
import threading, time
ready = threading.Event()
def worker():
    print(threading.get_native_id(), flush=True)
    time.sleep(60)
threading.Thread(target=worker, daemon=True).start()
time.sleep(60)
"""


def test_add_thread(base: CGroup, children: Children) -> None:
    child = children.start(THREADED, base)
    tid = int(child.readline())
    assert tid != child.pid
    solo = base.child("solo")
    if base.host.unified is not None and len(solo.directories) == 1:
        with pytest.raises(UnsupportedError, match="threaded"):
            solo.add_thread(tid)
        return
    solo.add_thread(tid)
    assert tid in solo.threads() and child.pid not in solo.threads()
    with open(f"/proc/{child.pid}/task/{tid}/cgroup") as f:
        lines = f.read().splitlines()
    v1_lines = [line for line in lines if not line.startswith("0::") and ":name=" not in line]
    assert v1_lines and all(line.endswith(solo.path) for line in v1_lines)
    solo.kill()  # the whole process dies, though only one of its threads is in solo
    assert child.wait() == -9
    assert not solo.populated and not base.populated


def test_no_internal_processes_rule_on_v2(base: CGroup, children: Children) -> None:
    if need(base.host, "memory") != 2:
        pytest.skip("the rule concerns controllers on cgroup v2")
    child = children.start(SLEEPER, base)
    assert child.readline() == "up"
    # base has a process of its own: it may not enable memory for a child group.
    with pytest.raises(SyscallError, match="no-internal-processes") as info:
        CGroup.create("leaf", base, Resources(memory=MemoryResources(max="64M")))
    assert info.value.errno in (errno.EBUSY, errno.EOPNOTSUPP)
    assert base.children() == []
    # The other way round: a group that delegates controllers may not take processes.
    base.kill()
    assert child.wait() == -9
    mid = base.child("mid")
    mid.child("leaf", Resources(memory=MemoryResources(max="64M")))
    other = children.start(SLEEPER)
    with pytest.raises(SyscallError, match="no-internal-processes"):
        mid.add(other.pid)


def test_swap_limit(base: CGroup) -> None:
    version = need(base.host, "memory")
    cg = base.child("swap", Resources(memory=MemoryResources(max="64M", swap=0)))
    d = cg.directory("memory")
    if version == 2:
        assert (d / "memory.swap.max").read_text().strip() == "0"
    else:
        assert (d / "memory.memsw.limit_in_bytes").read_text().strip() == str(64 << 20)
    cg.update(Resources(memory=MemoryResources(max="128M", swap="32M")))  # raising: memsw first, then the limit
    if version == 1:
        assert (d / "memory.memsw.limit_in_bytes").read_text().strip() == str(160 << 20)
        assert (d / "memory.limit_in_bytes").read_text().strip() == str(128 << 20)
    cg.delete()


def test_io_weight_applies_or_is_unsupported(base: CGroup) -> None:
    need(base.host, "io")
    try:
        cg = CGroup.create("iow", base, Resources(io=IoResources(weight=500)))
    except UnsupportedError as exc:
        assert "weight" in str(exc) and "mode" in str(exc)
        assert base.children() == []
        return
    cg.delete()


def test_root_groups_are_never_killed_frozen_or_deleted() -> None:
    root = CGroup.open("/")
    assert root.is_root
    for action in (root.kill, root.freeze, root.delete):
        with pytest.raises(ConfigError, match="root cgroup"):
            action()
