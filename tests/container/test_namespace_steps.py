"""A container's plan takes its namespace, id-map and private-root steps from the helper
spawn() uses (nsprim.spawning.namespace_steps)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import nsprim.container.build as childplan
from nsprim import IdMap, NamespaceType
from nsprim.container import Container
from nsprim.plan import SetSid, Step
from nsprim.spawning import namespace_steps


def _at(steps: Sequence[Step], part: Sequence[Step]) -> int:
    """Where *part* runs, contiguous, in *steps* (-1: not there)."""
    n = len(part)
    return next((i for i in range(len(steps) - n + 1) if tuple(steps[i : i + n]) == tuple(part)), -1)


def test_a_containers_plan_has_the_namespace_steps_of_namespace_steps() -> None:
    uid_map, gid_map = IdMap.single(0, 100000, 65536), IdMap.single(0, 100000, 65536)
    types = ("user", "mnt", "pid", "uts", "ipc", "time")
    box = Container(["/bin/true"]).host_root().namespaces(*types).user_namespace(uid_map, gid_map)
    cfg = box.config
    child = childplan.build_plan(cfg, cgroup=None, state=None, stdio=[])
    ns = namespace_steps(
        cfg.namespaces,
        uid_map=uid_map,
        gid_map=gid_map,
        deny_setgroups=os.geteuid() != 0,
        become_root=True,
        private_root=cfg.root is None,
    )
    body = child.body.steps
    assert body[0] == SetSid() and _at(body, ns.maps) == 1  # the maps' wait, then root inside
    assert NamespaceType.TIME in cfg.namespaces and ns.enter  # (a time namespace: unshared after the clone)
    assert _at(body, ns.enter) > len(ns.maps)
    assert child.clone_flags == ns.clone_flags
    assert len(child.actions) == 1  # the maps' writer
    assert ns.write_maps is not None
