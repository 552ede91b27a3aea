"""The pure parts of :mod:`nsprim.costs`: spreads, the memory readers on both cgroup versions, the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.costs.memory import file_cache_bytes, kernel_bytes
from nsprim.costs.model import Cost, Kind, Spread


@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=1, max_size=50))
def test_a_spread_lies_within_its_samples(seconds: list[float]) -> None:
    s = Spread.of(seconds)
    low, high = min(seconds) * 1e3, max(seconds) * 1e3
    assert low - 1e-9 <= s.median_ms <= s.p90_ms + 1e-9 <= high + 2e-9
    assert s.samples == len(seconds)
    assert json.loads(json.dumps(s.to_json()))["samples"] == len(seconds)


def test_a_spread_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        Spread.of([])


def test_the_median_and_p90_of_known_samples() -> None:
    s = Spread.of([i / 1000 for i in range(1, 11)])  # 1..10 ms
    assert s.median_ms == pytest.approx(5.5)
    assert s.p90_ms == pytest.approx(9.1)


def test_a_cost_as_json() -> None:
    c = Cost("net namespace", Kind.NAMESPACE, Spread.of([0.001, 0.002]), 0.25, "baseline", "note")
    assert c.to_json() == {
        "name": "net namespace",
        "kind": "namespace",
        "time": {"median_ms": 1.5, "p90_ms": 1.9, "samples": 2},
        "added_ms": 0.25,
        "reference": "baseline",
        "note": "note",
    }


def test_kernel_memory_on_cgroup_v1(tmp_path: Path) -> None:
    (tmp_path / "memory.kmem.usage_in_bytes").write_text("123456\n")
    (tmp_path / "memory.stat").write_text("cache 4096\nrss 8192\ntotal_cache 12288\ntotal_rss 8192\n")
    assert kernel_bytes(tmp_path, 1) == 123456
    assert file_cache_bytes(tmp_path, 1) == 12288  # the hierarchical total, descendants included


def test_kernel_memory_on_cgroup_v2(tmp_path: Path) -> None:
    (tmp_path / "memory.stat").write_text("anon 100\nfile 4096\nkernel 65536\nkernel_stack 16384\nslab 30000\n")
    assert kernel_bytes(tmp_path, 2) == 65536
    assert file_cache_bytes(tmp_path, 2) == 4096


def test_kernel_memory_on_cgroup_v2_without_a_kernel_field(tmp_path: Path) -> None:
    fields = {"kernel_stack": 16384, "pagetables": 8192, "percpu": 1000, "sock": 0, "slab": 30000, "vmalloc": 4096}
    (tmp_path / "memory.stat").write_text("anon 100\n" + "".join(f"{k} {v}\n" for k, v in fields.items()))
    assert kernel_bytes(tmp_path, 2) == sum(fields.values())
