"""Plan steps that act *inside* a new root file system, resolved safely in C.

A container image is untrusted input: its ``/proc`` may be a symlink to
``/`` on the host, its ``/dev`` a link to ``../../../dev``.  The steps here
never resolve a path inside the root the ordinary way.  The native core opens
the root, then the path with ``openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_MAGICLINKS)`` (absolute symlinks and ``..`` stay inside the root)
or, with ``follow_symlinks=False``, ``RESOLVE_NO_SYMLINKS`` (any symlink is
an error, ``ELOOP``); then it mounts onto what it opened (``move_mount`` to
the descriptor, or ``mount`` onto ``/proc/self/fd/N``).  Kernels without
``openat2`` (before 5.6) get a component-by-component walk with
``O_NOFOLLOW`` that refuses symlinks and ``..`` altogether.

:class:`~nsprim.fs.rootfs.RootFS` composes these steps; they are usable alone
with :func:`nsprim.spawn` (``steps=[...]``) as well.
"""

from __future__ import annotations

import os
from typing import ClassVar, Literal

from .._dataclass import dataclass
from .._paths import StrPath, to_bytes
from .._sys import C
from .._sys.spawn import OPTIONAL, EnterRootFlag, RawStep, RootFlag, StepKind, StepPart
from ..plan import Step

__all__ = ["MountInRoot", "CreateInRoot", "EnterRoot", "MountFs", "CreateMode"]

# What every /dev has, here rather than in nsprim.fs.rootfs (which re-exports them) so that an OCI
# bundle's plan, made of these steps, does not import the RootFS builder and the overlay.
#: The minimal /dev: name, major, minor (character devices, mode 0666).
DEFAULT_DEVICES: tuple[tuple[str, int, int], ...] = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
#: The links every /dev has: name, target.
DEV_STDIO_LINKS: tuple[tuple[str, str], ...] = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)

CreateMode = Literal["none", "dir", "file", "auto"]


def _inside(target: str) -> str:
    return "/" + target.lstrip("/")


_FLAG_NAMES = ((C.MS_RDONLY, "read-only"), (C.MS_NOSUID, "nosuid"), (C.MS_NODEV, "nodev"), (C.MS_NOEXEC, "noexec"))


