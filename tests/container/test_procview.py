"""Container.proc_view(): the container's memory limit and CPUs in /proc/meminfo, /proc/cpuinfo, cpu/online."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import nsprim
from nsprim.cgroup import CpusetResources, Resources
from nsprim.cgroup.units import parse_cpuset
from nsprim.container import Container
from nsprim.container.host import state_dir
from nsprim.container.procview import cpuinfo_view, online_view, view_directory
from nsprim.errors import ConfigError

from ..conftest import requires_root
from ..tools import static_busybox

pytestmark = requires_root

MB = 1024 * 1024
PYTHON = os.path.realpath(sys.executable)


def meminfo(text: str) -> dict[str, int]:
    """``key -> bytes`` of /proc/meminfo text."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            values[key] = int(rest.split()[0]) * 1024
    return values


def views_left() -> list[str]:
    d = view_directory(state_dir(), "x").parent
    return sorted(os.listdir(d)) if d.is_dir() else []


def test_free_and_meminfo_show_the_memory_limit() -> None:
    before = views_left()
    script = "cat /proc/meminfo; echo ---; free -b"
    r = Container(["sh", "-c", script]).host_root().memory("256M").proc_view().run(capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    info_text, _, free_text = r.stdout.decode().partition("---\n")
    info = meminfo(info_text)
    assert info["MemTotal"] == 256 * MB
    assert 0 <= info["MemFree"] <= 256 * MB and info["MemAvailable"] <= 256 * MB
    if shutil.which("free"):  # procps free reads /proc/meminfo (busybox free uses sysinfo(2): not covered)
        mem = next(line.split() for line in free_text.splitlines() if line.startswith("Mem:"))
        assert int(mem[1]) == 256 * MB
    assert views_left() == before, "the view's directory was not removed"


def test_default_container_sees_the_host_figures() -> None:
    r = Container(["cat", "/proc/meminfo"]).host_root().memory("256M").run(capture_output=True, timeout=30)
    assert meminfo(r.stdout.decode())["MemTotal"] > 256 * MB  # the control: without the view, the host's RAM


def test_one_cpu_with_a_quota() -> None:
    script = (
        "grep -c ^processor /proc/cpuinfo; cat /sys/devices/system/cpu/online; "
        "python3 -c 'import os; print(os.cpu_count())'"
    )
    r = Container(["sh", "-c", script]).host_root().cpus(1).proc_view().run(capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    count, online, cpu_count = r.stdout.decode().split()
    assert count == "1" and cpu_count == "1"
    assert "-" not in online and "," not in online


def test_cpuset_shows_its_cpus() -> None:
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    cpus = parse_cpuset(online)
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    last = max(cpus)
    res = Resources(cpuset=CpusetResources(cpus=str(last)))
    script = "grep ^processor /proc/cpuinfo; cat /sys/devices/system/cpu/online"
    r = Container(["sh", "-c", script]).host_root().resources(res).proc_view().run(capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines == [f"processor\t: {last}", str(last)]


def test_meminfo_tracks_usage_after_a_refresh() -> None:
    code = textwrap.dedent(
        """
        import sys
        def used():
            v = {l.split(':')[0]: int(l.split()[1]) for l in open('/proc/meminfo')}
            return (v['MemTotal'] - v['MemFree']) * 1024
        print(used(), flush=True)
        block = bytearray(64 << 20)  # touched: zero-filled pages are charged
        for i in range(0, len(block), 4096):
            block[i] = 1
        print('ready', flush=True)
        sys.stdin.readline()
        print(used(), flush=True)
        """
    )
    box = Container([PYTHON, "-S", "-c", code]).host_root().memory("256M").proc_view(refresh=None)
    with box.start(stdin=nsprim.PIPE, stdout=nsprim.PIPE) as c:
        assert c.process.stdout is not None and c.process.stdin is not None
        before = int(c.process.stdout.readline())
        assert c.process.stdout.readline() == b"ready\n"
        c.refresh_proc_view()
        c.process.stdin.write(b"\n")
        after = int(c.process.stdout.readline())
        assert c.wait(timeout=30) == 0
    assert after - before >= 60 * MB, (before, after)
    assert after <= 256 * MB


def test_background_refresher_updates_the_file() -> None:
    code = textwrap.dedent(
        """
        import time
        def free():
            return next(int(l.split()[1]) for l in open('/proc/meminfo') if l.startswith('MemFree:'))
        first = free()
        block = bytearray(48 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        deadline = time.monotonic() + 10
        while free() > first - 40 * 1024 and time.monotonic() < deadline:
            time.sleep(0.05)
        print(first - free())
        """
    )
    box = Container([PYTHON, "-S", "-c", code]).host_root().memory("256M").proc_view(refresh=0.1)
    r = box.run(capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) >= 40 * 1024  # kB


def test_busybox_root_and_exec_see_the_view(tmp_path: Path) -> None:
    busybox = static_busybox()
    root = tmp_path / "root"
    for d in ("bin", "proc", "sys", "dev", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy2(busybox, root / "bin/busybox")
    box = Container(["/bin/busybox", "sleep", "30"]).rootfs(root).memory("128M").proc_view()
    with box.start() as c:
        p = c.exec(["/bin/busybox", "head", "-1", "/proc/meminfo"], stdout=nsprim.PIPE)
        assert p.stdout is not None
        line = p.stdout.read()
        assert p.wait() == 0
        p.close()
        # read-only: even the container's root cannot change its view
        w = c.exec(["/bin/busybox", "sh", "-c", "echo x > /proc/meminfo"], stderr=subprocess.DEVNULL)
        assert w.wait() != 0
        w.close()
    assert line.split() == [b"MemTotal:", str(128 * 1024).encode(), b"kB"]


def test_files_are_removed_when_the_start_fails() -> None:
    before = views_left()
    with pytest.raises(nsprim.NsprimError):
        Container(["/nonexistent/cmd"]).host_root().proc_view().run(timeout=30)
    assert views_left() == before


def test_needs_a_mount_namespace() -> None:
    with pytest.raises(ConfigError, match="mount namespace"):
        Container(["true"]).namespaces("pid", "net").proc_view().run()


def test_refresh_without_a_view_is_a_config_error() -> None:
    with Container(["sleep", "5"]).host_root().start() as c, pytest.raises(ConfigError, match="proc_view"):
        c.refresh_proc_view()


def test_cleanup_after_the_parent_is_sigkilled() -> None:
    script = textwrap.dedent(
        """
        import time
        from nsprim.container import Container
        box = Container(["sleep", "600"]).host_root().memory("64M").proc_view().start()
        print(box.id, flush=True)
        time.sleep(600)
        """
    )
    src = str(Path(nsprim.__file__).resolve().parent.parent)
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": src}
    )
    try:
        assert parent.stdout is not None
        cid = parent.stdout.readline().decode().strip()
        directory = view_directory(state_dir(), cid)
        assert directory.is_dir()
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while directory.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not directory.exists(), "the watcher left the /proc view behind"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_generators() -> None:
    host = "processor\t: 0\nsiblings\t: 2\ncpu cores\t: 2\n\nprocessor\t: 1\nsiblings\t: 2\ncpu cores\t: 2\n\n"
    assert cpuinfo_view([1], host) == "processor\t: 1\nsiblings\t: 1\ncpu cores\t: 1\n\n"
    assert online_view([0, 1, 2, 5]) == "0-2,5\n"


def test_refresh_follows_an_update_of_the_cpu_quota() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    from nsprim.cgroup import CpuResources

    def count(c: Any) -> int:
        p = c.exec(["grep", "-c", "^processor", "/proc/cpuinfo"], stdout=nsprim.PIPE)
        text = p.stdout.read()
        assert p.wait() == 0
        p.close()
        return int(text)

    # (started with a quota, so that the group has the cpu controller on a v1 host)
    with Container(["sleep", "30"]).host_root().cpus(2).proc_view(refresh=None).start() as c:
        before = count(c)
        c.update(Resources(cpu=CpuResources(cpus=1)))
        c.refresh_proc_view()
        assert (before, count(c)) == (2, 1)


def test_in_a_user_namespace() -> None:
    box = Container(["sh", "-c", "head -1 /proc/meminfo"]).host_root().user_namespace().memory("128M").proc_view()
    r = box.run(capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [b"MemTotal:", str(128 * 1024).encode(), b"kB"]
