"""The ``options`` of config.json's ``mounts``, as nsprim's mount steps take them.

An option is one of: a flag of mount(2) set or cleared (``ro``, ``nosuid``,
``rw``, ``exec``), a bind (``bind``, ``rbind``), a propagation (``private``,
``rshared``, ...), a flag set on every mount of a recursive bind through
``mount_setattr(AT_RECURSIVE)`` (``rro``, ``rnosuid``, ``rnodev``,
``rnoexec``), or else file-system data passed on to the file system
(``mode=755``, ``size=64k``); ``tmpcopyup`` fills a new tmpfs with what the
directory it covers held.  Options the runtime spec names that nsprim does
not honour (``idmap``, ``acl``, ``rrw``, ...) are refused by name, never
passed on as data or ignored.

:data:`MOUNT_OPTIONS` is what ``features`` reports as ``mountOptions``; the
``create`` command turns :func:`parse_mount_options` into mount steps.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MOUNT_OPTIONS", "UNSUPPORTED_MOUNT_OPTIONS", "MountOptions", "parse_mount_options", "MS", "MOUNT_ATTR"]

# mount(2)'s flags (linux/mount.h; the same on every architecture).
MS = {
    "RDONLY": 1,
    "NOSUID": 2,
    "NODEV": 4,
    "NOEXEC": 8,
    "SYNCHRONOUS": 16,
    "REMOUNT": 32,
    "DIRSYNC": 128,
    "NOSYMFOLLOW": 256,
    "NOATIME": 1024,
    "NODIRATIME": 2048,
    "BIND": 4096,
    "REC": 16384,
    "SILENT": 32768,
    "UNBINDABLE": 1 << 17,
    "PRIVATE": 1 << 18,
    "SLAVE": 1 << 19,
    "SHARED": 1 << 20,
    "RELATIME": 1 << 21,
    "STRICTATIME": 1 << 24,
    "LAZYTIME": 1 << 25,
}
# mount_setattr(2)'s attributes, for the recursive options.
MOUNT_ATTR = {"RDONLY": 1, "NOSUID": 2, "NODEV": 4, "NOEXEC": 8}

# name -> (flags set, flags cleared)
_FLAGS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (MS["RDONLY"], 0),
    "rw": (0, MS["RDONLY"]),
    "nosuid": (MS["NOSUID"], 0),
    "suid": (0, MS["NOSUID"]),
    "nodev": (MS["NODEV"], 0),
    "dev": (0, MS["NODEV"]),
    "noexec": (MS["NOEXEC"], 0),
    "exec": (0, MS["NOEXEC"]),
    "sync": (MS["SYNCHRONOUS"], 0),
    "async": (0, MS["SYNCHRONOUS"]),
    "dirsync": (MS["DIRSYNC"], 0),
    "remount": (MS["REMOUNT"], 0),
    "nosymfollow": (MS["NOSYMFOLLOW"], 0),
    "symfollow": (0, MS["NOSYMFOLLOW"]),
    "noatime": (MS["NOATIME"], 0),
    "atime": (0, MS["NOATIME"]),
    "nodiratime": (MS["NODIRATIME"], 0),
    "diratime": (0, MS["NODIRATIME"]),
    "relatime": (MS["RELATIME"], 0),
    "norelatime": (0, MS["RELATIME"]),
    "strictatime": (MS["STRICTATIME"], 0),
    "nostrictatime": (0, MS["STRICTATIME"]),
    "lazytime": (MS["LAZYTIME"], 0),
    "nolazytime": (0, MS["LAZYTIME"]),
    "silent": (MS["SILENT"], 0),
    "loud": (0, MS["SILENT"]),
    "bind": (MS["BIND"], 0),
    "rbind": (MS["BIND"] | MS["REC"], 0),
}
_PROPAGATION: dict[str, int] = {
    "private": MS["PRIVATE"],
    "shared": MS["SHARED"],
    "slave": MS["SLAVE"],
    "unbindable": MS["UNBINDABLE"],
    "rprivate": MS["PRIVATE"] | MS["REC"],
    "rshared": MS["SHARED"] | MS["REC"],
    "rslave": MS["SLAVE"] | MS["REC"],
    "runbindable": MS["UNBINDABLE"] | MS["REC"],
}
_RECURSIVE: dict[str, int] = {
    "rro": MOUNT_ATTR["RDONLY"],
    "rnosuid": MOUNT_ATTR["NOSUID"],
    "rnodev": MOUNT_ATTR["NODEV"],
    "rnoexec": MOUNT_ATTR["NOEXEC"],
}

#: Every option name nsprim honours (``features``' ``mountOptions``), sorted.
MOUNT_OPTIONS: tuple[str, ...] = tuple(sorted({*_FLAGS, *_PROPAGATION, *_RECURSIVE, "tmpcopyup"}))

#: Options of the runtime spec (and runc) that nsprim does not honour, with why.
UNSUPPORTED_MOUNT_OPTIONS: dict[str, str] = {
    "acl": "POSIX ACL mounts (MS_POSIXACL) are not supported",
    "noacl": "POSIX ACL mounts (MS_POSIXACL) are not supported",
    "mand": "mandatory locking is gone from Linux",
    "nomand": "mandatory locking is gone from Linux",
    "iversion": "MS_I_VERSION is not supported",
    "noiversion": "MS_I_VERSION is not supported",
    "idmap": "id-mapped mounts are not supported yet",
    "ridmap": "id-mapped mounts are not supported yet",
    **{
        name: "only rro, rnosuid, rnodev and rnoexec are applied recursively"
        for name in (
            "rrw",
            "rsuid",
            "rdev",
            "rexec",
            "ratime",
            "rnoatime",
            "rdiratime",
            "rnodiratime",
            "rrelatime",
            "rnorelatime",
            "rstrictatime",
            "rnostrictatime",
            "rsymfollow",
            "rnosymfollow",
        )
    },
}


class MountOptions:
    """A mount's options, sorted out: ``flags`` to set and ``clear``, ``propagation`` changes
    (in order), ``recursive_attrs`` (``MOUNT_ATTR_*`` for the whole tree of a bind), and ``data``
    (the file system's own options, in order) and ``copy_up`` (``tmpcopyup``)."""

    __slots__ = ("clear", "copy_up", "data", "flags", "propagation", "recursive_attrs")

    def __init__(
        self,
        flags: int,
        clear: int,
        propagation: tuple[int, ...],
        recursive_attrs: int,
        data: tuple[str, ...],
        copy_up: bool = False,
    ) -> None:
        self.flags = flags
        self.clear = clear
        self.propagation = propagation
        self.recursive_attrs = recursive_attrs
        self.data = data
        self.copy_up = copy_up

    @property
    def is_bind(self) -> bool:
        """``bind`` or ``rbind`` was given."""
        return bool(self.flags & MS["BIND"])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MountOptions):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return "MountOptions(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