@dataclass(frozen=True)
class MountInRoot(Step):
    """mount(2) onto *target*, a path inside *root* resolved without leaving it.

    *source* is a host path (or, with *source_in_root*, another path inside
    the root), or a name such as ``"proc"``.  *remount_flags* (``MS_RDONLY``,
    ``MS_NOSUID``...) are applied after the mount, as read-only bind mounts
    need: to a bind's new mount with ``mount_setattr`` before it is attached
    (recursively with ``MS_REC``), else by a second, bind-remounting call;
    the flags the kernel locks are kept.
    *create* makes a missing target: ``"dir"``, ``"file"``, or ``"auto"``
    (whichever the source is).  *mask* hides the target instead: *source*
    (``/dev/null``) bound over a file, an empty read-only tmpfs over a
    directory.  *optional*: a missing target is skipped.  *copy_up* fills
    the new mount with what the target directory held (the runtime spec's
    ``tmpcopyup``), before the *remount_flags* apply.
    """

    root: StrPath
    source: StrPath | None
    target: str
    fstype: str | None = None
    flags: int = 0
    data: str | None = None
    remount_flags: int = 0
    create: CreateMode = "none"
    source_in_root: bool = False
    follow_symlinks: bool = True
    optional: bool = False
    mask: bool = False
    copy_up: bool = False
    operation: ClassVar[str] = "mount"

    @property
    def path(self) -> str | None:
        return os.fspath(self.root).rstrip("/") + _inside(self.target)

    def describe(self) -> str:
        if self.mask:
            return f"mask `{_inside(self.target)}` in root `{os.fspath(self.root)}`"
        src = os.fspath(self.source) if self.source is not None else (self.fstype or "none")
        if self.source_in_root:
            src = _inside(src)
        return f"mount `{src}` on `{_inside(self.target)}` in root `{os.fspath(self.root)}`"

    def describe_failure(self, part: int, err: int = 0) -> str:
        """The part that failed (a :class:`~nsprim._sys.spawn.StepPart`), as error messages show it."""
        verb = "mask in root" if self.mask else "mount in root"
        target = _inside(self.target)
        src = os.fspath(self.source) if self.source is not None else (self.fstype or "none")
        if self.source_in_root:
            src = _inside(src)
        if part == StepPart.ROOT:
            return f"{verb}: opening root `{os.fspath(self.root)}`"
        if part == StepPart.SOURCE:
            return f"{verb}: resolving source `{src}`"
        if part == StepPart.TARGET:
            return f"{verb}: resolving target `{target}`"
        if part in (StepPart.CREATE, StepPart.PARENT):
            return f"{verb}: creating target `{target}`"
        if part == StepPart.NULL:
            return f"{verb}: checking the null device `{src}`"
        if part == StepPart.ATTACH:
            if self.mask:
                return f"{verb}: masking `{target}`"
            what = "binding" if self.flags & C.MS_BIND else "mounting"
            return f"{verb}: {what} `{src}` on `{target}`"
        if part == StepPart.REMOUNT:
            names = [name for flag, name in _FLAG_NAMES if self.remount_flags & flag] or [hex(self.remount_flags)]
            return f"{verb}: making `{target}` {', '.join(names)}"
        if part == StepPart.COPY_UP:
            return f"{verb}: copying what `{target}` held into the new {self.fstype or 'mount'}"
        return self.describe()

    def lower(self) -> RawStep:
        create = {"none": 0, "dir": RootFlag.MKDIR, "file": RootFlag.MKFILE, "auto": RootFlag.MKDIR | RootFlag.MKFILE}
        flags = create[self.create] | (RootFlag.SRC_IN_ROOT if self.source_in_root else 0)
        flags |= (RootFlag.MASK if self.mask else 0) | (0 if self.follow_symlinks else RootFlag.NOFOLLOW)
        flags |= (OPTIONAL if self.optional else 0) | (RootFlag.COPY_UP if self.copy_up else 0)
        return RawStep(
            StepKind.MOUNT_IN_ROOT,
            flags=flags,
            a=self.flags,
            b=self.remount_flags,
            path=to_bytes(self.source) if self.source is not None else None,
            path2=to_bytes(self.target),
            str=self.fstype.encode() if self.fstype is not None else None,
            str2=self.data.encode() if self.data is not None else None,
            strv=(to_bytes(self.root),),
        )


@dataclass(frozen=True)
class CreateInRoot(Step):
    """Create *target* inside *root*: a directory, file, device node, FIFO or symlink.

    *mode* includes the type bits (``stat.S_IFCHR | 0o666``); it is set
    exactly, whatever the umask.  Missing parents are created (0755).
    *link_target* is the symlink's contents (not resolved).
    """

    root: StrPath
    target: str
    mode: int
    device: int = 0
    link_target: str | None = None
    exist_ok: bool = False
    follow_symlinks: bool = True
    operation: ClassVar[str] = "create"

    @property
    def path(self) -> str | None:
        return os.fspath(self.root).rstrip("/") + _inside(self.target)

    def describe(self) -> str:
        what = f"symlink -> `{self.link_target}`" if self.link_target is not None else f"mode {self.mode:o}"
        return f"create `{_inside(self.target)}` ({what}) in root `{os.fspath(self.root)}`"

    def describe_failure(self, part: int, err: int = 0) -> str:
        """The part that failed (a :class:`~nsprim._sys.spawn.StepPart`), as error messages show it."""
        target = _inside(self.target)
        if part == StepPart.ROOT:
            return f"create in root: opening root `{os.fspath(self.root)}`"
        if part == StepPart.PARENT:
            return f"create in root: creating the directories above `{target}`"
        if part == StepPart.CREATE:
            return f"create in root: creating `{target}`"
        return self.describe()

    def lower(self) -> RawStep:
        flags = (RootFlag.EXIST_OK if self.exist_ok else 0) | (0 if self.follow_symlinks else RootFlag.NOFOLLOW)
        return RawStep(
            StepKind.CREATE_IN_ROOT,
            flags=flags,
            a=self.mode,
            b=self.device,
            path=self.link_target.encode() if self.link_target is not None else None,
            path2=to_bytes(self.target),
            strv=(to_bytes(self.root),),
        )


