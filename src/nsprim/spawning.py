"""Processes started in namespaces: :func:`spawn` and :func:`run`.

:func:`spawn` turns its arguments into a :class:`~nsprim.plan.Plan` and
starts it with :func:`nsprim.lowlevel.start`; everything between clone and
exec runs in C.  A failed step raises :class:`~nsprim.errors.StepError`
naming the step — a missing program is an
:class:`~nsprim.errors.ExecutableNotFoundError`, never confused with the
program's own exit status 127.

    >>> import nsprim
    >>> r = nsprim.run(["hostname"], new={"uts"}, hostname="box", capture_output=True)
    >>> r.stdout
    b'box\\n'
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypedDict

from ._dataclass import dataclass
from ._sys import C
from .checks import check_argv, check_env, check_groups, check_id, check_uts_name
from .errors import ConfigError, TimeoutExpired
from .idmap import IdMap, write_id_maps
from .lowlevel import ParentAction, start
from .namespace import Namespace, NamespaceType
from .plan import (
    Chdir,
    Exec,
    FdMap,
    Mount,
    ParentDeathSignal,
    Plan,
    SetDomainname,
    SetHostname,
    SetNs,
    SetSid,
    Step,
    Sync,
    Unshare,
    WriteFile,
    credential_steps,
)
from .process import DEVNULL, PIPE, STDOUT, CommandArg, CompletedRun, Process, TimeOffsets

__all__ = [
    "spawn",
    "run",
    "open_streams",
    "join_namespaces",
    "namespace_steps",
    "NamespaceSteps",
    "credential_steps",
    "root_inside",
    "id_map_writer",
    "Streams",
    "StdioArg",
    "HasFileno",
    "SpawnOptions",
]

if TYPE_CHECKING:
    import signal as _signal

    from typing_extensions import Unpack
else:
    import _signal  # the same constants as plain ints: `signal` makes three enum classes at import


class HasFileno(Protocol):
    """A file object: what has a descriptor."""

    def fileno(self) -> int: ...


#: A standard stream as :func:`spawn` takes it (as :class:`subprocess.Popen` does): ``None``,
#: :data:`~nsprim.process.PIPE`, :data:`~nsprim.process.DEVNULL`, :data:`~nsprim.process.STDOUT`,
#: a descriptor or a file object.
StdioArg = int | HasFileno | None


@dataclass
class Streams:
    """The standard streams of a child about to start.

    *pairs* map a source descriptor to 0, 1 or 2 (for :class:`~nsprim.plan.FdMap`);
    *child_side* are ends the parent closes once the child has them;
    *parent_ends* are our ends of pipes, by stream.
    """

    pairs: list[tuple[int, int]]
    child_side: list[int]
    parent_ends: list[int | None]

    def hand_over(self) -> list[int]:
        """The child's ends, for :func:`start` to close (it does, on every path)."""
        fds, self.child_side = self.child_side, []
        return fds

    def abandon(self) -> None:
        """Close every descriptor opened for the streams and not handed over (the start failed)."""
        for fd in [*self.child_side, *(p for p in self.parent_ends if p is not None)]:
            with contextlib.suppress(OSError):
                os.close(fd)

    def attach(self, proc: Process) -> None:
        """Give *proc* file objects for our ends of its pipes."""
        ends = self.parent_ends
        files = [None if fd is None else os.fdopen(fd, "wb" if i == 0 else "rb", 0) for i, fd in enumerate(ends)]
        proc.stdin, proc.stdout, proc.stderr = files


def open_streams(stdin: StdioArg, stdout: StdioArg, stderr: StdioArg) -> Streams:
    """Set up the three standard streams as :func:`subprocess.Popen` takes them.

    ``None`` inherits, :data:`PIPE` makes a pipe, :data:`DEVNULL` opens
    ``/dev/null``, :data:`STDOUT` (for stderr) joins standard output; an int
    or a file object is used as it is.
    """
    streams = Streams([], [], [])
    try:
        for index, arg in enumerate((stdin, stdout, stderr)):
            parent: int | None = None
            child: int | None
            if arg is None:
                child = None
            elif index == 2 and arg == STDOUT:
                # fd 2 gets whatever fd 1 gets (FdMap stages sources first).
                child = next((src for src, dst in streams.pairs if dst == 1), 1)
            elif arg == PIPE:
                r, w = os.pipe2(os.O_CLOEXEC)
                child, parent = (r, w) if index == 0 else (w, r)
                streams.child_side.append(child)
            elif arg == DEVNULL:
                child = os.open(os.devnull, (os.O_RDONLY if index == 0 else os.O_WRONLY) | os.O_CLOEXEC)
                streams.child_side.append(child)
            elif isinstance(arg, int):
                if arg < 0:
                    raise ConfigError(f"invalid file descriptor {arg} for standard stream {index}", what="stdio")
                child = arg
            else:
                child = arg.fileno()
            streams.parent_ends.append(parent)
            if child is not None:
                streams.pairs.append((child, index))
    except BaseException:
        streams.abandon()
        raise
    return streams


