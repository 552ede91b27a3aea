"""Security benchmark (issue #6): what the secure defaults cost per spawn of ``/bin/true``.

Per-spawn wall time from a warm Python process, interleaved in rounds, all in
new mnt, uts, ipc and pid namespaces:

* ``bare``      — no security steps
* ``caps``      — drop to Docker's capabilities (bounding set, capset)
* ``seccomp``   — no_new_privs + Docker's default filter (precompiled, ~170 instructions)
* ``policy``    — the whole :class:`~nsprim.security.SecurityPolicy` (non-dumpable setup,
  umask, capabilities, no_new_privs, filter), precompiled once
* ``policy+steps`` — the same, calling ``policy.steps()`` for each spawn (the filter
  comes from the policy's compile cache)

and, outside the spawns, the time to compile the default profile.  Ratios are
against ``bare`` (target: the whole policy costs at most 1.25x).

Then per *container* start (``Container(["/bin/true"]).host_root().run()``:
cgroup, overlay root, /proc, /sys, /dev, masks, pivot, clean-up), a quarter
as many iterations:

* ``container``         — the defaults (the whole policy)
* ``container-nosec``   — the same container without any security step (the
  default policy patched out for the measurement; there is no switch for it)

(``--no-container`` skips these.)

Run: ``python benchmarks/bench_security.py [--quick] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nsprim
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import nsprim

import _harness as h  # after the path set-up above

from nsprim.plan import NoNewPrivs, Step
from nsprim.security import Capabilities, CapsPhase, LoadSeccomp, SecurityPolicy, SetCapabilities
from nsprim.security.seccomp import compile_profile, docker_default_profile

NAMESPACES = {"mnt", "uts", "ipc", "pid"}
PAYLOAD = ["/bin/true"]
TARGET = 1.25


def spawn_case(steps: Sequence[Step] | None = None, policy: SecurityPolicy | None = None) -> h.BatchRunner:
    """A batch runner spawning /bin/true with *steps* (or the steps *policy* gives at each spawn)."""

    def once() -> None:
        plan = list(steps) if steps is not None else list(policy.steps()) if policy is not None else []
        nsprim.spawn(PAYLOAD, new=NAMESPACES, steps=plan).wait()

    return h.timed(once)


def container_case(*, secure: bool) -> h.BatchRunner:
    """A batch runner starting a host-root container of /bin/true, with or without the security steps."""
    from nsprim.container import Container
    from nsprim.security import SecurityPolicy

    box = Container(PAYLOAD).host_root()
    if not secure:
        # All capabilities, no seccomp, no no_new_privs, dumpable: the setup
        # steps of the policy reduced to what an unconfined container needs.
        box = box.security(SecurityPolicy().unconfined())

    def once() -> None:
        box.run()

    return h.timed(once)


def _extend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-container", action="store_true", help="skip the per-container-start cases")


def compile_time(n: int = 200) -> h.Stats:
    """Microseconds to compile Docker's default profile."""
    stats = h.Stats("compile default profile")
    profile = docker_default_profile()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        compile_profile(profile)
        stats.samples.append((time.perf_counter_ns() - t0) / 1000.0)
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """Run the security benchmark; returns the exit status."""
    args = h.parse_args("nsprim security benchmark (issue #6)", argv, _extend)
    cfg = h.Config.from_args(args)
    if os.geteuid() != 0:
        print("skipped: needs root (new pid/mnt namespaces and capability changes)")
        return 0
    if args.wait_quiet:
        h.wait_for_quiet(args.wait_quiet)
    program = compile_profile(docker_default_profile())
    caps = Capabilities.docker_default()
    policy = SecurityPolicy()
    cases = [
        h.Case("bare", spawn_case([])),
        h.Case("caps", spawn_case([SetCapabilities(caps, CapsPhase.ALL)])),
        h.Case("seccomp", spawn_case([NoNewPrivs(), LoadSeccomp(program)]), f"{len(program)} instructions"),
        h.Case("policy", spawn_case(policy.steps(program=program))),
        h.Case("policy+steps", spawn_case(policy=policy)),
    ]
    print(
        f"{cfg.iterations} spawns per case in {cfg.rounds} interleaved rounds after {cfg.warmup} warm-up"
        f"{' (quick: rough numbers)' if args.quick else ''}; python {sys.version.split()[0]}, "
        f"kernel {os.uname().release}, load {os.getloadavg()[0]:.2f}"
    )
    results = h.run_interleaved(cases, cfg)
    comp = compile_time(50 if args.quick else 300)
    h.print_table(results, "spawn of /bin/true in new mnt/uts/ipc/pid namespaces")
    h.print_table([comp], "outside the spawn")
    ratios = [
        h.Ratio("caps / bare", results["caps"], results["bare"]),
        h.Ratio("seccomp / bare", results["seccomp"], results["bare"]),
        h.Ratio("policy / bare", results["policy"], results["bare"], target=TARGET),
        h.Ratio("policy+steps / bare", results["policy+steps"], results["bare"]),
    ]
    if not args.no_container:
        ccfg = h.Config(
            iterations=max(10, cfg.iterations // 4),
            rounds=max(1, min(cfg.rounds, cfg.iterations // 4)),
            warmup=max(2, cfg.warmup // 2),
        )
        boxes = h.run_interleaved(
            [
                h.Case("container", container_case(secure=True)),
                h.Case("container-nosec", container_case(secure=False)),
            ],
            ccfg,
        )
        h.print_table(boxes, "container start of /bin/true (host root, cgroup, clean-up)")
        ratios.append(h.Ratio("container / container-nosec", boxes["container"], boxes["container-nosec"]))
        results = {**results, **boxes}
    h.print_ratios(ratios)  # with the ratio of minima: medians suffer most from a busy machine
    if args.json:
        h.write_json(args.json, h.as_json({**results, comp.name: comp}, ratios, namespaces=sorted(NAMESPACES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
