"""A :class:`~nsprim.costs.model.CostReport` for people: :func:`table` and :func:`verdict`.

The verdict is the sentence to take into a meeting: what a container with
its own network namespace costs to start, to tear down and to keep, what
one without costs, and how much kernel memory a thousand of them take.  A
run on a busy machine gets no verdict, and the reason instead
(:func:`no_verdict_reason`).
"""

from __future__ import annotations

from .model import Cost, CostReport, JsonValue

__all__ = ["table", "verdict", "no_verdict_reason", "json_document", "kib"]


def kib(n: int | float) -> str:
    """*n* bytes as kB (1024), for the reader."""
    return f"{n / 1024:,.0f} kB" if abs(n) >= 10 * 1024 else f"{n / 1024:,.1f} kB"


def _mib(n: int | float) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def _row(c: Cost, width: int) -> str:
    adds = "" if c.kind.value == "baseline" else f"{c.added_ms:+8.3f}"
    ref = "" if c.reference is None else c.reference
    if c.kind.value == "baseline":
        ref = "(the reference)"
    elif c.reference is None:
        ref = "(on its own)"
    return f"  {c.name:<{width}} {c.time.median_ms:8.3f} {c.time.p90_ms:8.3f} {adds:>8}  {ref:<20} {c.note}".rstrip()


def table(report: CostReport) -> str:
    """The figures as a plain-text table, with the kernel memory, teardown and page cache below it."""
    rows = (report.baseline, *report.costs)
    width = max(len(c.name) for c in rows)
    out = [
        f"nsprim cost ({report.mode.value}): kernel {report.kernel}, {report.cgroup_mode} cgroups, "
        f"{report.cpus} CPUs, {report.elapsed_s:.1f} s",
        "",
        f"  {'what':<{width}} {'median':>8} {'p90':>8} {'adds':>8}  {'compared with':<20} (ms)",
    ]
    out += [_row(c, width) for c in rows]
    if report.overlay:
        out += ["", "  overlay mount / umount by lower layers (tmpfs; ms, median and p90):"]
        for o in report.overlay:
            out.append(
                f"  {o.layers:>5} layers  mount {o.mount.median_ms:7.3f} {o.mount.p90_ms:7.3f}"
                f"   umount {o.umount.median_ms:7.3f} {o.umount.p90_ms:7.3f}"
            )
    if report.memory:
        method = report.memory[0].method.value
        out += ["", f"  kernel memory per sleeping container ({method} of their parent group;"]
        out.append("  cross-check: the machine's /proc/meminfo Slab+KernelStack+PageTables+Percpu):")
        for m in report.memory:
            check = "" if m.meminfo_per_container_bytes is None else f" (meminfo: {kib(m.meminfo_per_container_bytes)})"
            out.append(f"    {m.label}: {kib(m.per_container_bytes)}{check}, {m.containers} containers alive")
    if report.net_teardown is not None:
        t = report.net_teardown
        freed = "not within 5 s" if t.freed_after_ms is None else f"{t.freed_after_ms:.1f} ms after the last exit"
        work = "unknown" if t.kernel_work_ms is None else f"{t.kernel_work_ms:.2f} ms"
        out += ["", f"  network namespace teardown ({t.namespaces} namespaces): memory given back {freed};"]
        out.append(f"    kernel worker time per namespace: {work}")
    if report.page_cache is not None:
        p = report.page_cache
        resident = "" if p.resident_bytes is None else f"; resident after: {_mib(p.resident_bytes)}"
        out += [
            "",
            f"  page cache: a {_mib(p.file_bytes)} file read in {p.containers} containers of one image took "
            f"{_mib(p.charged_bytes)} ({p.copies:.2f} copies){resident}",
        ]
    for what, why in report.skipped.items():
        out.append(f"  not measured: {what}: {why}")
    return "\n".join(out)


def no_verdict_reason(report: CostReport) -> str | None:
    """Why *report* gets no verdict (a busy machine, a missing measurement), or None."""
    if report.busy.busy:
        return (
            f"the machine was busy: other work used {report.busy.other_cpus:.2f} of its {report.busy.cpus} CPUs "
            f"during the measurement (at most {report.busy.limit} leaves the figures trustworthy); "
            "run again when it is quiet"
        )
    names = {c.name for c in report.costs}
    if not {"container, cold", "container without netns, cold"} <= names:
        return "the whole containers were not measured"
    if report.kernel_memory(network_namespace=True) is None or report.kernel_memory(network_namespace=False) is None:
        return "kernel memory was not measured: " + "; ".join(report.skipped.values())
    return None


def verdict(report: CostReport) -> str | None:
    """The plain-words verdict, or None (see :func:`no_verdict_reason`)."""
    if no_verdict_reason(report) is not None:
        return None
    net = report.kernel_memory(network_namespace=True)
    bare = report.kernel_memory(network_namespace=False)
    assert net is not None and bare is not None
    cold = report.cost("container, cold").time.median_ms
    cold_bare = report.cost("container without netns, cold").time.median_ms
    t = report.net_teardown
    work = t.kernel_work_ms if t is not None and t.kernel_work_ms is not None else None
    teardown = "" if work is None else f", {work:.1f} ms of kernel work to tear down"
    thousand = 1000 * net.per_container_bytes / 1e6
    thousand_bare = 1000 * bare.per_container_bytes / 1e6
    return (
        f"A container with its own network namespace costs {cold:.1f} ms to start{teardown}, "
        f"and {kib(net.per_container_bytes)} of kernel memory; without one, {cold_bare:.1f} ms and "
        f"{kib(bare.per_container_bytes)}. 1,000 of them fit in {thousand:,.0f} MB of kernel memory "
        f"({thousand_bare:,.0f} MB without network namespaces), plus what their programs use. "
        f"(A bare fork+exec+wait here: {report.baseline.time.median_ms:.2f} ms.)"
    )


def json_document(report: CostReport) -> dict[str, JsonValue]:
    """What ``nsprim cost --json`` prints: the figures, the verdict, and why there is none."""
    doc = report.to_json()
    doc["verdict"] = verdict(report)
    doc["no_verdict_reason"] = no_verdict_reason(report)
    return doc
