"""GroupEventWatch: OOM kills, freezes, memory.high hits and pressure triggers, from kernel notifications.

Runs against whichever cgroup version serves the controller (v1's eventfd
OOM notices on a hybrid host, v2's memory.events in the VM: ``nox -s vm``).
"""

from __future__ import annotations

import time

import pytest

from nsprim.cgroup import (
    CGroup,
    CpusetResources,
    GroupEvent,
    GroupEventKind,
    MemoryResources,
    PressureTrigger,
    Resources,
)
from nsprim.errors import ConfigError, UnsupportedError

from .conftest import Children, need

pytestmark = pytest.mark.cgroup_v2

HOG = """\
chunks = []
for i in range(64):
    chunks.append(b"x" * (8 << 20))
    print(len(chunks) * 8, flush=True)
print("survived", flush=True)
"""

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
BUSY = "print('busy', flush=True)\nwhile True:\n    pass\n"


def _until(watch: object, kind: GroupEventKind, timeout: float) -> list[GroupEvent]:
    """Events from *watch* until one of *kind* came (fails after *timeout* seconds)."""
    from nsprim.cgroup import GroupEventWatch

    assert isinstance(watch, GroupEventWatch)
    seen: list[GroupEvent] = []
    deadline = time.monotonic() + timeout
    while not any(e.kind is kind for e in seen):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {kind.value} event within {timeout} s; saw {seen}")
        seen += watch.wait(left)
    return seen


def test_an_oom_kill_is_notified(base: CGroup, children: Children) -> None:
    need(base.host, "memory")
    cg = base.child("oom", Resources(memory=MemoryResources(max="48M")))
    with cg.watch_events({GroupEventKind.OOM, GroupEventKind.OOM_KILL}) as watch:
        assert watch.fds
        child = children.start(HOG, cg)
        seen = _until(watch, GroupEventKind.OOM_KILL, 30)
        assert child.wait() == -9
    kinds = [e.kind for e in seen]
    assert kinds.index(GroupEventKind.OOM) < kinds.index(GroupEventKind.OOM_KILL)  # the notice comes first
    kill = next(e for e in seen if e.kind is GroupEventKind.OOM_KILL)
    assert kill.count == cg.oom_kills() >= 1


def test_freeze_and_thaw_are_notified(base: CGroup, children: Children) -> None:
    cg = base.child("freeze")
    child = children.start(SLEEPER, cg)
    assert child.readline() == "up"
    try:
        watch = cg.watch_events({GroupEventKind.FROZEN, GroupEventKind.THAWED})
    except UnsupportedError as exc:
        pytest.skip(str(exc))
    with watch:
        assert watch.wait(0.05) == []
        cg.freeze()
        assert [e.kind for e in _until(watch, GroupEventKind.FROZEN, 10)] == [GroupEventKind.FROZEN]
        cg.thaw()
        assert [e.kind for e in _until(watch, GroupEventKind.THAWED, 10)] == [GroupEventKind.THAWED]


def test_a_cpu_pressure_trigger_fires(base: CGroup, children: Children) -> None:
    need(base.host, "cpuset")
    cg = base.child("psi", Resources(cpuset=CpusetResources(cpus="0")))
    trigger = PressureTrigger("cpu", stall=0.05, window=2.0)  # 2 s: what a process without CAP_SYS_RESOURCE may ask
    try:
        watch = cg.watch_events([GroupEventKind.PRESSURE], [trigger])
    except UnsupportedError as exc:
        pytest.skip(str(exc))
    with watch:
        for _ in range(2):  # two busy loops on one CPU: each waits half the time for it
            child = children.start(BUSY, cg)
            assert child.readline() == "busy"
        seen = _until(watch, GroupEventKind.PRESSURE, 15)
    assert seen[0] == GroupEvent(GroupEventKind.PRESSURE, trigger=trigger)


def test_memory_high_hits_are_notified_on_v2(base: CGroup, children: Children) -> None:
    if need(base.host, "memory") != 2:
        pytest.skip("memory.high is cgroup v2's")
    cg = base.child("high", Resources(memory=MemoryResources(high="32M")))
    with cg.watch_events({GroupEventKind.MEMORY_HIGH}) as watch:
        children.start(HOG, cg)
        seen = _until(watch, GroupEventKind.MEMORY_HIGH, 60)
    assert seen[0].count is not None and seen[0].count >= 1
    cg.kill()


def test_what_v1_memory_cannot_deliver_is_refused_by_name(base: CGroup) -> None:
    if need(base.host, "memory") != 1:
        pytest.skip("the memory controller is cgroup v2's here")
    cg = base.child("v1")
    for kind in (GroupEventKind.MEMORY_HIGH, GroupEventKind.MEMORY_MAX):
        with pytest.raises(UnsupportedError, match=f"`{kind.value}`.*cgroup v1") as info:
            cg.watch_events({kind, GroupEventKind.OOM_KILL})
        assert info.value.feature == kind.value
    with cg.watch_events() as watch:  # the default: what the host can deliver
        assert GroupEventKind.OOM_KILL in watch.kinds and GroupEventKind.MEMORY_HIGH not in watch.kinds


def test_removing_the_group_is_not_an_event(base: CGroup) -> None:
    need(base.host, "memory")
    cg = base.child("gone")
    watch = cg.watch_events()
    try:
        cg.delete()
        assert watch.wait(0.3) == []  # v1 signals the eventfd on removal: not an OOM
    finally:
        watch.close()


def test_bad_requests_are_refused_before_anything_is_opened(base: CGroup) -> None:
    cg = base.child("bad")
    with pytest.raises(ConfigError, match="pressure triggers"):
        cg.watch_events([GroupEventKind.PRESSURE])
    with pytest.raises(ConfigError, match="kinds"):
        cg.watch_events(["oom"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="leaves out pressure"):
        cg.watch_events([GroupEventKind.OOM_KILL], [PressureTrigger("io", 0.1)])
