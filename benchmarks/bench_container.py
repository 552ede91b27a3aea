"""Container benchmark (issue #5): a full sandbox running ``/bin/true``, nsprim vs bwrap vs crun/runc vs a C loop.

One iteration is one whole sandbox, from a warm Python process, until it is
reaped and cleaned up.  Every tool gets the SAME small root (a static busybox
with ``true`` and ``sh``, built once per run in a temporary directory):

* ``nsprim`` — ``Container(["/bin/true"]).image([root]).memory("64M").pids(64).run()``: new mnt, uts,
  ipc, pid, net and cgroup namespaces (the default: all but time and user), the root an overlay (the image
  as lower layer, an ephemeral upper) entered with pivot_root, /proc and /dev, a cgroup with memory and pids
  limits, created and deleted per container (under a parent ``nsprim-test-bench-<random>``)
* ``nsprim warm`` — the same template through ``Container.warm(2)``: a background thread keeps two fresh
  network namespaces (loopback up), each with a mount namespace holding the first part of the root (overlay,
  /sys, /dev), and two cgroups with the limits applied ready, and removes ended containers' groups; each start
  joins one pair and takes one group (every container still gets its own new ones; the thread's work is not in
  the timing, but it runs on this same 2-core machine during the run)
* ``bwrap``  — ``subprocess.run(["bwrap", "--unshare-all", "--die-with-parent", ROOT..., "--proc", "/proc",
  "--dev", "/dev", "/bin/true"])``; the root an overlay (``--overlay-src ROOT --tmp-overlay /``) when this
  bwrap has it, else ``--ro-bind ROOT /``.  bwrap sets no cgroup limits at all
* ``crun`` / ``runc`` — ``subprocess.run([RUNTIME, "run", "--bundle", B, ID])`` of an OCI bundle made with
  ``crun spec`` (root = the same directory, read-only; args ``/bin/true``; no terminal; pid, net, ipc, uts,
  mount and cgroup namespaces; memory and pids limits; its cgroup under the same parent).  crun 1.8.1 refuses
  hybrid cgroup hosts ("cgroups in hybrid mode not supported"): then it is run from a helper in a private
  mount namespace in which ``/sys/fs/cgroup/unified`` is detached, so that crun sees a plain v1 host and
  still applies the limits (timed inside the helper, per ``crun run``); failing that with
  ``--cgroup-manager=disabled`` and no limits; failing that it is skipped with the reason
* ``C loop`` — ``floor.c``: clone(NEWNS|NEWUTS|NEWIPC|NEWPID|NEWNET|NEWCGROUP, vfork) + execve("/bin/true")
  + waitpid, timed inside C: the floor of the namespace part alone (no mounts, no cgroup)
* ``C sandbox`` — ``container_floor.c``: a reduced sandbox in C (cgroup mkdir, limits, attach through
  cgroup.procs, rmdir; overlay, /proc, /dev with 6 nodes, pivot_root, lo up).  It leaves out much of what
  nsprim does: /sys, devpts, /dev/shm, the /dev symlinks, the masks and read-only /proc paths, the cgroup file
  systems, the capability drop, no_new_privs, seccomp, the exit statistics
* ``C same steps`` — ``container_same.c``: exactly the steps of nsprim's default container, one for one, as
  plain system calls: the same cgroup hierarchies (memory, pids, cgroup2 here), the same limit writes, the v1
  groups joined through ``tasks`` and the v2 one with CLONE_INTO_CGROUP, a vfork-like clone3, every mount,
  mask, read-only path, device, link and cgroup file system, pivot_root, lo, umask, the capability drop to
  Docker's set less MKNOD, setgroups/setresgid/setresuid, no_new_privs, nsprim's own compiled default seccomp
  program (written to a file here by :meth:`SecurityPolicy.program <nsprim.security.SecurityPolicy.program>`),
  and after the wait the exit statistics nsprim reads and its delete (stat, cgroup.procs, rmdir).  Not in it:
  nsprim's path resolution inside the root (openat2 + mounting onto the descriptor; the C uses plain paths and
  mount(2)), its report pipe (the C's exit status names the failing step) and its cleanup watcher (a pipe write
  per container to a helper process that removes the groups if Python dies)

Printed ratios of medians: **nsprim / bwrap (target <= 0.6)**, nsprim / crun and nsprim / runc (information),
nsprim / C loop (kept as before, with its old 1.5 mark), nsprim / C sandbox and C sandbox / bwrap (reference),
and issue #5's target, "within 1.5x of the same steps done by a C loop": **nsprim / C same steps and nsprim
warm / C same steps (target <= 1.5)**, with C same steps / C sandbox (what nsprim's extra steps cost in C).

``--breakdown`` then times nsprim's internal phases per sandbox (Python-side preparation, the spawn call — the
child's setup until exec —, wait, cleanup) by wrapping the library's functions with timers, interleaved with
what-if variants (one change each, monkeypatched in this process: the library on disk is not changed).

Run as root: ``python benchmarks/bench_container.py [--quick] [--breakdown] [--pace-us N] [--json out.json]
[--wait-quiet S] [--no-oci]``.
Exit status is 0 even on a MISS (it is a measurement, not a test) unless ``--strict``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nsprim  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import _harness as h  # after the path set-up above

from nsprim.cgroup import ROOT, CGroup
from nsprim.cgroup.host import cached_host_info
from nsprim.container import Container, WarmContainer
from nsprim.container.build import default_security

PAYLOAD = "/bin/true"
MEMORY = "64M"
MEMORY_BYTES = 64 << 20
PIDS = 64
TARGET_VS_BWRAP = 0.6
TARGET_VS_C = 1.5
WARM_SIZE = 2
#: floor.c namespace names for what nsprim's container creates by default (all but time and user).
C_NAMESPACES = ("mnt", "uts", "ipc", "pid", "net", "cgroup")
CGROUP_FS = Path("/sys/fs/cgroup")
UNIFIED = CGROUP_FS / "unified"

__all__ = ["main"]


# ---- the root shared by every tool ------------------------------------------------------------


def build_root(base: Path) -> Path:
    """A minimal root in *base*/root: a static busybox with ``true`` and ``sh``, and the usual mount points."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    root = base / "root"
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    if os.path.exists(busybox) and _is_static(busybox):
        shutil.copy2(busybox, root / "bin/busybox")
        for applet in ("true", "sh"):
            (root / "bin" / applet).symlink_to("busybox")
    else:  # no static busybox: a static C /bin/true is enough for the payload
        true_c = base / "true.c"
        true_c.write_text("int main(void) { return 0; }\n")
        cc = os.environ.get("CC") or shutil.which("cc") or "cc"
        subprocess.run([cc, "-O2", "-static", "-o", str(root / "bin/true"), str(true_c)], check=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    return root


def _is_static(path: str) -> bool:
    """Whether the ELF at *path* has no program interpreter (is statically linked)."""
    try:
        data = Path(path).read_bytes()[:4096]
    except OSError:
        return False
    return data[:4] == b"\x7fELF" and b"/ld-linux" not in data and b"ld-musl" not in data


# ---- nsprim ---------------------------------------------------------------------------------------


def nsprim_container(root: Path, parent: CGroup) -> Container:
    """The sandbox of the issue, as an nsprim container template."""
    return Container([PAYLOAD]).image([root]).memory(MEMORY).pids(PIDS).cgroup_parent(parent.path)


def nsprim_case(box: Container | WarmContainer) -> Callable[[], None]:
    """One ``box.run()`` that must exit 0."""

    def once() -> None:
        if box.run().returncode != 0:
            raise RuntimeError("nsprim: /bin/true failed in the container")

    return once


# ---- bwrap ----------------------------------------------------------------------------------------


def bwrap_argv(bwrap: str, root: Path) -> tuple[list[str], str]:
    """(the bwrap command line, a note on how the root is made)."""
    help_text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, check=False).stdout
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    argv = [bwrap, "--unshare-all", "--die-with-parent"]
    if "--overlay-src" in help_text and "--tmp-overlay" in help_text:
        argv += ["--overlay-src", str(root), "--tmp-overlay", "/"]
        how = "overlay root (--tmp-overlay)"
    else:
        argv += ["--ro-bind", str(root), "/"]
        how = "--ro-bind root: this bwrap has no --overlay-src"
    argv += ["--proc", "/proc", "--dev", "/dev", PAYLOAD]
    return argv, f"{version or 'bwrap'}, {how}, no cgroup limits"


