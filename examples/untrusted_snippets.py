"""Evaluate untrusted Python snippets, each in its own sandbox with 1 s of CPU and 64 MB, and say how each ended.

The snippets run two at a time through a :class:`~nsprim.call.SandboxExecutor`: each in a fresh container
of the template (its own namespaces, root and cgroup), forked from the executor's warm interpreter.

Run as root: ``python examples/untrusted_snippets.py``.
"""

from __future__ import annotations

import resource
import signal
import sys
from concurrent.futures import Future

from nsprim.call import CallDiedError, CallResult, RemoteError, SandboxExecutor, UnsafeResultError
from nsprim.container import Container

SNIPPETS = {
    "arithmetic": "sum(i * i for i in range(1000))",
    "a string": "'-'.join(['a', 'b', 'c'])",
    "division by zero": "1 / 0",
    "a syntax error": "1 +",
    "spins forever": "while True: pass",
    "eats memory": "[bytearray(2**20) for _ in range(1000)]",
    "fork bomb": "import os\nwhile True: os.fork()",
    "phones home": "__import__('socket').create_connection(('192.0.2.1', 80), timeout=2)",
    "exits": "exit(3)",
    "returns an object": "__import__('pathlib').Path('/etc')",
}

# The sandbox: this interpreter over the host's root seen read-only, no network, 64 MB of memory,
# 1 s of CPU time, 32 processes, and 5 s of wall time at most.  (At the CPU limit the kernel sends
# SIGKILL: the SIGXCPU it sends before does not reach a pid namespace's first process.)
SANDBOX = Container().host_root().memory("64M").pids(32).rlimit(resource.RLIMIT_CPU, 1)


def evaluate(source: str) -> object:
    """The value of *source* if it is an expression, else ``None`` once its statements ran (inside the sandbox)."""
    try:
        code = compile(source, "<snippet>", "eval")
    except SyntaxError:
        exec(compile(source, "<snippet>", "exec"), {})
        return None
    return eval(code, {})


def verdict(future: Future[CallResult[object]]) -> str:
    try:
        value = future.result().value
    except RemoteError as e:
        return f"raised {e.remote_type}: {e.remote_message}"
    except CallDiedError as e:
        if e.oom_killed:
            return "killed: out of memory (64 MB)"
        if e.signal is not None:
            cpu = f" after {e.stats.cpu.usage_usec / 1e6:.1f} s of CPU" if e.stats and e.stats.cpu else ""
            return f"killed by {signal.Signals(e.signal).name}{cpu}"
        return f"ended with status {e.returncode} without answering"
    except UnsafeResultError as e:
        return f"refused its result: {e.reason}"
    return f"ok: {value!r}"


def main() -> int:
    with SandboxExecutor(SANDBOX, max_workers=2, timeout=5, capture_output=True) as pool:
        futures = {name: pool.submit_result(evaluate, source) for name, source in SNIPPETS.items()}
        for name, future in futures.items():
            print(f"{name:18} {verdict(future)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
