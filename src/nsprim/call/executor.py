"""A :class:`concurrent.futures.Executor` whose every call runs in a fresh container of a template.

:class:`SandboxExecutor` keeps up to ``max_workers`` threads; each takes the
next call from a queue and runs it as :meth:`Container.call_result
<nsprim.container.Container.call_result>` does, then waits on that
container (a thread per worker, not per call).  What a future gets is what
``Container.call`` gives: the value, or the exception
(:class:`~nsprim.errors.RemoteError`,
:class:`~nsprim.errors.UnsafeResultError`,
:class:`~nsprim.errors.CallDiedError`...), the answer read as untrusted
unless the executor was made with ``trusted=True``.

Nothing is shared between two calls but the template: each has its own
namespaces, root (a fresh upper layer), cgroup with the template's limits,
and process.  A template that a :class:`~nsprim.call.zygote.Zygote` can fork
(the host's root, as root: :func:`~nsprim.call.zygote.refusal`) takes the
warm path: the calls' processes are forks of the executor's zygote, whose
network namespaces, roots and cgroups a :class:`~nsprim.container.pool.Supply`
prepares ahead, and each worker starts its next call's container before
the call comes; any other starts a container and an interpreter per call.
``shutdown(cancel_futures=True)`` cancels the calls not
started and kills the running ones, and ``Future.cancel()`` of a running
call kills it (:class:`~nsprim.errors.CallCancelledError`): each
call's exchange watches a pipe of its own that says so.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from .._dataclass import dataclass, replace
from ..container import Container
from ..container.calling import CallResult, StartedCall, find_python, finish_call, start_call
from ..container.launch import Spawner
from ..errors import ConfigError
from .zygote import Zygote, refusal

if TYPE_CHECKING:
    from ..container.pool import Supply

__all__ = ["SandboxExecutor"]

P = ParamSpec("P")
T = TypeVar("T")


class _Stopper:
    """A running call's kill switch: a pipe its exchange watches, made readable at most once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.read_fd, self._write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)

    def stop(self) -> None:
        with self.lock:
            if self._write_fd >= 0:
                os.write(self._write_fd, b"x")  # never read: it stays readable, though the call is still starting
                os.close(self._write_fd)
                self._write_fd = -1

    def close(self) -> None:
        with self.lock:
            os.close(self.read_fd)
            if self._write_fd >= 0:
                os.close(self._write_fd)
                self._write_fd = -1


class _CallFuture(Future[T]):
    """A future whose :meth:`cancel` also kills its call while it runs."""

    _stopper: _Stopper | None = None  # while its call runs

    def cancel(self) -> bool:
        """Cancel the call if it has not started (True); if it runs, kill its container (False, as the
        call did start: its future gets :class:`~nsprim.errors.CallCancelledError`)."""
        if super().cancel():
            return True
        stopper = self._stopper
        if stopper is not None and not self.done():  # (done: answered, its container being removed)
            stopper.stop()
        return False


@dataclass(frozen=True)
class _Work:
    """One submitted call: the future to settle, and whether it gets the whole :class:`CallResult`."""

    future: _CallFuture[object]
    fn: Callable[..., object]
    args: Sequence[object]
    kwargs: Mapping[str, object]
    whole: bool


