"""``nsprim-runtime``: the OCI runtime's command line, as runc's.

Engines (podman through conmon, containerd's runc shim, CRI-O) call a
runtime several times per container, each call a new process, so this
module parses arguments by hand from small tables (no argparse) and imports
only what the command it runs needs: ``state`` and ``list`` read files with
the standard library; the cgroup layer is imported by ``ps``, ``pause``,
``resume``, ``kill --all`` and ``delete``, nothing imports the C core.

The syntax is runc's (Go's flag package, as urfave/cli uses it): global
options before the command, ``-x`` and ``--x`` alike, ``--opt value`` or
``--opt=value``, booleans as ``--flag`` or ``--flag=false``, command options
before or after the arguments (except for ``ps`` and ``exec``, whose
arguments after the id are passed on), ``--`` ending options.

Exit status: 0, or 1 for any error (one line on standard error and, with
``--log``, in the log); 3 for an unknown command (as runc); and
:data:`EXIT_NOT_IMPLEMENTED` for a command that is not built yet.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself is not imported: the state path imports neither typing nor re
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["run", "main", "COMMANDS", "GLOBAL_OPTIONS", "EXIT_NOT_IMPLEMENTED", "EXIT_UNKNOWN_COMMAND", "version_text"]

PROG = "nsprim-runtime"
EXIT_ERROR = 1
EXIT_UNKNOWN_COMMAND = 3
#: A command that exists but is not built yet (``create``, ``start``, ``run``, ``exec``, ``update``, ``events``).
EXIT_NOT_IMPLEMENTED = 69

# An option: (names, destination, kind, help).  Kinds: "bool", "str", "int", "list" (repeatable).
Option = tuple[tuple[str, ...], str, str, str]

GLOBAL_OPTIONS: tuple[Option, ...] = (
    (("debug",), "debug", "bool", "enable debug logging"),
    (("log",), "log", "str", "set the log file (default: standard error)"),
    (("log-format",), "log_format", "str", "set the log format: text (default) or json"),
    (("root",), "root", "str", "root directory of the containers' state (default /run/nsprim-runtime)"),
    (("criu",), "criu", "str", "accepted as runc does, unused: nsprim-runtime has no checkpoint/restore"),
    (("systemd-cgroup",), "systemd_cgroup", "bool", "refused: cgroups are managed through cgroupfs, not systemd"),
    (("rootless",), "rootless", "str", "true, false or auto (default): ignore cgroup permission errors"),
    (("help", "h"), "help", "bool", "show help"),
    (("version", "v"), "version", "bool", "print the version"),
)

_BUNDLE: Option = (("bundle", "b"), "bundle", "str", "path to the root of the bundle directory (default: .)")
_CONSOLE: Option = (("console-socket",), "console_socket", "str", "AF_UNIX socket to send the pty master to")
_PIDFILE: Option = (("pid-file",), "pid_file", "str", "file to write the process id to")
_PRESERVE: Option = (("preserve-fds",), "preserve_fds", "int", "pass N more file descriptors (3 .. 3+N-1)")
_FORMAT: Option = (("format", "f"), "format", "str", "table (default) or json")
_CREATE_OPTS: tuple[Option, ...] = (
    _BUNDLE,
    _CONSOLE,
    _PIDFILE,
    (("no-pivot",), "no_pivot", "bool", "do not use pivot_root to enter the root"),
    (("no-new-keyring",), "no_new_keyring", "bool", "keep the caller's session keyring"),
    _PRESERVE,
)

# name -> (module, function or None if not built yet, options, (min args, max args or -1),
#          interleave options with arguments, usage, summary)
Command = tuple[str, "str | None", tuple[Option, ...], tuple[int, int], bool, str, str]
COMMANDS: dict[str, Command] = {
    "state": ("commands", "cmd_state", (), (1, 1), True, "<container-id>", "output the state of a container"),
    "list": (
        "commands",
        "cmd_list",
        (_FORMAT, (("quiet", "q"), "quiet", "bool", "display only container ids")),
        (0, 0),
        True,
        "",
        "list the containers under --root",
    ),
    "kill": (
        "commands",
        "cmd_kill",
        ((("all", "a"), "all", "bool", "send the signal to every process in the container"),),
        (1, 2),
        True,
        "<container-id> [signal]",
        "send a signal (default: SIGTERM) to the container's init",
    ),
    "delete": (
        "commands",
        "cmd_delete",
        ((("force", "f"), "force", "bool", "kill the container first if it still runs (SIGKILL)"),),
        (1, 1),
        True,
        "<container-id>",
        "delete a container and what it holds",
    ),
    "ps": (
        "commands",
        "cmd_ps",
        (_FORMAT,),
        (1, -1),
        False,
        "<container-id> [ps options]",
        "display the processes running inside a container",
    ),
    "pause": ("commands", "cmd_pause", (), (1, 1), True, "<container-id>", "suspend every process of a container"),
    "resume": ("commands", "cmd_resume", (), (1, 1), True, "<container-id>", "resume a paused container"),
    "features": ("features", "cmd_features", (), (0, 0), True, "", "show what this runtime supports on this host"),
    "spec": (
        "commands",
        "cmd_spec",
        (_BUNDLE, (("rootless",), "rootless", "bool", "a configuration for a rootless container")),
        (0, 0),
        True,
        "",
        "create a new config.json",
    ),
    "create": ("lifecycle", "cmd_create", _CREATE_OPTS, (1, 1), True, "<container-id>", "create a container"),
    "start": (
        "lifecycle",
        "cmd_start",
        (),
        (1, 1),
        True,
        "<container-id>",
        "run the user's process in a created container",
    ),
    "run": (
        "lifecycle",
        "cmd_run",
        (
            *_CREATE_OPTS,
            (("detach", "d"), "detach", "bool", "detach from the container's process"),
            (("keep",), "keep", "bool", "do not delete the container after it exits"),
            (("no-subreaper",), "no_subreaper", "bool", "do not become a subreaper"),
        ),
        (1, 1),
        True,
        "<container-id>",
        "create and run a container",
    ),
    "exec": (
        "execute",
        "cmd_exec",
        (
            _CONSOLE,
            (("cwd",), "cwd", "str", "working directory in the container"),
            (("env", "e"), "env", "list", "set an environment variable"),
            (("tty", "t"), "tty", "bool", "allocate a pseudo-terminal"),
            (("user", "u"), "user", "str", "UID[:GID]"),
            (("additional-gids", "g"), "additional_gids", "list", "additional gids"),
            (("process", "p"), "process", "str", "path to a process.json"),
            (("detach", "d"), "detach", "bool", "detach from the process"),
            _PIDFILE,
            (("process-label",), "process_label", "str", "SELinux label of the process"),
            (("apparmor",), "apparmor", "str", "AppArmor profile of the process"),
            (("no-new-privs",), "no_new_privs", "bool", "set no_new_privs"),
            (("cap", "c"), "cap", "list", "add a capability"),
            _PRESERVE,
            (("cgroup",), "cgroup", "list", "run in a sub-cgroup: [CONTROLLER:]PATH"),
            (("ignore-paused",), "ignore_paused", "bool", "allow exec in a paused container"),
        ),
        (1, -1),
        False,
        "<container-id> <command> [args...] | -p process.json <container-id>",
        "execute a new process inside the container",
    ),
    "update": (
        "update",
        "cmd_update",
        tuple(
            ((name, *short), name.replace("-", "_"), kind, text)
            for name, short, kind, text in (
                ("resources", ("r",), "str", "a JSON file of resources ('-': standard input)"),
                ("blkio-weight", (), "int", "block I/O weight, 10 to 1000"),
                ("cpu-period", (), "int", "CFS period (µs)"),
                ("cpu-quota", (), "int", "CFS quota (µs)"),
                ("cpu-share", (), "int", "CPU shares"),
                ("cpu-rt-period", (), "int", "real-time period (µs)"),
                ("cpu-rt-runtime", (), "int", "real-time runtime (µs)"),
                ("cpuset-cpus", (), "str", "CPUs to use"),
                ("cpuset-mems", (), "str", "memory nodes to use"),
                ("memory", (), "str", "memory limit (bytes)"),
                ("memory-reservation", (), "str", "memory soft limit (bytes)"),
                ("memory-swap", (), "str", "memory + swap limit (bytes; -1: unlimited)"),
                ("pids-limit", (), "int", "the most processes"),
                ("l3-cache-schema", (), "str", "Intel RDT L3 schema"),
                ("mem-bw-schema", (), "str", "Intel RDT memory bandwidth schema"),
            )
        ),
        (1, 1),
        True,
        "<container-id>",
        "update a container's resource limits",
    ),
    "events": (
        "events",
        "cmd_events",
        (
            (("interval",), "interval", "str", "statistics interval (default 5s)"),
            (("stats",), "stats", "bool", "display the statistics once, then exit"),
        ),
        (1, 1),
        True,
        "<container-id>",
        "display a container's events and statistics",
    ),
}

# runc's commands that nsprim-runtime will not have.
_UNSUPPORTED = {
    "checkpoint": "checkpoint needs CRIU, which nsprim-runtime does not use",
    "restore": "restore needs CRIU, which nsprim-runtime does not use",
}

_BOOLS = {"1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True}
_BOOLS.update({"0": False, "f": False, "F": False, "false": False, "FALSE": False, "False": False})


class Globals:
    """The global options, as the commands see them."""

    __slots__ = ("criu", "debug", "log", "root", "rootless")

    def __init__(self, root: str, log: object, debug: bool, rootless: str, criu: str | None) -> None:
        from .log import Log

        assert isinstance(log, Log)
        self.root = root
        self.log: Log = log
        self.debug = debug
        self.rootless = rootless
        self.criu = criu

    @property
    def is_rootless(self) -> bool:
        """``--rootless``, with ``auto`` meaning: not running as root."""
        return self.rootless == "true" or (self.rootless == "auto" and os.geteuid() != 0)


def _usage(message: str) -> Exception:
    from ...errors import ConfigError

    return ConfigError(message, what="arguments")


def _index(options: tuple[Option, ...]) -> dict[str, Option]:
    return {name: opt for opt in options for name in opt[0]}


def _parse(
    args: list[str], options: tuple[Option, ...], *, interleave: bool, where: str, stop_at_positional: bool = False
) -> tuple[dict[str, object], list[str]]:
    """Go flag syntax: *options* from *args*; returns (values, positional arguments)."""
    table = _index(options)
    values: dict[str, object] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if len(arg) < 2 or arg[0] != "-" or (positional and not interleave):
            positional.append(arg)
            if stop_at_positional:
                positional.extend(args[i:])
                break
            continue
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, eq, inline = body.partition("=")
        opt = table.get(name)
        if opt is None or not name:
            raise _usage(f"unknown {where}option `{arg.partition('=')[0]}`{_see(where)}")
        _names, dest, kind, _help = opt
        if kind == "bool":
            if eq:
                if inline not in _BOOLS:
                    raise _usage(f"option `-{name}` takes true or false, not `{inline}`")
                values[dest] = _BOOLS[inline]
            else:
                values[dest] = True
            continue
        if eq:
            value = inline
        elif i < len(args):
            value = args[i]
            i += 1
        else:
            raise _usage(f"option `--{name}` needs a value{_see(where)}")
        if kind == "int":
            try:
                values[dest] = int(value, 10)
            except ValueError:
                raise _usage(f"option `--{name}` takes a number, not `{value}`") from None
        elif kind == "list":
            values.setdefault(dest, [])
            values[dest].append(value)  # type: ignore[attr-defined]
        else:
            values[dest] = value
    return values, positional


def _see(where: str) -> str:
    command = where.split(" ", 1)[0] if where and where != "global " else ""
    return f" (see `{PROG} {command} --help`)" if command else f" (see `{PROG} --help`)"


def version_text() -> str:
    """What ``--version`` prints: this runtime's version and the runtime spec's."""
    from ... import __version__
    from .features import SPEC_VERSION_MAX

    return f"{PROG} version {__version__}\nspec: {SPEC_VERSION_MAX}\npython: {sys.version.split()[0]}\n"


def _help(command: str | None) -> str:
    if command is None:
        width = max(len(n) for n in COMMANDS)
        lines = [
            f"Usage: {PROG} [global options] command [command options] [arguments...]",
            "",
            "An OCI runtime built on nsprim (runc's command line).",
            "",
            "Commands:",
            *(
                f"   {name:<{width}}  {cmd[6]}" + ("" if cmd[1] else " (not implemented yet)")
                for name, cmd in COMMANDS.items()
            ),
            "",
            "Global options:",
            *_option_lines(GLOBAL_OPTIONS),
        ]
        return "\n".join(lines) + "\n"
    cmd = COMMANDS[command]
    lines = [f"Usage: {PROG} {command} [command options] {cmd[5]}".rstrip(), "", cmd[6]]
    if cmd[2]:
        lines += ["", "Options:", *_option_lines(cmd[2])]
    return "\n".join(lines) + "\n"


def _option_lines(options: tuple[Option, ...]) -> list[str]:
    out = []
    for names, _dest, kind, text in options:
        spelled = ", ".join(("--" if len(n) > 1 else "-") + n for n in names)
        if kind != "bool":
            spelled += " value"
        out.append(f"   {spelled:<32} {text}")
    return out


def run() -> NoReturn:
    """The ``nsprim-runtime`` command: :func:`main`, then exit without the interpreter's teardown.

    An engine starts a runtime again and again; freeing every module at exit
    costs milliseconds that nothing needs (log lines are written unbuffered).
    Nor does a command live long enough for its cyclic garbage to matter: the
    collector, which the imports would run a few times, is off.
    """
    import gc

    gc.disable()
    status = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or EXIT_ERROR
    os._exit(status)


def main(argv: list[str] | None = None) -> int:
    """Run one ``nsprim-runtime`` command; returns the exit status."""
    from .log import Log

    args = sys.argv[1:] if argv is None else list(argv)
    log = Log()
    try:
        return _run(args, log)
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as exc:  # every failure is one line, with the details in the --debug log
        if log.debug_enabled:
            import traceback

            log.debug("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).replace("\n", " | "))
        log.error(_describe(exc))
        return EXIT_ERROR


def _describe(exc: BaseException) -> str:
    from ...errors import NsprimError

    if isinstance(exc, NsprimError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"`{exc.filename}`: {exc.strerror}" if exc.filename else exc.strerror
    return f"internal error: {type(exc).__name__}: {exc}"


def _run(args: list[str], log: object) -> int:
    from .log import FORMATS, Log

    assert isinstance(log, Log)
    values, rest = _parse(args, GLOBAL_OPTIONS, interleave=False, where="global ", stop_at_positional=True)
    fmt = str(values.get("log_format", "text"))
    path = values.get("log")
    log.configure(None if path is None else str(path), fmt if fmt in FORMATS else "text", bool(values.get("debug")))
    if fmt not in FORMATS:
        raise _usage(f"invalid --log-format `{fmt}`: text or json")
    if values.get("version"):
        sys.stdout.write(version_text())
        return 0
    name = rest[0] if rest else None
    if values.get("help") or name is None or name in ("help", "h"):
        topic = rest[1] if name in ("help", "h") and len(rest) > 1 else None
        if topic is not None and topic not in COMMANDS:
            log.error(f"no help topic for `{topic}` (see `{PROG} --help`)")
            return EXIT_UNKNOWN_COMMAND
        sys.stdout.write(_help(topic))
        return 0
    rootless = str(values.get("rootless", "auto"))
    if rootless not in ("true", "false", "auto"):
        raise _usage(f"invalid --rootless `{rootless}`: true, false or auto")
    if name in _UNSUPPORTED:
        from ...errors import UnsupportedError

        raise UnsupportedError(f"{name}: {_UNSUPPORTED[name]}", feature=name)
    command = COMMANDS.get(name)
    if command is None:
        log.error(f"unknown command `{name}` (see `{PROG} --help`)")
        return EXIT_UNKNOWN_COMMAND
    module, function, options, (low, high), interleave, _usage_text, _summary = command
    opts, positional = _parse(
        rest[1:], (*options, (("help", "h"), "help", "bool", "")), interleave=interleave, where=f"{name} "
    )
    if opts.pop("help", False):
        sys.stdout.write(_help(name))
        return 0
    if len(positional) < low or (high >= 0 and len(positional) > high):
        wanted = f"exactly {low}" if low == high else (f"at least {low}" if high < 0 else f"{low} to {high}")
        raise _usage(f"{name}: needs {wanted} argument(s): {name} {_usage_text} (got {len(positional)})")
    if values.get("systemd_cgroup"):
        from ...errors import UnsupportedError

        raise UnsupportedError(
            "--systemd-cgroup: nsprim-runtime manages cgroups through cgroupfs, and this host has no systemd "
            "(configure the engine with cgroupfs: containerd SystemdCgroup = false, "
            'podman cgroup_manager = "cgroupfs")',
            feature="systemd-cgroup",
        )
    root = os.path.abspath(str(values["root"])) if values.get("root") else None
    if root is None:
        from .store import default_root

        root = default_root()
    g = Globals(root, log, bool(values.get("debug")), rootless, values.get("criu"))  # type: ignore[arg-type]
    log.debug(f"{PROG} {name} {' '.join(positional)} (root `{root}`)")
    if function is None:
        working = ", ".join(n for n, c in COMMANDS.items() if c[1] is not None)
        log.error(f"{name}: not implemented yet in {PROG} (today: {working})")
        return EXIT_NOT_IMPLEMENTED
    handler = getattr(__import__(f"{__package__}.{module}", fromlist=[function]), function)
    status = handler(g, opts, positional)
    return int(status or 0)
