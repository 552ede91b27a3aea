"""``@nsprim.sandboxed(...)``: a function that runs in a fresh container on every call."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar

from ..container import Container, Network
from ..container.calling import CallResult
from .payload import SANDBOXED_MARK

__all__ = ["sandboxed", "SandboxedFunction"]

P = ParamSpec("P")
T = TypeVar("T")


class SandboxedFunction(Generic[P, T]):
    """A function that runs in a fresh container of :attr:`container` each time it is called.

    Calling it returns the function's result (see :meth:`Container.call
    <nsprim.container.Container.call>`); :meth:`call_result` returns the
    :class:`~nsprim.container.calling.CallResult` with output and statistics.
    Inside the container the module's name for it is found again and the
    plain function it wraps is run."""

    __wrapped__: Callable[P, T]

    def __init__(
        self,
        fn: Callable[P, T],
        container: Container,
        *,
        timeout: float | None,
        capture_output: bool,
        trusted: bool,
    ) -> None:
        functools.update_wrapper(self, fn)
        setattr(self, SANDBOXED_MARK, True)
        self.container = container
        self.timeout = timeout
        self.capture_output = capture_output
        self.trusted = trusted

    def call_result(self, *args: P.args, **kwargs: P.kwargs) -> CallResult[T]:
        """Run it in a fresh container; return its :class:`~nsprim.container.calling.CallResult`."""
        return self.container.call_result(
            self.__wrapped__,
            args,
            kwargs,
            timeout=self.timeout,
            capture_output=self.capture_output,
            trusted=self.trusted,
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.call_result(*args, **kwargs).value

    def __repr__(self) -> str:
        return f"<sandboxed {self.__wrapped__.__module__}.{self.__wrapped__.__qualname__}>"


def sandboxed(
    *,
    container: Container | None = None,
    memory: int | str | None = None,
    network: Network | str | None = None,
    pids: int | None = None,
    cpus: float | None = None,
    timeout: float | None = None,
    capture_output: bool = False,
    trusted: bool = False,
) -> Callable[[Callable[P, T]], SandboxedFunction[P, T]]:
    """Turn a function into one that runs in its own container on every call::

        @nsprim.sandboxed(memory="256M", network="none", timeout=5)
        def evaluate(source: str) -> object: ...

    The container is *container* (default: ``Container().host_root()``,
    with the secure defaults: no network, no capabilities beyond the
    default set, a seccomp filter) with *memory*, *network*, *pids* and
    *cpus* applied where given.  *timeout*, *capture_output* and *trusted*
    are those of :meth:`Container.call_result
    <nsprim.container.Container.call_result>`.  The function must be
    defined at a module's top level (or in the main script), where the
    container's Python finds it by name."""
    box = container if container is not None else Container().host_root()
    if memory is not None:
        box = box.memory(memory)
    if network is not None:
        box = box.network(network)
    if pids is not None:
        box = box.pids(pids)
    if cpus is not None:
        box = box.cpus(cpus)

    def wrap(fn: Callable[P, T]) -> SandboxedFunction[P, T]:
        return SandboxedFunction(fn, box, timeout=timeout, capture_output=capture_output, trusted=trusted)

    return wrap
