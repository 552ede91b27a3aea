"""Executor benchmark: a trivial function through ``SandboxExecutor(max_workers=2)`` against a bare interpreter.

The template is ``Container().host_root().memory("64M").pids(64)``; the function is ``operator.add(1, 2)``.

Throughput (one iteration: a batch of :data:`BATCH` calls, its wall time divided by :data:`BATCH`, i.e. the
time per call, the inverse of calls per second):

* ``executor(2) batch`` — ``list(pool.map(operator.add, ...))`` of the batch through
  ``SandboxExecutor(template, max_workers=2)``: every call a fresh container (a fork of the executor's
  zygote, see :mod:`nsprim.call.zygote`), two at a time
* ``subprocess loop`` — ``subprocess.run([sys.executable, "-c", "pass"])``, one after the other: a fresh
  interpreter per call, no isolation at all

Latency (one iteration: one call, submitted to an idle executor, until its result is back; each after an
untimed pause of :data:`PACE_S`, for both pools):

* ``executor(2) submit`` — ``pool.submit(operator.add, 1, 2).result()``
* ``subprocess run`` — one ``subprocess.run`` as above
* ``process pool submit`` — ``ProcessPoolExecutor(2).submit(operator.add, 1, 2).result()``: warm workers,
  no isolation, no start-up at all

Printed ratios of medians, against the targets of the issue: **executor time per call / subprocess time per
call (target <= 0.5, i.e. at least 2x the calls per second)**; **executor latency / subprocess latency (target
<= 3)**; **executor latency / process pool latency (target <= 3)**.  An idle executor has the container of
each worker's next call started ahead, waiting for its request: the latency is the request, the call and the
answer; the container's removal and the next one's start come after the result.

Run as root: ``python benchmarks/bench_executor.py [--quick] [--json out.json] [--wait-quiet S]``.
Exit status is 0 even on a MISS (it is a measurement, not a test).
"""

from __future__ import annotations

import operator
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nsprim  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import _harness as h  # after the path set-up above

from nsprim.call import SandboxExecutor
from nsprim.container import Container

#: Calls per throughput iteration: enough that the two workers are kept busy but for the batch's last call.
BATCH = 10
TARGET_TIME_PER_CALL = 0.5  # at least 2x the calls per second of the subprocess loop
TARGET_LATENCY = 3.0
#: The pause before each latency iteration, untimed: the call finds the executor idle (the previous
#: call's container removed, the next one's started ahead), as it finds the process pool.
PACE_S = 0.02

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = h.parse_args("SandboxExecutor benchmark", argv)
    cfg = h.Config.from_args(args)
    if args.wait_quiet:
        h.wait_for_quiet(args.wait_quiet)
    template = Container().host_root().memory("64M").pids(64)
    plain = [sys.executable, "-c", "pass"]
    ones, twos = [1] * BATCH, [2] * BATCH

    with SandboxExecutor(template, max_workers=2) as pool, ProcessPoolExecutor(2) as processes:

        def executor_batch(count: int) -> list[float]:
            out = []
            for _ in range(count):
                t0 = time.perf_counter_ns()
                assert list(pool.map(operator.add, ones, twos)) == [3] * BATCH
                out.append((time.perf_counter_ns() - t0) / 1000.0 / BATCH)
            return out

        def subprocess_run() -> None:
            subprocess.run(plain, check=True)

        def executor_submit() -> None:
            assert pool.submit(operator.add, 1, 2).result() == 3

        def process_pool_submit() -> None:
            assert processes.submit(operator.add, 1, 2).result() == 3

        cases = [
            h.Case("executor(2) batch", executor_batch, note=f"per call, batches of {BATCH}"),
            h.Case("subprocess loop", h.timed(subprocess_run), note="per call"),
            h.Case("executor(2) submit", h.timed(executor_submit, PACE_S), note="one call, idle executor"),
            h.Case("process pool submit", h.timed(process_pool_submit, PACE_S), note="ProcessPoolExecutor(2)"),
        ]
        with h.LoadMonitor() as load:
            results = h.run_interleaved(cases, cfg)
    h.print_table(results, "a trivial call: through SandboxExecutor(2), a bare interpreter, a process pool")
    print(load.describe())
    batch, loop = results["executor(2) batch"], results["subprocess loop"]
    submit, pooled = results["executor(2) submit"], results["process pool submit"]
    ratios = [
        h.Ratio("executor(2) / subprocess loop, time per call", batch, loop, target=TARGET_TIME_PER_CALL),
        h.Ratio("executor(2) / subprocess run, latency", submit, loop, target=TARGET_LATENCY),
        h.Ratio("executor(2) / process pool, latency", submit, pooled, target=TARGET_LATENCY),
    ]
    h.print_ratios(ratios)
    print(
        f"calls per second: executor(2) {1e6 / batch.median:.1f}, subprocess loop {1e6 / loop.median:.1f} "
        f"({loop.median / batch.median:.2f}x; target >= 2x)"
    )
    if args.json:
        h.write_json(args.json, h.as_json(results, ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
