"""Many short sandboxes: start them warm, with network namespaces and cgroups made ahead.

Run as root: ``python examples/warm.py [COUNT]``.  Each sandbox is the full
default (every namespace but time, a read-only host root with a tmpfs /tmp, a
memory and pids limit); the warm template only takes its network namespace and
its cgroup from a background thread instead of making them on the spot.
"""

from __future__ import annotations

import statistics
import sys
import time

from nsprim.container import Container, WarmContainer


def per_sandbox_ms(box: Container | WarmContainer, count: int) -> float:
    """Median wall time of one ``run()`` of *box*, in milliseconds."""
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        status = box.run().returncode
        times.append(time.perf_counter() - t0)
        if status != 0:
            raise SystemExit(f"the sandbox exited with {status}")
    return statistics.median(times) * 1e3


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    box = Container(["true"]).host_root().tmpfs("/tmp").memory("64M").pids(64)
    # A server would make its warm templates at start-up: the pool fills while other work goes on
    # (here: the cold runs).
    with box.warm(2) as warm:
        cold = per_sandbox_ms(box, count)
        hot = per_sandbox_ms(warm, count)
        print(
            f"{count} sandboxes each: {cold:.2f} ms cold, {hot:.2f} ms warm "
            f"({warm.hits} prepared parts taken, {warm.misses} times none was ready)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
