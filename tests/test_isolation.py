"""Each namespace type really isolates: checked from inside and outside the child."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import nsprim
from nsprim import IdMap, NamespaceType, TimeOffsets
from nsprim.plan import Mount

from .conftest import requires_root

pytestmark = requires_root


def sh(script: str, **kwargs: object) -> str:
    r = nsprim.run(["sh", "-c", script], capture_output=True, **kwargs)  # type: ignore[arg-type]
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stdout is not None
    return r.stdout.decode()


def test_pid_namespace_payload_is_pid_1_and_sees_only_its_tree() -> None:
    out = sh("echo $$; ls /proc | grep -E '^[0-9]+$' | wc -l", new={"pid", "mnt"}, mount_proc=True)
    pid, count = out.split()
    assert pid == "1"
    assert int(count) <= 4  # sh, ls, grep and wc: no host process is visible


def test_uts_namespace_has_its_own_hostname() -> None:
    before = socket.gethostname()
    assert sh("hostname", new={"uts"}, hostname="inside-box").strip() == "inside-box"
    assert socket.gethostname() == before


def test_net_namespace_has_only_a_down_loopback() -> None:
    out = sh("cat /proc/self/net/dev", new={"net"})
    names = [line.split(":")[0].strip() for line in out.splitlines()[2:]]
    assert names == ["lo"]
    flags = sh("cat /sys/class/net/lo/flags", new={"net", "mnt"}, steps=[Mount("sysfs", "/sys", "sysfs")])
    assert int(flags, 16) & 0x1 == 0  # IFF_UP is clear


def test_ipc_namespace_has_its_own_sysv_objects() -> None:
    out = sh("ipcmk -Q >/dev/null && tail -n +2 /proc/sysvipc/msg | wc -l", new={"ipc"})
    assert out.strip() == "1"
    host = Path("/proc/sysvipc/msg").read_text().splitlines()[1:]
    inside_keys = sh("tail -n +2 /proc/sysvipc/msg", new={"ipc"})
    assert inside_keys == ""  # a second fresh namespace is empty again
    assert len(host) == len(Path("/proc/sysvipc/msg").read_text().splitlines()[1:])


def test_mount_namespace_mounts_stay_inside() -> None:
    out = sh("grep ' /mnt ' /proc/self/mountinfo", new={"mnt"}, steps=[Mount("tmpfs", "/mnt", "tmpfs")])
    assert "tmpfs" in out
    assert " /mnt " not in Path("/proc/self/mountinfo").read_text()


def test_mount_namespace_root_is_made_private() -> None:
    out = sh("grep -E '^[0-9]+ [0-9]+ [^ ]+ / / ' /proc/self/mountinfo", new={"mnt"})
    assert "shared:" not in out


def test_user_namespace_maps_root_inside_to_unprivileged_outside() -> None:
    with nsprim.spawn(
        ["sh", "-c", "id -u; cat /proc/self/uid_map; read x"],
        new={"user"},
        uid_map=IdMap.single(0, 100000, 65536),
        gid_map=IdMap.single(0, 100000, 65536),
        stdin=nsprim.PIPE,
        stdout=nsprim.PIPE,
    ) as p:
        assert p.stdout is not None
        uid_inside = p.stdout.readline().strip()
        mapping = p.stdout.readline().split()
        status = Path(f"/proc/{p.pid}/status").read_text()
        p.communicate(b"\n")
    assert uid_inside == b"0"
    assert mapping == [b"0", b"100000", b"65536"]
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["100000"] * 4
    assert p.returncode == 0


def test_cgroup_namespace_root_is_the_current_cgroup() -> None:
    out = sh("cat /proc/self/cgroup", new={"cgroup"})
    for line in out.splitlines():
        assert line.split(":", 2)[2] == "/", line


def test_time_namespace_offset_shows_in_uptime() -> None:
    day = 86400.0
    host = float(Path("/proc/uptime").read_text().split()[0])
    inside = float(sh("cat /proc/uptime", time_offsets=TimeOffsets(boottime=3 * day)).split()[0])
    assert 3 * day - 5 < inside - host < 3 * day + 5
    mono = sh("cat /proc/self/timens_offsets", time_offsets=TimeOffsets(monotonic=-1.5))
    assert "monotonic" in mono and "-2 500000000" in mono


def test_all_namespaces_at_once_differ_from_the_parent() -> None:
    kinds = {"mnt", "uts", "ipc", "pid", "net", "user", "cgroup", "time"}
    with nsprim.spawn(["sleep", "30"], new=kinds) as p:
        child = p.namespace_ids()
        p.kill()
        p.wait()
    own = nsprim.namespace_ids()
    for t in NamespaceType:
        if t is NamespaceType.TIME:
            continue  # the child's *own* time ns changes only at exec; see the uptime test
        assert child[t] != own[t], t


def test_namespace_ids_match_readlink() -> None:
    ids = nsprim.namespace_ids()
    for t, nsid in ids.items():
        assert os.readlink(f"/proc/self/ns/{t.value}") == str(nsid)


def test_exit_status_and_signal_are_reported() -> None:
    assert nsprim.run(["sh", "-c", "exit 7"], new={"pid"}).returncode == 7
    assert nsprim.run(["sh", "-c", "kill -9 $$"]).returncode == -9
    # a program exiting 127 is not a missing program
    assert nsprim.run(["sh", "-c", "exit 127"]).returncode == 127


def test_unshare_tools_agree_on_pid_1() -> None:
    # the same question asked to util-linux, for comparison
    out = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", "echo $$"], capture_output=True, check=True
    )
    assert out.stdout.strip() == b"1" == sh("echo $$", new={"pid"}).strip().encode()
