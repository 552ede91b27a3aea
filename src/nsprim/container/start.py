"""Starting a container: :func:`start_container`, :func:`run_container` and :func:`run_container_async`.

The host side is prepared (:class:`~nsprim.container.preparation.Preparation`),
then one :class:`~nsprim.plan.Plan` runs in the child; a failure anywhere
releases what was made.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping

from .._dataclass import replace
from ..errors import ConfigError, TimeoutExpired
from ..lowlevel import Waits, run_waits, run_waits_async
from ..namespace import NamespaceType
from ..process import DEVNULL, PIPE
from ..spawning import StdioArg
from .build import build_plan
from .config import ContainerConfig
from .host import state_dir
from .launch import Spawner, launch_steps
from .preparation import Preparation, name_the_memory_limit
from .running import ContainerResult, RunningContainer
from .terminal import TERMINAL_FD, TerminalChannel, attach, relay, terminal_size
from .userns import auto_id_maps, check_payload_ids, id_maps

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from .pool import Supply

__all__ = ["start_container", "start_container_async", "container_start_steps", "run_container", "run_container_async"]


def start_container(
    config: ContainerConfig,
    *,
    stdin: StdioArg = None,
    stdout: StdioArg = None,
    stderr: StdioArg = None,
    warm: Supply | None = None,
    pass_fds: Mapping[int, int] | None = None,
    spawner: Spawner | None = None,
    record: dict[str, object] | None = None,
) -> RunningContainer:
    """Prepare the host side, start the plan, and return the handle.

    *pass_fds* places descriptors of this process in the container's first
    process: ``{fd inside: fd here}``, inside from 3 up (a duplicate: the
    caller still owns and closes its own).  With *warm*, a network namespace, a mount namespace with the first part of
    the root, and a cgroup made ahead of time are used where they are ready and
    apply (see :mod:`nsprim.container.warm`).  With *spawner*, the plan is started by it
    instead of the core's clone (a :class:`~nsprim.call.zygote.Zygote`'s fork).  *record*, if
    given, gets what was started (see :func:`container_start_steps`), for a caller that keeps it."""
    return run_waits(
        container_start_steps(
            config, stdin=stdin, stdout=stdout, stderr=stderr, warm=warm, pass_fds=pass_fds, spawner=spawner,
            record=record,
        )
    )  # fmt: skip


async def start_container_async(
    config: ContainerConfig,
    *,
    stdin: StdioArg = None,
    stdout: StdioArg = None,
    stderr: StdioArg = None,
    warm: Supply | None = None,
    pass_fds: Mapping[int, int] | None = None,
) -> RunningContainer:
    """:func:`start_container` from a coroutine: the host side is prepared and the child
    cloned on a shared worker thread (:func:`~nsprim.lowlevel.run_waits_async`), and
    where the child is cloned in fork mode (a plan with parent actions: id maps, a
    veth...) the wait for its exec is a reader of the loop.  Cancelled meanwhile, the
    child is killed and everything released before the cancellation goes on."""
    return await run_waits_async(
        container_start_steps(config, stdin=stdin, stdout=stdout, stderr=stderr, warm=warm, pass_fds=pass_fds)
    )


def container_start_steps(
    config: ContainerConfig,
    *,
    stdin: StdioArg = None,
    stdout: StdioArg = None,
    stderr: StdioArg = None,
    warm: Supply | None = None,
    pass_fds: Mapping[int, int] | None = None,
    spawner: Spawner | None = None,
    record: dict[str, object] | None = None,
) -> Waits[RunningContainer]:
    """:func:`start_container` as :data:`~nsprim.lowlevel.Waits` (see :func:`~nsprim.lowlevel.start_steps`).

    *record*, if given, gets what :func:`~nsprim.container.launch.launch_steps` records, and the
    ``config`` (resolved), the ``preparation`` and its ``cgroup`` and ``id``, once started."""
    if os.geteuid() != 0 and NamespaceType.USER not in config.namespaces and not config.join:
        # Rootless: a user namespace gives the privileges the rest needs.
        config = replace(config, namespaces=config.namespaces | {NamespaceType.USER})
    config.validate()
    config = config.resolve_user()
    passed = _passed_fds(pass_fds or {}, config.tty)
    if config.tty:
        if stdin is not None or stdout is not None or stderr is not None:
            raise ConfigError("a container with a tty has its terminal as stdin, stdout and stderr", what="tty")
        stdin = stdout = stderr = DEVNULL  # the setup never holds the caller's streams either
    if config.detach:
        from .registry import Registration

        Registration.check(config, warm)
    map_slot = contextlib.ExitStack()  # an automatic map's slot stays locked until its maps are written
    if config.auto_id_maps:
        uid_map, gid_map = map_slot.enter_context(auto_id_maps(state_dir()))
        config = replace(config, uid_map=uid_map, gid_map=gid_map, auto_id_maps=False)
    prep = Preparation(config, warm)
    netns_fd = mntns_fd = root_fd = -1
    channel: TerminalChannel | None = None
    master = -1
    try:
        check_payload_ids(config, *id_maps(config))
        prep.setup()
        monitor = None
        if prep.registration is not None:
            stdin, stdout, stderr = prep.registration.stdio(stdin, stdout, stderr)
            monitor = prep.registration.monitor_spec(config, prep.cgroup)
        if warm is not None:
            netns_fd, mntns_fd, root_fd = warm.take_namespaces() or (-1, -1, -1)
            # Kept until the container ended, then closed by the pool's thread: the
            # namespace's mounts are taken down there, not by the payload's exit.
            prep.mntns_fd = mntns_fd
        if config.tty:
            channel = TerminalChannel(config.tty_size or terminal_size(1) or terminal_size(0))
        placed = [(channel.child_fd, TERMINAL_FD)] if channel is not None else []
        placed += passed
        proc = yield from launch_steps(
            config,
            lambda pairs: build_plan(
                config,
                cgroup=prep.cgroup,
                state=prep.state,
                stdio=[*pairs, *placed],
                joined=prep.namespaces,
                proc_view=prep.proc_view,
                netns_fd=netns_fd,
                mntns_fd=mntns_fd,
                mntns_root_fd=root_fd,
                veth=prep.veth,
                clone_into_cgroup=spawner is None,
            ),
            stdin,
            stdout,
            stderr,
            log_id=prep.id,
            monitor=monitor,
            on_clone=None if config.detach or prep.cgroup is not None else prep.watch_pid,
            spawner=spawner,
            record=record,
        )
        if record is not None:
            record.update(config=config, preparation=prep, cgroup=prep.cgroup, id=prep.id, warm=warm)
        if channel is not None:
            channel.child_started()
            try:
                master = channel.receive()
            except BaseException:
                proc.close()  # kills and reaps it
                raise
        if prep.registration is not None:
            prep.registration.commit(proc, prep.cgroup)
            prep.watching, prep.handed_over = False, True
    except BaseException as exc:
        name_the_memory_limit(exc, prep)
        prep.release()
        raise
    finally:
        map_slot.close()
        for fd in (netns_fd, root_fd):  # the child holds them now, or starting failed
            if fd >= 0:
                os.close(fd)
        if channel is not None:
            channel.close()
    if prep.proc_view is not None and config.proc_view_refresh is not None:
        prep.proc_view.start_refresher(config.proc_view_refresh)
    box = RunningContainer(config, prep, proc)
    if master >= 0:
        box.terminal = os.fdopen(master, "r+b", buffering=0)
    return box


def _passed_fds(pass_fds: Mapping[int, int], tty: bool) -> list[tuple[int, int]]:
    pairs = []
    for inside, here in sorted(pass_fds.items()):
        if inside < 3 or here < 0:
            raise ConfigError(
                f"pass_fds {{{inside}: {here}}}: a descriptor inside from 3 up (0-2 are the standard streams), "
                "one here from 0 up",
                what="pass_fds",
            )
        if tty and inside == TERMINAL_FD:
            raise ConfigError(f"pass_fds: fd {inside} inside holds a tty container's terminal socket", what="pass_fds")
        try:
            os.fstat(here)  # a closed descriptor fails here, not in the child
        except OSError as e:
            raise ConfigError(f"pass_fds {{{inside}: {here}}}: fd {here} here: {e.strerror}", what="pass_fds") from None
        pairs.append((here, inside))
    return pairs


def run_container(
    config: ContainerConfig,
    stdio: tuple[StdioArg, StdioArg, StdioArg] = (None, None, None),
    capture_output: bool = False,
    input: bytes | None = None,
    timeout: float | None = None,
    *,
    warm: Supply | None = None,
) -> ContainerResult:
    """Start, feed *input*, collect output, wait, clean up.

    With a tty, *input* is typed into the container's terminal and
    *capture_output* collects what it shows (as ``stdout``); with neither, this
    process' own terminal is attached (:meth:`RunningContainer.attach`).
    """
    if config.tty:
        if any(s is not None for s in stdio):
            raise ConfigError("a container with a tty has its terminal as stdin, stdout and stderr", what="tty")
        return _run_with_terminal(config, capture_output, input, timeout, warm)
    stdin, stdout, stderr = _run_stdio(stdio, capture_output, input)
    with start_container(config, stdin=stdin, stdout=stdout, stderr=stderr, warm=warm) as box:
        try:
            out, err = box.process.communicate(input, timeout)
        except TimeoutExpired:
            box.kill()
            raise TimeoutExpired(box.pid, timeout or 0.0, killed=True, name=box.id) from None
        box.wait()
        status = box.returncode
        assert status is not None
        return ContainerResult(status, out, err, box.final_stats, box.oom_killed)


async def run_container_async(
    config: ContainerConfig,
    stdio: tuple[StdioArg, StdioArg, StdioArg] = (None, None, None),
    capture_output: bool = False,
    input: bytes | None = None,
    timeout: float | None = None,
    *,
    warm: Supply | None = None,
) -> ContainerResult:
    """:func:`run_container` in the running event loop (asyncio or trio): the pipes and the
    exit are watched by the loop; after *timeout* seconds the container is killed
    (:class:`~nsprim.errors.TimeoutExpired`)."""
    if config.tty:
        raise ConfigError(
            "run_async does not drive a terminal: use start_async() and the handle's terminal", what="tty"
        )
    stdin, stdout, stderr = _run_stdio(stdio, capture_output, input)
    box = await start_container_async(config, stdin=stdin, stdout=stdout, stderr=stderr, warm=warm)
    async with box:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            out, err = await box.process.exchange_async(input, timeout)
            status = await box.wait_async(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except TimeoutExpired:
            raise TimeoutExpired(box.pid, timeout or 0.0, killed=True, name=box.id) from None
        return ContainerResult(status, out, err, box.final_stats, box.oom_killed)


def _run_stdio(
    stdio: tuple[StdioArg, StdioArg, StdioArg], capture_output: bool, input: bytes | None
) -> tuple[StdioArg, StdioArg, StdioArg]:
    """The streams a run starts with: pipes for what it captures and what it feeds."""
    stdin, stdout, stderr = stdio
    if capture_output:
        stdout = PIPE if stdout is None else stdout
        stderr = PIPE if stderr is None else stderr
    if input is not None and stdin is None:
        stdin = PIPE
    return stdin, stdout, stderr


def _run_with_terminal(
    config: ContainerConfig, capture: bool, input: bytes | None, timeout: float | None, warm: Supply | None
) -> ContainerResult:
    with start_container(config, warm=warm) as box:
        master = box._need_terminal("run").fileno()
        collect: list[bytes] | None = [] if capture else None
        if capture or input is not None:
            ended = relay(master, box.process.pidfd, data=input or b"", collect=collect, timeout=timeout)
        else:
            ended = attach(master, box.process.pidfd, 0, 1, timeout=timeout)
        if not ended:
            box.kill()
            raise TimeoutExpired(box.pid, timeout or 0.0, killed=True, name=box.id)
        status = box.wait()
        out = b"".join(collect) if collect is not None else None
        return ContainerResult(status, out, None, box.final_stats, box.oom_killed)