@dataclass(frozen=True)
class EnterRoot(Step):
    """Make *new_root* (a mount point) the root of the process' mount namespace.

    ``"pivot_root"``: ``pivot_root(2)``, then the old root is detached, so
    it is gone from the mount table and the host's files are unreachable.
    ``"chroot"``: move the root mount onto ``/`` and ``chroot`` (what
    ``switch_root`` does; for a root that cannot be pivoted, such as an
    initramfs; the old root stays underneath, out of reach of path lookups
    but not of a process that may ``chroot`` again).  ``"auto"``: pivot, and
    fall back to the move only when the kernel refuses (``EINVAL``) and the
    current root is a ramfs or tmpfs, as an initramfs is; any other refusal
    stays an error.
    """

    new_root: StrPath
    method: Literal["pivot_root", "auto", "chroot"] = "auto"
    operation: ClassVar[str] = "pivot_root"

    @property
    def path(self) -> str | None:
        return os.fspath(self.new_root)

    def describe(self) -> str:
        verb = "chroot" if self.method == "chroot" else "pivot_root"
        return f"{verb} `{os.fspath(self.new_root)}`"

    def lower(self) -> RawStep:
        flags = {"pivot_root": 0, "auto": EnterRootFlag.FALLBACK, "chroot": EnterRootFlag.CHROOT}[self.method]
        return RawStep(StepKind.ENTER_ROOT, flags=flags, path=to_bytes(self.new_root))


@dataclass(frozen=True)
class MountFs(Step):
    """Mount a file system with the new mount API (fsopen, fsconfig..., fsmount, move_mount).

    *params* are ``(key, value)`` pairs in order, value ``None`` for a flag;
    keys may repeat (an overlay's ``lowerdir+``), and no value is limited to
    a page as ``mount(2)`` data is.  *attrs* are ``MOUNT_ATTR_*`` flags.
    """

    fstype: str
    params: tuple[tuple[str, str | None], ...]
    target: StrPath
    attrs: int = 0
    operation: ClassVar[str] = "mount"

    @property
    def path(self) -> str | None:
        return os.fspath(self.target)

    def describe(self) -> str:
        return f"mount `{self.fstype}` on `{os.fspath(self.target)}` (new mount API)"

    def describe_failure(self, part: int, err: int = 0) -> str:
        """The part that failed (a :class:`~nsprim._sys.spawn.StepPart`): which parameter, say."""
        head = f"mount `{self.fstype}` on `{os.fspath(self.target)}`"
        if 0 <= part - StepPart.FS_PARAM < len(self.params):
            key, value = self.params[part - StepPart.FS_PARAM]
            return f"{head}: setting `{key}`" + (f" to `{value}`" if value is not None else "")
        if part == StepPart.FS_OPEN:
            return f"{head}: fsopen `{self.fstype}`"
        if part == StepPart.FS_CREATE:
            return f"{head}: creating the file system"
        if part == StepPart.FS_MOUNT:
            return f"{head}: fsmount"
        if part == StepPart.ATTACH:
            return f"{head}: attaching it"
        return self.describe()

    def lower(self) -> RawStep:
        strv = tuple(k.encode() if v is None else f"{k}={v}".encode() for k, v in self.params)
        return RawStep(
            StepKind.MOUNT_FS, a=self.attrs, str=self.fstype.encode(), path2=to_bytes(self.target), strv=strv
        )