def join_namespaces(join: Iterable[Namespace]) -> tuple[list[Step], int]:
    """SetNs steps for joining *join* (user first, for the rights over the rest;
    mount last) and the pid namespace's descriptor, or -1: a pid namespace
    applies to children only, so the parent thread enters it around the clone."""
    steps: list[Step] = []
    pidns_fd = -1
    seen: set[NamespaceType] = set()
    order = {NamespaceType.USER: 0, NamespaceType.MNT: 2}
    for ns in sorted(join, key=lambda n: order.get(n.type, 1)):
        if ns.type in seen:
            raise ConfigError(f"two {ns.type.value} namespaces to join", what="join")
        seen.add(ns.type)
        if ns.type is NamespaceType.PID:
            pidns_fd = ns.fd  # entered by the parent thread around clone
            continue
        steps.append(SetNs(ns.fd, ns.type.flag, str(ns.path)))
    return steps, pidns_fd


@dataclass(frozen=True)
class NamespaceSteps:
    """What takes a child into its namespaces (see :func:`namespace_steps`)."""

    #: The wait for the parent to write the id maps (with ``become_root``, then the switch to root inside).
    maps: tuple[Step, ...]
    #: Joining namespaces, unsharing those made after the clone, and making ``/`` private.
    enter: tuple[Step, ...]
    #: The ``CLONE_NEW*`` flags of the namespaces made at clone time.
    clone_flags: int
    #: The pid namespace to join, entered by the parent thread around the clone, or -1.
    pidns_fd: int
    #: The parent action that writes the id maps (the one of the sync step in :attr:`maps`), or ``None``.
    write_maps: ParentAction | None


def root_inside(uid_map: IdMap | None, gid_map: IdMap | None) -> tuple[int | None, int | None]:
    """The uid and gid 0 of a new user namespace where its maps have them (else ``None``).

    The child keeps its parent's ids across the clone, which are usually unmapped there
    (host root under a subordinate range): as root inside it owns what it makes there.
    """
    uid = 0 if uid_map is not None and uid_map.to_outside(0) is not None else None
    gid = 0 if gid_map is not None and gid_map.to_outside(0) is not None else None
    return uid, gid


def id_map_writer(
    uid_map: IdMap | None,
    gid_map: IdMap | None,
    *,
    deny_setgroups: bool,
    then: ParentAction | None = None,
) -> ParentAction:
    """The parent action that writes a child's id maps (and runs *then*, while the child still waits)."""

    def write_maps(pid: int) -> None:
        write_id_maps(pid, uid_map, gid_map, deny_setgroups=deny_setgroups)
        if then is not None:
            then(pid)

    return write_maps


