"""``nsprim ps``, ``stop``, ``rm`` and ``logs``: the detached containers (``nsprim run -d``)."""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from ..container import DetachedContainer

__all__ = [
    "configure_ps",
    "configure_stop",
    "configure_rm",
    "configure_logs",
    "cmd_ps",
    "cmd_stop",
    "cmd_rm",
    "cmd_logs",
]


def configure_ps(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="ended ones too")
    p.add_argument("-q", "--quiet", action="store_true", help="names only")


def configure_stop(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--time", type=float, default=10.0, metavar="SECONDS", help="wait before SIGKILL (10)")
    p.add_argument("names", nargs="+", metavar="NAME")


def configure_rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="kill a running one first")
    p.add_argument("--root", metavar="DIR", help="the image store whose containers' changes go too "
                   "(default: $NSPRIM_STORE or /var/lib/nsprim/images)")  # fmt: skip
    p.add_argument("names", nargs="+", metavar="NAME")


def configure_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")


def _describe(box: DetachedContainer) -> str:
    from ..container.registry import ContainerStatus

    status = box.status
    if status is not ContainerStatus.EXITED:
        return str(status.value)
    state = box.state
    if state.exit_code is None:
        return "exited"
    return f"exited ({state.exit_code}{', out of memory' if state.oom_killed else ''})"


def cmd_ps(args: argparse.Namespace) -> int:
    import time

    from ..container import list_containers

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


def cmd_stop(args: argparse.Namespace) -> int:
    from ..container import find

    boxes = [find(name) for name in args.names]  # every name checked before anything is stopped
    for box in boxes:
        box.stop(timeout=args.time)
        print(box.name)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..container import find
    from ..container.registry import NoSuchContainerError
    from ..image.containers import ContainerEntries
    from ..image.store import default_root

    # a container of an image (`run --name N IMAGE`) keeps its changes in the image store until removed
    kept = ContainerEntries(Path(args.root or default_root()) / "containers")
    found = []
    for name in args.names:  # every name checked before anything is removed
        try:
            box = find(name)
        except NoSuchContainerError:
            if not (kept.root / name / "image.json").is_file():
                raise
            box = None
        found.append((name, box))
    for name, box in found:
        if box is not None:
            box.remove(force=args.force)
        if (kept.root / name / "image.json").is_file():
            kept.remove(name)
        print(name)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from ..container import find

    box = find(args.name)
    try:
        with open(box.log_path, "rb") as f:
            while chunk := f.read(65536):
                sys.stdout.buffer.write(chunk)
    except FileNotFoundError:
        pass  # its starter gave it other streams
    sys.stdout.flush()
    return 0
