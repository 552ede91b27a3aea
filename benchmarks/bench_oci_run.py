"""Whole containers as commands: ``nsprim-runtime run`` and ``nsprim run`` vs ``runc run`` and ``crun run``,
and ``podman run --rm`` with nsprim-runtime vs with runc, all in one interleaved run.

One iteration is one whole command, started with ``subprocess.run`` and waited for, of a ``/bin/true``
payload:

* ``nsprim-runtime run`` / ``runc run`` / ``crun run`` of the same busybox bundle (its process ``true``;
  a fresh container id each time).  crun 1.8 refuses a hybrid cgroup host: it is left out where its
  first run fails.
* ``nsprim run --rootfs / -- /bin/true`` (nsprim's own command line, the host's ``/`` read-only).
* ``podman run --rm IMAGE true`` with ``--runtime nsprim-runtime`` and with ``--runtime runc`` (private
  storage, vfs, no network), unless ``--no-podman``.

Printed ratios of medians, with the targets: **nsprim-runtime run / runc run <= 1.0**, **nsprim run /
runc run <= 1.0**, **podman (nsprim-runtime) / podman (runc) <= 1.0**, and, for information, each against
crun and ``python -c pass``.

Run as root: ``python benchmarks/bench_oci_run.py [--quick] [--no-podman] [--json out.json]``.  Exit
status 0 even on a MISS (it is a measurement) unless ``--strict``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nsprim  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import _harness as h  # after the path set-up above

__all__ = ["main"]

_COUNTER = itertools.count()


def _installed(name: str) -> str | None:
    import compileall

    import nsprim

    # As an installed package has them (PYTHONDONTWRITEBYTECODE may be set here): no compiling per call.
    compileall.compile_dir(os.path.dirname(nsprim.__file__), quiet=1)
    return shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)


def _bundle(base: Path, cgroup_parent: str) -> Path | None:
    busybox, runc = shutil.which("busybox"), shutil.which("runc")
    if busybox is None or runc is None:
        return None
    rootfs = base / "bundle/rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(busybox, rootfs / "bin/busybox")
    for name in ("true", "sh"):
        os.symlink("busybox", rootfs / "bin" / name)
    subprocess.run([runc, "spec"], cwd=rootfs.parent, check=True)
    config = json.loads((rootfs.parent / "config.json").read_text())
    config["process"].update(args=["true"], terminal=False)
    config["linux"]["cgroupsPath"] = f"{cgroup_parent}/box"  # one at a time: the same group each run
    (rootfs.parent / "config.json").write_text(json.dumps(config))
    return rootfs.parent


def _remove_groups(parent: str) -> None:
    """The benchmark's cgroups (empty once their containers ended), deepest first."""
    for top in Path("/sys/fs/cgroup").glob(f"*{parent}"):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            d.rmdir()
        top.rmdir()


def _run_case(name: str, argv: Sequence[str], cwd: Path | None = None, with_id: bool = True) -> h.Case:
    def once() -> None:
        cid = [f"bench-{secrets.token_hex(3)}-{next(_COUNTER)}"] if with_id else []
        subprocess.run([*argv, *cid], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)  # fmt: skip

    return h.Case(name, h.timed(once))


def _works(argv: Sequence[str], cwd: Path | None = None) -> bool:
    cid = f"bench-probe-{secrets.token_hex(3)}"
    return subprocess.run([*argv, cid], cwd=cwd, capture_output=True).returncode == 0


def _podman(base: Path, bundle: Path, cgroup_parent: str) -> list[str] | None:
    podman = shutil.which("podman")
    if podman is None:
        return None
    with tarfile.open(base / "rootfs.tar", "w") as tar:
        tar.add(bundle / "rootfs", arcname=".")
    argv = h.private_podman(podman, base)
    subprocess.run([*argv, "import", str(base / "rootfs.tar"), "localhost/bench:1"], check=True, capture_output=True)
    return argv


def _podman_run(podman: list[str], runtime: str, cgroup_parent: str) -> list[str]:
    return [*podman, "--runtime", runtime, "run", "--rm", "--cgroup-parent", cgroup_parent, "localhost/bench:1", "true"]


def main(argv: Sequence[str] | None = None) -> int:
    def extend(p: argparse.ArgumentParser) -> None:
        p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
        p.add_argument("--no-podman", action="store_true", help="leave podman out")

    args = h.parse_args("whole-container command benchmark", argv, extend)
    cfg = h.Config.from_args(args)
    if not args.quick and args.iterations is None:
        cfg.iterations, cfg.rounds = 60, 6  # a container is ~20-150 ms: enough for stable medians
    runtime, cli = _installed("nsprim-runtime"), _installed("nsprim")
    runc, crun = h.tool("runc"), h.tool("crun")
    if runtime is None or cli is None or runc is None:
        print("skipped: needs nsprim-runtime, nsprim (pip install -e .) and runc")
        return 0
    parent = f"/nsprim-bench-{secrets.token_hex(4)}"
    try:
        return _measure(args, cfg, runtime, cli, runc, crun, parent)
    finally:
        _remove_groups(parent)


def _measure(
    args: argparse.Namespace, cfg: h.Config, runtime: str, cli: str, runc: str, crun: str | None, parent: str
) -> int:
    with tempfile.TemporaryDirectory(prefix="nsprim-oci-run-bench-") as tmp:
        base = Path(tmp)
        bundle = _bundle(base, parent)
        if bundle is None:
            print("skipped: needs busybox (busybox-static) and runc")
            return 0
        cases = [
            _run_case("python -c pass", [sys.executable, "-c", "pass"], with_id=False),
            _run_case("nsprim-runtime run", [runtime, "--root", str(base / "ns-root"), "run"], bundle),
            _run_case("runc run", [runc, "--root", str(base / "runc-root"), "run"], bundle),
            _run_case("nsprim run", [cli, "run", "--rootfs", "/", "--", "/bin/true"], with_id=False),
        ]
        pairs = [("nsprim-runtime run", "runc run", 1.0), ("nsprim run", "runc run", 1.0)]
        if crun is not None and _works([crun, "--root", str(base / "crun-root"), "run"], bundle):
            cases.append(_run_case("crun run", [crun, "--root", str(base / "crun-root"), "run"], bundle))
            pairs += [("nsprim-runtime run", "crun run", None), ("nsprim run", "crun run", None)]
        elif crun is not None:
            print("crun run: left out (it refuses this host)")
        podman = None if args.no_podman else _podman(base, bundle, parent)
        if podman is not None:
            for name, rt in (("podman run (nsprim-runtime)", runtime), ("podman run (runc)", runc)):
                cases.append(_run_case(name, _podman_run(podman, rt, f"{parent}/podman"), with_id=False))
            pairs.append(("podman run (nsprim-runtime)", "podman run (runc)", 1.0))
        load = h.LoadMonitor()
        with load:
            results = h.run_interleaved(cases, cfg)
        if podman is not None:
            subprocess.run([*podman, "rmi", "--all", "--force"], capture_output=True)
    h.print_table(results, "one whole container, start to exit (µs):")
    ratios = [h.Ratio(f"{a} / {b}", results[a], results[b], target) for a, b, target in pairs]
    ratios += [h.Ratio(f"{a} / python -c pass", results[a], results["python -c pass"]) for a, _b, _t in pairs[:2]]
    print("\nratios of medians:")
    h.print_ratios(ratios)
    print(load.describe())
    if args.json:
        h.write_json(args.json, h.as_json(results, ratios))
    return 1 if args.strict and any(r.passed is False for r in ratios) else 0


if __name__ == "__main__":
    sys.exit(main())
