"""Containers and the caller's terminal: a session of their own, ``tty()``, ``nsprim run -t``,
and the signals ``nsprim run`` forwards."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

import nsprim
from nsprim.container import Container
from nsprim.errors import ConfigError, TimeoutExpired

from ..conftest import requires_root

pytestmark = requires_root

SRC = str(Path(nsprim.__file__).resolve().parent.parent)
ENV = {**os.environ, "PYTHONPATH": SRC}

# Runs the rest of its argv as a session leader whose controlling terminal is its stdin:
# the situation of someone starting nsprim from their terminal.
ON_TERMINAL = (
    "import os, sys, fcntl, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    """A pseudo-terminal pair (master, slave) for the test to act as the user's terminal."""
    master, slave = os.openpty()
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def read_until(fd: int, token: bytes, seconds: float = 60.0) -> bytes:
    """Read *fd* until *token* shows (the deadline only keeps a broken run from hanging)."""
    buf = b""
    deadline = time.monotonic() + seconds
    while token not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


# ---- a session of its own ------------------------------------------------------------------


def test_default_payload_has_a_session_of_its_own_and_no_terminal() -> None:
    with Container(["sleep", "30"]).host_root().start() as box:
        fields = Path(f"/proc/{box.pid}/stat").read_text().rsplit(")", 1)[1].split()
        session, tty_nr = int(fields[3]), int(fields[4])
        assert session == box.pid != os.getsid(0)
        assert tty_nr == 0


def test_tiocsti_cannot_reach_the_callers_terminal(terminal: tuple[int, int]) -> None:
    """The caller's terminal is the payload's stdin; pushing keystrokes into it must fail."""
    _, slave = terminal
    tty.setraw(slave)  # anything injected would be readable at once
    payload = (
        "import fcntl, termios\n"
        "try:\n"
        "    for c in b'echo pwned\\n': fcntl.ioctl(0, termios.TIOCSTI, bytes([c]))\n"
        "    print('injected')\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", ON_TERMINAL, "-m", "nsprim", "run", "--", sys.executable, "-c", payload],
        stdin=slave, capture_output=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == b"refused", r.stdout
    assert select.select([slave], [], [], 0)[0] == []  # nothing reached the terminal's input


# ---- tty() ----------------------------------------------------------------------------------


def test_tty_is_the_payloads_own_controlling_terminal() -> None:
    script = "tty; stty size; ps -o tty= -p $$; stat -c %u:%g $(tty); ls /proc/self/fd"
    box = Container(["sh", "-c", script]).host_root().tty(size=(33, 111)).user(1000, 1000)
    r = box.run(capture_output=True)
    assert r.returncode == 0, r.stdout
    lines = r.stdout.decode().split("\r\n")
    assert lines[:4] == ["/dev/pts/0", "33 111", "pts/0", "1000:1000"]  # its own devpts
    assert lines[4].split() == ["0", "1", "2", "3"]  # 3: ls's own directory


def test_tty_input_is_typed_into_the_terminal() -> None:
    r = Container(["sh"]).host_root().tty().run(input=b"echo $((6*7))\nexit 3\n", capture_output=True)
    assert r.returncode == 3
    assert b"42\r\n" in r.stdout


def test_tty_start_resize_and_talk_through_the_master() -> None:
    with Container(["sh"]).host_root().tty(size=(24, 80)).start() as box:
        assert box.terminal is not None
        box.resize(40, 120)
        box.terminal.write(b"stty size; exit 5\n")
        assert b"40 120" in read_until(box.terminal.fileno(), b"40 120")
        assert box.wait() == 5


def test_tty_refuses_other_streams_and_bad_sizes() -> None:
    with pytest.raises(ConfigError) as exc:
        Container(["true"]).host_root().tty().run(capture_output=False, stdout=subprocess.DEVNULL)
    assert exc.value.what == "tty"
    with pytest.raises(ConfigError, match="expected \\(rows, columns\\)"):
        Container(["true"]).tty(size=(0, 80))


def test_cli_tty_is_an_interactive_shell(terminal: tuple[int, int]) -> None:
    master, slave = terminal
    set_size(slave, 33, 111)
    modes = termios.tcgetattr(slave)
    p = subprocess.Popen(
        [sys.executable, "-c", ON_TERMINAL, "-m", "nsprim", "run", "-t", "--", "sh"],
        stdin=slave, stdout=slave, stderr=slave, env=ENV,
    )  # fmt: skip
    try:
        assert b"# " in read_until(master, b"# ")
        os.write(master, b"echo $((6*7))\r")
        assert b"\r\n42\r\n" in read_until(master, b"42\r\n")
        os.write(master, b"stty size\r")
        assert b"33 111" in read_until(master, b"33 111")
        set_size(slave, 40, 120)  # the caller gets SIGWINCH and passes the size on
        seen = b""
        for _ in range(10):  # the resize and the typing race; ask until the answer is the new size
            os.write(master, b"stty size\r")
            seen = read_until(master, b"\r\n# ", 10)
            if b"40 120" in seen:
                break
        assert b"40 120" in seen
        os.write(master, b"exit 3\r")
        assert p.wait(60) == 3
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert termios.tcgetattr(slave) == modes  # the caller's terminal modes came back


def test_cli_tty_failure_leaves_the_terminal_as_it_was(terminal: tuple[int, int]) -> None:
    master, slave = terminal
    modes = termios.tcgetattr(slave)
    r = subprocess.run(
        [sys.executable, "-c", ON_TERMINAL, "-m", "nsprim", "run", "-t", "--", "no-such-command-xyz"],
        stdin=slave, stdout=slave, stderr=slave, env=ENV, timeout=120,
    )  # fmt: skip
    assert r.returncode == 127
    assert b"not found in the container's PATH" in read_until(master, b"PATH", 5)
    assert termios.tcgetattr(slave) == modes


# ---- signals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGWINCH], ids=lambda s: s.name
)
def test_cli_forwards_signals_to_the_payload(sig: signal.Signals) -> None:
    trap = f"trap 'exit 7' {sig.name[3:]}; echo ready; while :; do sleep 1 & wait $!; done"
    p = subprocess.Popen(
        [sys.executable, "-m", "nsprim", "run", "--", "sh", "-c", trap],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )  # fmt: skip
    try:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        p.send_signal(sig)
        assert p.wait(60) == 7
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()


def test_tty_run_timeout_says_the_container_was_killed() -> None:
    with pytest.raises(TimeoutExpired, match=r"killed after 0\.5 s timeout"):
        Container(["sleep", "60"]).host_root().tty().run(timeout=0.5, capture_output=True)
