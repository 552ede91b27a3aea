"""The ``nsprim`` command line, in the idiom of unshare, nsenter and bwrap.

    nsprim run [--rootfs DIR] [--memory 256M] [--cpus 0.5] [--pids 64] [--net none|host|veth]
               [--ro] [--bind SRC:DST[:ro]] [--tmpfs DST] [--hostname H] [--userns auto|host]
               [-u UID[:GID]] [--init] [-t] -- CMD...
    nsprim run -d [--name NAME] [--rm] ... -- CMD...     (detached: nsprim ps [-a], stop, rm, logs)
    nsprim ns list PID
    nsprim ns exec PID [--all | --net --mnt --pid --uts --ipc --user --cgroup --time] -- CMD...
    nsprim cgroup info
    nsprim limits
    nsprim doctor

Errors are one line on stderr (what failed, where, why) and a non-zero
status; ``--debug`` adds the setup steps and the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, NsprimError

if TYPE_CHECKING:
    from .container import Container, DetachedContainer

__all__ = ["main", "build_parser"]

NS_TYPES = ("mnt", "uts", "ipc", "pid", "net", "user", "cgroup", "time")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and the tests)."""
    p = argparse.ArgumentParser(prog="nsprim", description="Linux container primitives from the command line.")
    p.add_argument("--debug", action="store_true", help="show the setup steps and full tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    run = sub.add_parser("run", help="run a command in a new container", parents=[debug])
    run.add_argument("--rootfs", metavar="DIR", help="root file system (default: the host's /, copy-on-write)")
    run.add_argument("--image", metavar="NAME", help="an image of the layer store (see --store)")
    run.add_argument("--store", metavar="DIR", default="/var/lib/nsprim/layers", help="layer store directory")
    run.add_argument("--ro", action="store_true", help="read-only root file system (no upper layer)")
    run.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 256M")
    run.add_argument("--cpus", metavar="N", help="CPU quota in CPUs, e.g. 0.5 (at most the CPUs you have)")
    run.add_argument("--pids", metavar="N", help="most processes at once (1 at least)")
    run.add_argument("--net", choices=("none", "host", "veth"), default="none", help="network (default: none)")
    run.add_argument("--bind", action="append", default=[], metavar="SRC:DST[:ro]", help="bind a host path")
    run.add_argument("--tmpfs", action="append", default=[], metavar="DST", help="a tmpfs at DST")
    run.add_argument("--hostname", metavar="NAME", help="host name inside")
    run.add_argument(
        "--userns",
        choices=("auto", "host"),
        help="auto: a user namespace on a free range of your /etc/subuid and /etc/subgid; "
        "host: none (root's default; others always get one, with themselves as root inside)",
    )
    run.add_argument("-u", "--user", metavar="UID[:GID]", help="run the command as this user (of the root's passwd)")
    run.add_argument("--init", action="store_true", help="a minimal init as pid 1 (reaps zombies, forwards signals)")
    run.add_argument(
        "--tty", "-t", action="store_true", help="a terminal of its own, attached to yours (as docker run -it)"
    )
    run.add_argument("--env", "-e", action="append", default=[], metavar="KEY=VALUE", help="set a variable")
    run.add_argument("--cwd", default="/", metavar="DIR", help="working directory inside")
    run.add_argument("--name", metavar="NAME", help="the container's name (for ps, stop, rm)")
    run.add_argument("-d", "--detach", action="store_true", help="run in the background; print the name")
    run.add_argument("--rm", action="store_true", help="with -d: remove the container's entry when it ends")
    run.add_argument("cmd", nargs="*", metavar="-- CMD", help="the command, after `--`")

    ns = sub.add_parser("ns", help="inspect and enter namespaces")
    ns_sub = ns.add_subparsers(dest="ns_command", required=True, metavar="SUBCOMMAND")
    ls = ns_sub.add_parser("list", help="the namespaces of a process, against your own")
    ls.add_argument("pid", type=int)
    ex = ns_sub.add_parser(
        "exec",
        help="run a command in namespaces of a process (like nsenter)",
        description="Without namespace options, enter every namespace of PID that you do not share (as --all).",
        parents=[debug],
    )
    ex.add_argument("pid", type=int)
    for t in NS_TYPES:
        # Not dest=t: `--pid` would overwrite the positional pid with True.
        ex.add_argument(f"--{t}", action="store_true", dest=f"enter_{t}", help=f"enter its {t} namespace")
    ex.add_argument("--all", action="store_true", help="enter every namespace it does not share with you (default)")
    ex.add_argument("cmd", nargs="*", metavar="-- CMD", help="the command, after `--`")

    cg = sub.add_parser("cgroup", help="cgroups on this host")
    cg_sub = cg.add_subparsers(dest="cgroup_command", required=True, metavar="SUBCOMMAND")
    cg_sub.add_parser("info", help="the host's cgroup mode and controllers")

    _add_detached_commands(sub, debug)
    sub.add_parser("limits", help="the CPU and memory limits in force for this process")
    sub.add_parser("doctor", help="what works on this host for this user, and how to fix what does not")
    return p


def _command(args: argparse.Namespace) -> list[str]:
    cmd = list(args.cmd)
    if not cmd:
        raise ConfigError("no command given: put it after `--`", what="cmd")
    return cmd


def _cmd_run(args: argparse.Namespace) -> int:
    from .container import Container

    box = Container(_command(args))
    if args.image:
        from .fs.layers import LayerStore

        store = LayerStore(Path(args.store))
        box = box.image(store.lower_dirs(args.image))
    elif args.rootfs:
        if not os.path.isdir(args.rootfs):  # (without --ro it becomes an overlay's one layer: say what was given)
            why = "not a directory" if os.path.lexists(args.rootfs) else "No such file or directory"
            raise ConfigError(f"--rootfs `{args.rootfs}`: {why}", what="rootfs")
        box = box.rootfs(args.rootfs) if args.ro else box.image([args.rootfs])
    else:
        box = box.rootfs("/") if args.ro else box.host_root()
    # `is not None`: a 0 is a value to check (and refuse), not "no limit".
    if args.memory is not None:
        box = box.memory(args.memory)
    if args.cpus is not None:
        box = box.cpus(_number(args.cpus, "--cpus", float))
    if args.pids is not None:
        box = box.pids(int(_number(args.pids, "--pids", int)))
    box = box.network(args.net)
    for spec in args.bind:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise ConfigError(f"--bind `{spec}`: expected SRC:DST or SRC:DST:ro", what="bind")
        box = box.bind(parts[0], parts[1], readonly=len(parts) == 3 and parts[2] == "ro")
    for target in args.tmpfs:
        box = box.tmpfs(target)
    if args.hostname:
        box = box.hostname(args.hostname)
    if args.userns == "auto":
        box = box.user_namespace(auto=True)
    elif args.userns == "host" and os.geteuid() != 0:
        raise ConfigError("--userns=host needs root: without it a user namespace gives the privileges", what="userns")
    elif args.userns is None and os.geteuid() != 0:
        box = box.user_namespace()
    if args.user is not None:
        box = _with_user(box, args.user)
    if args.init:
        box = box.init()
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env `{item}`: expected KEY=VALUE", what="env")
        env[key] = value
    if env:
        box = box.env(env)
    box = box.cwd(args.cwd)
    if args.name:
        box = box.name(args.name)
    if args.tty:
        box = box.tty()
    if args.detach:
        started = box.detach(remove=args.rm).start()
        print(started.id)
        started.close()  # the container goes on under its monitor
        return 0
    return _run_forwarding_signals(box, args)


def _run_forwarding_signals(box: Container, args: argparse.Namespace) -> int:
    """Run *box* with the signals ``docker run`` forwards passed on to it (SIGWINCH resizes its
    terminal instead, with ``-t``); exit with its status."""
    import signal

    from .container.terminal import FORWARDED_SIGNALS, SignalForwarder

    forwarded = [s for s in FORWARDED_SIGNALS if not (args.tty and s == signal.SIGWINCH)]
    with SignalForwarder(forwarded) as forwarder, box.start() as running:
        forwarder.target = running
        status = running.attach() if args.tty else running.wait()
        oom_killed = running.oom_killed
    if oom_killed:
        limit = args.memory or "its memory limit"
        print(f"nsprim: the container ran out of memory ({limit}) and the kernel killed it", file=sys.stderr)
    return _status(status)


def _with_user(box: Container, spec: str) -> Container:
    """``-u UID[:GID]``: a number or a name of the container's ``/etc/passwd``, and a numeric gid."""
    name, sep, group = spec.partition(":")
    if not name or (sep and not group.isdigit()):
        raise ConfigError(f"--user `{spec}`: expected UID[:GID] (a user name or number, a group number)", what="user")
    gid = int(group) if sep else None
    return box.user(int(name) if name.isdigit() else name, gid)


def _number(text: str, flag: str, kind: type[float] | type[int]) -> float:
    try:
        return kind(text.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{flag} `{text}`: not {what}", what=flag) from None


def _cmd_ns(args: argparse.Namespace) -> int:
    import nsprim

    if args.ns_command == "list":
        theirs = nsprim.namespace_ids(args.pid)
        ours = nsprim.namespace_ids()
        print(f"{'TYPE':8} {'NAMESPACE':24} SHARED WITH YOU")
        for t, nsid in theirs.items():
            print(f"{t.value:8} {nsid!s:24} {'yes' if ours.get(t) == nsid else 'no'}")
        return 0
    cmd = _command(args)
    chosen = [t for t in NS_TYPES if getattr(args, f"enter_{t}")]
    if args.all or not chosen:
        # As `nsenter --all` and `docker exec`: the namespaces that make it a container.
        theirs, ours = nsprim.namespace_ids(args.pid), nsprim.namespace_ids()
        chosen = [t.value for t, nsid in theirs.items() if ours.get(t) != nsid]
    handles = [nsprim.Namespace.of_pid(args.pid, t) for t in chosen]
    try:
        return _status(nsprim.run(cmd, join=handles).returncode)
    finally:
        for h in handles:
            h.close()


def _status(code: int) -> int:
    return 128 - code if code < 0 else code


def _add_detached_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], debug: argparse.ArgumentParser
) -> None:
    ps = sub.add_parser("ps", help="list detached containers", parents=[debug])
    ps.add_argument("-a", "--all", action="store_true", help="ended ones too")
    ps.add_argument("-q", "--quiet", action="store_true", help="names only")
    stop = sub.add_parser("stop", help="stop detached containers: SIGTERM, then SIGKILL", parents=[debug])
    stop.add_argument("-t", "--time", type=float, default=10.0, metavar="SECONDS", help="wait before SIGKILL (10)")
    stop.add_argument("names", nargs="+", metavar="NAME")
    rm = sub.add_parser("rm", help="remove ended detached containers", parents=[debug])
    rm.add_argument("-f", "--force", action="store_true", help="kill a running one first")
    rm.add_argument("names", nargs="+", metavar="NAME")
    logs = sub.add_parser("logs", help="the output of a detached container", parents=[debug])
    logs.add_argument("name", metavar="NAME")