def command_case(argv: Sequence[str], what: str) -> Callable[[], None]:
    """One ``subprocess.run(argv)`` that must exit 0."""
    cmd = list(argv)

    def once() -> None:
        if subprocess.run(cmd, check=False).returncode != 0:
            raise RuntimeError(f"{what} failed: {' '.join(cmd)}")

    return once


# ---- OCI runtimes (crun, runc) --------------------------------------------------------------------

#: Runs inside ``unshare --mount --propagation private``: detach the cgroup2 mount of the hybrid layout (in
#: this private mount namespace only) and time ``RUNTIME run`` COUNT times; JSON timings to OUT.
_HELPER = r"""
import ctypes, json, os, subprocess, sys, time
runtime, bundle, prefix, count, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
pace = float(sys.argv[6])
libc = ctypes.CDLL(None, use_errno=True)
if os.path.ismount("/sys/fs/cgroup/unified") and libc.umount2(b"/sys/fs/cgroup/unified", 2) != 0:
    sys.exit("umount2 /sys/fs/cgroup/unified: " + os.strerror(ctypes.get_errno()))
us = []
for k in range(count):
    cid = f"{prefix}-{k}"
    if pace:
        time.sleep(pace)
    t0 = time.perf_counter_ns()
    rc = subprocess.run([runtime, "run", "--bundle", bundle, cid], check=False).returncode
    us.append((time.perf_counter_ns() - t0) / 1000.0)
    if rc != 0:
        subprocess.run([runtime, "delete", "-f", cid], capture_output=True, check=False)
        sys.exit(f"{runtime} run exited {rc}")
with open(out, "w") as f:
    json.dump(us, f)
"""


