"""SandboxExecutor: a concurrent.futures.Executor whose every call runs in a fresh, real container."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path, PurePosixPath

import pytest

import nsprim
from nsprim.call import SandboxExecutor
from nsprim.call.errors import (
    CallCancelledError,
    CallDiedError,
    CallTimeoutError,
    RemoteError,
    UnsafeResultError,
)
from nsprim.container import Container
from nsprim.errors import ConfigError

from ..conftest import requires_root
from . import marks, payloads

pytestmark = requires_root

BOX = Container().host_root().memory("128M").pids(32)


def _until(condition: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_map_gives_the_results_in_order() -> None:
    with SandboxExecutor(BOX, max_workers=2) as pool:
        assert list(pool.map(payloads.add, range(6), [10, 20, 30, 40, 50, 60])) == [10, 21, 32, 43, 54, 65]
        assert pool.submit(payloads.add, 1, b=2).result() == 3


def test_exceptions_come_back_as_the_call_gives_them(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    with SandboxExecutor(BOX, max_workers=2) as pool:
        failed = pool.submit(payloads.fail, "bad")
        refused = pool.submit(payloads.a_path)
        malicious = pool.submit(payloads.answer_pickle, str(marker))
        died = pool.submit(payloads.die, 7)
        error = failed.exception()
        assert isinstance(error, RemoteError)
        assert error.remote_type == "tests.call.payloads.Oops" and error.remote_args == ("bad", 3)
        assert "in fail" in error.remote_traceback
        refusal = refused.exception()
        assert isinstance(refusal, UnsafeResultError) and refusal.type_name == "pathlib.PurePosixPath"
        assert isinstance(malicious.exception(), UnsafeResultError)
        death = died.exception()
        assert isinstance(death, CallDiedError) and death.returncode == 7
        with pytest.raises(RemoteError):
            list(pool.map(payloads.fail, ["x"]))
    assert not marker.exists()
    with SandboxExecutor(BOX, max_workers=1, trusted=True) as pool:
        assert pool.submit(payloads.a_path).result() == PurePosixPath("/etc/hostname")


def test_submit_result_has_the_output_and_stats_and_the_timeout_holds() -> None:
    with SandboxExecutor(BOX, max_workers=2, capture_output=True, timeout=3) as pool:
        whole = pool.submit_result(payloads.shout, "hi").result()
        slow = pool.submit(payloads.sleep, 60)
        assert (whole.value, whole.stdout, whole.stderr, whole.returncode) == ("hi!", b"HI\n", b"to stderr\n", 0)
        assert whole.stats is not None and whole.stats.memory.limit == 128 * 2**20
        assert isinstance(slow.exception(), CallTimeoutError)


def test_run_in_executor_from_asyncio() -> None:
    async def main(pool: SandboxExecutor) -> list[object]:
        loop = asyncio.get_running_loop()
        calls = [loop.run_in_executor(pool, payloads.add, n, 1) for n in range(4)]
        failing = loop.run_in_executor(pool, payloads.fail, "async")
        results: list[object] = list(await asyncio.gather(*calls))
        with pytest.raises(RemoteError):
            await failing
        return results

    with SandboxExecutor(BOX, max_workers=2) as pool:
        assert asyncio.run(main(pool)) == [1, 2, 3, 4]


def test_shutdown_with_cancel_kills_the_running_calls_and_cancels_the_rest() -> None:
    pool = SandboxExecutor(BOX, max_workers=2)
    running = [pool.submit(payloads.sleep, 60) for _ in range(2)]
    pending = [pool.submit(payloads.sleep, 60) for _ in range(3)]
    _until(lambda: all(f.running() for f in running))
    time.sleep(0.3)  # inside their containers by now, or about to be: both are killed
    started = time.monotonic()
    pool.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - started < 30
    assert all(f.cancelled() for f in pending)
    for f in running:
        error = f.exception(timeout=0)
        assert isinstance(error, CallCancelledError) and error.signal == 9, error
    with pytest.raises(RuntimeError):
        pool.submit(payloads.add, 1, 2)
    pool.shutdown()  # again: nothing to do


def test_cancelling_a_running_future_kills_its_call_and_only_it() -> None:
    with SandboxExecutor(BOX, max_workers=2) as pool:
        doomed = pool.submit(payloads.sleep, 60)
        other = pool.submit(payloads.sleep, 1)
        _until(doomed.running)
        time.sleep(0.3)
        assert doomed.cancel() is False  # it had started: killed, not cancelled
        error = doomed.exception(timeout=30)
        assert isinstance(error, CallCancelledError) and "cancelled" in str(error)
        assert other.result(timeout=30) is None
        assert pool.submit(payloads.add, 1, 1).result() == 2


def test_a_cancelled_asyncio_wait_kills_the_call() -> None:
    async def main(pool: SandboxExecutor) -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.run_in_executor(pool, payloads.sleep, 60), 1.0)

    pool = SandboxExecutor(BOX, max_workers=1)
    asyncio.run(main(pool))
    started = time.monotonic()
    pool.shutdown(wait=True)  # the 60 s call was killed: nothing to wait for
    assert time.monotonic() - started < 30


def test_shutdown_without_wait_then_with_cancel() -> None:
    pool = SandboxExecutor(BOX, max_workers=1)
    running = pool.submit(payloads.sleep, 60)
    queued = pool.submit(payloads.sleep, 60)
    _until(running.running)
    pool.shutdown(wait=False)
    pool.shutdown(wait=True, cancel_futures=True)
    assert queued.cancelled() and isinstance(running.exception(timeout=0), CallCancelledError)


def test_shutdown_without_wait_lets_the_calls_end() -> None:
    pool = SandboxExecutor(BOX, max_workers=1)
    futures = [pool.submit(payloads.add, n, n) for n in range(3)]
    pool.shutdown(wait=False)
    assert [f.result(timeout=60) for f in futures] == [0, 2, 4]
    _until(lambda: not any(t.name.startswith("SandboxExecutor-") for t in threading.enumerate()))


def test_an_executor_dropped_without_shutdown_finishes_its_calls_and_its_threads_end() -> None:
    pool = SandboxExecutor(BOX, max_workers=1)
    future = pool.submit(payloads.add, 20, 22)
    del pool
    gc.collect()
    assert future.result(timeout=60) == 42
    _until(lambda: not any(t.name.startswith("SandboxExecutor-") for t in threading.enumerate()))


def test_the_interpreter_waits_at_exit_for_an_executor_not_shut_down(tmp_path: Path) -> None:
    script = tmp_path / "left_running.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parents[2])!r})\n"
        "from nsprim.call import SandboxExecutor\n"
        "from nsprim.container import Container\n"
        "from tests.call import payloads\n"
        "pool = SandboxExecutor(Container().host_root().pids(16), max_workers=1)\n"
        "pool.submit(payloads.sleep, 0.5).add_done_callback(lambda f: print('ended', f.exception(), flush=True))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ended None\n", "")


def test_a_fork_bomb_or_a_memory_hog_in_one_call_cannot_touch_the_next() -> None:
    template = Container().host_root().memory("48M").pids(20)
    with SandboxExecutor(template, max_workers=1) as pool:
        children, error = pool.submit(payloads.fork_bomb).result()
        assert error == "EAGAIN" and 0 < children < 20  # type: ignore[operator]
        after_bomb = pool.submit(payloads.fork_bomb).result()  # the next call has its own pids budget
        assert after_bomb == [children, "EAGAIN"] or after_bomb[1] == "EAGAIN"
        assert pool.submit(payloads.whoami).result()["pid"] == 1
        oom = pool.submit(payloads.hog, 200).exception()
        assert isinstance(oom, CallDiedError) and oom.oom_killed
        assert pool.submit(payloads.hog, 8).result() == 8  # a fresh cgroup: the last one's usage is gone


def test_max_workers_calls_run_at_once() -> None:
    with SandboxExecutor(BOX, max_workers=2) as pool:
        started = time.monotonic()
        both = [pool.submit(payloads.sleep, 1.0) for _ in range(2)]
        _until(lambda: all(f.running() for f in both) or all(f.done() for f in both))
        concurrent.futures.wait(both)
        wall = time.monotonic() - started
        assert all(f.exception() is None for f in both)
        assert wall < 1.9, f"two 1 s calls on two workers took {wall:.2f} s"
        workers = [t for t in threading.enumerate() if t.name.startswith("SandboxExecutor-")]
        assert len(workers) == 2


@pytest.mark.slow
def test_a_thousand_calls_each_in_a_container_of_its_own_leave_nothing_behind() -> None:
    fds = len(os.listdir("/proc/self/fd"))
    host_uts = os.readlink("/proc/self/ns/uts")
    with SandboxExecutor(BOX, max_workers=2) as pool:
        futures = [pool.submit(marks.leave_a_mark) for _ in range(1000)]
        answers = [f.result() for f in futures]
        workers = [t for t in threading.enumerate() if t.name.startswith("SandboxExecutor-")]
        assert len(workers) <= 2  # a thread per worker, not per call
    # each its own pid namespace, UTS namespace, root (no earlier call's mark) and cgroup (no other processes)
    assert all(a.pop("uts") != host_uts for a in answers)
    assert answers == [{"seen": False, "pid": 1, "members": 1}] * 1000
    assert not os.path.exists(marks.MARK)
    assert len(os.listdir("/proc/self/fd")) == fds  # the cancel pipe closed with the last worker


def test_it_is_nsprim_sandbox_executor_and_a_real_executor() -> None:
    assert nsprim.SandboxExecutor is SandboxExecutor
    assert "SandboxExecutor" in nsprim.__all__
    with SandboxExecutor(BOX, max_workers=1) as pool:
        assert isinstance(pool, concurrent.futures.Executor)


def test_bad_options_are_refused_up_front() -> None:
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ConfigError) as e:
            SandboxExecutor(BOX, max_workers=bad)  # type: ignore[arg-type]
        assert e.value.what == "max_workers"
    with pytest.raises(ConfigError) as e:
        SandboxExecutor(object())  # type: ignore[arg-type]
    assert e.value.what == "template"
    with pytest.raises(ConfigError) as e:
        SandboxExecutor(BOX.tty())
    assert e.value.what == "template"
    with pytest.raises(ConfigError) as e:
        SandboxExecutor(BOX, timeout=0)
    assert e.value.what == "timeout"
