"""What the ``nsprim`` commands share: the payload after ``--`` and exit statuses."""

from __future__ import annotations

import argparse

from ..errors import ConfigError

__all__ = ["payload_command", "exit_status"]


def payload_command(args: argparse.Namespace) -> list[str]:
    """The command given after ``--``; a :class:`~nsprim.errors.ConfigError` when there is none."""
    cmd = list(args.cmd)
    if not cmd:
        raise ConfigError("no command given: put it after `--`", what="cmd")
    return cmd


def exit_status(code: int) -> int:
    """A process's exit status as a shell reports it: 128 + N for death by signal N."""
    return 128 - code if code < 0 else code