@dataclass
class OciRuntime:
    """An OCI runtime found working on this host, and how it has to be run."""

    name: str
    path: str
    bundle: Path
    global_args: list[str] = field(default_factory=list)
    private_mntns: bool = False
    pace_s: float = 0.0
    prefix: str = "nsb-"  # every container id of this run starts with it
    note: str = ""
    ids: list[str] = field(default_factory=list)


def write_bundle(crun: str | None, base: Path, name: str, root: Path, cgroups_path: str | None) -> Path:
    """An OCI bundle for *root* in *base*/bundle-*name*: ``crun spec`` (or a minimal spec), edited here.

    With *cgroups_path*, memory and pids limits and that cgroup path; without, no ``linux.resources``.
    """
    bundle = base / f"bundle-{name}"
    bundle.mkdir(exist_ok=True)
    spec_path = bundle / "config.json"
    if crun is not None:
        subprocess.run([crun, "spec"], cwd=bundle, capture_output=True, check=True)
        spec: dict[str, Any] = json.loads(spec_path.read_text())
    else:  # runc alone: its own template
        runc = shutil.which("runc") or "runc"
        subprocess.run([runc, "spec"], cwd=bundle, capture_output=True, check=True)
        spec = json.loads(spec_path.read_text())
    spec["root"] = {"path": str(root), "readonly": True}
    spec["process"]["args"] = [PAYLOAD]
    spec["process"]["terminal"] = False
    linux = spec.setdefault("linux", {})
    linux["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
    if cgroups_path is not None:
        res = linux.setdefault("resources", {})
        res["memory"] = {"limit": MEMORY_BYTES}
        res["pids"] = {"limit": PIDS}
        linux["cgroupsPath"] = cgroups_path
    else:
        linux.pop("resources", None)
        linux.pop("cgroupsPath", None)
    spec_path.write_text(json.dumps(spec, indent=2))
    return bundle


def _try_run(argv: Sequence[str], timeout: float = 20.0) -> tuple[bool, str]:
    """Run *argv* once; (it exited 0, the last line of its error output)."""
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    lines = (p.stderr or p.stdout).strip().splitlines()
    return p.returncode == 0, (lines[-1] if lines else f"exit status {p.returncode}")


def probe_oci(name: str, base: Path, root: Path, parent: CGroup, tag: str) -> OciRuntime | None:
    """Find a way to run *name* here (direct, private mount namespace, no cgroup), or print why not."""
    path = h.tool(name)
    if path is None:
        return None
    crun = shutil.which("crun")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    version = version.splitlines()[0].strip() if version else name
    cg_path = f"{parent.path}/{name}-{tag}"
    with_limits = write_bundle(crun, base, f"{name}-limits", root, cg_path)
    reasons: list[str] = []
    rt = OciRuntime(name, path, with_limits, prefix=f"nsb-{tag}-{name}-", note=f"{version}, memory+pids limits")
    # 1. As is.
    cid = f"nsb-{tag}-{name}-probe1"
    ok, why = _try_run([path, "run", "--bundle", str(with_limits), cid])
    rt.ids.append(cid)
    if ok:
        return rt
    reasons.append(f"run: {why}")
    # 2. In a private mount namespace without the hybrid layout's cgroup2 mount (crun 1.8.1 refuses hybrid).
    unshare = shutil.which("unshare")
    if unshare is not None and os.path.ismount(UNIFIED):
        rt.private_mntns = True
        try:
            run_oci(rt, 1, f"nsb-{tag}-{name}-probe2")
        except RuntimeError as exc:
            reasons.append(f"private mount namespace: {exc}")
            rt.private_mntns = False
        else:
            rt.note = (
                f"{version}, memory+pids limits (v1), run in a private mount namespace with "
                f"{UNIFIED} detached: it refuses this hybrid host"
            )
            return rt
    # 3. crun without cgroup handling: no limits then.
    if name == "crun":
        bare = write_bundle(crun, base, f"{name}-nocg", root, None)
        cid = f"nsb-{tag}-{name}-probe3"
        ok, why = _try_run([path, "--cgroup-manager=disabled", "run", "--bundle", str(bare), cid])
        rt.ids.append(cid)
        if ok:
            rt.bundle, rt.global_args = bare, ["--cgroup-manager=disabled"]
            rt.note = f"{version}, --cgroup-manager=disabled: NO cgroup, NO limits"
            return rt
        reasons.append(f"--cgroup-manager=disabled: {why}")
    print(f"skipped: {name} cannot run a container on this host ({'; '.join(reasons)})")
    cleanup_oci(rt)
    return None


def run_oci(rt: OciRuntime, count: int, prefix: str) -> list[float]:
    """*count* runs of the runtime; per-run wall µs (timed in this process, or in the helper)."""
    if rt.private_mntns:
        fd, out = tempfile.mkstemp(prefix="nsb-oci-", suffix=".json")
        os.close(fd)
        try:
            argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-I", "-c", _HELPER]
            argv += [rt.path, str(rt.bundle), prefix, str(count), out, str(rt.pace_s)]
            p = subprocess.run(argv, capture_output=True, text=True, check=False)
            if p.returncode != 0:
                raise RuntimeError((p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1])
            us: list[float] = json.loads(Path(out).read_text())
            return us
        finally:
            os.unlink(out)
    us = []
    argv = [rt.path, *rt.global_args, "run", "--bundle", str(rt.bundle)]
    clock = time.perf_counter_ns
    for k in range(count):
        cid = f"{prefix}-{k}"
        if rt.pace_s:
            time.sleep(rt.pace_s)
        t0 = clock()
        rc = subprocess.run([*argv, cid], check=False).returncode
        us.append((clock() - t0) / 1000.0)
        if rc != 0:
            rt.ids.append(cid)
            raise RuntimeError(f"{rt.name} run exited {rc}")
    return us


def oci_runner(rt: OciRuntime, tag: str) -> h.BatchRunner:
    """A batch runner with unique container ids per iteration."""
    batches = iter(range(1 << 30))

    def run(count: int) -> list[float]:
        return run_oci(rt, count, f"nsb-{tag}-{rt.name}-{next(batches)}")

    return run


def cleanup_oci(rt: OciRuntime) -> None:
    """Delete any state the runtime kept for this run's ids (``RUNTIME delete -f``).

    An interrupted ``run`` can leave an empty state directory that ``delete`` no longer knows: removed too.
    """
    listed = subprocess.run([rt.path, "list", "-q"], capture_output=True, text=True, check=False).stdout.split()
    for cid in {*rt.ids, *(i for i in listed if i.startswith(rt.prefix))}:
        subprocess.run([rt.path, *rt.global_args, "delete", "-f", cid], capture_output=True, check=False)
    state_root = Path("/run") / rt.name
    if state_root.is_dir():
        for d in state_root.glob(f"{rt.prefix}*"):
            with contextlib.suppress(OSError):
                d.rmdir()  # only if empty


# ---- the C loop -----------------------------------------------------------------------------------


def sandbox_floor_runner(binary: Path, root: Path, state: Path, parent: CGroup, pace_us: int = 0) -> h.BatchRunner:
    """A batch of container_floor.c: the same sandbox in C (cgroup in the hierarchies nsprim uses here)."""
    dirs = [
        str(d)
        for hier, d in parent.directories.items()
        if hier.version == 2 or {c.value for c in hier.controllers} & {"memory", "pids", "freezer"}
    ]
    state.mkdir(exist_ok=True)

    def run(count: int) -> list[float]:
        argv = [str(binary), f"--pace-us={pace_us}", str(count), str(root), str(state), *dirs]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"container_floor failed: {out.stderr.strip()}")
        return [float(x) for x in json.loads(out.stdout)["us"]]

    return run


