"""Container.call: real containers, the answer untrusted, every way a call can end, nothing left behind."""

from __future__ import annotations

import math
import os
import signal
import sys
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings

from nsprim.call.errors import (
    CallDiedError,
    CallTimeoutError,
    PythonNotFoundError,
    PythonVersionError,
    RemoteError,
    UnsafeResultError,
)
from nsprim.container import Container
from nsprim.errors import ConfigError

from ..conftest import requires_root
from . import payloads
from .test_wire import same, values

pytestmark = requires_root

BOX = Container().host_root().memory("256M").pids(64)


def test_a_value_comes_back_and_arguments_go_in() -> None:
    assert BOX.call(payloads.add, 2, b=40) == 42
    value = {"t": (1, 2.5, None), "s": {b"x", frozenset({1})}, 3: [complex(1, -1), math.inf, True, "é"]}
    assert BOX.call(payloads.identity, value) == value


def test_it_ran_in_a_container_of_its_own() -> None:
    me = BOX.call(payloads.whoami)
    assert me["pid"] == 1 and me["uid"] == 0


def test_output_is_passed_through_or_captured(capfd: pytest.CaptureFixture[str]) -> None:
    assert BOX.call(payloads.shout, "hi") == "hi!"
    seen = capfd.readouterr()
    assert seen.out == "HI\n" and seen.err == "to stderr\n"
    r = BOX.call_result(payloads.shout, ("hi",), capture_output=True)
    assert (r.value, r.stdout, r.stderr, r.returncode) == ("hi!", b"HI\n", b"to stderr\n", 0)
    assert r.stats is not None and r.stats.memory.limit == 256 * 2**20
    assert capfd.readouterr().out == ""


def test_an_exception_comes_back_with_its_remote_traceback() -> None:
    with pytest.raises(RemoteError) as e:
        BOX.call(payloads.fail, "bad")
    assert e.value.remote_type == "tests.call.payloads.Oops"
    assert e.value.remote_args == ("bad", 3)
    assert "payloads.py" in e.value.remote_traceback and "in fail" in e.value.remote_traceback
    assert "Remote traceback" in str(e.value)
    with pytest.raises(RemoteError) as e:
        BOX.call(payloads.leave, 3)
    assert e.value.remote_type == "SystemExit" and e.value.remote_args == (3,)


def test_a_result_of_another_type_is_refused_unless_trusted() -> None:
    with pytest.raises(UnsafeResultError) as e:
        BOX.call(payloads.a_path)
    assert e.value.type_name == "pathlib.PurePosixPath" and "trusted=True" in str(e.value)
    assert BOX.call_result(payloads.a_path, trusted=True).value == PurePosixPath("/etc/hostname")


