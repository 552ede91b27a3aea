"""What starts containers from a configuration: :class:`Runnable`, the
:meth:`~Runnable.start` and :meth:`~Runnable.run` (and their async forms, for asyncio and trio) of both
:class:`~nsprim.container.Container` and
:class:`~nsprim.container.warm.WarmContainer`.

The starting machinery is imported when a container starts, not when this
module is: building a configuration stays cheap.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..spawning import StdioArg
    from .config import ContainerConfig
    from .pool import Supply
    from .running import ContainerResult, RunningContainer

__all__ = ["Runnable"]


class Runnable:
    """Starts containers of :attr:`config`; a subclass with namespaces and
    cgroups made ahead of time returns them from :meth:`_prepared_supply`."""

    config: ContainerConfig

    def _prepared_supply(self) -> Supply | None:
        return None

    def start(
        self,
        *,
        stdin: StdioArg = None,
        stdout: StdioArg = None,
        stderr: StdioArg = None,
        pass_fds: Mapping[int, int] | None = None,
    ) -> RunningContainer:
        """Start the container; return a handle (see :class:`~nsprim.container.RunningContainer`).

        The standard streams are taken as :func:`nsprim.spawn` takes them;
        *pass_fds* places more descriptors in its first process, ``{fd inside:
        fd here}`` (inside from 3 up), for it to talk to this one over."""
        from .start import start_container

        return start_container(
            self.config, stdin=stdin, stdout=stdout, stderr=stderr, warm=self._prepared_supply(), pass_fds=pass_fds
        )

    def run(
        self,
        *,
        capture_output: bool = False,
        input: bytes | None = None,
        timeout: float | None = None,
        stdin: StdioArg = None,
        stdout: StdioArg = None,
        stderr: StdioArg = None,
    ) -> ContainerResult:
        """Run to completion and return a :class:`~nsprim.container.ContainerResult`.

        *input* is written to its standard input, *capture_output* collects its
        standard output and error, and after *timeout* seconds it is killed
        (:class:`~nsprim.errors.TimeoutExpired`).  With a tty, *input* is typed
        into the container's terminal and *capture_output* collects what it
        shows; with neither, this process' own terminal is attached."""
        from .start import run_container

        return run_container(
            self.config, (stdin, stdout, stderr), capture_output, input, timeout, warm=self._prepared_supply()
        )

    async def start_async(
        self,
        *,
        stdin: StdioArg = None,
        stdout: StdioArg = None,
        stderr: StdioArg = None,
        pass_fds: Mapping[int, int] | None = None,
    ) -> RunningContainer:
        """:meth:`start` in the running event loop (asyncio or trio); ``async with`` the handle
        kills and cleans up on every way out, cancellation included.

        What cannot be awaited — the host side prepared, the clone (in vfork
        mode, the usual plan as root, until the child's exec), a fork-mode
        child's parent actions (id maps, a veth) — runs on one of a few worker
        threads shared by every start; the loop awaits it, and a fork-mode
        child's setup, as readers.  Cancelled meanwhile, the child is killed and
        everything it used released before the cancellation goes on."""
        from .start import start_container_async

        return await start_container_async(
            self.config, stdin=stdin, stdout=stdout, stderr=stderr, warm=self._prepared_supply(), pass_fds=pass_fds
        )

    async def run_async(
        self,
        *,
        capture_output: bool = False,
        input: bytes | None = None,
        timeout: float | None = None,
        stdin: StdioArg = None,
        stdout: StdioArg = None,
        stderr: StdioArg = None,
    ) -> ContainerResult:
        """:meth:`run` in the running event loop (asyncio or trio): the pipes and the exit are
        watched by the loop (no thread), so many containers run side by side in one.

        A cancelled run kills the container and removes what it used before the
        cancellation goes on.  A container with a tty is refused (:class:`~nsprim.errors.ConfigError`): start it with
        :meth:`start_async` and use its :attr:`~RunningContainer.terminal`."""
        from .start import run_container_async

        return await run_container_async(
            self.config, (stdin, stdout, stderr), capture_output, input, timeout, warm=self._prepared_supply()
        )
