"""The child-side setup as data: an ordered list of typed steps.

Python builds a :class:`Plan`; the native core runs its steps in the child,
between ``clone`` and ``exec``, without any Python.  When a step fails the
child reports the step's index and errno, and the parent raises one
:class:`~nsprim.errors.StepError` that names the step::

    >>> plan = Plan((SetHostname("box"), Mount("proc", "/proc", "proc"), Exec("/bin/true", ("true",))))
    >>> plan.steps[1].describe()
    'mount `proc` on `/proc`'

Each step is a frozen dataclass with ``operation`` (a verb), ``describe()``
(the verb with its paths, as in error messages) and ``lower()`` (its
:class:`~nsprim._sys.spawn.RawStep`).  Later layers (root file systems,
security) add steps; none of them needs new C to run a new combination.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import ClassVar

from ._dataclass import dataclass, field, replace
from ._paths import StrPath, to_bytes
from ._sys import C
from ._sys.spawn import (
    MAX_FDMAP_PAIRS,
    OPTIONAL,
    EncodedPlan,
    ExecFlag,
    FdMapFlag,
    MkdirFlag,
    RawStep,
    StepKind,
    WriteFileFlag,
    encode,
)
from .checks import check_argv, check_env, check_groups, check_id, check_uts_name
from .errors import ConfigError

__all__ = [
    "Step",
    "credential_steps",
    "Plan",
    "Sync",
    "SetNs",
    "KeepFd",
    "Unshare",
    "SetHostname",
    "SetDomainname",
    "Mount",
    "Mkdir",
    "Chroot",
    "Chdir",
    "WriteFile",
    "SetGroups",
    "SetGid",
    "SetUid",
    "FdMap",
    "SetSid",
    "ParentDeathSignal",
    "NoNewPrivs",
    "SetRlimit",
    "Umask",
    "Exec",
    "FindExecutable",
    "InterfaceUp",
    "Init",
]


_CLONE_NAMES = (
    ("mnt", C.CLONE_NEWNS),
    ("uts", C.CLONE_NEWUTS),
    ("ipc", C.CLONE_NEWIPC),
    ("pid", C.CLONE_NEWPID),
    ("net", C.CLONE_NEWNET),
    ("user", C.CLONE_NEWUSER),
    ("cgroup", C.CLONE_NEWCGROUP),
    ("time", C.CLONE_NEWTIME),
)


class Step:
    """Base of all plan steps."""

    operation: ClassVar[str] = "step"
    #: False for a step that holds the child before its exec while the parent must go on
    #: (it cannot share the parent's memory, which a vfork-like clone suspends until exec).
    vfork_ok: ClassVar[bool] = True

    @property
    def path(self) -> str | None:
        """The main path the step acts on, if any (for error messages)."""
        return None

    def describe(self) -> str:
        """The step in words, as error messages show it."""
        p = self.path
        return f"{self.operation} `{p}`" if p is not None else self.operation

    def lower(self) -> RawStep:  # pragma: no cover - abstract
        """Lower the step to the native core's representation."""
        raise NotImplementedError


@dataclass(frozen=True)
class Sync(Step):
    """Wait until the parent has done its part (write id maps, join cgroups)."""

    reason: str = "wait for the parent"
    operation: ClassVar[str] = "sync"

    def describe(self) -> str:
        return f"sync ({self.reason})"

    def lower(self) -> RawStep:
        return RawStep(StepKind.SYNC)


@dataclass(frozen=True)
class SetNs(Step):
    """Join the namespace open as *fd* (or, for a pidfd, the namespaces in *nstype*).

    *root_fd*: a directory to make the root afterwards (as ``nsenter --root``
    does): joining a mount namespace puts the root at the namespace's own,
    which is not the caller's when the caller is chrooted.
    """

    fd: int
    nstype: int = 0
    source: str = ""
    root_fd: int = -1
    operation: ClassVar[str] = "setns"

    @property
    def path(self) -> str | None:
        return self.source or None

    def lower(self) -> RawStep:
        return RawStep(StepKind.SETNS, a=self.fd, b=self.nstype, c=self.root_fd + 1 if self.root_fd >= 0 else 0)


@dataclass(frozen=True)
class Unshare(Step):
    """Create new namespaces (``CLONE_NEW*`` flags) for the child itself."""

    flags: int
    operation: ClassVar[str] = "unshare"

    def describe(self) -> str:
        names = [n for n, f in _CLONE_NAMES if self.flags & f]
        return f"unshare {','.join(names) or hex(self.flags)}"

    def lower(self) -> RawStep:
        return RawStep(StepKind.UNSHARE, a=self.flags)


