"""The ``nsprim`` command's argument parser (``argparse``), built for the command being run."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import COMMANDS

__all__ = ["Formatter", "make_parser"]


def _columns() -> int:
    """``shutil.get_terminal_size().columns``, without the import of :mod:`shutil` (and its compressors)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    out = sys.__stdout__
    try:
        return (os.get_terminal_size(out.fileno()).columns if out is not None else 0) or 80
    except (AttributeError, ValueError, OSError):
        return 80


class Formatter(argparse.HelpFormatter):
    """argparse's formatter, its width found as argparse finds it: every ``add_argument`` makes one."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


def make_parser(configured: Sequence[str], *, only: bool = False) -> argparse.ArgumentParser:
    """The parser, with the arguments of the *configured* commands (the others show their help only;
    with *only*, the others are left out: one command's line needs no other's subparser)."""
    p = argparse.ArgumentParser(
        prog="nsprim", description="Linux container primitives from the command line.", formatter_class=Formatter
    )
    p.add_argument("--debug", action="store_true", help="show the setup steps and full tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    debug = argparse.ArgumentParser(add_help=False, formatter_class=Formatter)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for name, command in COMMANDS.items():
        if only and name not in configured:
            continue
        cp = sub.add_parser(name, help=command.help, parents=[debug], formatter_class=Formatter)
        if name in configured:
            module = importlib.import_module(f"nsprim.cli.{command.module}")
            configure = getattr(module, f"configure_{name}", None)
            if configure is not None:
                configure(cp)
    return p
