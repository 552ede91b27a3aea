"""``nsprim doctor``: what works on this host for this user, and how to fix what does not.

Every check tries the real thing in a throwaway child (a namespace, an
overlay mount in a user namespace...) rather than guessing from versions.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from . import _sys
from ._dataclass import dataclass
from .errors import NsprimError
from .namespace import NamespaceType

__all__ = ["Check", "diagnose"]


@dataclass(frozen=True)
class Check:
    """One finding: its name, whether it passed, what was seen, and a fix."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    required: bool = False


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _try(fn: Callable[[], object]) -> str | None:
    """None if *fn* ran, else the error text."""
    try:
        fn()
    except (NsprimError, OSError) as exc:
        return str(exc)
    return None


def _run_true(new: set[str], **kw: object) -> None:
    from .spawning import run

    r = run(["true"], new=new, **kw)  # type: ignore[arg-type]
    if r.returncode != 0:
        raise OSError(f"`true` exited with {r.returncode}")


def _kernel() -> Iterator[Check]:
    release = platform.release()
    yield Check("kernel", True, f"Linux {release}")
    yield Check(
        "clone3 and pidfd",
        _sys.have_clone3(),
        "clone3 available" if _sys.have_clone3() else "missing (Linux < 5.3): plain clone is used",
        "a kernel of 5.3 or later adds cgroup placement at clone time",
    )
    yield Check(
        "new mount API",
        _sys.have_new_mount_api(),
        "fsopen/fsmount available" if _sys.have_new_mount_api() else "missing (Linux < 5.2)",
        "deep overlay stacks need Linux 6.8 (lowerdir+)",
    )


def _namespaces(root: bool) -> Iterator[Check]:
    user_extra: set[str] = set() if root else {"user"}
    for t in NamespaceType:
        if not Path(f"/proc/self/ns/{t.value}").exists():
            yield Check(f"{t.value} namespace", False, "this kernel lacks it", None, required=False)
            continue
        err = _try(functools.partial(_run_true, {t.value} | user_extra))
        fix = None if err is None else ("run as root" if root is False and t is not NamespaceType.USER else None)
        yield Check(f"{t.value} namespace", err is None, "can create" if err is None else err, fix, required=True)


def _userns() -> Iterator[Check]:
    maxns = _read("/proc/sys/user/max_user_namespaces")
    clone = _read("/proc/sys/kernel/unprivileged_userns_clone")
    apparmor = _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    problems = []
    if maxns == "0":
        problems.append("user.max_user_namespaces is 0")
    if clone == "0":
        problems.append("kernel.unprivileged_userns_clone is 0 (Debian patch)")
    if apparmor == "1":
        problems.append("AppArmor restricts unprivileged user namespaces (Ubuntu 24.04+)")
    fix = None
    if problems:
        fix = "sysctl -w " + " ".join(
            s
            for s, bad in (
                ("user.max_user_namespaces=15000", maxns == "0"),
                ("kernel.unprivileged_userns_clone=1", clone == "0"),
                ("kernel.apparmor_restrict_unprivileged_userns=0", apparmor == "1"),
            )
            if bad
        )
    yield Check(
        "unprivileged user namespaces",
        not problems,
        "allowed" if not problems else "; ".join(problems),
        fix,
    )
    helper = shutil.which("newuidmap")
    yield Check(
        "newuidmap/newgidmap",
        helper is not None,
        f"found at {helper}" if helper else "not installed: rootless containers get a single id mapped",
        "apt-get install uidmap, and give the user ranges in /etc/subuid and /etc/subgid",
    )


def _cgroups(root: bool) -> Iterator[Check]:
    try:
        from .cgroup import host_info

        info = host_info()
    except (NsprimError, OSError) as exc:
        yield Check("cgroups", False, str(exc), "mount cgroup2 at /sys/fs/cgroup", required=False)
        return
    names = ", ".join(sorted(c.value for c in info.controllers))
    yield Check("cgroup mode", True, f"{info.mode.value}; controllers: {names or 'none'}")
    if not root:
        own = next((d for h, p in info.cgroups if h.version == 2 for d in [h.directory(p)]), None)
        writable = own is not None and os.access(own, os.W_OK)
        yield Check(
            "cgroup delegation",
            writable,
            f"your cgroup {own} is writable" if writable else "no writable (delegated) cgroup for this user",
            "run as root, or start your session with a delegated cgroup (systemd-run --user --scope -p Delegate=yes)",
        )


