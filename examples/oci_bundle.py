"""The container format both ways: export a :class:`~nsprim.container.Container` as an OCI bundle
(a ``config.json``), run that bundle from Python, and run the same bundle with runc.

Run as root: ``python examples/oci_bundle.py``.  (runc, if installed, runs the bundle too.)
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from nsprim.container import Container
from nsprim.oci import Bundle, write_bundle


def _root(path: Path) -> Path:
    """A root file system of the host's /usr, bound read-only (a merged-/usr host's /bin is in it)."""
    for d in ("usr", "proc", "dev", "sys", "tmp", "etc"):
        (path / d).mkdir(parents=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        if Path(f"/{link}").is_symlink():
            (path / link).symlink_to(f"usr/{link}")
    return path


def _remove_groups(parent: str) -> None:
    """The containers' groups, in every hierarchy (runc's named systemd one too); empty by now."""
    for top in Path("/sys/fs/cgroup").glob(f"*{parent}"):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            d.rmdir()
        top.rmdir()


def main() -> int:
    parent = f"/nsprim-example-{secrets.token_hex(4)}"  # the containers' cgroups, removed at the end
    tmp = tempfile.TemporaryDirectory(prefix="nsprim-example-")
    box = (
        Container(["sh", "-c", "echo hello from $(hostname) as uid $(id -u), $(ls /proc | grep -c '^[0-9]') pids"])
        .rootfs(_root(Path(tmp.name) / "rootfs"))
        .bind("/usr", "/usr")
        .hostname("bundled")
        .user(1000)
        .memory("64M")
        .pids(20)
        .cgroup_parent(parent)
    )
    with tmp:
        bundle = write_bundle(box.config, Path(tmp.name) / "bundle")
        spec = json.loads((bundle / "config.json").read_text())
        print(f"wrote {bundle}/config.json: process {spec['process']['args'][:2]}..., "
              f"root {spec['root']}, limits {spec['linux']['resources']['memory']}")  # fmt: skip
        try:
            print("nsprim.oci.Bundle(...).run():", flush=True)
            status = Bundle(bundle).run()
            print(f"  exit status {status}")
            runc = shutil.which("runc")
            if runc is not None:
                print("runc run, the same bundle:", flush=True)
                subprocess.run([runc, "--root", f"{tmp.name}/runc", "run", "--bundle", str(bundle), "nsprim-example"],
                               check=True, stdin=subprocess.DEVNULL)  # fmt: skip
        finally:
            _remove_groups(parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
