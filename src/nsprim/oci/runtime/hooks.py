"""The OCI hooks: programs the runtime runs at points of a container's life.

Each hook gets the container's state document on standard input, its
``args`` (``args[0]`` is its ``argv[0]``) and ``env`` (only that), and is
killed after ``timeout`` seconds.  The runtime spec's failure semantics:
a failing ``prestart``, ``createRuntime``, ``createContainer`` or
``startContainer`` hook is an error, which stops the container (its
lifecycle goes on at ``delete``); a failing ``poststart`` or ``poststop``
hook is a warning in the log, and the hooks after it still run.

Where they run here: ``prestart`` and ``createRuntime`` while the init
waits at a sync step before entering its root (its namespaces exist);
``createContainer`` once ``create`` has seen the init ready (its root
entered); ``startContainer`` by ``start`` before it releases the init;
``poststart`` by ``start`` after the exec; ``poststop`` by ``delete`` once
the container's group is gone.  All run in the runtime's namespaces.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..spec import Hook
    from .log import Log

__all__ = ["run_hooks", "FATAL_KINDS"]

#: The kinds whose failure is an error (the others are warnings).
FATAL_KINDS = frozenset({"prestart", "createRuntime", "createContainer", "startContainer"})


def _run_one(hook: Hook, kind: str, state: bytes) -> str | None:
    """Run one hook; None if it succeeded, else why it failed."""
    import subprocess

    argv = list(hook.args) or [hook.path]
    env = dict(item.split("=", 1) for item in hook.env if "=" in item)
    try:
        done = subprocess.run(
            argv, executable=hook.path, input=state, env=env, capture_output=True, timeout=hook.timeout,
            close_fds=True, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"timed out after {hook.timeout}s (killed)"
    except OSError as exc:
        return exc.strerror or str(exc)
    if done.returncode == 0:
        return None
    tail = done.stderr.decode(errors="replace").strip().splitlines()
    said = f": {tail[-1]}" if tail else ""
    if done.returncode < 0:
        return f"killed by signal {-done.returncode}{said}"
    return f"exit status {done.returncode}{said}"


def run_hooks(kind: str, hooks: Sequence[Hook], state: dict[str, object], log: Log) -> None:
    """Run the *hooks* of *kind* in order with *state* on their standard input.

    A failure of a kind in :data:`FATAL_KINDS` raises :class:`~nsprim.errors.HookError`
    (the later hooks do not run); of the other kinds it is logged as a warning.
    """
    if not hooks:
        return
    from . import jsonio

    data = jsonio.dumps(state).encode()
    for i, hook in enumerate(hooks):
        if hook.timeout is not None and hook.timeout <= 0:
            from ...errors import SpecError

            field = f"hooks.{kind}[{i}].timeout"
            raise SpecError(f"{field}: {hook.timeout} is not a positive number of seconds", field=field)
        why = _run_one(hook, kind, data)
        if why is None:
            continue
        message = f"{kind} hook `{hook.path}`: {why}"
        if kind in FATAL_KINDS:
            from ...errors import HookError

            raise HookError(message, kind=kind, path=hook.path)
        log.warning(message)