def _overlay(root: bool) -> Iterator[Check]:
    from .plan import Mount

    with tempfile.TemporaryDirectory(prefix="nsprim-doctor-") as d:
        base = Path(d)
        for name in ("lower", "upper", "work", "merged"):
            (base / name).mkdir()
        data = f"lowerdir={base / 'lower'},upperdir={base / 'upper'},workdir={base / 'work'}"
        new = {"mnt"} if root else {"mnt", "user"}
        err = _try(lambda: _run_true(new, steps=[Mount("overlay", base / "merged", "overlay", 0, data)]))
        yield Check("overlay mount", err is None, "works" if err is None else err, "load the overlay module")
        if root:
            from .idmap import IdMap

            same = IdMap.single(0, 0)  # root stays root, so the directories stay accessible
            step = Mount("overlay", base / "merged", "overlay", 0, data)
            err = _try(lambda: _run_true({"mnt", "user"}, steps=[step], uid_map=same, gid_map=same))
            yield Check(
                "overlay in a user namespace",
                err is None,
                "works (rootless images possible)" if err is None else err,
                "Linux 5.11+ allows overlay in user namespaces",
            )


def _idmapped(root: bool) -> Iterator[Check]:
    """What ``--userns=auto`` needs: subordinate ids for the caller, and (for root) idmapped mounts."""
    import pwd
    import signal

    from .idmap import IdMap, subordinate_ranges

    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    ranges = subordinate_ranges(user, "uid"), subordinate_ranges(user, "gid")
    yield Check(
        "subordinate ids",
        all(ranges),
        f"/etc/subuid and /etc/subgid give `{user}` {sum(n for _, n in ranges[0])} uids"
        if all(ranges)
        else f"no range for `{user}` in /etc/subuid or /etc/subgid: --userns=auto cannot work",
        f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}",
    )
    if not root:
        return
    from .spawning import spawn

    def probe() -> None:
        ids = IdMap.single(0, 100000, 65536)  # a user namespace to map by: it only has to exist
        with spawn(["sleep", "60"], new={"user"}, uid_map=ids, gid_map=ids) as proc:
            try:
                userns = os.open(f"/proc/{proc.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        try:
            with tempfile.TemporaryDirectory(prefix="nsprim-doctor-") as d:
                tree = _sys.open_tree(_sys.C.AT_FDCWD, d, _sys.C.OPEN_TREE_CLONE | _sys.C.OPEN_TREE_CLOEXEC)
                try:  # a detached copy, never attached: nothing changes on the host
                    flags = _sys.C.AT_EMPTY_PATH
                    _sys.mount_setattr(tree, "", flags, attr_set=_sys.C.MOUNT_ATTR_IDMAP, userns_fd=userns)
                finally:
                    os.close(tree)
        finally:
            os.close(userns)

    err = _try(probe)
    yield Check(
        "idmapped mounts",
        err is None,
        f"work on {tempfile.gettempdir()}'s file system (image roots under --userns=auto)" if err is None else err,
        "Linux 5.12+ and a file system that supports them (ext4, xfs, btrfs, tmpfs 6.3+)",
    )


def _seccomp() -> Iterator[Check]:
    status = _read("/proc/self/status") or ""
    line = next((x for x in status.splitlines() if x.startswith("Seccomp:")), None)
    ok = line is not None
    yield Check("seccomp", ok, "available" if ok else "this kernel lacks seccomp", "CONFIG_SECCOMP_FILTER=y")


def diagnose() -> list[Check]:
    """Run every check and return the findings."""
    root = os.geteuid() == 0
    checks: list[Check] = [Check("user", True, "root" if root else f"uid {os.geteuid()} (rootless)")]
    parts = (_kernel(), _namespaces(root), _userns(), _cgroups(root), _overlay(root), _idmapped(root), _seccomp())
    for part in parts:
        checks.extend(part)
    return checks