@dataclass(frozen=True)
class SetHostname(Step):
    """Set the host name in the child's UTS namespace."""

    name: str
    operation: ClassVar[str] = "sethostname"

    def __post_init__(self) -> None:
        check_uts_name(self.name, "hostname")

    def describe(self) -> str:
        return f"sethostname `{self.name}`"

    def lower(self) -> RawStep:
        return RawStep(StepKind.SETHOSTNAME, str=self.name.encode())


@dataclass(frozen=True)
class SetDomainname(Step):
    """Set the NIS domain name in the child's UTS namespace."""

    name: str
    operation: ClassVar[str] = "setdomainname"

    def __post_init__(self) -> None:
        check_uts_name(self.name, "domainname")

    def describe(self) -> str:
        return f"setdomainname `{self.name}`"

    def lower(self) -> RawStep:
        return RawStep(StepKind.SETDOMAINNAME, str=self.name.encode())


@dataclass(frozen=True)
class Mount(Step):
    """mount(2) in the child: *source* on *target*."""

    source: StrPath | None
    target: StrPath
    fstype: str | None = None
    flags: int = 0
    data: str | None = None
    optional: bool = False  # a missing source or target is skipped
    operation: ClassVar[str] = "mount"

    @property
    def path(self) -> str | None:
        return os.fspath(self.target)

    def describe(self) -> str:
        src = os.fspath(self.source) if self.source is not None else (self.fstype or "none")
        if self.flags & C.MS_REMOUNT:
            return f"remount `{os.fspath(self.target)}`"
        if self.source is None and self.fstype is None:
            return f"set propagation of `{os.fspath(self.target)}`"
        return f"mount `{src}` on `{os.fspath(self.target)}`"

    def lower(self) -> RawStep:
        return RawStep(
            StepKind.MOUNT,
            flags=OPTIONAL if self.optional else 0,
            a=self.flags,
            path=to_bytes(self.source) if self.source is not None else None,
            path2=to_bytes(self.target),
            str=self.fstype.encode() if self.fstype is not None else None,
            str2=self.data.encode() if self.data is not None else None,
        )


@dataclass(frozen=True)
class Mkdir(Step):
    """mkdir(2) in the child; *exist_ok* accepts an existing entry."""

    target: StrPath
    mode: int = 0o755
    exist_ok: bool = True
    operation: ClassVar[str] = "mkdir"

    @property
    def path(self) -> str | None:
        return os.fspath(self.target)

    def lower(self) -> RawStep:
        flags = MkdirFlag.EXIST_OK if self.exist_ok else 0
        return RawStep(StepKind.MKDIR, flags=flags, a=self.mode, path=to_bytes(self.target))


@dataclass(frozen=True)
class Chroot(Step):
    """chroot(2) then chdir("/"): the fallback for roots that cannot be pivoted."""

    new_root: StrPath
    operation: ClassVar[str] = "chroot"

    @property
    def path(self) -> str | None:
        return os.fspath(self.new_root)

    def lower(self) -> RawStep:
        return RawStep(StepKind.CHROOT, path=to_bytes(self.new_root))


@dataclass(frozen=True)
class Chdir(Step):
    """chdir(2) in the child."""

    target: StrPath
    operation: ClassVar[str] = "chdir"

    @property
    def path(self) -> str | None:
        return os.fspath(self.target)

    def lower(self) -> RawStep:
        return RawStep(StepKind.CHDIR, path=to_bytes(self.target))


@dataclass(frozen=True)
class WriteFile(Step):
    """Write *data* to an existing file (``/proc/self/...``), or create it."""

    target: StrPath
    data: bytes
    create: bool = False
    operation: ClassVar[str] = "write"

    @property
    def path(self) -> str | None:
        return os.fspath(self.target)

    def lower(self) -> RawStep:
        flags = WriteFileFlag.CREATE if self.create else 0
        return RawStep(StepKind.WRITE_FILE, flags=flags, a=len(self.data), path=to_bytes(self.target), str=self.data)


@dataclass(frozen=True)
class SetGroups(Step):
    """setgroups(2): the supplementary groups."""

    groups: tuple[int, ...]
    operation: ClassVar[str] = "setgroups"

    def __post_init__(self) -> None:
        check_groups(self.groups)

    def lower(self) -> RawStep:
        # C ints carry the gid_t bit patterns (gids above 2**31 included).
        return RawStep(StepKind.SETGROUPS, ints=tuple(g - (1 << 32) if g >= 1 << 31 else g for g in self.groups))