def namespace_steps(
    create: Iterable[NamespaceType],
    join: Iterable[Namespace] = (),
    *,
    uid_map: IdMap | None = None,
    gid_map: IdMap | None = None,
    deny_setgroups: bool = False,
    become_root: bool = False,
    time_offsets: TimeOffsets | None = None,
    unshare_cgroup: bool = False,
    private_root: bool = True,
) -> NamespaceSteps:
    """The steps that create the namespaces *create* and join those of *join*, for
    :func:`spawn` and for containers alike.

    A new user namespace with *uid_map* or *gid_map* waits at a sync step for the
    parent to write them (:attr:`NamespaceSteps.write_maps`, setgroups denied with
    *deny_setgroups*); with *become_root* the child then switches to the root the
    maps have (:func:`root_inside`), groups dropped unless setgroups is denied.  A
    time namespace is unshared after the clone, as its offsets (*time_offsets*) can
    only be set before a process enters it: exec moves the child in.  With
    *unshare_cgroup*, a cgroup namespace is too (once the child joined its groups,
    so that it is the namespace's root).  A new mount namespace has ``/`` made
    recursively private first, unless *private_root* is false (a root file system
    that does it itself).
    """
    types = set(create)
    maps: list[Step] = []
    write_maps = None
    if NamespaceType.USER in types and (uid_map is not None or gid_map is not None):
        maps.append(Sync("the parent writes the id maps"))
        write_maps = id_map_writer(uid_map, gid_map, deny_setgroups=deny_setgroups)
        if become_root:
            maps += credential_steps(*root_inside(uid_map, gid_map), None if deny_setgroups else ())
    enter, pidns_fd = join_namespaces(join)
    clone_types = types - {NamespaceType.TIME}
    if NamespaceType.CGROUP in types and unshare_cgroup:
        clone_types.discard(NamespaceType.CGROUP)
        enter.append(Unshare(C.CLONE_NEWCGROUP))
    if NamespaceType.TIME in types:
        enter.append(Unshare(C.CLONE_NEWTIME))
        if time_offsets is not None:
            enter.append(WriteFile("/proc/self/timens_offsets", time_offsets.render()))
    if NamespaceType.MNT in types and private_root:
        enter.append(Mount(None, "/", None, C.MS_REC | C.MS_PRIVATE))
    return NamespaceSteps(tuple(maps), tuple(enter), NamespaceType.mask(clone_types), pidns_fd, write_maps)


# The functional form: the class form's string annotations are compiled one by one (~1 ms) at import.
SpawnOptions = TypedDict(  # noqa: UP013
    "SpawnOptions",
    {
        "new": Iterable[NamespaceType | str],
        "join": Iterable[Namespace],
        "uid_map": IdMap | None,
        "gid_map": IdMap | None,
        "deny_setgroups": bool | None,
        "hostname": str | None,
        "domainname": str | None,
        "time_offsets": TimeOffsets | None,
        "mount_proc": bool,
        "uid": int | None,
        "gid": int | None,
        "groups": Sequence[int] | None,
        "env": Mapping[str, str] | None,
        "cwd": str | os.PathLike[str] | None,
        "stdin": StdioArg,
        "stdout": StdioArg,
        "stderr": StdioArg,
        "pass_fds": Sequence[int],
        "new_session": bool,
        "die_with_parent": bool,
        "cgroup_fd": int,
        "steps": Sequence[Step],
    },
    total=False,
)
SpawnOptions.__doc__ = """The keyword arguments of :func:`spawn`, which :func:`run` passes on."""


