"""Real kernel effects of limits, stats, events, freezing and killing.

Each test runs against whichever cgroup version serves the controller it
needs (v1 on a hybrid host, v2 in the VM) and skips if the host lacks it.
"""

from __future__ import annotations

import time

import pytest

from nsprim.cgroup import (
    CGroup,
    CpuResources,
    HugetlbLimit,
    MemoryResources,
    PidsResources,
    Resources,
)
from nsprim.cgroup.events import CGroupTimeoutError
from nsprim.cgroup.units import V1_UNLIMITED

from .conftest import Children, need

pytestmark = pytest.mark.cgroup_v2

HOG = """\
import sys
chunks = []
for i in range(64):
    chunks.append(b"x" * (8 << 20))
    print(len(chunks) * 8, flush=True)
print("survived", flush=True)
"""

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"

BUSY = """\
print("busy", flush=True)
while True:
    pass
"""

FORK_BOMB = """\
import os, signal, sys
n = 0
while n < 100:
    try:
        pid = os.fork()
    except BlockingIOError:
        break
    if pid == 0:
        signal.pause()
        os._exit(0)
    n += 1
print(n, flush=True)
sys.stdin.readline()
"""


def _cpu_usec(cg: CGroup) -> int:
    stats = cg.stats().cpu
    assert stats is not None
    return stats.usage_usec


def test_over_the_memory_limit_is_oom_killed_and_seen(base: CGroup, children: Children) -> None:
    need(base.host, "memory")
    cg = base.child("oom", Resources(memory=MemoryResources(max="48M")))
    before = cg.memory_events().oom_kill
    child = children.start(HOG, cg)
    count = cg.wait_oom_kill(since=before, timeout=30)
    assert count > before
    assert child.wait() == -9
    events = cg.memory_events()
    assert events.oom_kill >= before + 1
    assert cg.oom_kills() == events.oom_kill  # the one-file read agrees
    stats = cg.stats().memory
    assert stats is not None and stats.limit == 48 << 20
    if stats.peak is not None:
        assert stats.peak >= 40 << 20


def test_wait_oom_kill_times_out_without_one(base: CGroup) -> None:
    need(base.host, "memory")
    cg = base.child("calm", Resources(memory=MemoryResources(max="48M")))
    with pytest.raises(CGroupTimeoutError, match="OOM kill"):
        cg.wait_oom_kill(timeout=0.2)


def test_fork_bomb_stops_at_pids_max(base: CGroup, children: Children) -> None:
    need(base.host, "pids")
    cg = base.child("bomb", Resources(pids=PidsResources(max=8)))
    child = children.start(FORK_BOMB, cg)
    forked = int(child.readline())
    assert 1 <= forked <= 7  # the parent itself is one of the 8 tasks
    stats = cg.stats().pids
    assert stats is not None and stats.max == 8 and stats.current <= 8
    cg.kill()
    assert child.wait() == -9
    assert cg.procs(recursive=True) == []


def test_cpu_quota_keeps_a_busy_loop_near_its_share(base: CGroup, children: Children) -> None:
    need(base.host, "cpu")
    cg = base.child("quota", Resources(cpu=CpuResources(cpus=0.2)))
    child = children.start(BUSY, cg)
    assert child.readline() == "busy"
    time.sleep(0.3)
    u0, t0 = _cpu_usec(cg), time.monotonic()
    time.sleep(2.0)
    u1, t1 = _cpu_usec(cg), time.monotonic()
    share = (u1 - u0) / ((t1 - t0) * 1e6)
    assert 0.10 <= share <= 0.35, f"busy loop got {share:.0%} of a CPU under a 20% quota"
    cpu = cg.stats().cpu
    assert cpu is not None
    if cpu.nr_throttled is not None:
        assert cpu.nr_throttled > 0


