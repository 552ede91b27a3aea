"""A container's user namespace: subordinate ids picked for it, and idmapped roots.

Two things make an unprivileged id map (``0 100000 65536``: root inside is
uid 100000 outside, nobody of the host) usable with a root file system:

* :func:`auto_id_maps` picks a free slot of 65536 ids out of the caller's
  ranges in ``/etc/subuid`` and ``/etc/subgid`` (``--userns=auto``), one no
  other running process's user namespace uses, under a lock in the state
  directory held until the new container's maps are written.
* :func:`attach_idmapped` shows a root owned by host root (an image's layers,
  a directory) as owned by the container's root: an idmapped copy of each
  directory (``mount_setattr(MOUNT_ATTR_IDMAP)`` with the container's own
  user namespace) is attached in the container's mount namespace, where the
  child then mounts its root from them, so that overlay copies up a
  host-root file as the container's root, and writes to a writable directory
  root land as the ids they show inside.  Only host root may idmap a host
  file system; the host's files stay as they are, only the container's view
  of them is shifted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from .. import _sys
from .._sys import C
from ..errors import ConfigError, SyscallError
from ..idmap import IdMap, subordinate_ranges
from ..namespace import NamespaceType
from .config import ContainerConfig, RootKind

__all__ = [
    "SLOT_SIZE",
    "auto_id_maps",
    "id_maps",
    "free_slots",
    "idmapped_mounts",
    "attach_idmapped",
    "check_payload_ids",
]

#: The ids an automatic user namespace gets (``--userns=auto``): 0..65535 inside.
SLOT_SIZE: Final = 65536


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def slots(ranges: Sequence[tuple[int, int]], size: int = SLOT_SIZE) -> Iterator[int]:
    """The starts of whole *size*-id slots in subordinate *ranges* ``(start, count)``, in order."""
    for start, count in ranges:
        for k in range(count // size):
            yield start + k * size


def _overlaps(start: int, size: int, used: Sequence[tuple[int, int]]) -> bool:
    return any(s < start + size and start < e for s, e in used)


def free_slots(
    uid_ranges: Sequence[tuple[int, int]],
    gid_ranges: Sequence[tuple[int, int]],
    used_uids: Sequence[tuple[int, int]],
    used_gids: Sequence[tuple[int, int]],
    size: int = SLOT_SIZE,
) -> Iterator[tuple[int, int]]:
    """``(uid start, gid start)`` of the k-th slots of both ranges that no *used* span
    ``(start, end)`` touches, in order."""
    for u, g in zip(slots(uid_ranges, size), slots(gid_ranges, size), strict=False):
        if not _overlaps(u, size, used_uids) and not _overlaps(g, size, used_gids):
            yield u, g


def _used_ids() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The outside spans ``(start, end)`` of every user namespace a process runs in, ours apart."""
    own = {kind: Path(f"/proc/self/{kind}_map").read_text() for kind in ("uid", "gid")}
    used: dict[str, list[tuple[int, int]]] = {"uid": [], "gid": []}
    seen: set[str] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ns = os.readlink(f"/proc/{entry.name}/ns/user")
        except OSError:  # gone, or not ours to look at: its maps still tell
            ns = None
        if ns is not None:
            if ns in seen:
                continue
            seen.add(ns)
        for kind in ("uid", "gid"):
            try:
                text = Path(f"/proc/{entry.name}/{kind}_map").read_text()
            except OSError:
                break
            if text == own[kind] or not text.strip():  # our namespace, or maps not written yet
                continue
            for line in text.splitlines():
                fields = line.split()
                if len(fields) == 3:
                    used[kind].append((int(fields[1]), int(fields[1]) + int(fields[2])))
    return used["uid"], used["gid"]


def _no_range(user: str, kind: str) -> ConfigError:
    return ConfigError(
        f"an automatic user namespace needs subordinate ids: /etc/sub{kind} has no range for `{user}` "
        f"(add one: `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`, "
        f"or the line `{user}:100000:65536` in /etc/subuid and /etc/subgid)",
        what="userns",
    )