def nsprim_hierarchies(parent: CGroup) -> list[str]:
    """The parent's directories in the hierarchies nsprim's container groups span on this host, in its order.

    As :func:`nsprim.container.host.create_cgroup` chooses them: the v1 memory and pids hierarchies (freezer too on
    a pure v1 host) and the v2 tree.
    """
    info = cached_host_info()
    wanted = {"memory", "pids"}
    if info.version_of("freezer") == 1 and info.unified is None:
        wanted.add("freezer")
    return [
        str(d)
        for hier, d in parent.directories.items()
        if hier.version == 2 or {c.value for c in hier.controllers} & wanted
    ]


def write_default_seccomp(path: Path) -> tuple[int, int]:
    """Write nsprim's default seccomp program (``struct sock_filter`` array) to *path*.

    The container's default policy (Docker's capabilities less CAP_MKNOD) compiled by
    :meth:`SecurityPolicy.program <nsprim.security.SecurityPolicy.program>`, as nsprim loads it.  Returns
    (instructions, the capability mask that policy keeps for uid 0).
    """
    policy = default_security()
    program = policy.program()
    if program is None:
        raise RuntimeError("nsprim's default security policy has no seccomp program")
    path.write_bytes(program.to_bytes())
    return len(program), policy.caps.for_user(0).clamped().bounding.mask