@pytest.mark.parametrize("version", [2, 1])
def test_freeze_stops_progress_and_thaw_resumes(base: CGroup, children: Children, version: int) -> None:
    try:
        from nsprim.cgroup.control import freezer_of

        freezer_of(base, version)
    except Exception:
        pytest.skip(f"no v{version} freezer here")
    child = children.start(BUSY, base)
    assert child.readline() == "busy"
    base.freeze(version=version)
    assert base.frozen
    u0 = _cpu_usec(base)
    time.sleep(0.4)
    assert _cpu_usec(base) - u0 < 20_000  # frozen: (almost) no CPU time
    base.thaw(version=version)
    assert not base.frozen
    u1 = _cpu_usec(base)
    time.sleep(0.4)
    assert _cpu_usec(base) - u1 > 100_000  # running again
    assert child.proc.poll() is None


@pytest.mark.parametrize("use_cgroup_kill", [True, False], ids=["cgroup.kill", "freeze-signal-loop"])
def test_kill_leaves_the_group_empty(base: CGroup, children: Children, use_cgroup_kill: bool) -> None:
    if use_cgroup_kill and (base.unified_dir is None or not (base.unified_dir / "cgroup.kill").exists()):
        pytest.skip("no cgroup.kill here")
    # The forker's own child (a grandchild of the test) must be killed too; only the parent reports.
    forker = children.start("import os, time\nif os.fork():\n    print('x', flush=True)\ntime.sleep(60)\n", base)
    others = [children.start("import time\nprint('x', flush=True)\ntime.sleep(60)\n", base) for _ in range(2)]
    for c in [forker, *others]:
        assert c.readline() == "x"
    assert len(base.procs()) == 4
    base.kill(use_cgroup_kill=use_cgroup_kill, timeout=10)
    assert base.procs(recursive=True) == []
    assert not base.populated
    for c in [forker, *others]:
        assert c.wait() == -9


def test_kill_refuses_to_kill_the_caller(base: CGroup, children: Children, monkeypatch: pytest.MonkeyPatch) -> None:
    # We never move the test runner itself into a group: pretend to be a child that is inside.
    child = children.start(SLEEPER, base)
    assert child.readline() == "up"
    monkeypatch.setattr("os.getpid", lambda: child.pid)
    with pytest.raises(ValueError, match="calling process"):
        base.kill()
    monkeypatch.undo()
    assert base.procs() == [child.pid]


def test_live_update_of_memory_max(base: CGroup, children: Children) -> None:
    need(base.host, "memory")
    cg = base.child("live", Resources(memory=MemoryResources(max="256M")))
    code = "import sys\nheld = b'x' * (16 << 20)\nprint('held', flush=True)\nsys.stdin.readline()\n" + HOG
    child = children.start(code, cg)
    assert child.readline() == "held"
    cg.update(Resources(memory=MemoryResources(max="64M")))
    stats = cg.stats().memory
    assert stats is not None and stats.limit == 64 << 20 and stats.current >= 16 << 20
    before = cg.memory_events().oom_kill
    child.send("more")
    cg.wait_oom_kill(since=before, timeout=30)
    assert child.wait() == -9
    # Raising it again works too, on the same running group.
    cg.update(Resources(memory=MemoryResources(max="max")))
    stats = cg.stats().memory
    assert stats is not None and stats.limit is None


def test_memory_and_swap_limits_up_and_down_in_any_order(base: CGroup) -> None:
    need(base.host, "memory")
    cg = base.child("memsw", Resources(memory=MemoryResources(max="64M", swap=0)))
    version, d = cg.directory_of_memory()
    for mx in ("128M", "32M", "96M"):  # above, below, between the current limits
        cg.update(Resources(memory=MemoryResources(max=mx, swap=0)))
        limit = cg.stats().memory.limit  # type: ignore[union-attr]
        assert limit == int(mx[:-1]) << 20
        if version == 1 and (d / "memory.memsw.limit_in_bytes").exists():
            assert int((d / "memory.memsw.limit_in_bytes").read_text()) == limit  # swap 0: memsw = the limit
        elif version == 2 and (d / "memory.swap.max").exists():
            assert (d / "memory.swap.max").read_text().strip() == "0"
    cg.delete()


