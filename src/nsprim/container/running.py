"""Starting a container and managing it while it runs.

:func:`start_container` turns a :class:`ContainerConfig` into host-side
preparation (a cgroup, registrations with the cleanup watcher) and one
:class:`~nsprim.plan.Plan` that the core runs in the child.
:class:`RunningContainer` is the handle: wait, signal, kill the whole group,
freeze, update limits, read stats, ``exec`` another command inside.  Cleanup
(cgroup, watcher registrations) happens on every path;
if this process dies, the watcher does it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from .. import _sys
from .._sys import C, watcher
from ..cgroup import ROOT, CGroup, Resources, Stats
from ..cgroup.host import HostInfo, host_info
from ..errors import ConfigError, NsprimError, SyscallError, TimeoutExpired
from ..idmap import IdMap, write_id_maps
from ..namespace import Namespace, NamespaceType
from ..plan import (
    Chdir,
    Exec,
    FdMap,
    Init,
    InterfaceUp,
    Mount,
    Plan,
    SetGid,
    SetGroups,
    SetHostname,
    SetNs,
    SetRlimit,
    SetUid,
    Step,
    Sync,
    Umask,
    Unshare,
    WriteFile,
)
from ..process import PIPE, Process, start
from .config import ContainerConfig, Network
from .procview import ProcView, view_directory
from .rootfs import host_dirs, root_steps

__all__ = ["RunningContainer", "ContainerResult", "start_container", "run_container", "state_dir"]


log = logging.getLogger("nsprim.container")


def state_dir() -> Path:
    """Where containers keep their scratch directories: ``$NSPRIM_STATE_DIR``, else
    ``/run/nsprim`` for root and ``$XDG_RUNTIME_DIR/nsprim`` (or a per-user
    directory in the temporary directory) for everyone else."""
    if "NSPRIM_STATE_DIR" in os.environ:
        return Path(os.environ["NSPRIM_STATE_DIR"])
    if os.geteuid() == 0:
        return Path("/run/nsprim")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.access(runtime, os.W_OK):
        return Path(runtime) / "nsprim"
    return Path(tempfile.gettempdir()) / f"nsprim-{os.geteuid()}"


@dataclass(frozen=True)
class ContainerResult:
    """How a container ended, what it printed, and what it used."""

    returncode: int
    stdout: bytes | None
    stderr: bytes | None
    stats: Stats | None
    oom_killed: bool

    @property
    def signal(self) -> int | None:
        """The signal that ended the payload, if one did."""
        if self.returncode < 0:
            return -self.returncode
        return None


class _Prepared:
    """Host-side resources of one container, released in reverse order."""

    def __init__(self, config: ContainerConfig) -> None:
        self.config = config
        self.id = config.name or f"nsprim-{secrets.token_hex(6)}"
        self.state: Path | None = None
        self.cgroup: CGroup | None = None
        self.watching = not config.detach
        self.namespaces: list[Namespace] = []
        self.proc_view: ProcView | None = None  # nsprim: proc_view

    def setup(self) -> None:
        cfg = self.config
        for t, path in cfg.join:
            self.namespaces.append(Namespace.from_path(path, t))
        if cfg.root is not None:
            # Shared by every container: each child covers it with a tmpfs of
            # its own, so nothing per container is made (or left) on the host.
            self.state = state_dir()
            for d in host_dirs(cfg, self.state):
                d.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.geteuid() == 0:
            self.cgroup = _create_cgroup(self.id, cfg)
            if self.watching:
                for d in self.cgroup.directories.values():
                    watcher.watch_cgroup(d)
        if cfg.proc_view:  # nsprim: proc_view
            if self.cgroup is None:
                raise ConfigError("a /proc view needs the container's cgroup (run as root)", what="proc_view")
            self.proc_view = ProcView(view_directory(state_dir(), self.id), self.cgroup, watch=self.watching)
            self.proc_view.create()

    def release(self) -> None:
        errors: list[BaseException] = []
        for ns in self.namespaces:
            ns.close()
        if self.proc_view is not None:  # nsprim: proc_view
            try:
                self.proc_view.remove()
            except BaseException as exc:
                errors.append(exc)
            self.proc_view = None
        if self.cgroup is not None:
            try:
                if self.cgroup.exists():
                    # kill() waits until the group is empty; no need to wait again.
                    if self.cgroup.procs(recursive=True):
                        self.cgroup.kill()
                    self.cgroup.delete(recursive=True)
                if self.watching:
                    for d in self.cgroup.directories.values():
                        watcher.forget_cgroup(d)
            except BaseException as exc:
                errors.append(exc)
            self.cgroup = None
        if errors:
            raise errors[0]


_host_info_cache: dict[str, tuple[int, float, HostInfo]] = {}


def cached_host_info() -> HostInfo:
    """The host's cgroup hierarchies, read again only when the mount namespace
    changes or after a few seconds: parsing mountinfo for every container
    would cost more than the rest of the Python side of starting it."""
    ino = os.stat("/proc/self/ns/mnt").st_ino
    hit = _host_info_cache.get("info")
    now = time.monotonic()
    if hit is not None and hit[0] == ino and now - hit[1] < 5.0:
        return hit[2]
    info = host_info()
    _host_info_cache["info"] = (ino, now, info)
    return info


def _create_cgroup(name: str, cfg: ContainerConfig) -> CGroup:
    info = cached_host_info()
    resources = cfg.resources or Resources()
    wanted = {c.value for c in resources.controllers()}
    for c in ("memory", "pids"):
        if any(k.value == c for k in info.controllers):
            wanted.add(c)
    if info.version_of("freezer") == 1:
        wanted.add("freezer")  # freeze and kill need it on v1
    # NSPRIM_CGROUP_PARENT lets a test suite or a service keep every group under its own.
    parent_path = cfg.cgroup_parent or os.environ.get("NSPRIM_CGROUP_PARENT") or ROOT
    parent = CGroup.open(parent_path, info=info)  # carries the cached host info into create()
    return CGroup.create(name, parent=parent, resources=resources, controllers=wanted)


def _cgroup_steps(cgroup: CGroup | None) -> tuple[list[Step], int]:
    """Join the cgroup: CLONE_INTO_CGROUP for a pure v2 group, else by writing
    ``0`` to each ``cgroup.procs`` first thing in the child."""
    if cgroup is None:
        return [], -1
    dirs = cgroup.directories
    v1 = [d for h, d in dirs.items() if h.version == 1]
    v2 = [d for h, d in dirs.items() if h.version == 2]
    if not v1 and len(v2) == 1 and _sys.have_clone3():
        fd = os.open(v2[0], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return [], fd
    return [WriteFile(d / "cgroup.procs", b"0") for d in (*v1, *v2)], -1


def _id_map_action(cfg: ContainerConfig) -> tuple[IdMap | None, IdMap | None]:
    if NamespaceType.USER not in cfg.namespaces:
        return None, None
    if cfg.uid_map or cfg.gid_map:
        return cfg.uid_map, cfg.gid_map
    return IdMap.single(0, os.geteuid()), IdMap.single(0, os.getegid())


def _veth_action(cfg: ContainerConfig, name: str) -> Any:
    veth = cfg.veth
    assert veth is not None
    host_if = f"nsv{secrets.token_hex(3)}"

    def action(pid: int) -> None:
        def ip(*args: str) -> None:
            r = subprocess.run(["ip", *args], capture_output=True, text=True)
            if r.returncode != 0:
                raise SyscallError(errno.EIO, "ip", detail=f"ip {' '.join(args)}", hint=r.stderr.strip())

        if shutil.which("ip") is None:
            raise ConfigError("network `veth` needs iproute2 (`ip`) on the host", what="network")
        ip("link", "add", host_if, "type", "veth", "peer", "name", veth.container_interface, "netns", str(pid))
        ip("addr", "add", veth.host_address, "dev", host_if)
        ip("link", "set", host_if, "up")
        target = f"/proc/{pid}/ns/net"
        with Namespace.from_path(target, "net") as net, net.entered():
            ip("addr", "add", veth.container_address, "dev", veth.container_interface)
            ip("link", "set", veth.container_interface, "up")
            if veth.default_route:
                ip("route", "add", "default", "via", veth.host_address.split("/")[0])

    return action


def _join_steps(namespaces: Sequence[Namespace]) -> list[Step]:
    """setns steps: user first (for the rights over the rest), mount last; the
    pid namespace is entered by the parent around the clone instead."""
    order = {NamespaceType.USER: 0, NamespaceType.MNT: 2}
    return [
        SetNs(ns.fd, ns.type.flag, str(ns.path))
        for ns in sorted(namespaces, key=lambda n: order.get(n.type, 1))
        if ns.type is not NamespaceType.PID
    ]


def build_plan(
    cfg: ContainerConfig, prep: _Prepared, stdio: Sequence[tuple[int, int]], *, for_exec: bool = False
) -> tuple[Plan, int, int, list[Any]]:
    """The child's plan, clone flags, cgroup fd and parent actions for *cfg*."""
    steps: list[Step] = []
    actions: list[Any] = []
    cg_steps, cgroup_fd = _cgroup_steps(prep.cgroup)
    steps += cg_steps
    create = set(cfg.namespaces)
    clone_types = set(create) - {NamespaceType.TIME}
    if NamespaceType.CGROUP in create and cg_steps:
        # Only after joining the group, so that it is the namespace's root.
        clone_types.discard(NamespaceType.CGROUP)
    uid_map, gid_map = _id_map_action(cfg)
    if uid_map is not None or gid_map is not None:
        um, gm = uid_map, gid_map

        def maps(pid: int) -> None:
            write_id_maps(pid, um, gm, deny_setgroups=os.geteuid() != 0)

        steps.append(Sync("the parent writes the id maps"))
        actions.append(maps)
    if cfg.network is Network.VETH and NamespaceType.NET in create:
        steps.append(Sync("the parent links the veth pair"))
        actions.append(_veth_action(cfg, prep.id))
    security = cfg.security if cfg.security is not None else _default_security()
    if security is not None:
        security = replace(security, umask=cfg.umask)  # the container's umask wins
        # Non-dumpable from here on (nothing of the container may ptrace the
        # setup or open its /proc/<pid>/exe), but only after the parent wrote
        # the id maps: a rootless parent cannot write a non-dumpable child's.
        steps += security.prologue()
    steps += _join_steps(prep.namespaces)
    if NamespaceType.CGROUP in create and NamespaceType.CGROUP not in clone_types:
        steps.append(Unshare(C.CLONE_NEWCGROUP))
    if NamespaceType.TIME in create:
        steps.append(Unshare(C.CLONE_NEWTIME))
    if NamespaceType.MNT in create:
        if cfg.root is None:  # (RootFS starts with this itself)
            steps.append(Mount(None, "/", None, C.MS_REC | C.MS_PRIVATE))
        steps += root_steps(cfg, prep.state, userns=NamespaceType.USER in create, proc_view=prep.proc_view)
    if cfg.hostname is not None:
        steps.append(SetHostname(cfg.hostname))
    if cfg.network is Network.NONE and NamespaceType.NET in create:
        steps.append(InterfaceUp("lo"))
    if cfg.init and NamespaceType.PID in create and not for_exec:
        steps.append(Init())
    for lim in cfg.rlimits:
        steps.append(SetRlimit(lim.resource, lim.soft, lim.hard))
    steps.append(FdMap(tuple(stdio)))
    if security is not None:
        # setgroups is denied to a rootless container (the kernel's rule for an
        # unprivileged id map): leave the groups alone there unless asked.
        groups = cfg.groups if (cfg.groups or os.geteuid() == 0) else None
        # The user switch interleaves with the capability changes, and seccomp
        # comes last when no_new_privs allows it: the policy orders them.
        steps += security.epilogue(uid=cfg.uid, gid=cfg.gid, groups=groups)
    else:
        if cfg.umask is not None:
            steps.append(Umask(cfg.umask))
        if cfg.groups or os.geteuid() == 0:
            steps.append(SetGroups(cfg.groups))
        steps.append(SetGid(cfg.gid))
        steps.append(SetUid(cfg.uid))
    # chdir as the user the payload runs as, as runc does.
    steps.append(Chdir(cfg.cwd))
    env = dict(cfg.env)
    steps.append(Exec(cfg.argv[0], list(cfg.argv), env, env.get("PATH", "/usr/bin:/bin")))
    return Plan(tuple(steps)), NamespaceType.mask(clone_types), cgroup_fd, actions


