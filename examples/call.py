"""Python functions in sandboxes: a value back, an exception with its remote traceback, a memory hog contained.

Run as root: ``python examples/call.py``.
"""

from __future__ import annotations

import sys

import nsprim
from nsprim.call import CallDiedError, RemoteError
from nsprim.container import Container


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@nsprim.sandboxed(memory="64M", pids=32, timeout=10)
def evaluate(expression: str) -> object:
    """Evaluate untrusted input: in a container of its own, whatever it does."""
    return eval(expression, {"__builtins__": {}})


def hog() -> None:
    chunks = []
    while True:
        chunks.append(bytearray(8 * 2**20))


def main() -> int:
    box = Container().host_root().memory("128M")
    print("mean:", box.call(mean, [1.0, 2.0, 3.0, 4.0]))
    print("2 ** 100 =", evaluate("2 ** 100"))
    try:
        evaluate("1 / 0")
    except RemoteError as e:
        print(f"1 / 0 raised {e.remote_type} inside; its traceback ends: {e.remote_traceback.splitlines()[-1]}")
    try:
        Container().host_root().memory("64M").call(hog)
    except CallDiedError as e:
        print(f"the hog: {e} (OOM-killed: {e.oom_killed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
