"""The ``nsprim`` command line, in the idiom of unshare, nsenter, bwrap and podman.

    nsprim pull [--tls-verify=false] REF;  nsprim images;  nsprim rmi IMAGE...
    nsprim image save|load|gc ...
    nsprim run [OPTIONS] IMAGE [CMD...]    (an image of the store, pulled if missing)
    nsprim run [--rootfs DIR] [--memory 256M] [--cpus 0.5] [--pids 64] [--net none|host|veth]
               [--ro] [--bind SRC:DST[:ro]] [--tmpfs DST] [--hostname H] [--userns auto|host]
               [-u UID[:GID]] [--init] [-t] -- CMD...
    nsprim run -d [--name NAME] [--rm] ... -- CMD...     (detached: nsprim ps [-a], stop, rm, logs)
    nsprim ns list PID
    nsprim ns exec PID [--all | --net --mnt --pid --uts --ipc --user --cgroup --time] -- CMD...
    nsprim cgroup info
    nsprim limits
    nsprim doctor
    nsprim cost [--quick|--full] [--json] [--plot DIR]

Errors are one line on stderr (what failed, where, why) and a non-zero
status; ``--debug`` adds the setup steps and the traceback.

Each command lives in a module of this package, named in :data:`COMMANDS`
and imported only when that command runs: a command line is started again
and again, and should import only what its command needs.  The argument
parser is :mod:`nsprim.cli.parsing` (``argparse`` costs 7 ms to import); a
plain ``run`` whose container is kept (:mod:`nsprim.cli.kept`) needs neither.
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # neither typing nor argparse at import: see the module's documentation
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from ..errors import NsprimError

__all__ = ["main", "build_parser", "Command", "COMMANDS"]


class Command(tuple):  # type: ignore[type-arg]
    """Where a command is: its module of :mod:`nsprim.cli`, and its one-line help."""

    __slots__ = ()

    def __new__(cls, module: str, help: str) -> Command:
        return super().__new__(cls, (module, help))

    @property
    def module(self) -> str:
        return str(self[0])

    @property
    def help(self) -> str:
        return str(self[1])

    def __repr__(self) -> str:
        return f"Command(module={self.module!r}, help={self.help!r})"


#: Every command: the module with its ``configure_<name>`` (optional) and ``cmd_<name>``.
COMMANDS: dict[str, Command] = {
    "run": Command("run", "run a command in a new container"),
    "pull": Command("images", "pull an image from a registry into the image store"),
    "push": Command("images", "push an image of the store to a registry"),
    "images": Command("images", "list the images of the store, their sizes and the bytes they share"),
    "rmi": Command("images", "remove images, and the layers no other image has"),
    "image": Command("images", "save, load and garbage-collect images"),
    "commit": Command("images", "make an image of a named container's changes"),
    "ps": Command("detached", "list detached containers"),
    "stop": Command("detached", "stop detached containers: SIGTERM, then SIGKILL"),
    "rm": Command("detached", "remove ended detached containers"),
    "logs": Command("detached", "the output of a detached container"),
    "ns": Command("namespaces", "inspect and enter namespaces"),
    "cgroup": Command("host", "cgroups on this host"),
    "limits": Command("host", "the CPU and memory limits in force for this process"),
    "doctor": Command("host", "what works on this host for this user, and how to fix what does not"),
    "cost": Command("cost", "what each container primitive costs on this host: time and kernel memory"),
}


def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    module = importlib.import_module(f"{__name__}.{COMMANDS[name].module}")
    handler: Callable[[argparse.Namespace], int] = getattr(module, f"cmd_{name}")
    return handler


def _parser(configured: Sequence[str], *, only: bool = False) -> argparse.ArgumentParser:
    """The parser, with the arguments of the *configured* commands (see :func:`nsprim.cli.parsing.make_parser`)."""
    from .parsing import make_parser

    return make_parser(configured, only=only)


def _nsprim_error() -> type[NsprimError]:
    from ..errors import NsprimError

    return NsprimError


def build_parser() -> argparse.ArgumentParser:
    """The whole argument parser, every command's arguments included (for the docs and the tests)."""
    return _parser(list(COMMANDS))


def _chosen(raw: Sequence[str]) -> str | None:
    """The command named on the command line: the first word that is not an option."""
    for word in raw:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nsprim`` command; returns the exit status."""
    raw = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is the payload's, options included.
    cmd: list[str] = []
    if "--" in raw:
        cut = raw.index("--")
        raw, cmd = raw[:cut], raw[cut + 1 :]
    chosen = _chosen(raw)
    if chosen == "run" and raw and raw[0] == "run" and cmd:
        from .kept import run_kept

        status = run_kept(raw[1:], cmd)
        if status is not None:
            return status
    # A known command parses with its own subparser alone (each costs ~0.2 ms to build); the
    # top-level help and the error for an unknown command list them all.
    alone = chosen is not None and not {"-h", "--help"} & set(raw[: raw.index(chosen)])
    args = _parser([chosen] if chosen else [], only=alone).parse_args(raw)
    if args.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="nsprim: %(message)s", stream=sys.stderr)
    if hasattr(args, "cmd"):
        args.before_separator = list(args.cmd)  # `run IMAGE`: the image is the first of these
        args.cmd = [*args.cmd, *cmd]
    try:
        return _handler(args.command)(args)
    except _nsprim_error() as exc:  # (evaluated only when something was raised)
        if args.debug:
            raise
        from .report import error_status, message

        print(f"nsprim {args.command}: {message(exc)}", file=sys.stderr)
        return error_status(args.command, exc)
    except BrokenPipeError:
        # The reader went away (`nsprim ns list 1 | head`): not an error of ours.
        sys.stderr.close()
        return 141
    except KeyboardInterrupt:
        return 130