def _default_security() -> Any:
    """Docker's defaults, less CAP_MKNOD (as podman does).

    With no device cgroup, CAP_MKNOD would let the container make and open
    host devices; without it, ``/dev`` keeps the nodes the setup made.
    """
    from ..security import Capabilities, SecurityPolicy

    return SecurityPolicy(caps=Capabilities.docker_default().drop("MKNOD"))


def _stdio(stdin: Any, stdout: Any, stderr: Any) -> tuple[list[tuple[int, int]], list[int], list[int | None]]:
    """(child fd pairs, fds to close in the parent after start, parent pipe ends)."""
    pairs: list[tuple[int, int]] = []
    child_side: list[int] = []
    parent_ends: list[int | None] = []
    for index, arg in enumerate((stdin, stdout, stderr)):
        if arg is None:
            pairs.append((index, index))
            parent_ends.append(None)
        elif arg == PIPE:
            r, w = os.pipe2(os.O_CLOEXEC)
            child, parent = (r, w) if index == 0 else (w, r)
            pairs.append((child, index))
            child_side.append(child)
            parent_ends.append(parent)
        elif arg == subprocess.DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            pairs.append((fd, index))
            child_side.append(fd)
            parent_ends.append(None)
        elif arg == subprocess.STDOUT and index == 2:
            pairs.append((pairs[1][0], 2))
            parent_ends.append(None)
        else:
            fd = arg if isinstance(arg, int) else arg.fileno()
            pairs.append((fd, index))
            parent_ends.append(None)
    return pairs, child_side, parent_ends