@contextlib.contextmanager
def auto_id_maps(state: Path) -> Iterator[tuple[IdMap, IdMap]]:
    """A free slot of the caller's subordinate ids as ``(uid map, gid map)``; the choice is
    locked (``state/userns.lock``) until the block ends: start the container inside it.

    Root gets 0..65535 inside on a slot; anyone else keeps their own ids as root inside
    (``0 <uid> 1``, as rootless containers do) and 1..65535 on a slot (through
    ``newuidmap``).  A slot is in use while any process's user namespace maps an id of it.
    """
    euid, egid = os.geteuid(), os.getegid()
    user = _user_name(euid)
    uid_ranges, gid_ranges = subordinate_ranges(user, "uid"), subordinate_ranges(user, "gid")
    for kind, ranges in (("uid", uid_ranges), ("gid", gid_ranges)):
        if not ranges:
            raise _no_range(user, kind)
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(state / "userns.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SyscallError(exc.errno, "open", state / "userns.lock", hint="set NSPRIM_STATE_DIR") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        used_uids, used_gids = _used_ids()
        found = next(free_slots(uid_ranges, gid_ranges, used_uids, used_gids), None)
        if found is None:
            total = min(sum(1 for _ in slots(uid_ranges)), sum(1 for _ in slots(gid_ranges)))
            raise ConfigError(
                f"no free slot of {SLOT_SIZE} subordinate ids for `{user}`: all {total} in /etc/subuid and "
                "/etc/subgid are in use by running user namespaces (give the user a larger range)",
                what="userns",
            )
        u, g = found
        if euid == 0:
            yield IdMap.single(0, u, SLOT_SIZE), IdMap.single(0, g, SLOT_SIZE)
        else:
            yield (
                IdMap.of([(0, euid, 1), (1, u, SLOT_SIZE - 1)]),
                IdMap.of([(0, egid, 1), (1, g, SLOT_SIZE - 1)]),
            )
    finally:
        os.close(fd)  # (drops the lock)


def check_payload_ids(cfg: ContainerConfig, uid_map: IdMap | None, gid_map: IdMap | None) -> None:
    """Refuse a payload user or group the container's user namespace does not map."""
    for kind, value, idmap in (("uid", cfg.uid, uid_map), ("gid", cfg.gid, gid_map)):
        if idmap is not None and value >= 0 and idmap.to_outside(value) is None:
            raise ConfigError(
                f"{kind} {value} is not mapped in the container's user namespace ({kind} map {idmap.summary()})",
                what="user",
            )


def _shifts(idmap: IdMap | None) -> bool:
    return idmap is not None and any(r.inside != r.outside for r in idmap.ranges)


def idmapped_mounts(
    cfg: ContainerConfig, state: Path | None, uid_map: IdMap | None, gid_map: IdMap | None
) -> tuple[tuple[Path, Path], ...]:
    """``(host directory, where its idmapped copy goes)`` for *cfg*'s root, none where not needed.

    Needed when host root starts a container in a user namespace whose maps shift ids:
    each layer of an image, or a directory root (other than the host's ``/``, which, like
    the ``host`` root, is bound read-only and shows the host's ids, unmapped, as nobody),
    goes to ``scratch/lower<k>`` on the tmpfs over the state directory (see
    :func:`attach_idmapped`), and the root is made from them there.  Mount points of the
    container's own, not the directories themselves: the path to an image may cross
    directories that the container's root, nobody on the host, cannot search.  Not a
    persistent upper layer: what the container writes there keeps the namespace's outside
    ids, as in a bound directory.
    """
    spec = cfg.root
    if os.geteuid() != 0 or spec is None or state is None or NamespaceType.USER not in cfg.namespaces:
        return ()
    if NamespaceType.MNT not in cfg.namespaces or not (_shifts(uid_map) or _shifts(gid_map)):
        return ()
    if spec.kind is RootKind.DIRECTORY and spec.path is not None and os.path.abspath(spec.path) != "/":
        return ((Path(os.path.abspath(spec.path)), state / "scratch" / "lower0"),)
    if spec.kind is RootKind.OVERLAY:
        return tuple((Path(os.path.abspath(p)), state / "scratch" / f"lower{k}") for k, p in enumerate(spec.layers))
    return ()


def _hint(err: int | None) -> str | None:
    if err == errno.ENOSYS:
        return "this kernel has no idmapped mounts (mount_setattr, Linux 5.12): use an id map that maps 0 to 0"
    if err == errno.EINVAL:
        return (
            "its file system, or one mounted under it, cannot be idmapped (ext4, xfs, btrfs and tmpfs can): "
            "move the root to one that can, or use an id map that maps 0 to 0"
        )
    if err == errno.EPERM:
        return "only host root can idmap a host file system"
    return None


def _idmapped_copy(source: Path, userns: int) -> int:
    flags = C.OPEN_TREE_CLONE | C.OPEN_TREE_CLOEXEC | C.AT_RECURSIVE
    tree = -1
    try:
        tree = _sys.open_tree(C.AT_FDCWD, source, flags)
        _sys.mount_setattr(tree, "", C.AT_EMPTY_PATH | C.AT_RECURSIVE, attr_set=C.MOUNT_ATTR_IDMAP, userns_fd=userns)
    except SyscallError as exc:
        if tree >= 0:
            os.close(tree)
        detail = f"make an idmapped mount of `{source}`"
        raise SyscallError(exc.errno, "mount_setattr", source, detail=detail, hint=_hint(exc.errno)) from None
    return tree


def attach_idmapped(
    pid: int, state: Path, mounts: Sequence[tuple[Path, Path]], uid_map: IdMap | None, gid_map: IdMap | None
) -> None:
    """Give child *pid* its state directory with idmapped copies of the *mounts* sources on their
    targets, before it goes on past the sync step of its id maps (written by now).

    In the child's mount namespace, a tmpfs owned by the container's root (the child
    makes the rest of its root's mount points on it, as on the tmpfs it mounts itself
    otherwise) goes over *state*; on it, each host directory *source*, copied and idmapped
    with the child's user namespace, is attached on its *target*.  The copies are made
    here, by host root, which alone may idmap a host file system; a short-lived thread of
    ours, with file system information of its own (which setns of a mount namespace
    requires; no other thread moves), joins the child's mount namespace and root to
    attach them (a mount is attached only in the caller's own namespace).
    """
    uid = uid_map.to_outside(0) if uid_map is not None else None
    gid = gid_map.to_outside(0) if gid_map is not None else None
    owner = (-1 if uid is None else uid, -1 if gid is None else gid)
    failure: list[BaseException] = []

    def work() -> None:
        fds: list[int] = []
        try:
            userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            fds.append(userns)
            mntns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            fds.append(mntns)
            trees = []
            for source, _ in mounts:
                trees.append(_idmapped_copy(source, userns))
                fds.append(trees[-1])
            _sys.unshare(C.CLONE_FS)
            _sys.setns(mntns, C.CLONE_NEWNS, path=f"/proc/{pid}/ns/mnt")
            root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            fds.append(root)
            os.fchdir(root)
            os.chroot(".")  # the child's root, for this thread only
            _sys.mount("tmpfs", state, "tmpfs", C.MS_NOSUID | C.MS_NODEV, "mode=700")
            os.chown(state, *owner)
            for (_, target), tree in zip(mounts, trees, strict=True):
                for d in reversed(target.parents):
                    if d.is_relative_to(state) and d != state and not d.exists():
                        os.mkdir(d, 0o700)
                        os.chown(d, *owner)
                os.mkdir(target, 0o700)
                os.chown(target, *owner)
                _sys.move_mount(tree, "", C.AT_FDCWD, target, C.MOVE_MOUNT_F_EMPTY_PATH)
        except BaseException as exc:
            failure.append(exc)
        finally:
            for fd in fds:
                os.close(fd)

    import threading  # only here: a container without a user namespace imports no threading

    thread = threading.Thread(target=work, name=f"nsprim-idmap-{pid}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def id_maps(cfg: ContainerConfig) -> tuple[IdMap | None, IdMap | None]:
    """The uid and gid maps of *cfg*'s new user namespace (``None``, ``None`` without one):
    those it gives, else the caller's ids as root."""
    if NamespaceType.USER not in cfg.namespaces:
        return None, None
    if cfg.uid_map or cfg.gid_map:
        return cfg.uid_map, cfg.gid_map
    return IdMap.single(0, os.geteuid()), IdMap.single(0, os.getegid())