class _Workers:
    """What the worker threads share, apart from the executor (which may be collected while they run):
    the queue, the kill switches of the running calls, the threads."""

    def __init__(
        self, container: Container, max_workers: int, timeout: float | None, capture_output: bool, trusted: bool
    ) -> None:
        self.config = container.config
        self.max_workers = max_workers
        self.timeout = timeout
        self.capture_output = capture_output
        self.trusted = trusted
        self.queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = threading.Semaphore(0)
        self.threads: list[threading.Thread] = []
        self.running: set[_Stopper] = set()
        self.stopping = False
        self.cancelled = False
        self.ended = 0  # worker threads that ended
        self.cleanup_error: BaseException | None = None  # raised by shutdown(wait=True)
        # The warm path (see nsprim.call.zygote): made with the first worker, closed by the last.
        self.warm_path = refusal(self.config) is None
        self.zygote: Zygote | None = None
        self.supply: Supply | None = None

    def run(self) -> None:
        ready: StartedCall | None = None
        try:
            while True:
                if ready is None:
                    ready = self._start_ahead()
                work = self.queue.get()
                if work is None:
                    break
                if self.cancelled:  # taken from the queue just before shutdown(cancel_futures=True) emptied it
                    work.future.cancel()
                elif work.future.set_running_or_notify_cancel():
                    self._settle(work, ready)
                    ready = None
                del work
                self.idle.release()
            self.queue.put(None)  # for the next worker
        finally:
            if ready is not None:
                ready.close()
            with self.lock:
                self.ended += 1
                last = self.stopping and self.ended == len(self.threads)
            if last:
                self.close_warm_path()

    def _start_ahead(self) -> StartedCall | None:
        """On the warm path, the next call's container, started before the call comes: its
        request is all that is left to do.  None if it cannot be (the call then starts its own,
        and its future gets the reason)."""
        if not self.warm_path or self.stopping:
            return None
        try:
            warm, spawner = self._warm()
            if spawner is None:
                return None
            return start_call(self.config, capture_output=self.capture_output, warm=warm, spawner=spawner)
        except Exception:
            return None

    def _warm(self) -> tuple[Supply | None, Spawner | None]:
        """The zygote and the supply of prepared namespaces and cgroups, made on first use (a
        zygote that died, say of the OOM killer, replaced: the calls it had forked got their end)."""
        if not self.warm_path:
            return None, None
        dead = None
        with self.lock:
            if self.zygote is not None and not self.zygote.alive and not self.stopping:
                dead, self.zygote = self.zygote, Zygote()
            if self.zygote is None and not self.stopping:
                from ..container.host import create_cgroup
                from ..container.pool import Supply, root_preparer

                config = self.config
                self.zygote = Zygote()
                make_cgroup = lambda name: create_cgroup(name, config, watch=True)  # noqa: E731
                self.supply = Supply(config, self.max_workers, make_cgroup, root_preparer(config))
            zygote, supply = self.zygote, self.supply
        if dead is not None:
            dead.close()
        return supply, zygote.spawn_steps if zygote is not None else None

    def close_warm_path(self) -> None:
        with self.lock:
            zygote, supply = self.zygote, self.supply
            self.zygote = self.supply = None
        if supply is not None:
            supply.close()
        if zygote is not None:
            zygote.close()

    def _settle(self, work: _Work, ready: StartedCall | None) -> None:
        stopper = _Stopper()
        with self.lock:
            self.running.add(stopper)
            work.future._stopper = stopper
            if self.cancelled:
                stopper.stop()
        try:
            if ready is None:  # (the warm path's start ahead failed, or the cold path)
                warm, spawner = self._warm()
                ready = start_call(self.config, capture_output=self.capture_output, warm=warm, spawner=spawner)
            result = finish_call(
                ready,
                work.fn,
                work.args,
                work.kwargs,
                timeout=self.timeout,
                trusted=self.trusted,
                cancel_fd=stopper.read_fd,
                answered=None if work.whole else work.future.set_result,
            )
        except BaseException as e:  # what the call raised is the future's, as a thread pool's
            if not work.future.done():
                work.future.set_exception(e)
            else:  # it has its value: what failed is the removal of an answered call's container
                with self.lock:
                    self.cleanup_error = self.cleanup_error or e
        else:
            if not work.future.done():
                work.future.set_result(result if work.whole else result.value)
        finally:
            with self.lock:
                self.running.discard(stopper)
                work.future._stopper = None
            stopper.close()

    def add(self, work: _Work, max_workers: int) -> None:
        """Queue *work*; start a thread if none is idle and there are fewer than *max_workers*."""
        with self.lock:
            if self.stopping:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self.queue.put(work)
            if self.warm_path:  # all at once: each starts the container of its next call ahead
                wanted = max_workers - len(self.threads)
            else:
                wanted = 0 if self.idle.acquire(blocking=False) or len(self.threads) >= max_workers else 1
            for _ in range(wanted):
                thread = threading.Thread(target=self.run, name=f"SandboxExecutor-{len(self.threads)}", daemon=True)
                thread.start()
                self.threads.append(thread)

    def stop(self, cancel: bool) -> None:
        """No more calls; with *cancel*, the queued ones cancelled and the running ones killed."""
        with self.lock:
            if cancel and not self.cancelled:
                self.cancelled = True
                end_taken = False
                while True:
                    try:
                        work = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if work is None:
                        end_taken = True  # the workers' end, put in by an earlier shutdown: put back below
                    else:
                        work.future.cancel()
                for stopper in self.running:
                    stopper.stop()
                if end_taken:
                    self.queue.put(None)
            if not self.stopping:
                self.stopping = True
                self.queue.put(None)

    def join(self) -> None:
        for thread in list(self.threads):
            if thread is not threading.current_thread():
                thread.join()
        if not self.threads or all(not t.is_alive() for t in self.threads):
            self.close_warm_path()  # (the last worker did, unless none ever ran)


