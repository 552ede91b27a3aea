"""How long the async API keeps an asyncio loop from running anything else, against asyncio's own subprocess.

One iteration is one start (or exec), with a ticker task on the same loop that
records the gap between its turns (``await asyncio.sleep(0)`` in a loop); the
sample is the largest gap while the start was under way, in µs.  Cases:

* ``start_async`` — ``await Container(["/bin/true"]).image([root]).memory("64M").start_async()``: the
  host side and the clone on nsprim's shared worker threads, the loop awaiting them as a reader
* ``start on the loop`` — the same start's steps run on the loop's thread (what-if: the workers left out,
  ``nsprim.lowlevel.start_steps`` driven inline, as before they existed)
* ``exec_async`` — ``await box.exec_async(["/bin/true"])`` in a running container
* ``asyncio subprocess`` — ``await asyncio.create_subprocess_exec("/bin/true")`` and its wait: the
  reference, a plain process (no namespace, no cgroup) started by asyncio itself

Printed ratios of medians: ``start_async / start on the loop`` (target <= 0.5: the workers take at least
half of what a start blocked the loop for), ``start_async / asyncio subprocess`` and ``exec_async / asyncio
subprocess`` (information: what remains is mostly the interpreter lock, which the worker holds while it
runs Python, between its system calls).

Run as root: ``python benchmarks/bench_async.py [--quick] [--json out.json]``.  Exit status 0 (a
measurement) unless ``--strict`` and a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h
from bench_container import build_root

from nsprim.cgroup import ROOT, CGroup
from nsprim.container import Container, RunningContainer
from nsprim.container.start import container_start_steps
from nsprim.lowlevel import Waits

__all__ = ["main"]


async def _largest_gap(start: Callable[[], Awaitable[object]]) -> tuple[float, object]:
    """Await *start* with a ticker on the loop; the largest gap between the ticker's turns, in µs."""
    gaps: list[float] = []
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    gaps.clear()
    try:
        got = await start()
        await asyncio.sleep(0)  # the ticker's turn after the start: the gap that covers its end
        await asyncio.sleep(0)
    finally:
        done = True
        await tick
    return max(gaps) * 1e6, got


async def _on_the_loop(steps: Waits[RunningContainer]) -> RunningContainer:
    """A start's steps driven on the loop's thread, each wait a reader (the what-if case)."""
    from nsprim._readiness import readable_async

    try:
        fd = next(steps)
        while True:
            try:
                await readable_async(fd)
            except BaseException as exc:
                steps.throw(exc)
                raise
            fd = steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def start_runner(box: Container, inline: bool) -> h.BatchRunner:
    async def batch(count: int) -> list[float]:
        out = []
        for _ in range(count):
            if inline:
                gap, got = await _largest_gap(lambda: _on_the_loop(container_start_steps(box.config)))
            else:
                gap, got = await _largest_gap(box.start_async)
            assert isinstance(got, RunningContainer)
            async with got:
                await got.wait_async()
            out.append(gap)
        return out

    return lambda count: asyncio.run(batch(count))


def exec_runner(box: Container) -> h.BatchRunner:
    async def batch(count: int) -> list[float]:
        out = []
        async with await box.start_async() as c:
            for _ in range(count):
                gap, _ = await _largest_gap(lambda: c.exec_async(["/bin/true"]))
                out.append(gap)
        return out

    return lambda count: asyncio.run(batch(count))


def subprocess_runner() -> h.BatchRunner:
    async def one() -> int:
        proc = await asyncio.create_subprocess_exec("/bin/true")
        return await proc.wait()

    async def batch(count: int) -> list[float]:
        return [(await _largest_gap(one))[0] for _ in range(count)]

    return lambda count: asyncio.run(batch(count))


def _extend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = h.parse_args("nsprim async loop-gap benchmark", argv, _extend)
    cfg = h.Config.from_args(args)
    if os.geteuid() != 0:
        print("skipped: the async benchmark needs root (cgroups)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="nsprim-bench-async-"))
    parent = None
    try:
        root = build_root(tmp)
        parent = CGroup.create(f"nsprim-test-bench-{secrets.token_hex(4)}", parent=ROOT)
        box = Container(["/bin/true"]).image([root]).memory("64M").cgroup_parent(parent.path)
        cases = [
            h.Case("start_async", start_runner(box, inline=False), "the host side and the clone on shared workers"),
            h.Case("start on the loop", start_runner(box, inline=True), "what-if: the same steps on the loop's thread"),
            h.Case("exec_async", exec_runner(box.command("/bin/sh", "-c", "sleep 3600")), "in a running container"),
            h.Case("asyncio subprocess", subprocess_runner(), "asyncio.create_subprocess_exec('/bin/true') + wait"),
        ]
        with h.LoadMonitor() as load:
            results = h.run_interleaved(cases, cfg)
        h.print_table(results, "the loop's largest gap per start (µs)")
        print(load.describe())
        ratios = [
            h.Ratio("start_async / start on the loop", results["start_async"], results["start on the loop"], 0.5),
            h.Ratio("start_async / asyncio subprocess", results["start_async"], results["asyncio subprocess"]),
            h.Ratio("exec_async / asyncio subprocess", results["exec_async"], results["asyncio subprocess"]),
        ]
        h.print_ratios(ratios)
        if args.json:
            h.write_json(args.json, h.as_json(results, ratios))
        return 1 if args.strict and any(r.passed is False for r in ratios) else 0
    finally:
        if parent is not None:
            parent.delete()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
