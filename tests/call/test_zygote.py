"""The warm path of SandboxExecutor: calls forked from a zygote, each a fresh container."""

from __future__ import annotations

import os
import threading
import time

import pytest

from nsprim.call import SandboxExecutor
from nsprim.call.zygote import Zygote, refusal
from nsprim.container import Container
from nsprim.container.calling import call_in
from nsprim.errors import StepError

from ..conftest import requires_root
from . import payloads, zygote_payloads

pytestmark = requires_root

BOX = Container().host_root().memory("64M").pids(32).env(CALL_ENV="yes").hostname("sandbox")


def test_the_executor_takes_the_warm_path_for_a_host_root_template() -> None:
    assert refusal(BOX.config) is None
    with SandboxExecutor(BOX, max_workers=1) as pool:
        assert pool.submit(payloads.add, 1, 2).result() == 3
        zygote = pool._workers.zygote
        assert zygote is not None
        pid = zygote.pid
        assert os.path.exists(f"/proc/{pid}")
    assert not os.path.exists(f"/proc/{pid}")  # ended and reaped


def test_each_call_is_a_fresh_container_and_sees_nothing_of_the_caller_or_another_call() -> None:
    zygote_payloads.SECRET = "the caller's"
    try:
        with SandboxExecutor(BOX, max_workers=2) as pool:
            seen = [pool.submit(zygote_payloads.identity_of_the_call).result() for _ in range(6)]
            zygote_pid = pool._workers.zygote.pid  # type: ignore[union-attr]
    finally:
        zygote_payloads.SECRET = None
    mine = {t: os.readlink(f"/proc/self/ns/{t}") for t in ("mnt", "uts", "ipc", "net", "pid", "cgroup")}
    zygote = {t: os.readlink(f"/proc/{os.getpid()}/ns/{t}") for t in mine}  # the zygote's are the caller's
    for call in seen:
        assert call["pid"] == 1 and call["procs"] == [1]  # pid 1 of its own pid namespace, alone in its /proc
        assert call["hostname"] == "sandbox"  # the template's, in a UTS namespace of its own
        assert call["wrote"] is False  # no earlier call's file: a root of its own
        assert call["secret"] is None  # the zygote's memory, not the caller's
        assert call["fds"] == [0, 1, 2, 3] or call["fds"] == [0, 1, 2, 3, 4]  # (4: the listing's own)
        env = call["env"]
        assert isinstance(env, dict) and env.get("CALL_ENV") == "yes" and "PYTHONPATH" not in env
        assert all(line.endswith(":/") for line in str(call["cgroup"]).splitlines())  # its cgroup is its root
        for t, ns in call["ns"].items():  # type: ignore[attr-defined]
            assert ns != mine[t] and ns != zygote[t], t
    assert zygote_pid > 0


def test_two_calls_at_once_have_namespaces_of_their_own() -> None:
    # (Namespace numbers are inodes, reused once a namespace is gone: compared while both live.)
    with SandboxExecutor(BOX, max_workers=2) as pool:
        both = [pool.submit(zygote_payloads.namespaces_after, 0.5) for _ in range(2)]
        first, second = (f.result() for f in both)
    assert all(first[t] != second[t] for t in first), (first, second)


def test_a_port_left_listening_by_one_call_is_not_in_the_next_ones_network() -> None:
    with SandboxExecutor(BOX, max_workers=1) as pool:
        assert pool.submit(zygote_payloads.listen_on, 8765).result() is True
        assert pool.submit(zygote_payloads.listen_on, 8765).result() is True


def test_a_zygote_that_died_is_replaced_and_the_call_it_had_forked_gets_its_end() -> None:
    import signal

    from nsprim.call import CallDiedError

    with SandboxExecutor(BOX, max_workers=1) as pool:
        assert pool.submit(payloads.add, 1, 2).result() == 3
        zygote = pool._workers.zygote
        assert zygote is not None
        running = pool.submit(payloads.sleep, 30)
        deadline = time.monotonic() + 30
        while not running.running():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)  # its request sent
        os.kill(zygote.pid, signal.SIGKILL)  # its child, the running call, goes on alone: killed with its group
        running.cancel()
        assert isinstance(running.exception(timeout=30), CallDiedError)
        assert pool.submit(payloads.add, 2, 2).result() == 4
        assert pool._workers.zygote is not zygote


def test_a_failing_setup_step_is_the_futures_step_error_naming_it() -> None:
    bad = BOX.cwd("/nonexistent-directory")
    with SandboxExecutor(bad, max_workers=1) as pool:
        error = pool.submit(payloads.add, 1, 2).exception()
    assert isinstance(error, StepError)
    assert "/nonexistent-directory" in str(error) and "No such file or directory" in str(error)


def test_a_zygote_serves_calls_from_several_threads_and_ends_its_children_when_closed() -> None:
    results: list[object] = []
    with Zygote() as zygote:

        def some_calls() -> None:
            for _ in range(5):
                results.append(call_in(BOX.config, payloads.add, (2, 3), spawner=zygote.spawn_steps).value)

        threads = [threading.Thread(target=some_calls) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [5] * 15


@pytest.mark.parametrize(
    ("template", "why"),
    [
        (Container().rootfs("/usr"), "its root is not the host's"),
        (Container().host_root().user_namespace(), "it has a user namespace"),
        (Container().host_root().init(), "it has an init"),
    ],
)
def test_templates_a_zygote_cannot_fork_go_the_cold_way(template: Container, why: str) -> None:
    reason = refusal(template.config)
    assert reason is not None and reason.startswith(why)
