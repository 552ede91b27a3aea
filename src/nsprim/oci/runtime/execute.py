"""``exec``: another process in a container's namespaces and cgroup, as runc runs it.

The process is ``--process FILE`` (a runtime-spec ``process`` object; the
other process flags are then ignored, as runc ignores them), or the
container's own ``process`` with its ``args`` replaced by the command line
and ``--env``, ``--cwd``, ``--user``, ``--additional-gids``, ``--cap``,
``--no-new-privs`` and ``--tty`` applied over it.  What nsprim cannot honour
(``apparmorProfile``, ``selinuxLabel`` ...) is refused by name.

The child is planned like the init (no Python between clone and exec): it
joins the container's cgroup (born in the v2 group, the v1 groups by their
``tasks``), then every namespace of the init that is not the runtime's own
(user first, the pid namespace around the clone, the mount namespace last
with the init's root), and then runs the process's steps with the
container's seccomp filter: oomScoreAdj, the terminal, rlimits,
capabilities, ids, no_new_privs, umask, cwd, exec.

Attached (the default) ``exec`` waits and exits with the process's status
(128+N for a signal), passing on the signals it gets; ``--detach`` returns
once the process runs (its parent is then the engine, the subreaper).

A stopped container, a ``creating`` one or an unknown id is an error; a
paused one too, unless ``--ignore-paused``.
"""

from __future__ import annotations

import os

from .store import CREATING, PAUSED, STOPPED, ContainerRecord, Store, live_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ...namespace import Namespace
    from ...plan import Step
    from ..spec import Process, Spec
    from .cli import Globals

__all__ = ["cmd_exec", "exec_process", "NAMESPACE_ORDER"]

#: The namespace files of the init, in ``/proc/PID/ns``, joined when they are not the runtime's own.
#: The time namespace is read from ``time_for_children``: a created init has unshared it, not entered it yet.
NAMESPACE_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "time", "mnt")
_FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def _refuse(option: str, reason: str) -> Exception:
    from ...errors import ConfigError

    return ConfigError(f"exec {option}: {reason}", what=option.lstrip("-"))


def _user(text: str, process: Process) -> Process:
    uid_text, sep, gid_text = text.partition(":")
    try:
        uid = int(uid_text, 10)
        gid = int(gid_text, 10) if sep else process.user.gid
    except ValueError:
        raise _refuse("--user", f"`{text}` is not UID[:GID] (numbers)") from None
    if not (0 <= uid < 2**32 - 1 and 0 <= gid < 2**32 - 1):
        raise _refuse("--user", f"`{text}`: ids are 0 to 4294967294")
    return process.replace(user=process.user.replace(uid=uid, gid=gid))


def _from_flags(spec: Spec, opts: dict[str, object], args: list[str]) -> Process:
    """The container's process with runc's exec flags applied over it."""
    from ..spec import LinuxCapabilities, Process

    if not args:
        raise _refuse("arguments", "the command to run is missing (give it after the id, or --process FILE)")
    base = spec.process if spec.process is not None else Process()
    process = base.replace(args=tuple(args), terminal=bool(opts.get("tty")))
    env = opts.get("env")
    if isinstance(env, list):
        for item in env:
            if "=" not in item:
                raise _refuse("--env", f"`{item}` is not NAME=VALUE")
        process = process.replace(env=(*process.env, *env))
    cwd = opts.get("cwd")
    if cwd:
        process = process.replace(cwd=str(cwd))
    user = opts.get("user")
    if user:
        process = _user(str(user), process)
    gids = opts.get("additional_gids")
    if isinstance(gids, list):
        try:
            extra = tuple(int(g, 10) for g in gids)
        except ValueError:
            raise _refuse("--additional-gids", f"`{','.join(gids)}`: numbers only") from None
        process = process.replace(user=process.user.replace(additional_gids=(*process.user.additional_gids, *extra)))
    caps = opts.get("cap")
    if isinstance(caps, list):
        have = process.capabilities or LinuxCapabilities()
        names = tuple(c if c.upper().startswith("CAP_") else f"CAP_{c}" for c in caps)
        names = tuple(n.upper() for n in names)
        process = process.replace(
            capabilities=have.replace(
                bounding=(*have.bounding, *names),
                effective=(*have.effective, *names),
                permitted=(*have.permitted, *names),
                # ambient needs inheritable, which --cap does not add (runc's rule)
                ambient=(*have.ambient, *names) if have.inheritable else have.ambient,
            )
        )
    if "no_new_privs" in opts:
        process = process.replace(no_new_privileges=bool(opts["no_new_privs"]))
    if opts.get("apparmor"):
        process = process.replace(apparmor_profile=str(opts["apparmor"]))
    if opts.get("process_label"):
        process = process.replace(selinux_label=str(opts["process_label"]))
    return process


