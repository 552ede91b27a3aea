"""``nsprim run``: a command in a new container, in the idiom of ``docker run`` and bwrap.

``nsprim run [OPTIONS] IMAGE [CMD...]`` runs an image of the image store
(pulled first if it is missing); with ``--rootfs DIR`` or ``--image NAME`` (a
layer store's image), or neither and no IMAGE (the host's ``/``), the command
comes after ``--``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from .common import exit_status, payload_command

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from ..container import Container, RunningContainer

__all__ = ["configure_run", "cmd_run"]


def configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rootfs", metavar="DIR", help="root file system (default: the host's /, copy-on-write)")
    p.add_argument("--image", metavar="NAME", help="an image of the layer store (see --store)")
    p.add_argument("--store", metavar="DIR", default="/var/lib/nsprim/layers", help="layer store directory")
    p.add_argument("--root", metavar="DIR", help="the image store of IMAGE (default: $NSPRIM_STORE or "
                   "/var/lib/nsprim/images)")  # fmt: skip
    p.add_argument("--pull", choices=("missing", "always", "never"), default="missing",
                   help="pull IMAGE: if the store has not got it (default), always, or never")  # fmt: skip
    p.add_argument("--tls-verify", default="true", choices=("true", "false"), metavar="true|false",
                   help="pulling IMAGE: require HTTPS with a verified certificate")  # fmt: skip
    p.add_argument("--entrypoint", metavar="CMD",
                   help="replace the image's Entrypoint: a word, or a JSON list ('[\"sh\", \"-c\"]')")  # fmt: skip
    p.add_argument("--ro", action="store_true", help="read-only root file system (no upper layer)")
    p.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 256M")
    p.add_argument("--cpus", metavar="N", help="CPU quota in CPUs, e.g. 0.5 (at most the CPUs you have)")
    p.add_argument("--pids", metavar="N", help="most processes at once (1 at least)")
    p.add_argument("--net", choices=("none", "host", "veth"), default="none", help="network (default: none)")
    p.add_argument("--bind", action="append", default=[], metavar="SRC:DST[:ro]", help="bind a host path")
    p.add_argument("--tmpfs", action="append", default=[], metavar="DST", help="a tmpfs at DST")
    p.add_argument("--hostname", metavar="NAME", help="host name inside")
    p.add_argument(
        "--userns",
        choices=("auto", "host"),
        help="auto: a user namespace on a free range of your /etc/subuid and /etc/subgid; "
        "host: none (root's default; others always get one, with themselves as root inside)",
    )
    p.add_argument("-u", "--user", metavar="UID[:GID]", help="run the command as this user (of the root's passwd)")
    p.add_argument("--init", action="store_true", help="a minimal init as pid 1 (reaps zombies, forwards signals)")
    p.add_argument(
        "--tty", "-t", action="store_true", help="a terminal of its own, attached to yours (as docker run -it)"
    )
    p.add_argument("--env", "-e", action="append", default=[], metavar="KEY=VALUE", help="set a variable")
    p.add_argument("--cwd", "-w", metavar="DIR", help="working directory inside (default: the image's, or /)")
    p.add_argument("--name", metavar="NAME", help="the container's name (for ps, stop, rm)")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background; print the name")
    p.add_argument("--rm", action="store_true", help="with -d: remove the container's entry when it ends")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="IMAGE [CMD...] | -- CMD",
                   help="an image and its command (the image's by default), or the command after `--`")  # fmt: skip


def cmd_run(args: argparse.Namespace) -> int:
    from ..container import Container

    image = None
    if not args.rootfs and not args.image and getattr(args, "before_separator", None):
        image = args.before_separator[0]
    if image is not None:
        box = _image_container(image, args.cmd[1:], args)
    else:
        for flag, given in (("--entrypoint", args.entrypoint), ("--root", args.root)):
            if given is not None:
                raise ConfigError(f"{flag}: only for `nsprim run IMAGE`", what=flag)
        box = _with_root(Container(payload_command(args)), args)
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
    if args.cwd is not None or image is None:
        box = box.cwd(args.cwd or "/")
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


def _with_root(box: Container, args: argparse.Namespace) -> Container:
    """*box* on ``--image NAME`` of a layer store, ``--rootfs DIR``, or the host's ``/``."""
    if args.image:
        from ..fs.layers import LayerStore

        store = LayerStore(Path(args.store))
        box = box.image(store.lower_dirs(args.image))
    elif args.rootfs:
        if not os.path.isdir(args.rootfs):  # (without --ro it becomes an overlay's one layer: say what was given)
            why = "not a directory" if os.path.lexists(args.rootfs) else "No such file or directory"
            raise ConfigError(f"--rootfs `{args.rootfs}`: {why}", what="rootfs")
        box = box.rootfs(args.rootfs) if args.ro else box.image([args.rootfs])
    else:
        box = box.rootfs("/") if args.ro else box.host_root()
    return box


