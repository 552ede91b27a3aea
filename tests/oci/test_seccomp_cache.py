"""Compiled seccomp programs kept by content (:class:`nsprim.security.seccomp.cache.ProgramCache`):
a bundle's profile is compiled once, and a cached program behaves as the compiled one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nsprim.security.seccomp import Seccomp, compile_profile
from nsprim.security.seccomp.cache import ProgramCache

from ..conftest import requires_root
from .bundles import make_bundle
from .conftest import Runtime, unique

DENY_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}


def test_a_program_comes_back_as_it_was_stored(tmp_path: Path) -> None:
    cache = ProgramCache(tmp_path / "cache")
    program = compile_profile(Seccomp.deny("mkdir"))
    key = cache.key(DENY_MKDIR)
    assert cache.get(key) is None
    cache.put(key, program, 4)
    assert cache.get(key) == (program, 4)
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    assert sorted(os.listdir(tmp_path / "cache")) == [key]


def test_keys_name_the_profile_whatever_its_key_order() -> None:
    cache = ProgramCache("/nonexistent")
    other = {**DENY_MKDIR, "defaultAction": "SCMP_ACT_LOG"}
    assert cache.key(DENY_MKDIR) == cache.key(dict(reversed(list(DENY_MKDIR.items()))))
    assert cache.key(DENY_MKDIR) != cache.key(other)
    assert len(cache.key(DENY_MKDIR)) == 64


def test_what_is_not_a_program_of_this_user_is_a_miss(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    cache = ProgramCache(directory)
    program = compile_profile(Seccomp.deny("mkdir"))
    cache.put("good", program, 0)
    (directory / "short").write_bytes(b"nsprim seccomp 1\n\0\0\0\0abc")
    (directory / "foreign").write_bytes(b"\x06\0\0\0\0\0\xff\x7f" * 2)
    (directory / "link").symlink_to(directory / "good")
    for name in ("short", "foreign", "link", "missing"):
        assert cache.get(name) is None, name
    # A directory others may write to is not used at all, for reading or for writing.
    directory.chmod(0o777)
    assert cache.get("good") is None
    cache.put("new", program, 0)
    assert not (directory / "new").exists()


@requires_root
def test_a_runtime_compiles_a_profile_once_and_runs_the_cached_program(runtime: Runtime, tmp_path: Path) -> None:
    outcomes = []
    for n in range(2):
        cid = unique("sc")
        bundle = make_bundle(
            tmp_path / f"b{n}", cid, "sh", "-c", "mkdir /tmp/x || echo refused", linux={"seccomp": DENY_MKDIR}
        )
        r = runtime("run", "--bundle", str(bundle), cid)
        outcomes.append((r.returncode, r.stdout, "Operation not permitted" in r.stderr))
        assert r.returncode == 0, r.stderr
    assert outcomes[0] == outcomes[1] and outcomes[0][1] == "refused\n"
    cached = os.listdir(runtime.root / "@seccomp")
    assert len(cached) == 1
    assert runtime.ok("list", "-q") == ""  # the cache is not a container


@requires_root
def test_a_cache_hit_imports_no_compiler(tmp_path: Path) -> None:
    code = f"""
import sys
from nsprim.oci.convert import process_steps
from nsprim.oci.spec import Spec
process = {{"args": ["true"], "cwd": "/", "user": {{"uid": 0, "gid": 0}}}}
spec = Spec.from_dict({{"ociVersion": "1.0.2", "process": process, "root": {{"path": "rootfs"}},
    "linux": {{"seccomp": {DENY_MKDIR!r}}}}})
steps = process_steps(spec.process, spec, seccomp_cache={str(tmp_path / "cache")!r})
loads = [s for s in steps if type(s).__name__ == "LoadSeccomp"]
print(len(loads), loads[0].program.to_bytes().hex()[:32], "nsprim.security.seccomp.bpf" in sys.modules)
"""
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert first[:2] == again[:2] and first[0] == "1"
    assert (first[2], again[2]) == ("True", "False")


@pytest.mark.parametrize("mode", [0o755, 0o700])
def test_a_cache_directory_of_the_user_is_used(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "cache"
    directory.mkdir(mode=mode)
    directory.chmod(mode)
    cache = ProgramCache(directory)
    program = compile_profile(Seccomp.deny("mkdir"))
    cache.put("k", program, 0)
    assert cache.get("k") == (program, 0)
