"""Bundles both ways: a :class:`~nsprim.container.Container` written as config.json runs under runc
with the same isolation, and under nsprim-runtime and :class:`nsprim.oci.Bundle` alike; what
config.json cannot say is refused by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.cgroup import CGroup
from nsprim.container import Container
from nsprim.errors import SpecError
from nsprim.oci import Bundle, Spec, spec_of, write_bundle

from ..conftest import requires_root
from ..tools import need_tool
from .bundles import make_rootfs
from .conftest import runtime_command, unique

SCRIPT = (
    "echo host $(hostname); id -u; id -G; echo $GREETING; cat /data/in.txt; "
    "echo made > /scratch/out && cat /scratch/out; "
    "touch /root-file 2>/dev/null || echo read-only root; grep CapEff /proc/self/status; "
    "grep NoNewPrivs /proc/self/status; grep Seccomp: /proc/self/status; readlink /proc/self/ns/net | cut -c1-3"
)


def _container(root: Path, data: Path, parent: str) -> Container:
    return (
        Container(["sh", "-c", SCRIPT])
        .rootfs(root)
        .hostname("exported")
        .user(1000, 1000, groups=(1000, 20))
        .env(GREETING="hello")
        .bind(data, "/data")
        .tmpfs("/scratch")
        .memory("64M")
        .pids(30)
        .cgroup_parent(parent)
    )


def _end_groups(parent: str) -> None:
    """The containers' groups, runc's in the named systemd hierarchy too (all empty by now)."""
    if any(Path(f"/sys/fs/cgroup/{c}{parent}").is_dir() for c in os.listdir("/sys/fs/cgroup")):
        CGroup.open(parent).delete(recursive=True, timeout=10.0)
    for top in Path("/sys/fs/cgroup").glob(f"*{parent}"):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            d.rmdir()
        top.rmdir()


EXPECTED = [
    "host exported",
    "1000",
    "1000 20",
    "hello",
    "from the host",
    "made",
    "read-only root",
    "CapEff:\t0000000000000000",
    "NoNewPrivs:\t1",
    "Seccomp:\t2",
    "net",
]


@requires_root
def test_a_container_as_a_bundle_runs_under_runc_nsprim_runtime_and_bundle(tmp_path: Path) -> None:
    runc = need_tool("runc", "runc")
    root = make_rootfs(tmp_path / "rootfs")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/in.txt").write_text("from the host\n")
    parent = f"/{unique('test-export')}"
    bundle = write_bundle(_container(root, tmp_path / "data", parent).config, tmp_path / "bundle")
    try:
        theirs = subprocess.run(
            [runc, "--root", str(tmp_path / "runc"), "run", "--bundle", str(bundle), unique("x")],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert theirs.returncode == 0, theirs.stderr
        assert theirs.stdout.splitlines() == EXPECTED
        ours = subprocess.run(
            [*runtime_command(), "--root", str(tmp_path / "ours"), "run", "--bundle", str(bundle), unique("x")],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert (ours.returncode, ours.stdout) == (0, theirs.stdout), ours.stderr
        code = "import sys; from nsprim.oci import Bundle; sys.exit(Bundle(sys.argv[1]).run())"
        from_python = subprocess.run(
            [sys.executable, "-c", code, str(bundle)], capture_output=True, text=True, timeout=60
        )  # fmt: skip
        assert (from_python.returncode, from_python.stdout) == (0, theirs.stdout), from_python.stderr
    finally:
        _end_groups(parent)


@requires_root
def test_a_bundles_exit_status_comes_back_from_python(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path / "rootfs")
    parent = f"/{unique('test-export')}"
    bundle = write_bundle(Container(["sh", "-c", "exit 4"]).rootfs(root).cgroup_parent(parent).config, tmp_path / "b")
    try:
        assert Bundle(bundle).run() == 4
    finally:
        _end_groups(parent)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c: c.host_root(), "root"),
        (lambda c: c.image(["/tmp"]), "root"),
        (lambda c: c.network("veth"), "veth"),
        (lambda c: c.tty(), "tty"),
        (lambda c: c.init(), "init"),
    ],
)
def test_what_config_json_cannot_say_is_refused(tmp_path: Path, change: object, field: str) -> None:
    box = Container(["true"]).rootfs(tmp_path)
    box = change(box)  # type: ignore[operator]
    with pytest.raises(SpecError) as info:
        spec_of(box.config)
    assert info.value.field == field


_words = st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="="), min_size=1, max_size=12)


@given(
    argv=st.lists(_words, min_size=1, max_size=4),
    env=st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True), _words, max_size=4),
    uid=st.integers(0, 65535),
    gid=st.integers(0, 65535),
    hostname=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
)
def test_a_written_spec_reads_back_the_same(
    argv: list[str], env: dict[str, str], uid: int, gid: int, hostname: str
) -> None:
    box = Container(argv).rootfs("/srv/root").env(env, clear=True).user(uid, gid).hostname(hostname)
    spec = spec_of(box.config)
    again = Spec.loads(spec.dumps())
    assert again == spec
    assert again.process is not None and again.root is not None
    assert (list(again.process.args), again.process.user.uid, again.process.user.gid) == (argv, uid, gid)
    assert dict(item.split("=", 1) for item in again.process.env) == env
    assert (again.hostname, again.root.path, again.root.readonly) == (hostname, "/srv/root", True)