def same_steps_runner(
    binary: Path, root: Path, state: Path, parent: CGroup, seccomp: Path, caps: int, pace_us: int = 0
) -> h.BatchRunner:
    """A batch of container_same.c: nsprim's default container's steps one for one, in C."""
    dirs = nsprim_hierarchies(parent)
    state.mkdir(exist_ok=True)
    argv = [str(binary), f"--pace-us={pace_us}", f"--seccomp={seccomp}", f"--caps={caps:x}"]

    def run(count: int) -> list[float]:
        out = subprocess.run([*argv, str(count), str(root), str(state), *dirs], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"container_same failed: {out.stderr.strip()}")
        return [float(x) for x in json.loads(out.stdout)["us"]]

    return run


# ---- breakdown (--breakdown): where nsprim's time per sandbox goes --------------------------------


class PhaseTimer:
    """Wraps library functions with timers that add into per-iteration totals, and restores them."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}
        self.samples: dict[str, list[float]] = {}
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, label: str) -> None:
        """Time every call of ``owner.attr`` under *label* (µs, summed per iteration)."""
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        self._undo.append((owner, attr, original))
        func = original.__func__ if isinstance(original, (staticmethod, classmethod)) else original
        clock = time.perf_counter_ns
        current = self.current

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return func(*args, **kwargs)
            finally:
                current[label] = current.get(label, 0.0) + (clock() - t0) / 1000.0

        wrapped: object = timed
        if isinstance(original, staticmethod):
            wrapped = staticmethod(timed)
        elif isinstance(original, classmethod):
            wrapped = classmethod(timed)
        setattr(owner, attr, wrapped)

    def wrap_cached_property(self, cls: type, attr: str, label: str) -> None:
        """Time the first (computing) access of ``cls.attr``, a :func:`functools.cached_property`."""
        original = cls.__dict__[attr]
        self._undo.append((cls, attr, original))
        inner = original.func
        clock = time.perf_counter_ns
        current = self.current

        def compute(obj: Any) -> Any:
            t0 = clock()
            try:
                return inner(obj)
            finally:
                current[label] = current.get(label, 0.0) + (clock() - t0) / 1000.0

        prop = functools.cached_property(compute)
        prop.__set_name__(cls, attr)
        setattr(cls, attr, prop)

    def restore(self) -> None:
        """Put every wrapped function back."""
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    @contextlib.contextmanager
    def iteration(self) -> Iterator[None]:
        """Collect one iteration's phase totals."""
        self.current.clear()
        yield
        for label, us in self.current.items():
            self.samples.setdefault(label, []).append(us)


def _breakdown_targets() -> list[tuple[str, int, object, str, str]]:
    """(label, depth, owner, attribute, kind) of every timed function; kind is "f" or "cached"."""
    from nsprim import plan as plan_mod
    from nsprim import process as process_mod
    from nsprim._sys import spawn as spawn_mod
    from nsprim._sys import watcher
    from nsprim.cgroup import control as control_mod
    from nsprim.container import build, preparation, start
    from nsprim.security import steps as security_steps

    return [
        ("prep: Preparation.setup", 0, preparation.Preparation, "setup", "f"),
        ("  cgroup create + limits (create_cgroup)", 1, preparation, "create_cgroup", "f"),
        ("  watcher.watch_cgroups", 1, watcher, "watch_cgroups", "f"),
        ("prep: build_plan (body cached per configuration)", 0, start, "build_plan", "f"),
        ("  root_steps (overlay, pivot, /proc, /dev)", 1, build, "root_steps", "f"),
        ("  SecurityPolicy.prologue", 1, security_steps.SecurityPolicy, "prologue", "f"),
        ("  SecurityPolicy.epilogue (caps, seccomp, ids)", 1, security_steps.SecurityPolicy, "epilogue", "f"),
        ("prep: Plan.encoded (lower + cffi encode)", 0, plan_mod.Plan, "encoded", "cached"),
        ("prep: Plan.vfork_safe", 0, plan_mod.Plan, "vfork_safe", "cached"),
        ("spawn: _sys.spawn (clone .. child setup .. exec)", 0, spawn_mod, "spawn", "f"),
        ("spawn: read_report", 0, spawn_mod, "read_report", "f"),
        ("wait: Process.wait (payload runs, exits)", 0, process_mod.Process, "wait", "f"),
        ("cleanup: CGroup.stats", 0, CGroup, "stats", "f"),
        ("cleanup: CGroup.memory_events", 0, CGroup, "memory_events", "f"),
        ("cleanup: watcher.forget_pid", 0, watcher, "forget_pid", "f"),
        ("cleanup: Preparation.release", 0, preparation.Preparation, "release", "f"),
        ("  CGroup.procs", 1, CGroup, "procs", "f"),
        ("  CGroup.kill", 1, control_mod, "kill", "f"),
        ("  CGroup.delete (rmdir)", 1, CGroup, "delete", "f"),
        ("  watcher.forget_cgroups", 1, watcher, "forget_cgroups", "f"),
    ]


