"""``create`` from a kept program (nsprim.oci.runtime.replay): the same container as the general way."""

from __future__ import annotations

import json
import os
import random
import secrets
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.oci.runtime import replay

from ..conftest import requires_root
from .bundles import config, make_rootfs
from .conftest import Runtime


def _plans(runtime: Runtime) -> list[str]:
    d = runtime.root / replay.PLANS
    return sorted(os.listdir(d)) if d.is_dir() else []


def _engine_id() -> str:
    return secrets.token_hex(32)


def _engine_bundle(base: Path, cid: str, parent: str, *args: str) -> Path:
    """A bundle as podman writes one: its directory, hostname, a mount source and the cgroup named by the id."""
    bundle = base / "containers" / cid / "userdata"
    bundle.mkdir(parents=True)
    (bundle / "hostname").write_text(cid[:12] + "\n")
    doc = config(cid, *args)
    doc["root"] = {"path": str(base / "layers" / secrets.token_hex(8))}
    make_rootfs(Path(doc["root"]["path"]))
    doc["hostname"] = cid[:12]
    doc["process"]["env"].append(f"HOSTNAME={cid[:12]}")
    (bundle / "hosts").write_text("127.0.0.1 localhost\n")
    for name in ("hostname", "hosts"):
        doc["mounts"].append({"destination": f"/etc/{name}", "type": "bind", "source": str(bundle / name),
                              "options": ["bind", "ro"]})  # fmt: skip
    doc["linux"]["cgroupsPath"] = f"{parent}/libpod-{cid}"
    doc["annotations"] = {"io.example.created": secrets.token_hex(4)}
    # As podman writes them, from Go maps: the environment and the bind mounts in any order.
    random.shuffle(doc["process"]["env"])
    first, second = doc["mounts"][-2:]
    if random.random() < 0.5:
        doc["mounts"][-2:] = [second, first]
    (bundle / "config.json").write_text(json.dumps(doc))
    return bundle


@requires_root
def test_an_engines_second_container_runs_from_the_kept_program_with_its_own_strings(
    runtime: Runtime, tmp_path: Path
) -> None:
    parent = f"/nsprim-test-replay-{secrets.token_hex(3)}"
    try:
        outputs = []
        for _ in range(4):
            cid = _engine_id()
            bundle = _engine_bundle(
                tmp_path, cid, parent, "sh", "-c", "hostname; cat /etc/hostname; echo $HOSTNAME; cat /proc/self/cgroup"
            )
            log = tmp_path / f"{cid}.log"
            r = runtime("--debug", "--log", str(log), "run", "--bundle", str(bundle), cid)
            assert r.returncode == 0, r.stderr
            outputs.append((cid, r.stdout))
            assert not (runtime.root / cid).exists()
            # The first makes the parent group the general way; the others run the first one's program.
            assert ("from its program" in log.read_text()) == (len(outputs) > 1), log.read_text()
        assert len(_plans(runtime)) == 1  # the second spec had the first one's key
        for cid, out in outputs:
            lines = out.split("\n")
            assert lines[:3] == [cid[:12]] * 3
            assert f"{parent}/libpod-{cid}" in out
    finally:
        for top in Path("/sys/fs/cgroup").glob(f"*{parent}"):
            top.rmdir()


@requires_root
def test_a_kept_program_makes_what_the_general_way_makes(runtime: Runtime, tmp_path: Path) -> None:
    parent = f"/nsprim-test-replay-{secrets.token_hex(3)}"
    bundle = tmp_path / "bundle"
    make_rootfs(bundle / "rootfs")
    doc = config("x", "sh", "-c", "cut -d' ' -f5,9 /proc/self/mountinfo | sort; ls /dev; id; ulimit -n; hostname")
    doc["linux"]["cgroupsPath"] = f"{parent}/box"
    doc["linux"]["resources"] = {"pids": {"limit": 77}}
    general = dict(doc, hooks={})  # no hook runs, but a spec with hooks has no program: the general way
    seen = []
    try:
        for cid, spec in (("general", general), ("first", doc), ("kept", doc)):
            (bundle / "config.json").write_text(json.dumps(spec))
            log = tmp_path / f"{cid}.log"
            r = runtime("--debug", "--log", str(log), "run", "--bundle", str(bundle), cid)
            assert r.returncode == 0, r.stderr
            seen.append(r.stdout)
            assert ("from its program" in log.read_text()) == (cid != "general"), log.read_text()
        assert seen[0] == seen[1] == seen[2]
        assert len(_plans(runtime)) == 1
    finally:
        for top in Path("/sys/fs/cgroup").glob(f"*{parent}"):
            top.rmdir()


