"""The container's configuration: an immutable value with a fluent builder.

Every builder method returns a new :class:`Container`; the original is never
changed, so a base template can be shared and varied::

    base = Container().host_root().memory("256M").network("none")
    job_a = base.command("python3", "-c", "print(1)")
    job_b = base.command("sh", "-c", "echo 2").pids(64)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .._dataclass import dataclass, field, replace
from .._paths import StrPath
from ..cgroup import CpuResources, MemoryResources, PidsResources, Resources
from ..checks import check_groups, check_id
from ..errors import ConfigError
from ..fs.rootfs import Bind, Tmpfs
from ..idmap import IdMap
from ..namespace import Namespace, NamespaceType
from .config import (
    MIN_MEMORY,
    ContainerConfig,
    Network,
    Rlimit,
    RootKind,
    RootSpec,
    Veth,
    available_cpus,
    check_memory_floor,
)
from .runnable import Runnable

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..security import SecurityPolicy
    from .calling import CallResult
    from .warm import WarmContainer

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["Container"]


def _size_ok(value: int | str) -> int | str:
    from ..cgroup import parse_size

    parse_size(value)  # raises ConfigError naming the value
    return value


@dataclass(frozen=True)
class Container(Runnable):
    """A container template: build it fluently, then :meth:`run` or :meth:`start` it.

    >>> box = Container(["echo", "hi"]).host_root().memory("64M")
    >>> box.config.resources.memory.max == 64 * 2**20
    True
    """

    config: ContainerConfig = field(default_factory=ContainerConfig)

    def __init__(self, argv: Sequence[str] | None = None, *, config: ContainerConfig | None = None) -> None:
        base = config if config is not None else ContainerConfig()
        if argv is not None:
            base = replace(base, argv=tuple(os.fspath(a) for a in argv))
        object.__setattr__(self, "config", base)

    def _with(self, **changes: Any) -> Container:
        return Container(config=replace(self.config, **changes))

    # ---- what runs -------------------------------------------------------------

    def command(self, *argv: str) -> Container:
        """The program and its arguments."""
        return self._with(argv=tuple(argv))

    def env(self, values: Mapping[str, str] | None = None, /, *, clear: bool = False, **more: str) -> Container:
        """Set environment variables (on top of a minimal default unless *clear*)."""
        env = {} if clear else dict(self.config.env)
        env.update(values or {})
        env.update(more)
        return self._with(env=tuple(env.items()))

    def cwd(self, path: str) -> Container:
        """The working directory inside the container."""
        return self._with(cwd=path)

    def user(self, uid: int | str, gid: int | None = None, groups: Iterable[int] = ()) -> Container:
        """The user (and group) the command runs as, inside the container.

        A name is looked up in the container's ``/etc/passwd`` when it starts.
        """
        checked = check_groups(groups)
        if gid is not None:
            check_id(gid, "gid")
        if isinstance(uid, str):
            return self._with(user_name=uid, gid=gid if gid is not None else -1, groups=checked)
        check_id(uid, "uid")
        return self._with(uid=uid, gid=uid if gid is None else gid, groups=checked, user_name=None)

    def rlimit(self, resource: int, soft: int, hard: int | None = None) -> Container:
        """Add a resource limit (``resource.RLIMIT_*``)."""
        lim = Rlimit(resource, soft, soft if hard is None else hard)
        return self._with(rlimits=(*self.config.rlimits, lim))

    def umask(self, mask: int | None) -> Container:
        """The file mode creation mask (``None``: inherit)."""
        return self._with(umask=mask)

    def tty(self, enabled: bool = True, *, size: tuple[int, int] | None = None) -> Container:
        """Give the payload a pseudo-terminal of its own, as ``docker run -t`` does.

        The terminal comes from the container's own ``devpts``; it is the
        payload's controlling terminal and its fds 0-2, and the master side is
        :attr:`RunningContainer.terminal <nsprim.container.RunningContainer.terminal>`.
        Its window size starts as *size* (rows, columns), else as this process'
        terminal's.  :meth:`run` relays this process' terminal to it (raw mode,
        window size kept in sync, modes restored on exit); see
        :mod:`nsprim.container.terminal`.
        """
        if size is not None:
            from .terminal import check_size

            size = check_size(size)
        return self._with(tty=enabled, tty_size=size)

    def init(self, enabled: bool = True) -> Container:
        """Run a minimal init as pid 1 that reaps zombies and forwards signals."""
        return self._with(init=enabled)

    def stop_signal(self, sig: int) -> Container:
        """The signal a detached container's :meth:`~nsprim.container.DetachedContainer.stop`
        sends before SIGKILL (default SIGTERM; an image's ``StopSignal``)."""
        import signal

        if isinstance(sig, bool) or not isinstance(sig, int) or not 0 < sig <= signal.SIGRTMAX:
            raise ConfigError(f"stop signal {sig!r}: not a signal number", what="stop_signal")
        return self._with(stop_signal=int(sig))

    @classmethod
    def from_image(
        cls,
        ref: str,
        command: Sequence[str] = (),
        *,
        store: StrPath | None = None,
        entrypoint: Sequence[str] | None = None,
        upper: StrPath | None = None,
        pull: bool = True,
        tls_verify: bool = True,
    ) -> Container:
        """The container of the image *ref* of the image store at *store* (default:
        ``$NSPRIM_STORE`` or ``/var/lib/nsprim/images``), pulled first if the store has not
        got it (unless *pull* is false).  See :func:`nsprim.image.run.from_image`."""
        import importlib

        # nsprim.image sits above this layer: it is found by name when asked for, not imported
        run = importlib.import_module("nsprim.image.run")
        box: Container = run.from_image(ref, command, store=store, entrypoint=entrypoint, upper=upper, pull=pull,
                                        tls_verify=tls_verify)  # fmt: skip
        return box

    def name(self, name: str) -> Container:
        """A name, used for the cgroup and in messages."""
        return self._with(name=name)

    # ---- file system ---------------------------------------------------------

    def host_root(self) -> Container:
        """The host's ``/`` read-only under a tmpfs upper layer: writable, nothing persists."""
        return self._with(root=RootSpec(RootKind.HOST))

    def rootfs(self, path: StrPath, *, writable: bool = False) -> Container:
        """A directory as the root file system (read-only unless *writable*)."""
        return self._with(root=RootSpec(RootKind.DIRECTORY, Path(path), writable=writable))

    def image(self, layers: Sequence[StrPath], *, upper: StrPath | None = None) -> Container:
        """Image layers (top first) under an overlay; ephemeral upper unless *upper* is given."""
        return self._with(
            root=RootSpec(RootKind.OVERLAY, layers=tuple(Path(p) for p in layers), upper=Path(upper) if upper else None)
        )

    def bind(self, source: StrPath, target: StrPath | None = None, *, readonly: bool = True) -> Container:
        """Bind a host path into the container (read-only unless told otherwise)."""
        target_path = os.fspath(target if target is not None else source)
        m = Bind(Path(source), target_path, readonly=readonly, nosuid=True, nodev=True)
        return self._with(mounts=(*self.config.mounts, m))

    def tmpfs(self, target: StrPath, *, size: int | str | None = None, mode: int = 0o1777) -> Container:
        """A tmpfs at *target* (say ``/tmp``), optionally size-limited: bytes, or a
        string with a ``k``, ``m`` or ``g`` suffix (see :func:`nsprim.fs.rootfs.parse_tmpfs_size`)."""
        return self._with(mounts=(*self.config.mounts, Tmpfs(os.fspath(target), size, mode)))

    def proc_view(self, enabled: bool = True, *, refresh: float | None = 1.0) -> Container:
        """Show the container's memory limit and CPUs in ``/proc/meminfo``, ``/proc/cpuinfo``
        and ``/sys/devices/system/cpu/online`` (generated files bound over them, LXCFS-style
        without FUSE; see :mod:`nsprim.container.procview`).  The memory figures are rewritten
        every *refresh* seconds (``None``: only by
        :meth:`~nsprim.container.RunningContainer.refresh_proc_view`).  Needs the container's
        cgroup (root)."""
        if refresh is not None and refresh <= 0:
            raise ConfigError(f"proc_view refresh must be positive, not {refresh}", what="proc_view")
        return self._with(proc_view=enabled, proc_view_refresh=refresh)

    # ---- namespaces ------------------------------------------------------------

    def namespaces(self, *types: NamespaceType | str) -> Container:
        """Exactly these new namespaces (default: all but time and user)."""
        return self._with(namespaces=frozenset(NamespaceType.parse(t) for t in types))

    def join(self, nstype: NamespaceType | str, target: StrPath | int) -> Container:
        """Join an existing namespace — a namespace file path, or a pid — instead of creating one."""
        t = NamespaceType.parse(nstype)
        path = f"/proc/{target}/ns/{t.value}" if isinstance(target, int) else os.fspath(target)
        return self._with(join=(*self.config.join, (t, path)), namespaces=self.config.namespaces - {t})

    def hostname(self, name: str) -> Container:
        """The host name inside (a new uts namespace)."""
        return self._with(hostname=name)

    def user_namespace(
        self, uid_map: IdMap | None = None, gid_map: IdMap | None = None, *, auto: bool = False
    ) -> Container:
        """A new user namespace; without maps, the caller's ids map to root inside.

        *auto*: 65536 ids of the caller's subordinate ranges (``/etc/subuid``,
        ``/etc/subgid``) that no running user namespace uses, picked when the
        container starts (see :func:`nsprim.container.userns.auto_id_maps`).  Root
        inside is then nobody on the host.
        """
        if auto:
            if uid_map is not None or gid_map is not None:
                raise ConfigError("give id maps or auto=True, not both", what="uid_map")
            ns = self.config.namespaces | {NamespaceType.USER}
            return self._with(namespaces=ns, uid_map=None, gid_map=None, auto_id_maps=True)
        if uid_map is None:
            uid_map = IdMap.single(0, os.geteuid())
        if gid_map is None:
            gid_map = IdMap.single(0, os.getegid())
        ns = self.config.namespaces | {NamespaceType.USER}
        return self._with(namespaces=ns, uid_map=uid_map, gid_map=gid_map, auto_id_maps=False)

    def network(self, mode: Network | str, veth: Veth | None = None) -> Container:
        """``"none"`` (loopback only, the default), ``"host"``, or ``"veth"``."""
        net = mode if isinstance(mode, Network) else Network(mode)
        ns = (
            self.config.namespaces - {NamespaceType.NET}
            if net is Network.HOST
            else self.config.namespaces | {NamespaceType.NET}
        )
        return self._with(network=net, namespaces=ns, veth=(veth or Veth()) if net is Network.VETH else None)

    # ---- resources -------------------------------------------------------------

    def resources(self, resources: Resources) -> Container:
        """All cgroup limits at once (replacing any set before); a memory limit is at least 6M, as
        with :meth:`memory`."""
        check_memory_floor(resources)
        return self._with(resources=resources)

    def _res(self) -> Resources:
        return self.config.resources or Resources()

    def memory(self, limit: int | str, *, swap: int | str | None = None) -> Container:
        """A memory limit ("512M"); beyond it the kernel OOM-kills in the container.

        At least 6M, as with Docker: below that not even a shell starts.  At
        most :data:`~nsprim.cgroup.resources.MEMORY_MAX_BYTES`; the kernel
        rounds it down to whole pages.  Without root it needs a delegated
        cgroup (see :doc:`/cgroups`), or the start is refused.
        """
        from ..cgroup import parse_size

        size = parse_size(_size_ok(limit))
        if size < MIN_MEMORY:
            raise ConfigError(
                f"memory limit `{limit}` is below the {MIN_MEMORY >> 20}M a container needs to start", what="memory"
            )
        res = self._res()
        mem = replace(res.memory or MemoryResources(), max=limit, swap=swap if swap is not None else 0)
        return self._with(resources=replace(res, memory=mem))

    def cpus(self, count: float) -> Container:
        """A CPU quota in CPUs (0.5 = half of one CPU): finite, at least 0.01 (the
        kernel's smallest quota) and at most the CPUs this process may use."""
        if isinstance(count, bool) or not isinstance(count, (int, float)) or not math.isfinite(count) or count <= 0:
            raise ConfigError(f"cpus: `{count!r}` must be a positive, finite number of CPUs", what="cpus")
        cpus = available_cpus()
        if count > cpus:
            raise ConfigError(
                f"cpus: `{count:g}` is more than the {cpus} CPU{'s' if cpus > 1 else ''} available here", what="cpus"
            )
        res = self._res()
        # (quota_us is what an earlier cpus() turned into: this count replaces it)
        cpu = replace(res.cpu or CpuResources(), cpus=count, quota_us=None)
        return self._with(resources=replace(res, cpu=cpu))

    def pids(self, limit: int) -> Container:
        """The most processes (and threads) the container may have at once (1 at least)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"pids: `{limit!r}` must be a whole number of processes, at least 1", what="pids")
        return self._with(resources=replace(self._res(), pids=PidsResources(max=limit)))

    def cgroup_parent(self, path: str) -> Container:
        """The cgroup the container's group is created under (default: the roots)."""
        return self._with(cgroup_parent=path)

    # ---- security ----------------------------------------------------------------

    def security(self, policy: SecurityPolicy) -> Container:
        """A :class:`nsprim.security.SecurityPolicy` (default: the secure defaults)."""
        return self._with(security=policy)

    def detach(self, detached: bool = True, *, remove: bool = False) -> Container:
        """Let the container outlive this process: a monitor of its own reaps it,
        records how it ended and removes its cgroup; find it again by name with
        :func:`nsprim.container.find`.  Its state entry stays until it is removed
        (``nsprim rm``), or with *remove* goes as soon as it ends.  See
        :mod:`nsprim.container.registry`."""
        return self._with(detach=detached, auto_remove=remove)

    # ---- running -----------------------------------------------------------------

    def warm(self, size: int = 2) -> WarmContainer:
        """This template with *size* network namespaces and cgroups kept ready by a background thread.

        Starts from the returned :class:`~nsprim.container.warm.WarmContainer`
        skip the two costliest parts of a start that do not depend on the
        container (a new network namespace, its cgroup and limits); each
        container still gets its own, fresh ones.  Use it as a context
        manager: on exit what was prepared and not used is removed.
        """
        from .warm import WarmContainer

        return WarmContainer(self.config, size)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a fresh container of this template and return its result.

        An exception raised inside comes back as
        :class:`~nsprim.errors.RemoteError`; the container's output goes to
        this process' stdout and stderr.  :meth:`call_result` has the options
        (timeout, captured output, a trusted payload) and the statistics.
        See :doc:`/howto/python-payloads`."""
        return self.call_result(fn, args, kwargs).value

    def call_result(
        self,
        fn: Callable[..., T],
        args: Sequence[object] = (),
        kwargs: Mapping[str, object] | None = None,
        *,
        timeout: float | None = None,
        capture_output: bool = False,
        trusted: bool = False,
    ) -> CallResult[T]:
        """Run ``fn(*args, **kwargs)`` in a fresh container; return a
        :class:`~nsprim.container.calling.CallResult` (value, output, stats).

        The container is this template with its command replaced by a Python
        interpreter: with :meth:`host_root`, this one (and this process'
        import path); in another root, its ``python3``, which must be this
        Python's version (:class:`~nsprim.errors.PythonVersionError`).  *fn*
        travels by reference (importable inside, or from the main script), or
        by value when cloudpickle is installed; the arguments are pickled.

        The result comes back in a format that cannot run code here
        (:mod:`nsprim.call.wire`); another type raises
        :class:`~nsprim.errors.UnsafeResultError` unless *trusted*, when it is
        pickled.  After *timeout* seconds the container is killed
        (:class:`~nsprim.errors.CallTimeoutError`); ended without an answer
        (killed, out of memory, ``os._exit``) is
        :class:`~nsprim.errors.CallDiedError`.  *capture_output* collects its
        stdout and stderr instead of passing them through."""
        from .calling import call_in

        return call_in(self.config, fn, args, kwargs, timeout=timeout, capture_output=capture_output, trusted=trusted)

    def with_namespace(self, ns: Namespace) -> Container:
        """Join the namespace *ns* is open on (kept alive by the path it came from)."""
        return self.join(ns.type, ns.path)