class Breakdown:
    """A batch runner of nsprim sandboxes with every phase timed (wrappers installed only during its batches).

    Used as one case among the what-if variants, so that its batches interleave with the unpatched
    ``as is`` case and the two totals can be compared.
    """

    def __init__(self, box: Container, pace_s: float = 0.0, warmup: bool = True) -> None:
        self.once = nsprim_case(box)
        self.pace_s = pace_s
        self.timer = PhaseTimer()
        self.targets = _breakdown_targets()
        self.totals: list[float] = []
        self.recording = not warmup  # the harness' first call is the warm-up batch

    def __call__(self, count: int) -> list[float]:
        """Run *count* sandboxes with the phase timers in place; return each one's total µs."""
        timer, clock, out = self.timer, time.perf_counter_ns, []
        for label, _d, owner, attr, kind in self.targets:
            if kind == "cached":
                timer.wrap_cached_property(owner, attr, label)  # type: ignore[arg-type]
            else:
                timer.wrap(owner, attr, label)
        try:
            for _ in range(count):
                if self.pace_s:
                    time.sleep(self.pace_s)
                with timer.iteration():
                    t0 = clock()
                    self.once()
                    out.append((clock() - t0) / 1000.0)
        finally:
            timer.restore()
        if self.recording:
            self.totals += out
        else:  # the warm-up batch: forget its phases
            timer.samples.clear()
            self.recording = True
        return out

    def report(self) -> dict[str, Any]:
        """Print the phase table (µs per sandbox); return it as JSON-friendly data."""
        totals, n = self.totals, len(self.totals)
        mean_total = statistics.fmean(totals)
        print(f"\nnsprim breakdown: {n} sandboxes, µs per sandbox (means add up; indented rows are inside the above)")
        width = max(len(label) for label, *_ in self.targets) + 2
        print(f"  {'phase':<{width}}  {'median':>8}  {'mean':>8}  {'% of total':>10}")
        rows: list[dict[str, Any]] = []
        accounted = 0.0
        for label, d, *_ in self.targets:
            samples = self.timer.samples.get(label, [])
            samples += [0.0] * (n - len(samples))
            med, mean = statistics.median(samples), statistics.fmean(samples)
            if d == 0:
                accounted += mean
            rows.append({"phase": label.strip(), "depth": d, "median_us": med, "mean_us": mean})
            print(f"  {label:<{width}}  {med:8,.0f}  {mean:8,.0f}  {100 * mean / mean_total:9.1f}%")
        other = mean_total - accounted
        print(
            f"  {'other (run_container glue, stdio, Python)':<{width}}  {'':>8}  {other:8,.0f}  "
            f"{100 * other / mean_total:9.1f}%"
        )
        med_total = statistics.median(totals)
        print(f"  {'TOTAL Container.run()':<{width}}  {med_total:8,.0f}  {mean_total:8,.0f}  {100.0:9.1f}%")
        print("  (nsprim clones in vfork mode: the spawn call lasts until the child's exec, all its setup included)")
        return {"iterations": n, "phases": rows, "total_median_us": med_total, "total_mean_us": mean_total}


# ---- what-if variants (--breakdown): the gain of a change, measured by patching nsprim in this process -----


@contextlib.contextmanager
def patched(owner: object, attr: str, value: object) -> Iterator[None]:
    """``owner.attr = value`` for the duration of the block (a measurement aid: nothing is written to disk)."""
    original = getattr(owner, attr)
    setattr(owner, attr, value)
    try:
        yield
    finally:
        setattr(owner, attr, original)


@contextlib.contextmanager
def without_security(build_mod: Any) -> Iterator[None]:
    """No default security policy for the duration of the block: both ways the plan builder gets
    it patched, and its cache of plan bodies emptied before and after (a cached body has one)."""
    build_mod._BODY_CACHE.clear()
    try:
        with (
            patched(build_mod, "default_security", lambda: None),
            patched(build_mod, "_default_security_compiled", lambda state: None),
        ):
            yield
    finally:
        build_mod._BODY_CACHE.clear()