def _from_file(path: str) -> Process:
    from ...errors import SpecError
    from ..spec import Process
    from . import jsonio

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        from ...errors import SyscallError

        raise SyscallError(exc.errno or 0, "open", path, hint="the --process file") from None
    try:
        doc = jsonio.loads(data)
    except ValueError as exc:
        raise SpecError(f"process `{path}`: malformed JSON: {exc}", field="process") from None
    return Process.from_dict(doc, "process")


def _same(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except FileNotFoundError:
        return True  # a kernel without this namespace type: nothing to join
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _open_namespaces(pid: int) -> list[Namespace]:
    """The init's namespaces that are not ours, open."""
    from ...namespace import Namespace, NamespaceType

    out: list[Namespace] = []
    try:
        for name in NAMESPACE_ORDER:
            theirs = f"/proc/{pid}/ns/{name}_for_children" if name == "time" else f"/proc/{pid}/ns/{name}"
            if _same(theirs, f"/proc/self/ns/{name}"):
                continue
            out.append(Namespace.from_path(theirs, NamespaceType(name)))
    except BaseException:
        for ns in out:
            ns.close()
        raise
    return out


def _process_head(process: Process, console_fd: int) -> list[Step]:
    """What runs as root in the container's namespaces, before the user's steps."""
    from ...handoff import SendTerminal
    from ...plan import WriteFile
    from ..convert import rlimit_number

    steps: list[Step] = []
    if process.oom_score_adj is not None:
        steps.append(WriteFile("/proc/self/oom_score_adj", str(process.oom_score_adj).encode()))
    if process.terminal:
        size = (process.console_size.height, process.console_size.width) if process.console_size else None
        steps.append(SendTerminal(console_fd, size, uid=process.user.uid, gid=process.user.gid))
    from ...plan import SetRlimit

    top = (1 << 64) - 1
    for i, lim in enumerate(process.rlimits):
        number = rlimit_number(lim.type, f"process.rlimits[{i}].type")
        steps.append(SetRlimit(number, -1 if lim.soft >= top else lim.soft, -1 if lim.hard >= top else lim.hard))
    return steps


def exec_process(g: Globals, record: ContainerRecord, spec: Spec, process: Process, opts: dict[str, object]) -> object:
    """Start *process* in the container of *record*; returns the :class:`~nsprim.process.Process`."""
    from ... import lowlevel
    from ...namespace import NamespaceType
    from ...plan import FdMap, Plan, SetNs, SetSid
    from ...security.steps import SetDumpable
    from ...spawning import join_namespaces
    from ..convert import process_steps
    from ..honour import check_process
    from .commands import container_group
    from .lifecycle import engine_error, open_console

    check_process(process)
    preserve = int(opts.get("preserve_fds") or 0)  # type: ignore[call-overload]
    if preserve < 0 or preserve > 1000:
        raise _refuse("--preserve-fds", f"{preserve}: 0 to 1000")
    console = opts.get("console_socket")
    if process.terminal and not console:
        raise _refuse("--console-socket", "a terminal (--tty, process.terminal) needs --console-socket")
    if console and not process.terminal:
        raise _refuse("--console-socket", "given without a terminal (--tty, process.terminal)")
    if opts.get("cgroup"):
        raise _refuse("--cgroup", "sub-cgroups for exec are not supported by nsprim-runtime")
    opened: list[int] = []
    joined: list[Namespace] = []
    cgroup_fd = -1
    floor = 100 + preserve
    try:
        console_fd = open_console(console, floor, opened)
        joined = _open_namespaces(record.pid)
        root_fd = os.open(f"/proc/{record.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        opened.append(root_fd)
        prefix: list[Step] = []
        group = container_group(record)
        if group is not None:
            from .cgroups import placement

            prefix, cgroup_fd = placement(group)
        enter, pidns_fd = join_namespaces(joined)
        # The mount namespace is joined last; its root is then the namespace's, so the init's is put back.
        mnt = NamespaceType.MNT.flag
        if not any(isinstance(s, SetNs) and s.nstype == mnt for s in enter):
            raise _refuse("arguments", f"container `{record.id}` has no mount namespace of its own to enter")
        enter = [SetNs(s.fd, s.nstype, s.source, root_fd) if isinstance(s, SetNs) and s.nstype == mnt else s
                 for s in enter]  # fmt: skip
        pairs = [(0, 0), (1, 1), (2, 2), *((fd, fd) for fd in range(3, 3 + preserve))]
        kept = (*opened, *(n.fd for n in joined))
        steps: list[Step] = [SetSid(), FdMap(tuple(pairs), close_others=True, kept=kept), SetDumpable(False)]
        steps += enter
        steps += _process_head(process, console_fd)
        from .created import SECCOMP_CACHE

        steps += process_steps(process, spec, seccomp_cache=os.path.join(g.root, SECCOMP_CACHE))
        try:
            head = Plan(tuple(prefix)) if prefix else None
            proc = lowlevel.start(Plan(tuple(steps)), prefix=head, cgroup_fd=cgroup_fd, pidns_fd=pidns_fd)
        except Exception as exc:
            raise engine_error(exc) from None
    finally:
        for fd in opened:
            os.close(fd)
        for ns in joined:
            ns.close()
        if cgroup_fd >= 0:
            os.close(cgroup_fd)
    g.log.debug(f"exec in container `{record.id}`: pid {proc.pid}")
    return proc


def cmd_exec(g: Globals, opts: dict[str, object], args: list[str]) -> int:
    """``exec [--process FILE | ARGS...] [--tty --console-socket S] [--detach] [--pid-file F] ... ID``."""
    import signal

    from ...errors import ContainerStateError
    from ..spec import Spec
    from .lifecycle import SPEC_FILE, write_pid_file

    container_id = args[0]
    store = Store(g.root)
    with store.lock(container_id) as locked:
        record = locked.record
        status = live_status(record)
        if status in (STOPPED, CREATING) or (status == PAUSED and not opts.get("ignore_paused")):
            hint = "use --ignore-paused to override" if status == PAUSED else "exec needs a created or running one"
            raise ContainerStateError(
                f"exec in container `{record.id}`: it is {status} ({hint})", container_id=record.id, status=status
            )
        spec = Spec.load(os.path.join(locked.path, SPEC_FILE))
        path = opts.get("process")
        process = _from_file(str(path)) if path else _from_flags(spec, opts, args[1:])
        proc = exec_process(g, record, spec, process, opts)
    from ...process import Process

    assert isinstance(proc, Process)
    pid_file = opts.get("pid_file")
    if pid_file:
        try:
            write_pid_file(str(pid_file), proc.pid)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if opts.get("detach"):
        proc.release()  # the process goes on; the engine, a subreaper, becomes its parent and reaps it
        return 0
    for name in _FORWARDED:
        signal.signal(getattr(signal, name), lambda sig, _frame: proc.send_signal(sig))
    code = proc.wait()
    return code if code >= 0 else 128 - code