@requires_root
def test_the_kept_program_sets_the_limits_and_records_the_container(runtime: Runtime, tmp_path: Path) -> None:
    parent = f"/nsprim-test-replay-{secrets.token_hex(3)}"
    bundle = tmp_path / "bundle"
    make_rootfs(bundle / "rootfs")
    doc = config("x", "sleep", "60")
    doc["linux"]["cgroupsPath"] = f"{parent}/box"
    doc["linux"]["resources"] = {"pids": {"limit": 33}}
    (bundle / "config.json").write_text(json.dumps(doc))
    try:
        for cid in ("one", "two"):
            runtime.detached("create", "--bundle", str(bundle), cid)
            record = runtime.store.load(cid)
            assert record.status == "created" and record.pid > 0
            limits = [
                Path(d, "pids.max").read_text().strip() for d in record.cgroup_dirs if Path(d, "pids.max").exists()
            ]
            assert limits == ["33"], record.cgroup_dirs
            runtime.ok("start", cid)
            assert runtime.status(cid) == "running"
            runtime.ok("delete", "--force", cid)
            assert not any(Path(d).exists() for d in record.cgroup_dirs)
        assert len(_plans(runtime)) == 1
    finally:
        for top in Path("/sys/fs/cgroup").glob(f"*{parent}"):
            top.rmdir()


@requires_root
def test_a_failing_kept_program_gives_the_general_error_and_leaves_nothing(runtime: Runtime, tmp_path: Path) -> None:
    parent = f"/nsprim-test-replay-{secrets.token_hex(3)}"
    bundle = tmp_path / "bundle"
    make_rootfs(bundle / "rootfs")
    doc = config("x", "no-such-program")
    doc["linux"]["cgroupsPath"] = f"{parent}/box"
    (bundle / "config.json").write_text(json.dumps(doc))
    try:
        errors = []
        for cid in ("one", "two"):
            errors.append(runtime.fails("create", "--bundle", str(bundle), cid).replace(cid, "ID"))
            assert not (runtime.root / cid).exists()
            assert not any(Path("/sys/fs/cgroup").glob(f"*{parent}/box"))
        assert errors[0] == errors[1] and "executable file not found" in errors[0]
    finally:
        for top in Path("/sys/fs/cgroup").glob(f"*{parent}"):
            top.rmdir()