def _image_container(ref: str, command: list[str], args: argparse.Namespace) -> Container:
    """The container of image *ref* of the image store, pulled as ``--pull`` says."""
    import json

    from ..errors import ImageNotFoundError
    from ..image.run import container_of
    from ..image.store import ImageStore
    from .progress import terminal_progress

    if args.ro:
        raise ConfigError("--ro: an IMAGE's root is an overlay with a writable layer (give --rootfs DIR)", what="ro")
    entrypoint = None
    if args.entrypoint is not None:
        if args.entrypoint.startswith("["):
            try:
                entrypoint = json.loads(args.entrypoint)
            except ValueError:
                entrypoint = None
            if not isinstance(entrypoint, list) or not all(isinstance(w, str) for w in entrypoint):
                raise ConfigError(f"--entrypoint `{args.entrypoint}`: not a JSON list of strings", what="entrypoint")
        else:
            entrypoint = [args.entrypoint] if args.entrypoint else []
    store = ImageStore(args.root)
    try:
        image = store.image(ref) if args.pull != "always" else None
    except ImageNotFoundError:
        if args.pull == "never":
            raise
        image = None
    if image is None:
        progress = terminal_progress()
        try:
            image = store.pull(ref, tls_verify=args.tls_verify == "true", progress=progress)
        finally:
            if progress is not None:
                progress.close()
    upper = None
    if args.name and not args.rm:  # a named container keeps its changes, for `nsprim commit` (`nsprim rm` drops them)
        upper = store.containers.create(args.name, image.name, image.descriptor).upper
    return container_of(store, image, command, entrypoint=entrypoint, upper=upper)


def _run_forwarding_signals(box: Container, args: argparse.Namespace) -> int:
    """Run *box* with the signals ``docker run`` forwards passed on to it (SIGWINCH resizes its
    terminal instead, with ``-t``); exit with its status."""
    import signal

    from ..container.terminal import FORWARDED_SIGNALS, SignalForwarder
    from .kept import keep_run, pending

    key = pending()  # this command line has no kept program yet: record what starts, and keep it
    record: dict[str, object] | None = {} if key is not None and not args.tty else None
    forwarded = [s for s in FORWARDED_SIGNALS if not (args.tty and s == signal.SIGWINCH)]
    with SignalForwarder(forwarded) as forwarder, _start(box, record) as running:
        forwarder.target = running
        status = running.attach() if args.tty else running.wait()
        oom_killed = running.oom_killed
    if key is not None and record is not None:
        import contextlib

        with contextlib.suppress(Exception):  # a program not kept is made again next time: never this run's failure
            keep_run(key, record, args.memory)
    if oom_killed:
        limit = args.memory or "its memory limit"
        print(f"nsprim: the container ran out of memory ({limit}) and the kernel killed it", file=sys.stderr)
    return exit_status(status)


def _start(box: Container, record: dict[str, object] | None) -> RunningContainer:
    if record is None:
        return box.start()
    from ..container.start import start_container

    return start_container(box.config, record=record)  # as box.start(): a plain Container has no supply


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