def whatif_cases(box: Container, breakdown: Breakdown, pace_s: float = 0.0) -> list[h.Case]:
    """nsprim as measured, the phase-timed run, and nsprim with one change each (patched, restored after)."""
    from nsprim.container import build as build_mod
    from nsprim.container import rootfs as rootfs_mod

    once = nsprim_case(box)
    variants: list[tuple[str, Callable[[], contextlib.AbstractContextManager[None]], str]] = [
        ("as is", contextlib.nullcontext, "the library unchanged"),
        (
            "no cgroup fs mounts",
            lambda: patched(rootfs_mod, "_cgroup_fs_steps", lambda *a, **k: []),
            "no /sys/fs/cgroup tmpfs + v1 hierarchies inside",
        ),
        (
            "no security policy",
            lambda: without_security(build_mod),
            "no capability drop, seccomp, no_new_privs",
        ),
    ]
    cases = []
    for name, make, note in variants:

        def run(count: int, make: Callable[[], contextlib.AbstractContextManager[None]] = make) -> list[float]:
            with make():
                return h.timed(once, pace_s)(count)

        cases.append(h.Case(name, run, note))
        if name == "as is":
            cases.append(h.Case("as is, phases timed", breakdown, "the breakdown below: timers around internals"))
    # Python-side trims: the full stats not read at exit.
    named = nsprim_case(box.name(f"nsb-whatif-{secrets.token_hex(3)}"))
    no_stats: Callable[..., Any] = lambda self, *a, **k: None  # noqa: E731

    def trims(*which: str) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        if "stats" in which:
            stack.enter_context(patched(CGroup, "stats", no_stats))
        if "child" in which:
            stack.enter_context(patched(rootfs_mod, "_cgroup_fs_steps", lambda *a, **k: []))
            stack.enter_context(without_security(build_mod))
        return stack

    for name, which, note in (
        ("no stats at exit", ("stats",), "CGroup.stats() not read when the container ends (result.stats None)"),
        (
            "no stats, no cgroup fs, no security",
            ("stats", "child"),
            "what-if only: the trim and the two child-side leave-outs above",
        ),
    ):

        def run_trim(count: int, which: tuple[str, ...] = which) -> list[float]:
            with trims(*which):
                return h.timed(named, pace_s)(count)

        cases.append(h.Case(name, run_trim, note))
    host_net = nsprim_case(box.network("host"))
    cases.append(h.Case("network host", h.timed(host_net, pace_s), "no network namespace (API: .network('host'))"))
    return cases


# ---- clean-up ------------------------------------------------------------------------------------


def remove_cgroup_dirs(name: str) -> None:
    """rmdir ``<hierarchy>/<name>`` and everything below it in every hierarchy (deepest first).

    Catches what an OCI runtime made under our parent in hierarchies nsprim does not span (name=systemd).
    """
    if not CGROUP_FS.is_dir():
        return
    for hier in CGROUP_FS.iterdir():
        top = hier / name
        if not top.is_dir():
            continue
        dirs = [Path(dp) for dp, _dn, _fn in os.walk(top)]
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()


def _sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


# ---- main -------------------------------------------------------------------------------------------


