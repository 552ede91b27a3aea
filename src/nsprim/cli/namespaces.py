"""``nsprim ns list PID`` and ``nsprim ns exec PID -- CMD``, as lsns and nsenter."""

from __future__ import annotations

import argparse

from .common import exit_status, payload_command

__all__ = ["NS_TYPES", "configure_ns", "cmd_ns"]

NS_TYPES = ("mnt", "uts", "ipc", "pid", "net", "user", "cgroup", "time")


def configure_ns(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="ns_command", required=True, metavar="SUBCOMMAND")
    ls = sub.add_parser("list", help="the namespaces of a process, against your own")
    ls.add_argument("pid", type=int)
    ex = sub.add_parser(
        "exec",
        help="run a command in namespaces of a process (like nsenter)",
        description="Without namespace options, enter every namespace of PID that you do not share (as --all).",
    )
    ex.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    ex.add_argument("pid", type=int)
    for t in NS_TYPES:
        # Not dest=t: `--pid` would overwrite the positional pid with True.
        ex.add_argument(f"--{t}", action="store_true", dest=f"enter_{t}", help=f"enter its {t} namespace")
    ex.add_argument("--all", action="store_true", help="enter every namespace it does not share with you (default)")
    ex.add_argument("cmd", nargs="*", metavar="-- CMD", help="the command, after `--`")


def cmd_ns(args: argparse.Namespace) -> int:
    from ..namespace import Namespace, namespace_ids
    from ..spawning import run

    if args.ns_command == "list":
        theirs = namespace_ids(args.pid)
        ours = namespace_ids()
        print(f"{'TYPE':8} {'NAMESPACE':24} SHARED WITH YOU")
        for t, nsid in theirs.items():
            print(f"{t.value:8} {nsid!s:24} {'yes' if ours.get(t) == nsid else 'no'}")
        return 0
    cmd = payload_command(args)
    chosen = [t for t in NS_TYPES if getattr(args, f"enter_{t}")]
    if args.all or not chosen:
        # As `nsenter --all` and `docker exec`: the namespaces that make it a container.
        theirs, ours = namespace_ids(args.pid), namespace_ids()
        chosen = [t.value for t, nsid in theirs.items() if ours.get(t) != nsid]
    handles = [Namespace.of_pid(args.pid, t) for t in chosen]
    try:
        return exit_status(run(cmd, join=handles).returncode)
    finally:
        for h in handles:
            h.close()
