"""limits() and meminfo_view() inside and outside a limited group."""

from __future__ import annotations

import json

import pytest

from nsprim.cgroup import CGroup, CpuResources, CpusetResources, MemoryResources, Resources, limits, meminfo_view

from .conftest import Children, need

pytestmark = pytest.mark.cgroup_v2

REPORT = """\
import json
from nsprim.cgroup import limits
l = limits()
print(json.dumps({"quota": l.cpu_quota, "count": l.cpu_count, "mem": l.memory_limit, "total": l.memory_total,
                  "cpus": list(l.cpus), "text": str(l)}), flush=True)
"""


def test_limits_inside_a_limited_group(base: CGroup, children: Children) -> None:
    need(base.host, "memory")
    need(base.host, "cpu")
    cg = base.child("lim", Resources(cpu=CpuResources(cpus=0.5), memory=MemoryResources(max="100M")))
    child = children.start(REPORT, cg)
    inside = json.loads(child.readline())
    assert child.wait() == 0
    assert inside["quota"] == pytest.approx(0.5)
    assert inside["count"] == 1
    assert inside["mem"] == 100 << 20 and inside["total"] == 100 << 20
    assert "100M" in inside["text"]
    outside = limits()
    assert outside.memory_limit != 100 << 20
    # The same answer when asked from outside about the child's pid is covered by limits(pid) below.


def test_limits_takes_the_minimum_over_ancestors(base: CGroup, children: Children) -> None:
    need(base.host, "memory")
    need(base.host, "cpu")
    outer = base.child("outer", Resources(cpu=CpuResources(cpus=0.3), memory=MemoryResources(max="80M")))
    # (cgroup v1 refuses a child quota above its parent's, so the inner group has none.)
    inner = outer.child("inner", Resources(cpu=CpuResources(quota_us="max"), memory=MemoryResources(max="200M")))
    child = children.start("import time\nprint('in', flush=True)\ntime.sleep(60)\n", inner)
    assert child.readline() == "in"
    seen = limits(child.pid)
    assert seen.pid == child.pid
    assert seen.cpu_quota == pytest.approx(0.3)
    assert seen.cpu_count == 1
    assert seen.memory_limit == 80 << 20


def test_limits_follow_the_cpuset(base: CGroup, children: Children) -> None:
    need(base.host, "cpuset")
    cg = base.child("pinned", Resources(cpuset=CpusetResources(cpus="0")))
    child = children.start("import time\nprint('in', flush=True)\ntime.sleep(60)\n", cg)
    assert child.readline() == "in"
    seen = limits(child.pid)
    assert seen.cpus == (0,) and seen.cpu_count == 1


def test_meminfo_view_reflects_the_group(base: CGroup, children: Children) -> None:
    need(base.host, "memory")
    cg = base.child("mi", Resources(memory=MemoryResources(max="64M")))
    child = children.start("x = b'y' * (16 << 20)\nprint('ok', flush=True)\nimport time\ntime.sleep(60)\n", cg)
    assert child.readline() == "ok"
    text = meminfo_view(cg)
    values = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()}
    assert values["MemTotal"] == 64 << 10  # kB
    assert 0 <= values["MemFree"] <= (64 - 16) << 10
    assert values["MemAvailable"] >= values["MemFree"]
    with open("/proc/meminfo") as f:
        host_keys = [line.split(":")[0] for line in f]
    assert list(values) == host_keys  # same lines, same order: a drop-in for /proc/meminfo
