"""A container's limits: checked before anything is made, enforced, never dropped."""

from __future__ import annotations

import math
import os
import signal

import pytest

from nsprim.cgroup import CpuResources, MemoryResources, PidsResources, Resources
from nsprim.cgroup.resources import MEMORY_MAX_BYTES
from nsprim.container import Container
from nsprim.container.config import ContainerConfig
from nsprim.errors import ConfigError, StepError

from ..conftest import requires_root


def test_cpus_must_be_finite_positive_and_at_most_the_cpus_there_are() -> None:
    cpus = len(os.sched_getaffinity(0))
    for bad in (math.inf, -math.inf, math.nan, 0, 0.0, -1, True, "1"):
        with pytest.raises(ConfigError, match="positive, finite"):
            Container(["true"]).cpus(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=f"more than the {cpus} CPU"):
        Container(["true"]).cpus(cpus + 1)
    with pytest.raises(ConfigError, match="below the kernel's 1000 us"):
        Container(["true"]).cpus(0.001)  # was raised to 0.01 without a word
    box = Container(["true"]).cpus(cpus).cpus(0.01)
    assert box.config.resources is not None and box.config.resources.cpu is not None
    assert box.config.resources.cpu.quota_us == 1000
    with pytest.raises(ConfigError, match="finite"):
        CpuResources(cpus=math.inf)  # not an OverflowError from round()


def test_pids_must_be_a_whole_number_at_least_one() -> None:
    for bad in (0, -1, True, 1.5, "8"):
        with pytest.raises(ConfigError, match="at least 1"):
            Container(["true"]).pids(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="most tasks"):
        PidsResources(max=2**32)
    assert Container(["true"]).pids(1).config.resources.pids.max == 1  # type: ignore[union-attr]


def test_memory_limits_below_the_floor_or_beyond_the_kernel_are_refused() -> None:
    tiny = Resources(memory=MemoryResources(max="64K"))
    with pytest.raises(ConfigError, match=r"`64K` is below the 6M a container needs"):
        Container(["true"]).resources(tiny)  # .resources() skipped the floor of .memory()
    with pytest.raises(ConfigError, match="below the 6M"):
        Container(config=ContainerConfig(argv=("true",), resources=tiny)).run()
    with pytest.raises(ConfigError):
        Container(["true"]).memory(2**64)  # wrapped around to a limit of 0
    for huge in (2**63, MEMORY_MAX_BYTES + 1):  # "no limit" to the kernel
        with pytest.raises(ConfigError, match="largest limit the kernel keeps"):
            Container(["true"]).memory(huge)
    assert Container(["true"]).memory(MEMORY_MAX_BYTES).config.resources.memory.max == MEMORY_MAX_BYTES  # type: ignore[union-attr]


@requires_root
def test_a_setup_out_of_memory_is_an_error_naming_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the floor (lifted here), the setup fails for want of memory: an error that says
    so, not an exit status 127 from a child whose report could not be written."""
    monkeypatch.setattr("nsprim.container.config.MIN_MEMORY", 0)
    box = Container(["/bin/true"]).rootfs("/").resources(Resources(memory=MemoryResources(max="64K")))
    with pytest.raises(StepError) as info:
        box.run()
    assert "out of memory during setup: the container's memory limit is 64K" in str(info.value)


@requires_root
def test_a_running_containers_memory_goes_up_and_down() -> None:
    """The tutorial's live update: on cgroup v1 memsw was pinned at the old limit and refused a higher one."""
    with Container(["sleep", "60"]).rootfs("/").memory("64M").start() as box:
        assert box.cgroup is not None
        version, d = box.cgroup.directory_of_memory()
        for mx in ("128M", "32M", "256M", "48M"):
            box.update(Resources(memory=MemoryResources(max=mx)))
            want = int(mx[:-1]) << 20
            if version == 1:
                assert int((d / "memory.limit_in_bytes").read_text()) == want
                memsw = d / "memory.memsw.limit_in_bytes"
                if memsw.exists():  # still no swap: memsw moves with the limit
                    assert int(memsw.read_text()) == want
            else:
                assert (d / "memory.max").read_text().strip() == str(want)
                if (d / "memory.swap.max").exists():
                    assert (d / "memory.swap.max").read_text().strip() == "0"
        box.kill()
        assert box.wait(timeout=10) == -signal.SIGKILL