def parse_mount_options(options: Iterable[str], where: str = "options") -> MountOptions:
    """Sort *options* (of the mount at *where*, such as ``mounts[2].options``) out.

    A later option overrides an earlier one (``ro,rw`` is read-write), as
    mount(8) reads them.  An option nsprim does not honour is a
    :class:`~nsprim.errors.SpecError` naming it.
    """
    flags = clear = attrs = 0
    propagation: list[int] = []
    data: list[str] = []
    copy_up = False
    for i, option in enumerate(options):
        if option == "tmpcopyup":
            copy_up = True
        elif option in _FLAGS:
            on, off = _FLAGS[option]
            flags = (flags | on) & ~off
            clear = (clear | off) & ~on
        elif option in _PROPAGATION:
            propagation.append(_PROPAGATION[option])
        elif option in _RECURSIVE:
            attrs |= _RECURSIVE[option]
        elif option in UNSUPPORTED_MOUNT_OPTIONS:
            from ...errors import SpecError

            field = f"{where}[{i}]"
            raise SpecError(f'{field}: mount option "{option}": {UNSUPPORTED_MOUNT_OPTIONS[option]}', field=field)
        else:
            data.append(option)
    return MountOptions(flags, clear, tuple(propagation), attrs, tuple(data), copy_up)
