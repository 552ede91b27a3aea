"""``nsprim run`` from a kept program: the same container, without the builder, the plan layer or argparse.

The same idea as ``nsprim-runtime create`` (:mod:`nsprim.oci.runtime.replay`):
the first ``nsprim run`` of a command line goes the general way, and records
what it started — the plan's steps as rows, its clone flags, the group's
hierarchies and control file writes — with the container's generated name as
a placeholder; the program is kept in ``<state dir>/plans`` under the digest
of the command line, its working directory, its environment, the effective
ids and umask, the boot, ``/proc/self/cgroup`` and nsprim's modules.  The
next identical command line runs the program: it makes the group, clones the
plan, passes on the signals ``docker run`` passes on, waits, says so if the
OOM killer ended the container, and removes the group.

Only a plain foreground ``run -- CMD`` with the options of :data:`KEPT_OPTIONS`
(no image, terminal, detach, user namespace, veth, ``--user``, ``--name``: a name
must be free, which the general way checks) has a program;
whatever the program did not foresee (a missing parent group, a failed step)
undoes what was made and runs the container the general way.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
__all__ = ["KEPT_OPTIONS", "PROGRAM_VERSION", "run_kept", "pending", "keep_run"]

PROGRAM_VERSION = 1
#: ``nsprim run`` options a kept program may have been made with (each takes a value unless in _FLAGS).
KEPT_OPTIONS = frozenset(
    {"--rootfs", "--ro", "--memory", "--cpus", "--pids", "--net", "--bind", "--tmpfs", "--hostname", "--env", "-e",
     "--cwd", "-w", "--init"}
)  # fmt: skip
_FLAGS = frozenset({"--ro", "--init"})
_ID = "\ue000I\ue000"
_PENDING: list[str] = []
# As FORWARDED_SIGNALS (nsprim.container.terminal), without a terminal.
_FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def _plain(options: list[str]) -> bool:
    """Whether *options* (before ``--``) are all kept options, each with its value."""
    i = 0
    while i < len(options):
        name, eq, _value = options[i].partition("=")
        if name not in KEPT_OPTIONS:
            return False
        if name == "--net" and (_value if eq else (options[i + 1] if i + 1 < len(options) else "")) == "veth":
            return False
        i += 1 if (eq or name in _FLAGS) else 2
    return i == len(options)


def _plans_dir() -> str:
    # nsprim.container.host.state_dir() as root (the only user of kept programs), without its package.
    return os.path.join(os.environ.get("NSPRIM_STATE_DIR") or "/run/nsprim", "plans")


def _key(options: list[str], cmd: list[str]) -> str:
    import marshal

    from ..kept import code_stamp, read_bytes

    mask = os.umask(0)
    os.umask(mask)
    facts = (
        PROGRAM_VERSION, code_stamp(), read_bytes("/proc/sys/kernel/random/boot_id"), read_bytes("/proc/self/cgroup"),
        os.geteuid(), os.getegid(), mask, os.getcwd(), options, cmd, sorted(os.environ.items()),
    )  # fmt: skip
    from _blake2 import blake2b

    return blake2b(marshal.dumps(facts), digest_size=20).hexdigest()


def run_kept(options: list[str], cmd: list[str]) -> int | None:
    """Run ``nsprim run OPTIONS -- CMD`` from its kept program: its exit status, or None when it has none
    (or it did not apply): then the caller runs it the general way, which keeps one (:func:`keep_run`)."""
    if os.geteuid() != 0 or not _plain(options):
        return None
    from ..kept import Fallback, load_from

    key = _key(options, cmd)
    kept = load_from(_plans_dir(), key, PROGRAM_VERSION)
    if kept is None:
        _PENDING.append(key)
        return None
    try:
        return _run(kept, [(_ID, f"nsprim-{os.urandom(6).hex()}")])
    except Fallback as why:
        if os.environ.get("NSPRIM_DEBUG"):
            print(f"nsprim run: its kept program does not apply ({why})", file=sys.stderr)
        return None


def pending() -> str | None:
    """The key a general ``run`` of this process should keep its program under, if any."""
    return _PENDING[-1] if _PENDING else None


def _run(kept: dict[str, object], pairs: list[tuple[str, str]]) -> int:
    from .. import kept as programs
    from .._sys import watcher
    from ..kept import remove_or_kill_groups

    program = programs.patched(kept, pairs)
    parts = [p for p in str(program["cgroup"]).split("/") if p]
    hierarchies: list[tuple[str, int, bool]] = program["hierarchies"]  # type: ignore[assignment]
    leaves = [os.path.join(mount_point, *parts) for mount_point, _v, _c in hierarchies]
    if TYPE_CHECKING:
        import signal
    else:
        import _signal as signal  # (`signal` makes enum classes at import)

    # Installed before the clone (as the general way's forwarder): a signal that comes before the
    # container exists is passed on once it does.
    started: list[programs.QuickProcess] = []
    early: list[int] = []

    def forward(number: int, _frame: object) -> None:
        if started:
            started[0].send_signal(number)
        else:
            early.append(number)

    forwarded = [getattr(signal, name) for name in _FORWARDED]
    before = [signal.signal(sig, forward) for sig in forwarded]
    made: list[str] = []
    try:
        try:
            programs.make_groups(program, parts, leaves, made)
            started.append(programs.spawn_program(program, leaves))
            for number in early:
                started[0].send_signal(number)
            status = started[0].wait()
        except BaseException:  # nothing of the container left: killed, reaped, its group removed
            if started and started[0].pidfd >= 0:
                started[0].kill()
                started[0].wait()
            remove_or_kill_groups(made, str(program["cgroup"]))
            if made:
                watcher.forget_cgroups(made)
            raise
    finally:
        for sig, handler in zip(forwarded, before, strict=True):
            signal.signal(sig, handler)
    oom = _oom_killed(program, leaves)
    remove_or_kill_groups(leaves, str(program["cgroup"]))
    watcher.forget_cgroups(leaves)
    if oom:
        limit = program.get("memory_text") or "its memory limit"
        print(f"nsprim: the container ran out of memory ({limit}) and the kernel killed it", file=sys.stderr)
    return 128 - status if status < 0 else status


def _oom_killed(program: dict[str, object], leaves: list[str]) -> bool:
    at = int(program["memory_at"])  # type: ignore[call-overload]
    if at < 0:
        return False
    version = program["hierarchies"][at][1]  # type: ignore[index]
    try:
        with open(os.path.join(leaves[at], "memory.events" if version == 2 else "memory.oom_control")) as f:
            for line in f:
                name, _sep, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value) > 0
    except (OSError, ValueError):
        pass
    return False


def keep_run(key: str, record: dict[str, object], memory_text: str | None) -> None:
    """Keep the program of the ``run`` that *record* (:func:`~nsprim.container.start.start_container`'s)
    saw, under *key*, if it can have one (see the module's documentation)."""
    from ..cgroup import CGroup, Controller, Resources
    from ..cgroup.host import cached_host_info
    from ..container.build import ChildPlan
    from ..container.config import ContainerConfig
    from ..container.host import group_controllers
    from ..container.preparation import Preparation
    from ..kept import group_program, mentions, program_rows, store_program_in, templated

    child, config, prep = record.get("child"), record.get("config"), record.get("preparation")
    group = record.get("cgroup")
    if not (
        isinstance(child, ChildPlan) and isinstance(config, ContainerConfig) and isinstance(prep, Preparation)
        and isinstance(group, CGroup) and record.get("warm") is None and record.get("monitor") is None
        and record.get("spawner") is None and not record.get("pairs")
    ):  # fmt: skip
        return
    if child.actions or child.pidns_fd >= 0 or config.tty or config.detach:
        return
    if prep.registration is not None or prep.veth is not None or prep.namespaces or prep.proc_view is not None:
        return
    info = cached_host_info()
    dirs = list(group.directories.items())
    hierarchies = [h for h, _d in dirs]
    leaves = [os.fspath(d) for _h, d in dirs]
    resources = config.resources or Resources()
    wanted = {Controller.parse(c) for c in group_controllers(resources, info)} | set(resources.controllers())
    cgroup_dir = record.get("cgroup_dir")
    into = leaves.index(str(cgroup_dir)) if cgroup_dir is not None and str(cgroup_dir) in leaves else -1
    if cgroup_dir is not None and into < 0:
        return
    memory = info.controllers.get(Controller.MEMORY)
    prefix, body = child.prefix, child.body
    program: dict[str, object] = {
        "version": PROGRAM_VERSION,
        "cgroup": os.fspath(group.path),
        **group_program(hierarchies, resources, wanted),
        "memory_at": hierarchies.index(memory) if memory in hierarchies else -1,
        "memory_text": memory_text,
        "clone_into": into,
        "clone_flags": child.clone_flags,
        "prefix": program_rows(prefix.steps if prefix is not None else ()),
        "rows": program_rows(body.steps),
        "vfork": body.vfork_safe and (prefix is None or prefix.vfork_safe),
    }
    name = str(record["id"])
    kept = templated(program, [(_ID, name)])
    if len(name) >= 8 and not mentions(kept, name):
        store_program_in(_plans_dir(), key, kept)