@dataclass(frozen=True)
class SetGid(Step):
    """setresgid(2) to one gid."""

    gid: int
    operation: ClassVar[str] = "setgid"

    def __post_init__(self) -> None:
        check_id(self.gid, "gid")

    def describe(self) -> str:
        return f"setgid {self.gid}"

    def lower(self) -> RawStep:
        return RawStep(StepKind.SETRESGID, a=self.gid)


@dataclass(frozen=True)
class SetUid(Step):
    """setresuid(2) to one uid."""

    uid: int
    operation: ClassVar[str] = "setuid"

    def __post_init__(self) -> None:
        check_id(self.uid, "uid")

    def describe(self) -> str:
        return f"setuid {self.uid}"

    def lower(self) -> RawStep:
        return RawStep(StepKind.SETRESUID, a=self.uid)


@dataclass(frozen=True)
class FdMap(Step):
    """Place descriptors: each ``(src, dst)`` pair becomes fd *dst* in the child.

    Unless *keep_others*, every other descriptor from 3 up is marked
    close-on-exec (``close_range``), so the payload inherits only what was asked.
    With *close_others*, they are closed instead, all but *kept* (left open,
    close-on-exec, for later steps): a child that waits before its exec must
    not hold the caller's locks and pipe ends.
    """

    pairs: tuple[tuple[int, int], ...]
    keep_others: bool = False
    close_others: bool = False
    kept: tuple[int, ...] = ()
    operation: ClassVar[str] = "dup"

    def __post_init__(self) -> None:
        if len(self.pairs) > MAX_FDMAP_PAIRS:
            raise ConfigError(f"{len(self.pairs)} descriptors to place: at most {MAX_FDMAP_PAIRS}", what="pass_fds")
        if any(fd < 0 for pair in self.pairs for fd in pair) or any(fd < 0 for fd in self.kept):
            raise ConfigError(f"negative file descriptor in {self.pairs} {self.kept}", what="pass_fds")
        if (self.kept and not self.close_others) or (self.close_others and self.keep_others) or len(self.kept) > 64:
            raise ConfigError("kept descriptors (at most 64) go with close_others, without keep_others", what="kept")

    def describe(self) -> str:
        return "set up file descriptors " + ", ".join(f"{s}->{d}" for s, d in self.pairs)

    def lower(self) -> RawStep:
        flat = tuple(x for pair in self.pairs for x in pair) + self.kept
        flags = (FdMapFlag.KEEP_OTHERS if self.keep_others else 0) | (
            FdMapFlag.CLOSE_OTHERS if self.close_others else 0
        )
        return RawStep(StepKind.FDMAP, flags=flags, ints=flat, c=len(self.kept))


@dataclass(frozen=True)
class SetSid(Step):
    """setsid(2): a new session, without a controlling terminal."""

    operation: ClassVar[str] = "setsid"

    def lower(self) -> RawStep:
        return RawStep(StepKind.SETSID)


@dataclass(frozen=True)
class ParentDeathSignal(Step):
    """PR_SET_PDEATHSIG: the signal the child gets when its parent thread dies."""

    signal: int
    operation: ClassVar[str] = "prctl PR_SET_PDEATHSIG"

    def lower(self) -> RawStep:
        return RawStep(StepKind.PDEATHSIG, a=self.signal)


@dataclass(frozen=True)
class NoNewPrivs(Step):
    """PR_SET_NO_NEW_PRIVS: exec can never grant privileges (setuid bits, file caps)."""

    operation: ClassVar[str] = "prctl PR_SET_NO_NEW_PRIVS"

    def lower(self) -> RawStep:
        return RawStep(StepKind.NO_NEW_PRIVS)


@dataclass(frozen=True)
class SetRlimit(Step):
    """setrlimit(2); ``-1`` means unlimited."""

    resource: int
    soft: int
    hard: int
    operation: ClassVar[str] = "setrlimit"

    def describe(self) -> str:
        return f"setrlimit {self.resource} to {self.soft}/{self.hard}"

    def lower(self) -> RawStep:
        return RawStep(StepKind.RLIMIT, a=self.resource, b=self.soft, c=self.hard)


@dataclass(frozen=True)
class Umask(Step):
    """umask(2)."""

    mask: int
    operation: ClassVar[str] = "umask"

    def lower(self) -> RawStep:
        return RawStep(StepKind.UMASK, a=self.mask)