# The executors not shut down when the interpreter exits: their calls are waited for, as a thread pool's.
_unfinished: weakref.WeakSet[SandboxExecutor] = weakref.WeakSet()


@atexit.register
def _finish_all() -> None:
    for executor in list(_unfinished):
        executor.shutdown(wait=True)


class SandboxExecutor(Executor):
    """Run calls in fresh containers of *template*, up to *max_workers* at a time::

        template = Container().host_root().memory("64M").pids(32)
        with SandboxExecutor(template, max_workers=4) as pool:
            print(list(pool.map(score, snippets)))

    Every call is ``template.call_result(fn, args, kwargs, timeout=timeout,
    capture_output=capture_output, trusted=trusted)`` in a container of its
    own: its own namespaces, root and cgroup (the template's limits), so
    that one call's fork bomb or memory hog ends at its own limits and the
    next call starts afresh.  A future holds the value or the exception the
    call raised; :meth:`submit_result` gives the whole
    :class:`~nsprim.container.calling.CallResult` (output, stats).  Works with
    ``asyncio.get_running_loop().run_in_executor(pool, fn, arg)``.  A
    future's ``cancel()`` kills its call if it is running (and returns
    ``False``, as the call did start): so does cancelling the asyncio task
    that awaits it.

    *max_workers* defaults to the number of CPUs.  The template is checked
    when the executor is made (no tty, not detached, a Python of this
    version in its root: :class:`~nsprim.errors.ConfigError`,
    :class:`~nsprim.errors.PythonNotFoundError`,
    :class:`~nsprim.errors.PythonVersionError`)."""

    def __init__(
        self,
        template: Container,
        max_workers: int | None = None,
        *,
        timeout: float | None = None,
        capture_output: bool = False,
        trusted: bool = False,
    ) -> None:
        if not isinstance(template, Container):
            raise ConfigError(f"SandboxExecutor: the template `{template!r}` is not a Container", what="template")
        if max_workers is None:
            max_workers = os.cpu_count() or 1
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigError(
                f"SandboxExecutor: max_workers `{max_workers!r}` must be a whole number, at least 1",
                what="max_workers",
            )
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"SandboxExecutor: timeout `{timeout!r}` must be more than 0 seconds", what="timeout")
        config = template.config
        if config.tty or config.detach:
            raise ConfigError(
                "SandboxExecutor: a call's container has no tty and is not detached: it answers this process",
                what="template",
            )
        replace(config, argv=(find_python(config),)).validate()  # the command a call puts in
        self.template = template
        self.max_workers = max_workers
        self._workers = _Workers(template, max_workers, timeout, capture_output, trusted)
        _unfinished.add(self)
        # Collected without a shutdown: the workers finish what is queued, then end.
        weakref.finalize(self, self._workers.stop, False)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` in a fresh container; its future gets the value or the exception.

        Raises :class:`RuntimeError` after :meth:`shutdown`."""
        future: _CallFuture[T] = _CallFuture()
        self._workers.add(_Work(future, fn, args, kwargs, whole=False), self.max_workers)  # type: ignore[arg-type]
        return future

    def submit_result(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[CallResult[T]]:
        """As :meth:`submit`, the future getting the whole :class:`~nsprim.container.calling.CallResult`."""
        future: _CallFuture[CallResult[T]] = _CallFuture()
        self._workers.add(_Work(future, fn, args, kwargs, whole=True), self.max_workers)  # type: ignore[arg-type]
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; with *wait*, return once every call has ended and its container is gone
        (then raising the first error of removing the container of a call whose future had its value).

        With *cancel_futures*, the calls not started are cancelled and the
        running ones killed, each with its whole cgroup: their futures get
        :class:`~nsprim.errors.CallCancelledError`."""
        self._workers.stop(cancel_futures)
        _unfinished.discard(self)
        if wait:
            self._workers.join()
            error, self._workers.cleanup_error = self._workers.cleanup_error, None
            if error is not None:
                raise error

    def __repr__(self) -> str:
        return f"<SandboxExecutor max_workers={self.max_workers} template={self.template!r}>"