def test_stats_and_pressure(base: CGroup, children: Children) -> None:
    child = children.start("x = b'y' * (8 << 20)\nprint('ok', flush=True)\nimport time\ntime.sleep(60)\n", base)
    assert child.readline() == "ok"
    stats = base.stats()
    if base.version_of("memory"):
        assert stats.memory is not None and stats.memory.current >= 8 << 20
    if base.version_of("pids"):
        assert stats.pids is not None and stats.pids.current >= 1
    assert stats.cpu is not None and stats.cpu.usage_usec > 0
    # The user/system split is sampled per tick (v1 cpuacct, v2 too), the total is exact: allow a few ticks.
    assert stats.cpu.user_usec + stats.cpu.system_usec <= stats.cpu.usage_usec + 50_000
    if base.unified_dir is not None and (base.unified_dir / "memory.pressure").exists():
        assert stats.memory_pressure is not None
        assert stats.memory_pressure.some.avg10 >= 0.0 and stats.memory_pressure.some.total >= 0


def test_hugetlb_limit_applies_where_the_controller_lives(base: CGroup) -> None:
    need(base.host, "hugetlb")
    cg = base.child("huge", Resources(hugetlb=(HugetlbLimit("2MB", "4M"),)))
    d = cg.directory("hugetlb")
    name = "hugetlb.2MB.max" if cg.version_of("hugetlb") == 2 else "hugetlb.2MB.limit_in_bytes"
    assert (d / name).read_text().strip() == str(4 << 20)
    cg.delete()


def test_a_setup_step_refused_memory_is_an_error_even_when_its_report_is_too(base: CGroup) -> None:
    # The child joins a group with no memory to give: the next step's kernel allocation fails, and so
    # does the write of its report (a pipe buffer is memory too).  Silence must not read as an exec.
    import nsprim
    from nsprim.errors import StepError
    from nsprim.plan import Mount, WriteFile

    version = need(base.host, "memory")
    cg = base.child("nomem", Resources(memory=MemoryResources(max=0)))
    join = cg.directory("memory") / ("tasks" if version == 1 else "cgroup.procs")
    steps = [WriteFile(join, b"0"), Mount("tmpfs", "/tmp", "tmpfs", 0)]
    with pytest.raises(StepError) as info:
        nsprim.spawn(["/bin/true"], new={"mnt"}, steps=steps)
    assert info.value.errno == 12 and "Cannot allocate memory" in str(info.value)  # ENOMEM
    assert cg.procs() == []
    cg.delete()


def test_a_memory_limit_alone_moves_a_pinned_swap_limit_along(base: CGroup) -> None:
    # v1: memsw pinned at the old limit (no swap) refused any higher limit; the swap allowed is kept.
    version = need(base.host, "memory")
    for swap in (0, 16 << 20):
        cg = base.child(f"pinned{swap}", Resources(memory=MemoryResources(max="64M", swap=swap)))
        d = cg.directory("memory")
        for mx in (128 << 20, 32 << 20, 96 << 20, "max"):
            cg.update(Resources(memory=MemoryResources(max=mx)))
            if version == 1:
                limit = int((d / "memory.limit_in_bytes").read_text())
                memsw_file = d / "memory.memsw.limit_in_bytes"
                if mx == "max":
                    assert limit >= V1_UNLIMITED
                    assert not memsw_file.exists() or int(memsw_file.read_text()) >= V1_UNLIMITED
                else:
                    assert limit == mx
                    assert not memsw_file.exists() or int(memsw_file.read_text()) == mx + swap
            else:
                assert (d / "memory.max").read_text().strip() == str(mx)
                if (d / "memory.swap.max").exists():
                    assert (d / "memory.swap.max").read_text().strip() == str(swap)
        cg.delete()
