"""The ``nsprim`` command line, run as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import nsprim
import nsprim.cli

from .conftest import requires_root

pytestmark = requires_root

SRC = str(Path(nsprim.__file__).resolve().parent.parent)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", "nsprim", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_run_payload_is_pid_1() -> None:
    r = cli("run", "--rootfs", "/", "--", "sh", "-c", "echo $$")
    assert (r.returncode, r.stdout) == (0, "1\n"), r.stderr


def test_run_exit_status_and_signal() -> None:
    assert cli("run", "--", "sh", "-c", "exit 7").returncode == 7
    assert cli("run", "--init", "--", "sh", "-c", "kill -TERM $$").returncode == 128 + 15


def test_run_memory_limit_stops_and_says_so() -> None:
    code = "x = bytearray(400 * 1024 * 1024); print('survived')"
    r = cli("run", "--rootfs", "/", "--memory", "64M", "--", sys.executable, "-c", code)
    assert r.returncode == 137
    assert "survived" not in r.stdout
    assert "ran out of memory (64M)" in r.stderr


def test_run_options_compose(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("bound\n")
    r = cli(
        "run", "--hostname", "clibox", "--pids", "32", "--cpus", "0.5", "--tmpfs", "/scratch",
        "--bind", f"{tmp_path}:/data:ro", "-e", "GREETING=hi", "--",
        "sh", "-c", "hostname; cat /data/f; echo $GREETING; touch /scratch/x && echo ok; wc -l < /proc/self/net/dev",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["clibox", "bound", "hi", "ok", "3"]


def test_errors_are_one_line_with_docker_statuses() -> None:
    r = cli("run", "--", "/no/such/program")
    assert r.returncode == 127
    assert r.stderr.count("\n") == 1 and "exec `/no/such/program`: No such file or directory" in r.stderr
    r = cli("run", "--bind", "nonsense", "--", "true")
    assert r.returncode == 125 and r.stderr.count("\n") == 1 and "--bind `nonsense`" in r.stderr
    r = cli("run", "--memory", "12Q", "--", "true")
    assert r.returncode == 125 and "Traceback" not in r.stderr
    r = cli("run")
    assert r.returncode == 125 and "no command" in r.stderr


def test_run_checks_every_limit_it_is_given() -> None:
    # `--cpus 0`/`--pids 0` meant "no limit", `--cpus inf` was a traceback, `--cpus 3` on 2 CPUs was taken.
    too_many = str(len(os.sched_getaffinity(0)) + 1)
    cases = {
        ("--cpus", "0"): "positive, finite",
        ("--cpus", "inf"): "positive, finite",
        ("--cpus", "nan"): "positive, finite",
        ("--cpus", "-1"): "positive, finite",
        ("--cpus", "abc"): "--cpus `abc`: not a number",
        ("--cpus", too_many): "CPUs available here",
        ("--pids", "0"): "at least 1",
        ("--pids", "1.5"): "--pids `1.5`: not a whole number",
        ("--memory", "0"): "below the 6M",
    }
    for (flag, value), message in cases.items():
        r = cli("run", flag, value, "--", "true")
        assert r.returncode == 125, (flag, value, r.stderr)
        assert r.stderr.count("\n") == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_debug_shows_the_plan() -> None:
    r = cli("run", "--debug", "--hostname", "h", "--", "true")
    assert r.returncode == 0
    assert "sethostname `h`" in r.stderr and "pivot_root" in r.stderr


def test_ns_list_and_exec() -> None:
    with nsprim.spawn(["sleep", "60"], new={"uts", "net"}, hostname="target") as p:
        r = cli("ns", "list", str(p.pid))
        rows = {line.split()[0]: line.split()[2] for line in r.stdout.splitlines()[1:]}
        assert rows["uts"] == "no" and rows["net"] == "no" and rows["mnt"] == "yes"
        r = cli("ns", "exec", str(p.pid), "--uts", "--", "hostname")
        assert r.stdout == "target\n"
        r = cli("ns", "exec", str(p.pid), "--all", "--", "sh", "-c", "hostname; cat /proc/self/net/dev | wc -l")
        assert r.stdout.split() == ["target", "3"]
        p.kill()
        p.wait()
    r = cli("ns", "exec", "1234567", "--net", "--", "true")
    assert r.returncode != 0 and r.stderr.count("\n") == 1


def test_cgroup_info_limits_and_doctor() -> None:
    info = cli("cgroup", "info")
    assert info.returncode == 0 and "mode" in info.stdout.lower()
    lim = cli("limits")
    assert lim.returncode == 0 and "CPU" in lim.stdout
    doc = cli("doctor", timeout=120)
    assert doc.returncode == 0, doc.stdout
    assert "cgroup mode" in doc.stdout and "net namespace" in doc.stdout


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["ns", "exec", "--help"]])
def test_help(argv: list[str]) -> None:
    assert cli(*argv).returncode == 0


@pytest.mark.parametrize("argv", [["--help"], ["--debug", "-h", "run"], ["nope"]])
def test_the_top_level_help_and_errors_list_every_command(argv: list[str]) -> None:
    # A known command is parsed with its subparser alone; what lists the commands still sees them all.
    r = cli(*argv)
    shown = r.stdout + r.stderr
    assert all(name in shown for name in nsprim.cli.COMMANDS), shown


def test_a_command_line_builds_its_own_subparser_only() -> None:
    from nsprim.cli import _parser

    parser = _parser(["run"], only=True)
    choices = next(a.choices for a in parser._actions if a.dest == "command")
    assert list(choices) == ["run"]
    assert parser.parse_args(["run", "--rootfs", "/", "x"]).rootfs == "/"


def test_run_imports_no_thread_pool_compressors_nor_json() -> None:
    # `nsprim run` of a plain container: argparse's formatter without shutil, no warm pool, registry, threads.
    code = (
        "import sys; from nsprim.cli import main; status = main(['run', '--rootfs', '/', '--', '/bin/true']);"
        "print(status, sorted({'shutil', 'zlib', 'lzma', 'bz2', 'threading', 'json', 'socket', 'subprocess',"
        " 'nsprim.container.warm', 'nsprim.container.registry'} & set(sys.modules)))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC}
    )
    assert r.stdout.strip() == "0 []", r.stderr


NS_PROBE = "for t in mnt uts ipc pid net cgroup; do readlink /proc/self/ns/$t; done; hostname"


def _ns_links(pid: int | str) -> list[str]:
    return [os.readlink(f"/proc/{pid}/ns/{t}") for t in ("mnt", "uts", "ipc", "pid", "net", "cgroup")]


def test_ns_exec_enters_what_it_is_told_and_by_default_every_unshared_namespace() -> None:
    from nsprim.container import Container

    box = Container(["sleep", "60"]).host_root().hostname("execbox").start()
    with box:
        theirs, ours = _ns_links(box.pid), _ns_links("self")
        assert all(a != b for a, b in zip(theirs, ours, strict=True))  # a container: none shared
        for flags in ([], ["--all"]):
            r = cli("ns", "exec", str(box.pid), *flags, "--", "sh", "-c", NS_PROBE)
            assert r.returncode == 0, r.stderr
            assert r.stdout.split() == [*theirs, "execbox"], flags
        # --pid alone: its pid namespace (the flag no longer clobbers the positional PID) and nothing else.
        r = cli("ns", "exec", str(box.pid), "--pid", "--", "sh", "-c", NS_PROBE)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[:6] == [*ours[:3], theirs[3], *ours[4:]]
        # --uts alone: not its pid namespace as well.
        r = cli("ns", "exec", str(box.pid), "--uts", "--", "sh", "-c", NS_PROBE)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [ours[0], theirs[1], *ours[2:], "execbox"]
        r = cli("ns", "exec", str(box.pid), "--net", "--ipc", "--", "sh", "-c", NS_PROBE)
        assert r.stdout.split()[:6] == [ours[0], ours[1], theirs[2], ours[3], theirs[4], ours[5]], r.stderr


def _kept_cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``nsprim ARGS`` with its own state directory, saying whether argparse (the general way) was imported."""
    code = "import sys; from nsprim.cli import main; s = main(sys.argv[1:]); print('argparse' in sys.modules, file=sys.stderr); sys.exit(s)"  # noqa: E501
    env = {**os.environ, "PYTHONPATH": SRC, "NSPRIM_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, env=env)


def _kept(state: Path) -> list[str]:
    plans = state / "plans"
    return sorted(os.listdir(plans)) if plans.is_dir() else []


def test_a_second_identical_run_comes_from_its_kept_program(tmp_path: Path) -> None:
    probe = "cut -d' ' -f5,9 /proc/self/mountinfo | sort; ls /dev; id; hostname; grep -c . /proc/self/cgroup; exit 3"
    args = ("run", "--rootfs", "/", "--pids", "40", "-e", "A=b", "--", "sh", "-c", probe)
    first, second, third = (_kept_cli(tmp_path, *args) for _ in range(3))
    assert first.stderr.endswith("True\n") and second.stderr == third.stderr == "False\n", (first, second)
    assert first.returncode == second.returncode == third.returncode == 3
    assert first.stdout == second.stdout == third.stdout and first.stdout
    assert len(_kept(tmp_path)) == 1
    # Another command line is another program.
    other = _kept_cli(tmp_path, "run", "--rootfs", "/", "--", "true")
    assert other.returncode == 0 and other.stderr == "True\n" and len(_kept(tmp_path)) == 2


@pytest.mark.cgroup_v2
def test_a_kept_run_says_the_oom_kill_and_leaves_no_group(tmp_path: Path) -> None:
    """Also in the cgroup v2 VM (``nox -s vm``)."""
    code = "x = bytearray(400 * 1024 * 1024); print('survived')"
    args = (
        "run",
        "--rootfs",
        "/",
        "--ro",
        "--memory",
        "48M",
        "--",
        sys.executable,
        "-c",
        code,
    )  # (no overlay in the VM)
    parent = Path("/sys/fs/cgroup/memory" if Path("/sys/fs/cgroup/memory").is_dir() else "/sys/fs/cgroup")
    parent = parent / os.environ.get("NSPRIM_CGROUP_PARENT", "/").lstrip("/")
    before = {p.name for p in parent.iterdir() if p.is_dir()}
    for _ in range(2):
        r = _kept_cli(tmp_path, *args)
        assert r.returncode == 137 and "survived" not in r.stdout, r
        assert "ran out of memory (48M)" in r.stderr
    assert r.stderr.endswith("False\n")  # the second from its program
    assert {p.name for p in parent.iterdir() if p.is_dir()} == before


def test_a_kept_run_passes_signals_on(tmp_path: Path) -> None:
    args = (
        "run",
        "--rootfs",
        "/",
        "--",
        "sh",
        "-c",
        "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.05; done",
    )
    assert _kept_cli(tmp_path, "run", "--rootfs", "/", "--", "true").returncode == 0  # (a program of another line)
    for expect_general in (True, False):
        env = {**os.environ, "PYTHONPATH": SRC, "NSPRIM_STATE_DIR": str(tmp_path)}
        code = "import sys; from nsprim.cli import main; sys.exit(main(sys.argv[1:]))"
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert (proc.returncode, out) == (5, "got TERM\n"), expect_general


def test_a_kept_run_whose_program_fails_gives_the_general_error(tmp_path: Path) -> None:
    program = tmp_path / "prog"
    program.write_text("#!/bin/sh\necho ran\n")
    program.chmod(0o755)
    state = tmp_path / "state"
    runs = [_kept_cli(state, "run", "--rootfs", "/", "--", str(program)) for _ in range(2)]
    assert [(r.returncode, r.stdout, r.stderr) for r in runs] == [(0, "ran\n", "True\n"), (0, "ran\n", "False\n")]
    program.unlink()  # the kept program's exec fails now: undone, and run the general way, which says why
    kept, general = (
        _kept_cli(state, "run", "--rootfs", "/", "--", str(program)),
        cli("run", "--rootfs", "/", "--", str(program)),
    )
    assert kept.returncode == general.returncode == 127
    assert kept.stderr == general.stderr + "True\n" and str(program) in general.stderr


def test_only_a_plain_run_may_have_a_kept_program(tmp_path: Path) -> None:
    from nsprim.cli import kept

    assert kept._plain(["--rootfs", "/", "--memory=64M", "--ro", "-e", "A=1", "--init"])
    for options in (["-t"], ["-d"], ["--user", "1000"], ["--net", "veth"], ["--net=veth"], ["--name", "x"],
                    ["--rootfs"], ["--image", "alpine"], ["alpine"], ["--userns", "auto"]):  # fmt: skip
        assert not kept._plain(options), options
