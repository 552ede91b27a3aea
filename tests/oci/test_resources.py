"""``linux.resources``: the spec's numbers as nsprim's cgroup values, the device rules, and
``create``/``update`` writing them to a real container's cgroup."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.cgroup import MemoryResources, PidsResources
from nsprim.errors import SpecError
from nsprim.oci.resources import DeviceRule, device_rules, to_resources
from nsprim.oci.spec import LinuxResources

from ..conftest import requires_root
from .bundles import make_bundle
from .conftest import Runtime, runtime_command, unique


def _res(doc: dict[str, object]) -> LinuxResources:
    return LinuxResources.from_dict(doc)


def test_memory_swap_counts_memory_plus_swap_and_minus_one_is_no_limit() -> None:
    r = to_resources(_res({"memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20}}))
    assert r.memory == MemoryResources(max=64 << 20, swap=32 << 20, low=32 << 20)
    assert to_resources(_res({"memory": {"limit": -1, "swap": -1}})).memory == MemoryResources(max="max", swap="max")
    assert to_resources(_res({"pids": {"limit": 0}})).pids == PidsResources(max="max")
    assert to_resources(_res({"pids": {"limit": 20}})).pids == PidsResources(max=20)


def test_cpu_and_block_io() -> None:
    r = to_resources(_res({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"}, "blockIO": {}}))
    assert r.cpu is not None and (r.cpu.shares, r.cpu.quota_us, r.cpu.period_us) == (512, 50000, 100000)
    assert r.cpuset is not None and r.cpuset.cpus == "0"
    assert r.io is None
    io = to_resources(
        _res({"blockIO": {"weight": 10, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]}})
    )
    assert io.io is not None and io.io.weight == 1 and io.io.limits[0].rbps == 1000


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"memory": {"limit": 64 << 20, "swap": 32 << 20}}, "linux.resources.memory.swap"),
        ({"memory": {"kernel": 1 << 20}}, "linux.resources.memory.kernel"),
        ({"memory": {"swappiness": 10}}, "linux.resources.memory.swappiness"),
        ({"memory": {"disableOOMKiller": True}}, "linux.resources.memory.disableOOMKiller"),
        ({"cpu": {"realtimeRuntime": 1000}}, "linux.resources.cpu.realtimeRuntime"),
        ({"unified": {"memory.high": "1M"}}, "linux.resources.unified"),
        ({"network": {"classID": 1}}, "linux.resources.network"),
        ({"blockIO": {"weight": 5}}, "linux.resources.blockIO.weight"),
        ({"pids": {"limit": 5, "burst": 2}}, "linux.resources.pids.burst"),
        ({"devices": [{"allow": True, "type": "x"}]}, "linux.resources.devices[0].type"),
        ({"devices": [{"allow": True, "type": "c", "access": "rwx"}]}, "linux.resources.devices[0].access"),
        ({"devices": [{"allow": True, "type": "a", "major": 1}]}, "linux.resources.devices[0]"),
    ],
)
def test_what_is_not_applied_is_refused_by_its_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as info:
        res = _res(doc)
        to_resources(res)
        device_rules(res)
    assert info.value.field == field, info.value
    assert str(info.value).startswith(field)


_numbers = st.one_of(st.none(), st.just(-1), st.integers(0, 4095))


@given(
    st.booleans(), st.sampled_from(["", "a", "b", "c"]), _numbers, _numbers, st.sets(st.sampled_from("rwm"), min_size=1)
)
def test_a_device_rule_is_the_line_the_kernel_reads(
    allow: bool, kind: str, major: int | None, minor: int | None, access: set[str]
) -> None:
    rule: dict[str, object] = {"allow": allow, "type": kind, "access": "".join(sorted(access))}
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    everything = kind in ("", "a")
    if everything and (major not in (None, -1) or minor not in (None, -1) or access != set("rwm")):
        with pytest.raises(SpecError):
            device_rules(_res({"devices": [rule]}))
        return
    (got,) = device_rules(_res({"devices": [rule]}))
    assert got.allow is allow
    if everything:
        assert got.line() == "a"
        return
    number = f"{'*' if major in (None, -1) else major}:{'*' if minor in (None, -1) else minor}"
    assert got.line() == f"{kind} {number} {''.join(c for c in 'rwm' if c in access)}"
    assert DeviceRule(allow, kind, got.major, got.minor, got.access) == got


# ---- a real container's cgroup ----------------------------------------------------------------


def _dirs(runtime: Runtime, cid: str) -> dict[str, Path]:
    record = runtime.store.load(cid)
    out: dict[str, Path] = {}
    for d in map(Path, record.cgroup_dirs):
        for controller in ("memory", "pids", "devices", "cpu"):
            if f"/{controller}/" in f"{d}/".replace(",", "/") or (d / f"{controller}.max").exists():
                out.setdefault(controller, d)
    return out


@requires_root
def test_create_writes_the_limits_and_the_device_rules(runtime: Runtime, tmp_path: Path) -> None:
    cid = unique("res")
    resources = {
        "devices": [{"allow": False, "access": "rwm"}],
        "memory": {"limit": 64 << 20},
        "pids": {"limit": 32},
        "cpu": {"shares": 512},
    }
    bundle = make_bundle(tmp_path / "b", cid, "sleep", "60", linux={"resources": resources})
    runtime.detached("create", "--bundle", str(bundle), cid)
    try:
        dirs = _dirs(runtime, cid)
        if (dirs["memory"] / "memory.limit_in_bytes").exists():
            assert int((dirs["memory"] / "memory.limit_in_bytes").read_text()) == 64 << 20
        else:
            assert int((dirs["memory"] / "memory.max").read_text()) == 64 << 20
        assert (dirs["pids"] / "pids.max").read_text().strip() == "32"
        if "devices" in dirs:  # v1: the kernel's own list of what is allowed
            allowed = set((dirs["devices"] / "devices.list").read_text().split("\n")) - {""}
            assert "a *:* rwm" not in allowed
            assert {"c 1:3 rwm", "c 1:9 rwm", "c 5:2 rwm", "c 136:* rwm"} <= allowed
        # update: the flags change what they name, the rest stays
        runtime.ok("update", "--pids-limit", "40", "--memory", "96m", cid)
        assert (dirs["pids"] / "pids.max").read_text().strip() == "40"
        memory = dirs["memory"] / "memory.limit_in_bytes"
        memory = memory if memory.exists() else dirs["memory"] / "memory.max"
        assert int(memory.read_text()) == 96 << 20
        r = runtime("update", "--resources", "-", cid, stdin=json.dumps({"pids": {"limit": 50}}))
        assert r.returncode == 0, r.stderr
        assert (dirs["pids"] / "pids.max").read_text().strip() == "50"
        message = runtime.fails("update", "--resources", "-", cid)  # empty standard input
        assert "resources" in message
        r = runtime("update", "--resources", "-", cid, stdin=json.dumps({"memory": {"kernel": 1}}))
        assert r.returncode == 1 and "resources.memory.kernel: kernel memory limits" in r.stderr
        assert int(memory.read_text()) == 96 << 20
    finally:
        runtime.ok("delete", "--force", cid)


@requires_root
def test_the_device_rules_bind_the_container(runtime: Runtime, tmp_path: Path) -> None:
    """/dev/null stays usable (a default device), a device node the rules deny cannot be opened."""
    cid = unique("dev")
    script = "echo ok > /dev/null && echo null-ok; cat /dev/denied 2>&1 >/dev/null | grep -c 'not permitted'"
    bundle = make_bundle(
        tmp_path / "b",
        cid,
        "sh",
        "-c",
        script,
        linux={
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "devices": [{"path": "/dev/denied", "type": "c", "major": 1, "minor": 4, "fileMode": 438}],
        },
    )
    r = runtime("run", "--bundle", str(bundle), cid)
    assert (r.returncode, r.stdout) == (0, "null-ok\n1\n"), r.stderr


@requires_root
def test_a_bad_limit_leaves_nothing_behind(runtime: Runtime, tmp_path: Path) -> None:
    cid = unique("res")
    bundle = make_bundle(tmp_path / "b", cid, "true", linux={"resources": {"memory": {"swappiness": 5}}})
    message = runtime.fails("create", "--bundle", str(bundle), cid)
    assert "linux.resources.memory.swappiness: not applied by nsprim-runtime" in message
    assert not runtime.store.exists(cid)


@requires_root
def test_events_print_the_groups_statistics_as_runc(runtime: Runtime, tmp_path: Path) -> None:
    cid = unique("ev")
    bundle = make_bundle(tmp_path / "b", cid, "sleep", "60", linux={"resources": {"memory": {"limit": 64 << 20}}})
    runtime.detached("create", "--bundle", str(bundle), cid)
    try:
        (line,) = runtime.ok("events", "--stats", cid).splitlines()
        event = json.loads(line)
        assert (event["type"], event["id"]) == ("stats", cid)
        data = event["data"]
        assert data["pids"]["current"] >= 1
        assert data["memory"]["usage"]["limit"] == 64 << 20 and data["memory"]["usage"]["usage"] > 0
        assert data["cpu"]["usage"]["total"] >= 0
        stream = subprocess.Popen(
            [*runtime_command(), "--root", str(runtime.root), "events", "--interval", "50ms", cid],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert stream.stdout is not None
        first = json.loads(stream.stdout.readline())
        assert first["type"] == "stats"
        runtime.ok("kill", cid, "KILL")
        out, _ = stream.communicate(timeout=30)  # it ends once the container stops
        assert stream.returncode == 0
        assert all(json.loads(x)["type"] in ("stats", "oom") for x in out.splitlines())
        assert "--interval" in runtime.fails("events", "--interval", "soon", cid)
    finally:
        runtime.ok("delete", "--force", cid)


@requires_root
def test_the_default_parent_goes_with_its_last_container(runtime: Runtime, tmp_path: Path) -> None:
    """Without a cgroupsPath a container's group is /nsprim-runtime/<id>: the runtime owns that parent."""
    ids = [unique("dflt"), unique("dflt")]
    for cid in ids:
        bundle = make_bundle(tmp_path / cid, cid, "sleep", "60", linux={"cgroupsPath": ""})
        runtime.detached("create", "--bundle", str(bundle), cid)
    root = Path("/sys/fs/cgroup")
    parents = lambda: [p for p in [root / "nsprim-runtime", *root.glob("*/nsprim-runtime")] if p.is_dir()]  # noqa: E731
    try:
        assert parents()
        assert runtime.store.load(ids[0]).cgroup == f"/nsprim-runtime/{ids[0]}"
        runtime.ok("delete", "--force", ids[0])
        assert parents()  # the other container is still in it
    finally:
        for cid in ids:
            runtime("delete", "--force", cid)
    assert parents() == []
    bad = make_bundle(tmp_path / "bad", "bad", "true", linux={"cgroupsPath": "", "resources": {"memory": {"limit": 1}}})
    assert runtime("create", "--bundle", str(bad), unique("dflt")).returncode == 1  # a limit the kernel refuses
    assert parents() == []