class RunningContainer:
    """A started container.  Use it as a context manager: on exit it is killed
    (if still running) and everything it used on the host is removed."""

    def __init__(self, config: ContainerConfig, prep: _Prepared, process: Process) -> None:
        self.config = config
        self.id = prep.id
        self.process = process
        self._prep = prep
        self._ns: dict[NamespaceType, Namespace] = {}
        self._closed = False
        self.oom_killed = False
        self.final_stats: Stats | None = None

    # ---- identity --------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The host pid of the container's first process (its pid 1)."""
        return self.process.pid

    @property
    def cgroup(self) -> CGroup | None:
        """The container's cgroup (None when running without one)."""
        return self._prep.cgroup

    @property
    def returncode(self) -> int | None:
        """The exit status once it has ended (``-N`` for signal N)."""
        return self.process.returncode

    def namespace_ids(self) -> dict[NamespaceType, Any]:
        """The identities of the container's namespaces, for inspection from the host."""
        return self.process.namespace_ids()

    def namespace(self, nstype: NamespaceType | str) -> Namespace:
        """A handle on one of the container's namespaces (owned by the container)."""
        t = NamespaceType.parse(nstype)
        if t not in self._ns:
            self._ns[t] = Namespace.of_pid(self.pid, t)
        return self._ns[t]

    # ---- life ------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container's pid 1 to exit; then clean up and return its status."""
        status = self.process.wait(timeout)
        self._finish()
        return status

    def send_signal(self, sig: int) -> None:
        """Signal the container's pid 1 (with ``init``, it forwards to the payload)."""
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL every process of the container (the whole cgroup)."""
        if self.cgroup is not None and self.cgroup.exists():
            self.cgroup.kill()
        self.process.kill()

    def freeze(self) -> None:
        """Stop every process of the container (cgroup freezer)."""
        self._need_cgroup("freeze").freeze()

    def thaw(self) -> None:
        """Let a frozen container run again."""
        self._need_cgroup("thaw").thaw()

    def update(self, resources: Resources) -> None:
        """Change the cgroup limits of the running container."""
        self._need_cgroup("update").update(resources)

    def stats(self) -> Stats:
        """Resource usage so far (memory, cpu, pids, io, pressure)."""
        return self._need_cgroup("stats").stats()

    def refresh_proc_view(self) -> None:  # nsprim: proc_view
        """Rewrite the container's ``/proc/meminfo`` now, and its CPU files (after an
        :meth:`update` of the cpuset or quota; see
        :meth:`Container.proc_view <nsprim.container.Container.proc_view>`)."""
        view = self._prep.proc_view
        if view is None:
            raise ConfigError(f"container {self.id} has no /proc view: use .proc_view()", what="proc_view")
        view.refresh(cpus=True)

    def _need_cgroup(self, what: str) -> CGroup:
        if self.cgroup is None:
            raise ConfigError(f"{what} needs the container's cgroup (run as root)", what="cgroup")
        return self.cgroup

    def exec(self, argv: Sequence[str], **kwargs: Any) -> Process:
        """Run another command inside the container, as ``docker exec`` does.

        It joins every namespace of the container and its cgroup, with the
        container's environment, user, working directory and security policy.
        Returns the new :class:`~nsprim.process.Process`.
        """
        if self.process.returncode is not None:
            raise ConfigError(f"container {self.id} is not running", what="exec")
        cfg = self.config
        joined = [self.namespace(t) for t in cfg.namespaces if t is not NamespaceType.TIME]
        exec_cfg = ContainerConfig(
            argv=tuple(argv),
            namespaces=frozenset(),
            env=cfg.env,
            cwd=cfg.cwd,
            uid=cfg.uid,
            gid=cfg.gid,
            groups=cfg.groups,
            rlimits=cfg.rlimits,
            umask=cfg.umask,
            security=cfg.security,
            network=Network.HOST,
        )
        prep = _Prepared(exec_cfg)
        prep.cgroup = self.cgroup
        prep.namespaces = []
        pairs, child_side, parent_ends = _stdio(kwargs.get("stdin"), kwargs.get("stdout"), kwargs.get("stderr"))
        cgroup_fd = -1
        try:
            plan, _, cgroup_fd, actions = build_plan(exec_cfg, prep, pairs, for_exec=True)
            # Join the container's namespaces right after its cgroup.
            joins = _join_steps(joined)
            pidns = next((ns.fd for ns in joined if ns.type is NamespaceType.PID), -1)
            n_cg = sum(1 for s in plan.steps if isinstance(s, WriteFile))
            steps = list(plan.steps)
            plan = Plan((*steps[:n_cg], *joins, *steps[n_cg:]))
            proc = start(
                plan,
                args=list(argv),
                cgroup_fd=cgroup_fd,
                pidns_fd=pidns,
                parent_actions=actions,
                close_after=child_side,
            )
        except BaseException:
            for fd in child_side + [p for p in parent_ends if p is not None]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise
        finally:
            if cgroup_fd >= 0:
                os.close(cgroup_fd)
        files = [None if fd is None else os.fdopen(fd, "wb" if i == 0 else "rb", 0) for i, fd in enumerate(parent_ends)]
        proc.stdin, proc.stdout, proc.stderr = files
        return proc

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        cg = self.cgroup
        if cg is not None and cg.exists():
            with contextlib.suppress(NsprimError, OSError):
                self.final_stats = cg.stats()
            with contextlib.suppress(NsprimError, OSError):
                self.oom_killed = cg.memory_events().oom_kill > 0
        for ns in self._ns.values():
            ns.close()
        self._ns.clear()
        if not self.config.detach:
            with contextlib.suppress(NsprimError, OSError):
                watcher.forget_pid(self.pid)
        self._prep.release()

    def close(self) -> None:
        """Kill the container if it still runs, reap it, and remove what it used."""
        try:
            if self.process.returncode is None:
                self.kill()
                self.process.wait()
        finally:
            self.process.close()
            self._finish()

    def __enter__(self) -> RunningContainer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<RunningContainer {self.id} pid={self.pid} {state}>"


def start_container(
    config: ContainerConfig, *, stdin: Any = None, stdout: Any = None, stderr: Any = None
) -> RunningContainer:
    """Prepare the host side, start the plan, and return the handle."""
    if os.geteuid() != 0 and NamespaceType.USER not in config.namespaces and not config.join:
        # Rootless: a user namespace gives the privileges the rest needs.
        config = replace(config, namespaces=config.namespaces | {NamespaceType.USER})
    config.validate()
    config = config.resolve_user()
    prep = _Prepared(config)
    pairs: list[tuple[int, int]] = []
    child_side: list[int] = []
    parent_ends: list[int | None] = []
    cgroup_fd = -1
    try:
        prep.setup()
        pairs, child_side, parent_ends = _stdio(stdin, stdout, stderr)
        plan, flags, cgroup_fd, actions = build_plan(config, prep, pairs)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("container %s: clone flags %#x, %d plan steps", prep.id, flags, len(plan.steps))
            for i, step in enumerate(plan.steps):
                log.debug("  %2d. %s", i, step.describe())
        pidns = next((ns.fd for ns in prep.namespaces if ns.type is NamespaceType.PID), -1)
        proc = start(
            plan,
            args=list(config.argv),
            clone_flags=flags,
            cgroup_fd=cgroup_fd,
            pidns_fd=pidns,
            parent_actions=actions,
            close_after=child_side,
        )
    except BaseException:
        for fd in child_side + [p for p in parent_ends if p is not None]:
            with contextlib.suppress(OSError):
                os.close(fd)
        prep.release()
        raise
    finally:
        if cgroup_fd >= 0:
            os.close(cgroup_fd)
    if prep.proc_view is not None and config.proc_view_refresh is not None:  # nsprim: proc_view
        prep.proc_view.start_refresher(config.proc_view_refresh)
    if not config.detach and prep.cgroup is None:
        watcher.watch_pid(proc.pid)
    files = [None if fd is None else os.fdopen(fd, "wb" if i == 0 else "rb", 0) for i, fd in enumerate(parent_ends)]
    proc.stdin, proc.stdout, proc.stderr = files
    return RunningContainer(config, prep, proc)


def run_container(
    config: ContainerConfig,
    *,
    capture_output: bool = False,
    input: bytes | None = None,
    timeout: float | None = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
) -> ContainerResult:
    """Start, feed *input*, collect output, wait, clean up."""
    if capture_output:
        stdout = PIPE if stdout is None else stdout
        stderr = PIPE if stderr is None else stderr
    if input is not None and stdin is None:
        stdin = PIPE
    with start_container(config, stdin=stdin, stdout=stdout, stderr=stderr) as box:
        try:
            out, err = box.process.communicate(input, timeout)
        except TimeoutExpired:
            box.kill()
            raise
        box.wait()
        status = box.returncode
        assert status is not None
        return ContainerResult(status, out, err, box.final_stats, box.oom_killed)
