"""``nsprim cost``: the figures of a quick run agree with each other, and the run leaves nothing behind."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nsprim
from nsprim.costs import SCHEMA_VERSION, CostReport, Holder, Kind, MemoryMethod, Mode
from nsprim.costs.fixture import has_overlay
from nsprim.costs.report import json_document, no_verdict_reason, table, verdict

from .conftest import requires_root

pytestmark = requires_root

SRC = str(Path(nsprim.__file__).resolve().parent.parent)
TEN_MB = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def report() -> CostReport:
    return nsprim.cost(quick=True)


def test_the_baseline_is_the_smallest(report: CostReport) -> None:
    base = report.baseline.time.median_ms
    assert report.baseline.kind is Kind.BASELINE and base > 0
    containers = [c for c in report.costs if c.kind is Kind.CONTAINER]
    assert len(containers) == 4 and base < max(c.time.median_ms for c in containers)
    for c in report.costs:
        if c.kind is Kind.CONTAINER:
            # (p90: under emulation, a cgroup v2 VM, a quick run's medians cross)
            assert c.time.p90_ms > base, c
        elif c.kind in (Kind.NAMESPACE, Kind.SECURITY, Kind.ROOT):
            # One step alone adds tens to hundreds of microseconds: within the noise of a quick run.
            assert c.time.p90_ms >= base * 0.5, c


def test_a_container_with_a_network_namespace_costs_more(report: CostReport) -> None:
    net = report.kernel_memory(network_namespace=True)
    bare = report.kernel_memory(network_namespace=False)
    assert net is not None and bare is not None
    assert net.per_container_bytes > bare.per_container_bytes
    with_net = report.cost("container, cold").time
    without = report.cost("container without netns, cold").time
    assert with_net.p90_ms > without.median_ms
    assert report.cost("net namespace").time.p90_ms > report.baseline.time.median_ms


def test_kernel_memory_is_positive_and_below_10_mb_per_container(report: CostReport) -> None:
    assert {(m.holder, m.network_namespace) for m in report.memory} == {
        (Holder.CONTAINER, True), (Holder.CONTAINER, False), (Holder.NAMESPACES, True), (Holder.NAMESPACES, False),
        (Holder.PROCESS, False),
    }  # fmt: skip
    for m in report.memory:
        assert 0 < m.per_container_bytes < TEN_MB, m
        assert m.method in (MemoryMethod.CGROUP_V1_KMEM, MemoryMethod.CGROUP_V2_STAT)
        if m.holder is Holder.CONTAINER:
            assert m.live and m.live[-1].live == m.containers - 1
    alone = report.kernel_memory(network_namespace=True, holder=Holder.NAMESPACES)
    bare = report.kernel_memory(network_namespace=False, holder=Holder.NAMESPACES)
    floor = report.kernel_memory(network_namespace=False, holder=Holder.PROCESS)
    assert alone is not None and bare is not None and floor is not None
    assert alone.per_container_bytes > bare.per_container_bytes


def test_the_other_figures(report: CostReport) -> None:
    assert report.mode is Mode.QUICK
    if has_overlay():
        assert [o.layers for o in report.overlay] == [1, 10, 100]
        assert all(o.mount.median_ms > 0 for o in report.overlay)
    else:  # (the cgroup v2 VM's kernel)
        assert report.overlay == () and "no overlay" in report.skipped["overlay"]
    if report.page_cache is None:  # a scratch directory on tmpfs (a VM's /tmp), or no overlay
        assert "tmpfs" in report.skipped.get("page cache", "") or not has_overlay()
    else:
        # One image's file read in several containers is cached about once, not once per container.
        assert 0.5 < report.page_cache.copies < 1.5, report.page_cache
    assert report.net_teardown is not None and report.net_teardown.freed_after_ms is not None
    groups = [c for c in report.costs if c.kind is Kind.CGROUP]
    assert any(c.name.startswith("cgroup memory") for c in groups)
    assert all(c.added_ms > 0 for c in groups)


def test_the_table_and_the_verdict(report: CostReport) -> None:
    text = table(report)
    assert "baseline" in text and "kernel memory per sleeping container" in text
    said, why = verdict(report), no_verdict_reason(report)
    assert (said is None) != (why is None)
    if said is not None:
        assert "network namespace" in said and "1,000 of them fit in" in said
    else:
        assert report.busy.busy or "not measured" in why


def test_the_json_schema(report: CostReport) -> None:
    doc = json.loads(json.dumps(json_document(report)))
    assert doc["schema"] == SCHEMA_VERSION
    assert set(doc) == {
        "schema", "mode", "host", "baseline", "costs", "overlay", "page_cache", "net_teardown", "memory",
        "busy", "elapsed_s", "skipped", "verdict", "no_verdict_reason",
    }  # fmt: skip
    assert set(doc["baseline"]) == {"name", "kind", "time", "added_ms", "reference", "note"}
    assert set(doc["baseline"]["time"]) == {"median_ms", "p90_ms", "samples"}
    assert set(doc["memory"][0]) == {
        "label", "holder", "network_namespace", "containers", "per_container_bytes", "method",
        "meminfo_per_container_bytes", "live",
    }  # fmt: skip
    assert set(doc["net_teardown"]) == {"namespaces", "freed_after_ms", "kernel_work_ms", "method"}
    if doc["page_cache"] is not None:
        assert set(doc["page_cache"]) == {
            "containers", "file_bytes", "charged_bytes", "resident_bytes", "copies", "method",
        }  # fmt: skip
    assert set(doc["busy"]) == {"other_cpus", "cpus", "limit", "busy"}


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from nsprim.cli import main\n"
        f"sys.exit(main(['cost', '--quick', '--plot', {str(tmp_path / 'plots')!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0
    assert "matplotlib is not installed" in r.stderr and "nsprim[plot]" in r.stderr
    assert r.stdout == ""  # refused before measuring anything
    assert not (tmp_path / "plots").exists()


def test_the_command_prints_json_and_writes_plots(tmp_path: Path) -> None:
    """One quick run of the command: its JSON, and the plots when matplotlib is there."""
    plots = importlib.util.find_spec("matplotlib") is not None  # (not imported here: it keeps fonts open)
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run(
        [sys.executable, "-m", "nsprim", "cost", "--quick", "--json", *(["--plot", str(tmp_path)] if plots else [])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["mode"] == "quick" and doc["baseline"]["time"]["median_ms"] > 0
    assert doc["verdict"] is not None or doc["no_verdict_reason"]
    if plots:
        from nsprim.costs.plot import PLOTS

        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PLOTS)
        for name in PLOTS:
            assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