def _extend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--breakdown", action="store_true", help="also time nsprim's internal phases per sandbox")
    p.add_argument("--no-oci", action="store_true", help="leave out crun and runc")
    p.add_argument(
        "--pace-us",
        type=int,
        default=0,
        metavar="US",
        help="sleep this long before every sandbox, outside the timing, in every case (sparse starts: "
        "asynchronous teardown catches up, and per-start kernel costs that back-to-back runs share show up)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the container benchmark; returns the exit status."""
    args = h.parse_args("nsprim container benchmark (issue #5)", argv, _extend)
    cfg = h.Config.from_args(args)
    if os.geteuid() != 0:
        print("skipped: the container benchmark needs root (cgroups, OCI runtimes)")
        return 0
    old_term = signal.signal(signal.SIGTERM, _sigterm)
    tag = secrets.token_hex(4)
    parent_name = f"nsprim-test-bench-{tag}"
    tmp = Path(tempfile.mkdtemp(prefix="nsprim-bench-container-"))
    parent: CGroup | None = None
    runtimes: list[OciRuntime] = []
    payload: dict[str, Any] = {}
    warm: WarmContainer | None = None
    try:
        root = build_root(tmp)
        parent = CGroup.create(parent_name, parent=ROOT)
        box = nsprim_container(root, parent)
        floor = h.build_c("floor.c")
        pace = args.pace_us / 1e6
        cases = [h.Case("nsprim", h.timed(nsprim_case(box), pace), f"Container.run(): overlay, {MEMORY}, pids {PIDS}")]
        warm = box.warm(WARM_SIZE)
        cases.append(
            h.Case(
                "nsprim warm",
                h.timed(nsprim_case(warm), pace),
                f"Container.warm({WARM_SIZE}).run(): the same, namespaces, root part and cgroup made ahead",
            )
        )
        bwrap = h.tool("bwrap")
        if bwrap is not None:
            argv_b, note = bwrap_argv(bwrap, root)
            cases.append(h.Case("bwrap", h.timed(command_case(argv_b, "bwrap"), pace), note))
        if not args.no_oci:
            for name in ("crun", "runc"):
                rt = probe_oci(name, tmp, root, parent, tag)
                if rt is not None:
                    rt.pace_s = pace
                    runtimes.append(rt)
                    cases.append(h.Case(name, oci_runner(rt, tag), rt.note))
        cases.append(
            h.Case(
                "C loop",
                h.floor_runner(floor, C_NAMESPACES, "vfork", args.pace_us),
                "floor.c vfork: clone+exec+wait, no mounts",
            )
        )
        cases.append(
            h.Case(
                "C sandbox",
                sandbox_floor_runner(h.build_c("container_floor.c"), root, tmp / "cstate", parent, args.pace_us),
                "container_floor.c: cgroup+limits, overlay, pivot_root, /proc, /dev, lo (reference)",
            )
        )
        try:
            same = h.build_c("container_same.c")
        except RuntimeError as exc:
            print(f"skipped: C same steps ({exc})")
        else:
            insns, caps = write_default_seccomp(tmp / "seccomp.bpf")
            cases.append(
                h.Case(
                    "C same steps",
                    same_steps_runner(same, root, tmp / "sstate", parent, tmp / "seccomp.bpf", caps, args.pace_us),
                    f"container_same.c: nsprim's {len(nsprim_hierarchies(parent))} cgroups, mounts, masks, caps, "
                    f"no_new_privs, seccomp ({insns} insns), stats, in C",
                )
            )
        print(
            f"{cfg.iterations} sandboxes per case in {cfg.rounds} interleaved rounds after {cfg.warmup} warm-up"
            f"{' (quick: rough numbers)' if args.quick else ''}; python {sys.version.split()[0]}, "
            f"kernel {os.uname().release}, load {os.getloadavg()[0]:.2f}"
            f"{f'; paced: {args.pace_us} µs sleep before each sandbox' if args.pace_us else ''}"
        )
        if args.wait_quiet:
            print(f"waited for a quiet machine: load {h.wait_for_quiet(args.wait_quiet):.2f} cores")
        with h.LoadMonitor() as load:
            results = h.run_interleaved(cases, cfg)
        print()
        h.print_table(results, f"µs per sandbox running {PAYLOAD} (root: static busybox, the same for all)")
        print(f"  {load.describe()}")
        if warm is not None:
            print(
                f"  nsprim warm: {warm.hits} prepared parts taken (network+mount namespaces, cgroups), "
                f"{warm.misses} times none was ready (that start made its own)"
                + (f"; the pool stopped: {warm.error}" if warm.error is not None else "")
            )
        if "bwrap" in results:
            print("  note: bwrap sets no cgroup limits (nsprim creates, limits and deletes a cgroup per sandbox)")
        ratios: list[h.Ratio] = []
        if "bwrap" in results:
            ratios.append(h.Ratio("nsprim / bwrap", results["nsprim"], results["bwrap"], TARGET_VS_BWRAP))
            ratios.append(h.Ratio("nsprim warm / bwrap", results["nsprim warm"], results["bwrap"], TARGET_VS_BWRAP))
        for rt in runtimes:
            ratios.append(h.Ratio(f"nsprim / {rt.name}", results["nsprim"], results[rt.name]))
        ratios.append(h.Ratio("nsprim / C loop", results["nsprim"], results["C loop"], TARGET_VS_C))
        ratios.append(h.Ratio("nsprim warm / C loop", results["nsprim warm"], results["C loop"], TARGET_VS_C))
        ratios.append(h.Ratio("nsprim / C sandbox", results["nsprim"], results["C sandbox"]))
        if "C same steps" in results:
            same_stats = results["C same steps"]
            ratios.append(h.Ratio("nsprim / C same steps", results["nsprim"], same_stats, TARGET_VS_C))
            ratios.append(h.Ratio("nsprim warm / C same steps", results["nsprim warm"], same_stats, TARGET_VS_C))
            ratios.append(h.Ratio("C same steps / C sandbox", same_stats, results["C sandbox"]))
        if "bwrap" in results:
            ratios.append(h.Ratio("C sandbox / bwrap", results["C sandbox"], results["bwrap"]))
        h.print_ratios(ratios)
        payload = h.as_json(results, ratios, background_load=load.background, tag=tag)
        if args.breakdown:
            n = max(20, cfg.iterations // 2) if not args.quick else 20
            breakdown = Breakdown(box, pace, warmup=cfg.warmup > 0)
            wcfg = h.Config(iterations=n, rounds=min(cfg.rounds, n), warmup=cfg.warmup)
            with h.LoadMonitor() as wload:
                wres = h.run_interleaved(whatif_cases(box, breakdown, pace), wcfg)
            print()
            h.print_table(wres, "what if: nsprim with one change each, µs per sandbox (interleaved)")
            print(f"  {wload.describe()}")
            base = wres["as is"]
            h.print_ratios([h.Ratio(f"{k} / as is", v, base) for k, v in wres.items() if k != "as is"])
            payload["what_if"] = h.as_json(wres, background_load=wload.background)
            payload["breakdown"] = breakdown.report()
        if args.json:
            h.write_json(args.json, payload)
        missed = [r for r in ratios if r.passed is False]
        return 1 if (args.strict and missed) else 0
    finally:
        if warm is not None:
            warm.close()
        for rt in runtimes:
            cleanup_oci(rt)
        if parent is not None:
            with contextlib.suppress(Exception):
                if parent.procs(recursive=True):
                    parent.kill()
            with contextlib.suppress(Exception):
                parent.delete(recursive=True, timeout=5.0)
        remove_cgroup_dirs(parent_name)
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())