@requires_root
def test_no_program_is_kept_for_hooks_or_an_id_in_the_spec(runtime: Runtime, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    make_rootfs(bundle / "rootfs")
    doc = config("short-id")  # its cgroupsPath names the (short) id: no placeholder stands for it
    (bundle / "config.json").write_text(json.dumps(doc))
    runtime.ok("run", "--bundle", str(bundle), "short-id")
    doc = config("x")
    doc["linux"]["cgroupsPath"] = ""
    doc["hooks"] = {"poststart": [{"path": "/bin/true"}]}
    (bundle / "config.json").write_text(json.dumps(doc))
    runtime.ok("run", "--bundle", str(bundle), "hooked")
    assert _plans(runtime) == []


def test_a_changed_spec_or_option_is_another_key(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(config("x")))
    first = replay.lookup(str(bundle), "a" * 64, {})
    again = replay.lookup(str(bundle), "b" * 64, {})
    assert first is not None and again is not None and first.key == again.key
    other = replay.lookup(str(bundle), "a" * 64, {"no_pivot": True})
    assert other is not None and other.key != first.key
    (bundle / "config.json").write_text(json.dumps(config("x", "false")))
    changed = replay.lookup(str(bundle), "a" * 64, {})
    assert changed is not None and changed.key != first.key
    assert replay.lookup(str(bundle), "a" * 64, {"console_socket": "/x"}) is None
    (bundle / "config.json").write_text(json.dumps(config("x", replay.MARK)))
    assert replay.lookup(str(bundle), "a" * 64, {}) is None


_text = st.text(st.characters(blacklist_characters=replay.MARK, blacklist_categories=("Cs",)), max_size=12)


@given(
    st.recursive(
        st.one_of(_text, _text.map(str.encode), st.integers()),
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner)),
        max_leaves=12,
    ),
    st.lists(st.text(st.sampled_from("/abc0"), min_size=1, max_size=6), min_size=1, max_size=3, unique=True),
)
def test_placeholders_round_trip(obj: object, values: list[str]) -> None:
    pairs = [(f"{replay.MARK}{chr(65 + i)}{replay.MARK}", v) for i, v in enumerate(values)]
    templated = replay.substitute(obj, pairs, reverse=True)
    assert replay.substitute(templated, pairs) == obj


def test_the_start_report_and_watcher_records_match_the_cores_structs() -> None:
    from nsprim._start_report import REPORT_SIZE, read_start_report
    from nsprim._sys._lib import ffi

    assert ffi.sizeof("struct nsp_report") == REPORT_SIZE
    r, w = os.pipe()
    os.write(w, ffi.buffer(ffi.new("int[4]", [7, 3, 2, -1]))[:])  # as the child writes it
    os.close(w)
    report = read_start_report(r)
    os.close(r)
    assert report is not None and (report.index, report.kind, report.errno, report.part) == (7, 3, 2, -1)


@requires_root
@pytest.mark.cgroup_v2
def test_a_kept_program_on_any_cgroup_host_sets_the_limits_without_falling_back(
    runtime: Runtime, tmp_path: Path
) -> None:
    """On the hybrid host and in the cgroup v2 VM (``nox -s vm``): the second create runs its kept program."""
    parent = f"/nsprim-test-replay-{secrets.token_hex(3)}"
    bundle = tmp_path / "bundle"
    make_rootfs(bundle / "rootfs")
    doc = config("x", "sleep", "60")
    doc["linux"]["cgroupsPath"] = f"{parent}/box"
    doc["linux"]["resources"] = {"pids": {"limit": 41}, "memory": {"limit": 64 << 20}}
    (bundle / "config.json").write_text(json.dumps(doc))
    try:
        for cid in ("first", "second", "third"):
            log = tmp_path / f"{cid}.log"
            runtime.detached("--debug", "--log", str(log), "create", "--bundle", str(bundle), cid)
            record = runtime.store.load(cid)
            files = {name: [Path(d, name) for d in record.cgroup_dirs if Path(d, name).exists()]
                     for name in ("pids.max", "memory.max", "memory.limit_in_bytes")}  # fmt: skip
            assert [f.read_text().strip() for f in files["pids.max"]] == ["41"]
            memory = [f.read_text().strip() for f in files["memory.max"] + files["memory.limit_in_bytes"]]
            assert memory == [str(64 << 20)]
            runtime.ok("start", cid)
            runtime.ok("delete", "--force", cid)
            assert not any(Path(d).exists() for d in record.cgroup_dirs)
            if cid != "first":  # the first made the parent (the general way); the others found it
                assert "from its program" in log.read_text(), log.read_text()
        assert len(_plans(runtime)) == 1
    finally:
        for top in Path("/sys/fs/cgroup").glob(f"*{parent}"):
            top.rmdir()


