"""A bundle's ``create`` as a program of plain values, built with the full model (see :mod:`.replay`).

:func:`compile_program` does what the general ``create`` decides before it
makes anything — the spec loaded and checked, the resources turned into
control file writes, the init's plan built — and writes the outcome as
values :mod:`.replay` runs without this model.  A spec the program cannot
express (hooks, namespaces to join, a user namespace, a console, a group
directory of an unusual shape) has none: it is created the general way.
"""

from __future__ import annotations

import os

from ...kept import group_program, mentions, program_rows, templated
from .replay import PROGRAM_VERSION, Lookup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .cli import Globals

__all__ = ["compile_program", "start_steps"]


def compile_program(
    g: Globals, opts: dict[str, object], container_id: str, found: Lookup
) -> tuple[dict[str, object], bool] | None:
    """The program for *found*'s spec with its strings as placeholders, and whether it may be kept for
    other containers (not when it names this one's id where no placeholder stands for it); None when the
    spec cannot have one.  Raises what the general ``create`` raises for a spec it refuses, before
    anything is made."""
    from pathlib import Path

    from ...cgroup import Controller
    from ...cgroup.group import DEFAULT_V2_CONTROLLERS
    from ...cgroup.host import cached_host_info
    from ...handoff import WaitStart
    from ...plan import Plan
    from ..convert import Handoff, bundle_plan
    from ..honour import check_spec
    from ..spec import Spec
    from .cgroups import cgroup_path, check_resources, join_steps
    from .created import LIFT, SECCOMP_CACHE

    bundle = Path(found.bundle)
    spec = Spec.loads(found.raw, source=str(bundle / "config.json"))  # the bytes the key is of
    if found.mount_order is not None and len(found.mount_order) == len(spec.mounts):
        spec = spec.replace(mounts=tuple(spec.mounts[i] for i in found.mount_order))  # the key's order
    rootfs = check_spec(spec, bundle)
    limits = check_resources(spec.linux.resources if spec.linux is not None else None)
    process, linux = spec.process, spec.linux
    assert process is not None and linux is not None
    if process.terminal or spec.hooks is not None or any(ns.path for ns in linux.namespaces):
        return None
    path = cgroup_path(spec, container_id)
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        return None  # the general create names the error
    from ...cgroup.naming import validate_name

    for part in parts:
        validate_name(part)
    info = cached_host_info()
    hierarchies = [h for h in info.hierarchies if h.version == 2 or h.controllers]
    resources = limits.resources
    needed = resources.controllers()
    serving = info.controllers
    if not hierarchies or any(c not in serving for c in needed):
        return None
    leaves = [h.mount_point.joinpath(*parts) for h in hierarchies]
    devices_at = -1
    devices: list[tuple[str, str]] = []
    if limits.devices:
        devices_at = hierarchies.index(serving[Controller.DEVICES])
        devices = [("devices.allow" if r.allow else "devices.deny", r.line()) for r in limits.devices]
    joins, born_in = join_steps(list(zip(hierarchies, leaves, strict=True)))
    into = leaves.index(born_in) if born_in is not None else -1
    preserve = int(opts.get("preserve_fds") or 0)  # type: ignore[call-overload]
    floor = LIFT + preserve
    handoff = Handoff(floor, -1, preserve, bool(opts.get("no_pivot")))
    own = {str(h.mount_point): leaf for h, leaf in zip(hierarchies, leaves, strict=True)}
    plan = bundle_plan(
        spec, bundle, handoff, hooks=False, cgroup_dirs=own, seccomp_cache=os.path.join(g.root, SECCOMP_CACHE)
    )
    for ns in plan.joined:
        ns.close()
    if plan.joined or plan.uid_map is not None or plan.gid_map is not None or plan.pidns_fd >= 0:
        return None
    prefix, body = Plan(tuple(joins)), Plan(plan.steps)
    base = len(joins) + next(i for i, s in enumerate(plan.steps) if isinstance(s, WaitStart)) + 1
    program: dict[str, object] = {
        "version": PROGRAM_VERSION,
        "rootfs": os.fspath(rootfs),
        "cgroup": path,
        **group_program(hierarchies, resources, DEFAULT_V2_CONTROLLERS | needed),
        "devices_at": devices_at,
        "devices": devices,
        "clone_into": into,
        "clone_flags": plan.clone_flags,
        "floor": floor,  # where the start socket is lifted to: the plan's descriptor of it
        "prefix": program_rows(joins),
        "rows": program_rows(plan.steps),
        "vfork": prefix.vfork_safe and body.vfork_safe,
        "start_steps": start_steps(plan.steps[base - len(joins) :], base),
    }
    kept = templated(program, found.pairs)
    kept["env"] = found.env  # (the spec's, with placeholders: a later spec may have it in another order)
    templated_id = any(value == container_id for _p, value in found.pairs)
    return kept, templated_id or not mentions(kept, container_id)


def start_steps(steps: tuple[object, ...], base: int) -> list[list[object]]:
    """What ``start`` needs to name a step that fails after the start: kind, words, exec details."""
    from ...plan import Exec, Step

    out: list[list[object]] = []
    for s in steps:
        assert isinstance(s, Step)
        kind = int(s.lower().kind)
        if isinstance(s, Exec):
            out.append([kind, s.describe(), os.fspath(s.file), s.searched() or ""])
        else:
            out.append([kind, s.describe(), "", ""])
    return [[base], *out]