@dataclass(frozen=True)
class Exec(Step):
    """execve(2): the last step.  A *file* without ``/`` is searched in *search_path*.

    *env* ``None`` passes on the caller's environment as it is at spawn time.
    """

    file: StrPath
    argv: Sequence[str | bytes]
    env: Mapping[str, str] | None = None
    search_path: str | None = None
    search_owner: str = "PATH"  # whose PATH it is, for messages ("the container's PATH")
    operation: ClassVar[str] = "exec"

    def __post_init__(self) -> None:
        check_argv((os.fspath(self.file), *self.argv))
        if self.env is not None:
            check_env(self.env)

    @property
    def path(self) -> str | None:
        return os.fspath(self.file)

    def searched(self) -> str | None:
        """The PATH the child searches for the file, or ``None`` when the file has a ``/``."""
        if "/" in os.fspath(self.file):
            return None
        if self.search_path is not None:
            return self.search_path
        return (os.environ if self.env is None else self.env).get("PATH", os.defpath)

    def lower(self) -> RawStep:
        # env None: the child passes on the environment it has (the caller's).
        envp = None if self.env is None else tuple(f"{k}={v}".encode() for k, v in self.env.items())
        search = self.searched()
        return RawStep(
            StepKind.EXEC,
            path=to_bytes(self.file),
            str=search.encode() if search is not None else None,
            strv=tuple(a if isinstance(a, bytes) else a.encode() for a in self.argv),
            strv2=envp,
        )


@dataclass(frozen=True)
class FindExecutable(Exec):
    """Find :class:`Exec`'s *file* as execve(2) would (searched in *search_path*), and go on:
    a plan that waits before its exec reports a missing program before it waits."""

    def lower(self) -> RawStep:
        return replace(super().lower(), flags=ExecFlag.LOOKUP)


@dataclass(frozen=True)
class KeepFd(Step):
    """Open *file* (``O_RDONLY | flags``) and leave the descriptor to the parent in slot *slot*
    (``start(keep_fds=N)``).

    For a child that shares the parent's memory and descriptor table (vfork
    mode with ``CLONE_FILES``): how a short-lived child hands over a
    namespace it made, say ``/proc/thread-self/ns/mnt``, before it exits.
    """

    file: StrPath
    slot: int = 0
    flags: int = 0
    operation: ClassVar[str] = "open"

    @property
    def path(self) -> str | None:
        return os.fspath(self.file)

    def lower(self) -> RawStep:
        return RawStep(StepKind.KEEP_FD, a=self.slot, b=self.flags, path=to_bytes(self.file))


@dataclass(frozen=True)
class InterfaceUp(Step):
    """Bring a network interface up (the loopback of a new network namespace)."""

    name: str = "lo"
    operation: ClassVar[str] = "ifup"

    def describe(self) -> str:
        return f"bring interface `{self.name}` up"

    def lower(self) -> RawStep:
        return RawStep(StepKind.IFUP, str=self.name.encode())


@dataclass(frozen=True)
class Init(Step):
    """Fork a minimal init: it stays pid 1, reaps zombies and forwards signals.

    The rest of the plan runs in its child, the payload.  The init exits
    with the payload's status (128+N when signal N killed it), as
    ``docker run --init`` does.
    """

    operation: ClassVar[str] = "init"

    def describe(self) -> str:
        return "fork the init process"

    def lower(self) -> RawStep:
        return RawStep(StepKind.INIT)


@dataclass(frozen=True)
class Plan:
    """An immutable, ordered list of steps; encoded for C once, on first use."""

    steps: tuple[Step, ...] = field(default_factory=tuple)

    def __add__(self, other: Plan | Sequence[Step]) -> Plan:
        more = other.steps if isinstance(other, Plan) else tuple(other)
        return Plan(self.steps + more)

    def __len__(self) -> int:
        return len(self.steps)

    @cached_property
    def encoded(self) -> EncodedPlan:
        """The C form of the plan (built once, then reused)."""
        return encode([s.lower() for s in self.steps])

    @cached_property
    def vfork_safe(self) -> bool:
        """Whether the child may share the parent's memory until exec.

        Not when the parent must act mid-plan (a :class:`Sync`), nor with an
        :class:`Init` (the init never execs, which would hold the parent), nor for an
        unshare of a user namespace, which the kernel refuses to a process
        that shares its memory.
        """
        for s in self.steps:
            if isinstance(s, (Sync, Init)) or not s.vfork_ok:  # Init: pid 1 never execs
                return False
            if isinstance(s, Unshare) and s.flags & C.CLONE_NEWUSER:
                return False
        return True


def credential_steps(uid: int | None, gid: int | None, groups: Sequence[int] | None) -> list[Step]:
    """The switch to *groups*, *gid* and *uid*, each left alone when ``None``: groups first
    (setgroups needs the old gid's privilege), then the gid, the uid last."""
    steps: list[Step] = []
    if groups is not None:
        steps.append(SetGroups(tuple(groups)))
    if gid is not None:
        steps.append(SetGid(gid))
    if uid is not None:
        steps.append(SetUid(uid))
    return steps
