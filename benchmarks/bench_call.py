"""Call benchmark: ``Container.call`` of a trivial function against the same container running ``python -c pass``.

One iteration is one whole call, from a warm Python process, until its
container is reaped and cleaned up:

* ``call`` — ``Container().host_root().memory("64M").pids(64).call(operator.add, 1, 2)``: a container, this
  interpreter started in it (``-I -c`` with the payload program), the request on fd 3, the answer read back
* ``container python`` — ``Container([sys.executable, "-I", "-c", "pass"])`` with the same root and limits,
  ``.run()``: the same container and interpreter start-up, without the call's request and answer
* ``subprocess python`` — ``subprocess.run([sys.executable, "-I", "-c", "pass"])``: a fresh interpreter, no
  isolation at all

Printed ratios of medians: **call / container python (target <= 1.3)**: what the call protocol adds to the
container and interpreter it needs anyway; call / subprocess python (information: what isolation costs).

Run as root: ``python benchmarks/bench_call.py [--quick] [--json out.json] [--wait-quiet S]``.
Exit status is 0 even on a MISS (it is a measurement, not a test).
"""

from __future__ import annotations

import operator
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nsprim  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import _harness as h  # after the path set-up above

from nsprim.container import Container

TARGET_VS_CONTAINER = 1.3

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = h.parse_args("Container.call benchmark", argv)
    cfg = h.Config.from_args(args)
    if args.wait_quiet:
        h.wait_for_quiet(args.wait_quiet)
    box = Container().host_root().memory("64M").pids(64)
    python = box.command(sys.executable, "-I", "-c", "pass")
    plain = [sys.executable, "-I", "-c", "pass"]

    def call() -> None:
        assert box.call(operator.add, 1, 2) == 3

    def container_python() -> None:
        assert python.run().returncode == 0

    def subprocess_python() -> None:
        subprocess.run(plain, check=True)

    cases = [
        h.Case("call", h.timed(call)),
        h.Case("container python", h.timed(container_python)),
        h.Case("subprocess python", h.timed(subprocess_python)),
    ]
    with h.LoadMonitor() as load:
        results = h.run_interleaved(cases, cfg)
    h.print_table(results, "a trivial call, its container alone, a bare interpreter")
    print(load.describe())
    ratios = [
        h.Ratio("call / container python", results["call"], results["container python"], target=TARGET_VS_CONTAINER),
        h.Ratio("call / subprocess python", results["call"], results["subprocess python"]),
    ]
    h.print_ratios(ratios)
    if args.json:
        h.write_json(args.json, h.as_json(results, ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