def spawn(
    argv: Sequence[CommandArg],
    *,
    new: Iterable[NamespaceType | str] = (),
    join: Iterable[Namespace] = (),
    uid_map: IdMap | None = None,
    gid_map: IdMap | None = None,
    deny_setgroups: bool | None = None,
    hostname: str | None = None,
    domainname: str | None = None,
    time_offsets: TimeOffsets | None = None,
    mount_proc: bool = False,
    uid: int | None = None,
    gid: int | None = None,
    groups: Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdin: StdioArg = None,
    stdout: StdioArg = None,
    stderr: StdioArg = None,
    pass_fds: Sequence[int] = (),
    new_session: bool = False,
    die_with_parent: bool = False,
    cgroup_fd: int = -1,
    steps: Sequence[Step] = (),
) -> Process:
    """Start *argv* in new and/or joined namespaces; return a :class:`Process`.

    *new* names the namespace types to create (``{"pid", "net", ...}``);
    *join* gives open :class:`~nsprim.namespace.Namespace` handles to enter
    (what ``nsenter`` does).  A new user namespace gets *uid_map*/*gid_map*
    written by the parent before the child goes on (by default, as root:
    none; otherwise the caller's ids mapped to 0).  A new mount namespace
    always has ``/`` made recursively private first; *mount_proc* then mounts
    a fresh ``/proc`` (useful with a new pid namespace).  *time_offsets*
    creates a time namespace with those clock offsets.  *steps* are extra
    plan steps run just before the switch to *uid*/*gid* and the exec.
    *cgroup_fd* (a cgroup v2 directory) places the child with
    ``CLONE_INTO_CGROUP``.
    """
    if not argv:
        raise ConfigError("argv must name a program", what="argv")
    # Everything the kernel would truncate or wrap is refused before the first system call.
    check_argv([os.fsencode(a) for a in argv])
    if env is not None:
        check_env(env)
    for name, what in ((hostname, "hostname"), (domainname, "domainname")):
        if name is not None:
            check_uts_name(name, what)
    for ident, what in ((uid, "uid"), (gid, "gid")):
        if ident is not None:
            check_id(ident, what)
    if groups is not None:
        groups = check_groups(groups)
    types = {NamespaceType.parse(t) for t in new}
    if time_offsets is not None:
        types.add(NamespaceType.TIME)
    joined = list(join)
    clash = types & {ns.type for ns in joined}
    if clash:
        names = ", ".join(sorted(t.value for t in clash))
        raise ConfigError(f"cannot both create and join a {names} namespace", what="join")
    if mount_proc and NamespaceType.MNT not in types:
        raise ConfigError("mount_proc needs a new mount namespace (new={'mnt', ...})", what="mount_proc")
    if (
        hostname is not None
        and NamespaceType.UTS not in types
        and not any(ns.type is NamespaceType.UTS for ns in joined)
    ):
        raise ConfigError("setting a hostname needs a new uts namespace", what="hostname")
    if (uid_map is not None or gid_map is not None) and NamespaceType.USER not in types:
        raise ConfigError("id maps need a new user namespace (new={'user', ...})", what="uid_map")

    deny = bool(deny_setgroups)
    if NamespaceType.USER in types:
        if uid_map is None and gid_map is None and os.geteuid() != 0:
            uid_map = IdMap.single(0, os.geteuid())
            gid_map = IdMap.single(0, os.getegid())
        if uid_map is not None or gid_map is not None:
            # Become root inside when the map has one, unless asked for other ids.
            inside_uid, inside_gid = root_inside(uid_map, gid_map)
            uid = inside_uid if uid is None else uid
            if gid is None and inside_gid is not None:
                gid = inside_gid
                if groups is None and not deny and os.geteuid() == 0:
                    groups = ()
    ns = namespace_steps(
        types, joined, uid_map=uid_map, gid_map=gid_map, deny_setgroups=deny, time_offsets=time_offsets
    )
    plan_steps: list[Step] = [*ns.maps, *ns.enter]
    actions = [ns.write_maps] if ns.write_maps is not None else []
    if mount_proc:
        plan_steps.append(Mount("proc", "/proc", "proc", C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC))
    if hostname is not None:
        plan_steps.append(SetHostname(hostname))
    if domainname is not None:
        plan_steps.append(SetDomainname(domainname))
    if new_session:
        plan_steps.append(SetSid())
    if die_with_parent:
        plan_steps.append(ParentDeathSignal(_signal.SIGKILL))

    streams = open_streams(stdin, stdout, stderr)
    try:
        child_fds = [*streams.pairs, *((fd, fd) for fd in pass_fds)]
        plan_steps.append(FdMap(tuple(child_fds)))
        plan_steps += steps
        plan_steps += credential_steps(uid, gid, groups)
        if cwd is not None:
            plan_steps.append(Chdir(cwd))
        exec_env = None if env is None else dict(env)
        file = argv[0]
        plan_steps.append(Exec(os.fsdecode(file), [os.fsencode(a) for a in argv], exec_env))
        proc = start(
            Plan(tuple(plan_steps)),
            args=list(argv),
            clone_flags=ns.clone_flags,
            cgroup_fd=cgroup_fd,
            pidns_fd=ns.pidns_fd,
            parent_actions=actions,
            close_after=streams.hand_over(),
        )
    except BaseException:
        streams.abandon()
        raise
    streams.attach(proc)
    return proc


def run(
    argv: Sequence[CommandArg],
    *,
    input: bytes | None = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Unpack[SpawnOptions],
) -> CompletedRun:
    """Run *argv* like :func:`spawn` and wait for it, as :func:`subprocess.run` does.

    On a timeout the process is killed, reaped, and
    :class:`~nsprim.errors.TimeoutExpired` raised.
    """
    if capture_output:
        kwargs.setdefault("stdout", PIPE)
        kwargs.setdefault("stderr", PIPE)
    if input is not None:
        kwargs.setdefault("stdin", PIPE)
    with spawn(argv, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout)
        except TimeoutExpired:
            proc.kill()
            proc.wait()
            raise TimeoutExpired(proc.pid, timeout or 0.0, killed=True) from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        result = CompletedRun(list(argv), proc.returncode if proc.returncode is not None else proc.wait(), out, err)
    if check:
        result.check_returncode()
    return result
