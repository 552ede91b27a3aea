"""``nsprim cgroup info``, ``nsprim limits`` and ``nsprim doctor``: what this host offers."""

from __future__ import annotations

import argparse

__all__ = ["configure_cgroup", "cmd_cgroup", "cmd_limits", "cmd_doctor"]


def configure_cgroup(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="cgroup_command", required=True, metavar="SUBCOMMAND")
    sub.add_parser("info", help="the host's cgroup mode and controllers")


def cmd_cgroup(args: argparse.Namespace) -> int:
    from ..cgroup import host_info

    print(host_info())
    return 0


def cmd_limits(args: argparse.Namespace) -> int:
    from ..cgroup import limits

    print(limits())
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..doctor import diagnose

    ok = True
    for check in diagnose():
        mark = "ok  " if check.ok else "FAIL"
        ok = ok and (check.ok or not check.required)
        print(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok and check.fix:
            print(f"       fix: {check.fix}")
    return 0 if ok else 1