@pytest.mark.parametrize("fn", [payloads.answer_pickle, payloads.answer_claimed_pickle])
def test_a_malicious_pickle_runs_nothing_here(fn: object, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    with pytest.raises(UnsafeResultError):
        BOX.call(fn, str(marker))  # type: ignore[arg-type]
    assert not marker.exists()


def test_a_deep_or_oversized_answer_is_refused() -> None:
    with pytest.raises(UnsafeResultError, match="deeper"):
        BOX.call(payloads.answer_deep)
    with pytest.raises(UnsafeResultError, match="the answer of more than"):
        BOX.call(payloads.answer_huge)
    with pytest.raises(UnsafeResultError, match="stdout of more than"):
        BOX.call_result(payloads.spew, capture_output=True)


def test_ending_without_an_answer_is_call_died() -> None:
    with pytest.raises(CallDiedError) as e:
        BOX.call(payloads.die, 7)
    assert (e.value.returncode, e.value.signal, e.value.oom_killed) == (7, None, False)


def test_a_timeout_kills_the_container() -> None:
    with pytest.raises(CallTimeoutError) as e:
        BOX.call_result(payloads.sleep, (60,), timeout=0.5)
    assert isinstance(e.value, CallDiedError) and isinstance(e.value, TimeoutError)
    assert e.value.timeout == 0.5 and e.value.signal == signal.SIGKILL


def test_a_timeout_holds_after_the_payload_hangs_up() -> None:
    with pytest.raises(CallTimeoutError):
        BOX.call_result(payloads.hang_up, timeout=0.5)


def test_the_memory_limit_ends_a_hog_as_oom() -> None:
    with pytest.raises(CallDiedError) as e:
        Container().host_root().memory("48M").call(payloads.hog, 200)
    assert e.value.oom_killed and e.value.signal == signal.SIGKILL
    assert "OOM" in str(e.value)
    assert e.value.stats is not None and e.value.stats.memory.limit == 48 * 2**20


def test_a_fork_bomb_stops_at_the_pids_limit_and_the_caller_is_untouched() -> None:
    children, error = Container().host_root().pids(20).call(payloads.fork_bomb)
    assert error == "EAGAIN" and 0 < children < 20  # type: ignore[operator]
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0


def test_a_closure_goes_by_value_with_cloudpickle_and_is_refused_without(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cloudpickle")
    offset = 40

    def add_offset(x: int) -> int:
        return x + offset

    assert BOX.call(add_offset, 2) == 42
    assert BOX.call(lambda: payloads.add(1, 2)) == 3
    monkeypatch.setitem(sys.modules, "cloudpickle", None)  # as if not installed
    with pytest.raises(ConfigError, match="cloudpickle") as e:
        BOX.call(add_offset, 2)
    assert e.value.what == "fn" and "add_offset" in str(e.value)


def test_the_payload_checks_the_version_again_before_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    from nsprim.container import calling

    monkeypatch.setattr(calling, "HOST_VERSION", "3.2")  # as if the caller were another Python
    with pytest.raises(PythonVersionError) as e:
        BOX.call(payloads.add, 1, 2)
    assert (e.value.root_version, e.value.host_version) == (f"{sys.version_info[0]}.{sys.version_info[1]}", "3.2")


def fake_root(tmp_path: Path, version: str | None) -> Path:
    bin_dir = tmp_path / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    if version is not None:
        real = bin_dir / f"python{version}"
        real.write_text("#!/bin/false\n")
        real.chmod(0o755)
        (bin_dir / "python3").symlink_to(real.name)
    return tmp_path


def test_a_root_with_another_python_is_refused_naming_both_versions(tmp_path: Path) -> None:
    with pytest.raises(PythonVersionError) as e:
        Container().rootfs(fake_root(tmp_path, "3.2")).call(math.factorial, 5)
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (e.value.root_version, e.value.host_version) == ("3.2", host)
    assert "3.2" in str(e.value) and host in str(e.value) and "/usr/bin/python3" in str(e.value)


def test_a_root_without_python_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PythonNotFoundError, match="no python3"):
        Container().rootfs(fake_root(tmp_path, None)).call(math.factorial, 5)


def test_a_root_of_its_own_runs_its_own_python() -> None:
    if os.path.realpath("/usr/bin/python3").rpartition("python")[2] != f"{sys.version_info[0]}.{sys.version_info[1]}":
        pytest.skip("the host's /usr/bin/python3 is another version than this one")
    assert Container().rootfs("/").pids(16).call(math.factorial, 20) == math.factorial(20)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        BOX.call_result(payloads.add, (1, 2), timeout=0)
    with pytest.raises(ConfigError, match="tty"):
        BOX.tty().call(payloads.add, 1, 2)


def test_the_decorator_runs_each_call_in_its_own_container() -> None:
    from nsprim.call import SandboxedFunction

    from . import decorated

    assert isinstance(decorated.double, SandboxedFunction)
    assert decorated.double(21) == 42
    assert decorated.double.__name__ == "double" and decorated.double.__doc__ == "Twice *x*."
    limits = decorated.double.container.config.resources
    assert limits is not None and limits.memory is not None and limits.memory.max == 64 * 2**20
    r = decorated.where.call_result()
    assert (r.value, r.stdout) == (1, b"inside\n")
    with pytest.raises(CallTimeoutError):
        decorated.slow()


def test_start_places_passed_descriptors_inside_and_refuses_bad_ones() -> None:
    r, w = os.pipe()
    try:
        with Container(["sh", "-c", "echo hi >&5"]).host_root().start(pass_fds={5: w}) as box:
            os.close(w)
            w = -1
            assert box.wait() == 0
        assert os.read(r, 100) == b"hi\n"
        for bad in ({2: r}, {4: -1}, {4: 999}):
            with pytest.raises(ConfigError, match="pass_fds"):
                Container(["true"]).host_root().start(pass_fds=bad)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_only_the_first_process_answers_though_its_children_return_too() -> None:
    assert BOX.call(payloads.fork_and_return) == "parent"


def test_with_an_init_and_as_another_user() -> None:
    assert Container().host_root().init().call(payloads.add, 1, 2) == 3
    assert Container().rootfs("/").user(65534).pids(16).call(os.getuid) == 65534


class Interrupted(Exception):
    pass


def test_an_interrupted_call_leaves_nothing_behind() -> None:
    """An exception in the caller while it waits (as Ctrl-C would raise) kills and removes the container."""

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(Interrupted):
            BOX.call(payloads.sleep, 60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_values_round_trip_through_a_real_sandbox(value: object) -> None:
    assert same(BOX.call(payloads.identity, value), value)


def test_an_image_root_with_another_python_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PythonVersionError, match=r"Python 3\.2,"):
        Container().image([fake_root(tmp_path, "3.2")]).call(math.factorial, 5)