def _describe(box: DetachedContainer) -> str:
    from .container.registry import ContainerStatus

    status = box.status
    if status is not ContainerStatus.EXITED:
        return str(status.value)
    state = box.state
    if state.exit_code is None:
        return "exited"
    return f"exited ({state.exit_code}{', out of memory' if state.oom_killed else ''})"


def _cmd_ps(args: argparse.Namespace) -> int:
    import time

    from .container import list_containers

    boxes = list_containers(running_only=not args.all)
    if args.quiet:
        for box in boxes:
            print(box.name)
        return 0
    print(f"{'NAME':24} {'STATUS':26} {'PID':>8}  {'CREATED':19}  COMMAND")
    for box in boxes:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(box.state.created))
        command = " ".join(box.state.command)
        print(f"{box.name:24} {_describe(box):26} {box.pid:>8}  {created:19}  {command}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from .container import find

    boxes = [find(name) for name in args.names]  # every name checked before anything is stopped
    for box in boxes:
        box.stop(timeout=args.time)
        print(box.name)
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    from .container import find

    boxes = [find(name) for name in args.names]
    for box in boxes:
        box.remove(force=args.force)
        print(box.name)
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    from .container import find

    box = find(args.name)
    try:
        with open(box.log_path, "rb") as f:
            while chunk := f.read(65536):
                sys.stdout.buffer.write(chunk)
    except FileNotFoundError:
        pass  # its starter gave it other streams
    sys.stdout.flush()
    return 0


def _cmd_cgroup(args: argparse.Namespace) -> int:
    from .cgroup import host_info

    print(host_info())
    return 0


def _cmd_limits(args: argparse.Namespace) -> int:
    from .cgroup import limits

    print(limits())
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose

    ok = True
    for check in diagnose():
        mark = "ok  " if check.ok else "FAIL"
        ok = ok and (check.ok or not check.required)
        print(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok and check.fix:
            print(f"       fix: {check.fix}")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nsprim`` command; returns the exit status."""
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is the payload's, options included.
    cmd: list[str] = []
    if "--" in raw:
        cut = raw.index("--")
        raw, cmd = raw[:cut], raw[cut + 1 :]
    args = parser.parse_args(raw)
    if args.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="nsprim: %(message)s", stream=sys.stderr)
    if hasattr(args, "cmd"):
        args.cmd = [*args.cmd, *cmd]
    handlers = {
        "run": _cmd_run,
        "ns": _cmd_ns,
        "cgroup": _cmd_cgroup,
        "limits": _cmd_limits,
        "doctor": _cmd_doctor,
        "ps": _cmd_ps,
        "stop": _cmd_stop,
        "rm": _cmd_rm,
        "logs": _cmd_logs,
    }
    try:
        return handlers[args.command](args)
    except NsprimError as exc:
        if args.debug:
            raise
        print(f"nsprim {args.command}: {_message(exc)}", file=sys.stderr)
        return _error_status(args.command, exc)
    except BrokenPipeError:
        # The reader went away (`nsprim ns list 1 | head`): not an error of ours.
        sys.stderr.close()
        return 141
    except KeyboardInterrupt:
        return 130


_FLAGS = {"memory": "--memory", "cpu": "--cpus", "pids": "--pids"}


def _message(exc: NsprimError) -> str:
    """The error's one line, naming the options where the API names settings."""
    from .errors import CgroupUnavailableError

    if isinstance(exc, CgroupUnavailableError):
        flags = ", ".join(_FLAGS.get(s, s) for s in exc.settings)
        verb = "needs" if len(exc.settings) == 1 else "need"
        return f"{flags} {verb} a cgroup you can write: {exc.reason}; {exc.fix}"
    return str(exc)


def _error_status(command: str, exc: NsprimError) -> int:
    """Exit statuses as docker and podman use them: 127 no such command, 126
    not executable, 125 the runtime itself failed."""
    from .errors import ExecutableNotFoundError, StepError

    if command not in ("run", "ns"):
        return 1
    if isinstance(exc, ExecutableNotFoundError):
        return 127
    if isinstance(exc, StepError) and exc.operation == "exec":
        return 126
    return 125


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