def test_a_program_is_loaded_only_from_a_directory_and_a_file_only_its_user_may_write(tmp_path: Path) -> None:
    from nsprim.kept import load_from, store_program_in

    directory = tmp_path / "plans"
    store_program_in(str(directory), "k", {"version": 7, "rows": []})
    assert load_from(str(directory), "k", 7) == {"version": 7, "rows": []}
    assert load_from(str(directory), "k", 8) is None and load_from(str(directory), "other", 7) is None
    assert (directory.stat().st_mode & 0o777, (directory / "k").stat().st_mode & 0o777) == (0o700, 0o600)
    directory.chmod(0o770)
    assert load_from(str(directory), "k", 7) is None
    directory.chmod(0o700)
    (directory / "k").chmod(0o606)
    assert load_from(str(directory), "k", 7) is None


def test_mounts_that_do_not_lie_on_one_another_have_one_order(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    mounts = [{"destination": d} for d in ("/proc", "/dev", "/dev/pts", "/etc/hosts", "/dev/shm", "/etc/hostname")]
    order = replay._mount_order(mounts, str(root))
    assert order is not None
    canonical = [mounts[i]["destination"] for i in order]
    assert canonical.index("/dev") < canonical.index("/dev/pts") and canonical.index("/dev") < canonical.index(
        "/dev/shm"
    )
    for _ in range(20):
        shuffled = mounts[:]
        random.shuffle(shuffled)
        # Only orders that keep /dev before what is under it make the same tree.
        if next(m["destination"] for m in shuffled if m["destination"].startswith("/dev")) != "/dev":
            continue
        again = replay._mount_order(shuffled, str(root))
        assert again is not None and [shuffled[i]["destination"] for i in again] == canonical
    same = [{"destination": "/x"}, {"destination": "/x/"}]  # one place: the later one is on top, in order
    assert replay._mount_order(same, str(root)) == [0, 1]
    assert replay._mount_order(list(reversed(same)), str(root)) == [0, 1]
    (root / "var").mkdir()
    (root / "var/run").symlink_to("../run")
    assert replay._mount_order([{"destination": "/run"}, {"destination": "/var/run/x"}], str(root)) is None


def test_a_kept_program_is_given_its_specs_environment_order() -> None:
    row = (20, 0, 0, 0, 0, b"sh", None, None, None, (b"sh",), (b"A=1", b"B=2"), None)
    kept = {"env": ["A=1", "B=2"], "rows": [row]}
    assert replay._in_order(kept, ["A=1", "B=2"]) is kept
    assert replay._in_order(kept, ["B=2", "A=1"])["rows"][0][10] == (b"B=2", b"A=1")
    with pytest.raises(replay.Fallback):
        replay._in_order(kept, ["B=2", "A=3"])


@requires_root
@pytest.mark.parametrize("way", ["kept", "general"])
def test_a_create_refused_for_a_group_in_use_leaves_that_group_alone(
    runtime: Runtime, tmp_path: Path, way: str
) -> None:
    """The group another container holds is not cleaned up when the refused create's process ends
    (neither by the kept program's attempt nor by the general way's)."""
    import time

    from nsprim.oci.runtime.store import process_alive

    parent = f"/nsprim-test-replay-{secrets.token_hex(3)}"
    bundle = tmp_path / "bundle"
    make_rootfs(bundle / "rootfs")
    doc = config("x", "sleep", "60")
    doc["linux"]["cgroupsPath"] = f"{parent}/shared"
    if way == "general":
        doc["hooks"] = {}  # (no hook runs; a spec with hooks has no program)
    (bundle / "config.json").write_text(json.dumps(doc))
    try:
        runtime.detached("create", "--bundle", str(bundle), "holder")
        holder = runtime.store.load("holder")
        assert len(_plans(runtime)) == (1 if way == "kept" else 0)
        message = runtime.fails("create", "--bundle", str(bundle), "second")
        assert "File exists" in message, message
        time.sleep(0.5)  # the refused create's watcher has seen it end
        assert process_alive(holder.pid, holder.starttime)
        assert all(Path(d).is_dir() for d in holder.cgroup_dirs)
        assert not (runtime.root / "second").exists()
    finally:
        runtime("delete", "--force", "holder")
        for top in Path("/sys/fs/cgroup").glob(f"*{parent}"):
            for d in sorted(top.rglob("*/"), key=lambda p: -len(p.parts)):
                d.rmdir()
            top.rmdir()
