"""OCI runtime start-up benchmark: ``nsprim-runtime`` vs ``runc`` and ``crun``, one command at a time.

Engines start the runtime anew for every step of a container's life (podman:
create, start, state, kill, delete; containerd's shim: state and ps on top),
so a runtime's cost is mostly its start-up.  One iteration is one whole
command, started with ``subprocess.run`` and waited for, output discarded:

* ``--version``
* ``list`` of an empty ``--root``
* ``state`` of an unknown id (the error path: one line on standard error, status 1)
* ``state`` of an existing container: for nsprim-runtime a stand-in (a ``sleep`` recorded in its store, as
  the tests make them, until ``create`` exists); for runc a real container made by ``runc create`` of a
  busybox bundle (its init waiting for ``start``); crun 1.8 refuses to create on a hybrid cgroup host, so it
  is left out of this one there
* ``python -c pass``: the interpreter nsprim-runtime runs on, the floor of any Python command
* ``python -c "import nsprim"``: what importing the package adds to it (**target: at most 10 ms more**)

Printed ratios of medians: nsprim-runtime / runc and / crun per command (information: a Go or C binary
starts in a few ms, Python in ~10), and **nsprim-runtime / python -c pass (target <= 1.5)**: what the
runtime adds to its interpreter.

Run as root: ``python benchmarks/bench_runtime.py [--quick] [--json out.json] [--wait-quiet S]``.
Exit status is 0 even on a MISS (it is a measurement, not a test) unless ``--strict``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nsprim  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import _harness as h  # after the path set-up above

from nsprim.oci.runtime.store import RUNNING, ContainerRecord, Store, process_starttime

TARGET_VS_PYTHON = 1.5
TARGET_IMPORT_MS = 10.0  # `import nsprim` above the bare interpreter

__all__ = ["main"]


def _ours() -> list[str] | None:
    import compileall

    import nsprim

    # As an installed package has them (PYTHONDONTWRITEBYTECODE may be set here): no compiling per call.
    compileall.compile_dir(os.path.dirname(nsprim.__file__), quiet=1)
    script = shutil.which("nsprim-runtime", path=os.path.dirname(sys.executable)) or shutil.which("nsprim-runtime")
    if script is None:
        print("skipped: nsprim-runtime not installed (pip install -e .)")
        return None
    return [script]


def _case(name: str, argv: Sequence[str], note: str = "") -> h.Case:
    cmd = list(argv)

    def once() -> None:
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return h.Case(name, h.timed(once), note)


def _busybox_bundle(base: Path) -> Path | None:
    """A bundle whose process is a static busybox's ``sleep``, for ``runc create``."""
    busybox = shutil.which("busybox")
    runc = shutil.which("runc")
    if busybox is None or runc is None:
        return None
    bundle = base / "bundle"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy2(busybox, bundle / "rootfs" / "bin" / "busybox")
    (bundle / "rootfs" / "bin" / "sleep").symlink_to("busybox")
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=["sleep", "1000"])
    config["linux"]["cgroupsPath"] = f"/nsprim-runtime-bench-{secrets.token_hex(4)}"
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


@contextmanager
def _containers(base: Path) -> Iterator[tuple[str, str, str | None]]:
    """Our stand-in and runc's created container; yields (our root, runc's root, runc's id or None)."""
    ours_root, runc_root = base / "ours", base / "runc"
    sleeper = subprocess.Popen(["sleep", "1000"])
    runc_id = None
    try:
        starttime = process_starttime(sleeper.pid) or 0
        record = ContainerRecord(id="bench", bundle=str(base), status=RUNNING, pid=sleeper.pid, starttime=starttime)
        Store(str(ours_root)).create(record).close()
        bundle = _busybox_bundle(base)
        if bundle is not None:
            runc_id = f"bench-{secrets.token_hex(4)}"
            errors = base / "runc-create.err"
            # Not a pipe: the container's init keeps runc's standard streams open until it is deleted.
            with open(errors, "w") as err:
                made = subprocess.run(
                    ["runc", "--root", str(runc_root), "create", "--bundle", str(bundle), runc_id],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            if made.returncode != 0:
                print(f"skipped: runc create failed: {errors.read_text().strip()}")
                runc_id = None
        yield str(ours_root), str(runc_root), runc_id
    finally:
        if runc_id is not None:
            subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", runc_id], check=False)
        sleeper.kill()
        sleeper.wait()


def main(argv: Sequence[str] | None = None) -> int:
    def extend(p: argparse.ArgumentParser) -> None:
        p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")

    args = h.parse_args("OCI runtime start-up benchmark", argv, extend)
    cfg = h.Config.from_args(args)
    ours = _ours()
    if ours is None:
        return 0
    runc, crun = h.tool("runc"), h.tool("crun")
    if args.wait_quiet:
        h.wait_for_quiet(args.wait_quiet)
    with tempfile.TemporaryDirectory(prefix="nsprim-runtime-bench-") as tmp, _containers(Path(tmp)) as roots:
        ours_root, runc_root, runc_id = roots
        empty = str(Path(tmp) / "empty")
        commands: list[tuple[str, list[str], list[str] | None]] = [
            ("--version", ["--version"], ["--version"]),
            ("list", ["--root", empty, "list"], ["--root", empty, "list"]),
            ("state unknown", ["--root", empty, "state", "nope"], ["--root", empty, "state", "nope"]),
            ("state", ["--root", ours_root, "state", "bench"], None),
        ]
        cases = [
            _case("python -c pass", [sys.executable, "-c", "pass"]),
            _case("import nsprim", [sys.executable, "-c", "import nsprim"]),
        ]
        pairs: list[tuple[str, str, str]] = []
        for label, our_args, their_args in commands:
            cases.append(_case(f"nsprim-runtime {label}", [*ours, *our_args]))
            for tool_name, path in (("runc", runc), ("crun", crun)):
                if path is None:
                    continue
                theirs = their_args
                if label == "state":
                    if tool_name != "runc" or runc_id is None:
                        continue
                    theirs = ["--root", runc_root, "state", runc_id]
                assert theirs is not None
                cases.append(_case(f"{tool_name} {label}", [path, *theirs]))
                pairs.append((label, f"nsprim-runtime {label}", f"{tool_name} {label}"))
        load = h.LoadMonitor()
        with load:
            results = h.run_interleaved(cases, cfg)
    h.print_table(results, "one command, start to exit (µs):")
    ratios = [h.Ratio(f"{a} / {b.split()[0]}", results[a], results[b]) for _label, a, b in pairs]
    floor = results["python -c pass"]
    checked = [
        h.Ratio(f"nsprim-runtime {label} / python -c pass", results[f"nsprim-runtime {label}"], floor, TARGET_VS_PYTHON)
        for label, _o, _t in commands
    ]
    print("\nratios of medians:")
    h.print_ratios([*ratios, *checked])
    extra_ms = (results["import nsprim"].median - floor.median) / 1000
    imported = extra_ms <= TARGET_IMPORT_MS
    print(f"\nimport nsprim - python -c pass: {extra_ms:.1f} ms  target <= {TARGET_IMPORT_MS:.0f} ms  "
          f"{'PASS' if imported else 'MISS'}")  # fmt: skip
    print(load.describe())
    if args.json:
        h.write_json(args.json, h.as_json(results, [*ratios, *checked]))
    return 1 if args.strict and (any(r.passed is False for r in checked) or not imported) else 0


if __name__ == "__main__":
    sys.exit(main())
