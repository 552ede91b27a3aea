"""Pure conversions: sizes, cpusets, shares <-> weight, resource validation (Hypothesis where it pays)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.cgroup import (
    MAX,
    CpuResources,
    CpusetResources,
    HugetlbLimit,
    IoDeviceLimit,
    MemoryResources,
    PidsResources,
    Resources,
    format_cpuset,
    format_size,
    parse_cpuset,
    parse_limit,
    parse_size,
    shares_to_weight,
    weight_to_shares,
)
from nsprim.cgroup.host import Controller
from nsprim.cgroup.v1 import blkio_weight_to_io, io_weight_to_blkio, plan_v1
from nsprim.cgroup.v2 import plan_v2
from nsprim.errors import ConfigError, UnsupportedError

UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "Ki": 1, "Mi": 2, "KiB": 1, "MB": 2, "g": 3, "B": 0}


@given(st.integers(min_value=0, max_value=2**63))
def test_format_then_parse_round_trips(n: int) -> None:
    assert parse_size(format_size(n)) == n


@given(st.integers(min_value=0, max_value=2**23), st.sampled_from(sorted(UNITS)))
def test_units_are_binary(k: int, unit: str) -> None:
    assert parse_size(f"{k}{unit}") == k * 1024 ** UNITS[unit]


@pytest.mark.parametrize(
    ("text", "value"),
    [("1.5G", 3 * 2**29), ("512M", 512 * 2**20), ("1Ki", 1024), ("0", 0), (" 4096 ", 4096), ("0.5K", 512), (7, 7)],
)
def test_examples(text: str | int, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", [-1, "-1", "", "12Q", "1.2.3G", "M", "0.3K", "1 G B", True, 1.5, None, "1e3"])
def test_bad_sizes_name_the_value(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_size(bad, "memory.max")  # type: ignore[arg-type]
    assert "memory.max" in str(info.value)
    assert repr(bad) in str(info.value) or str(bad) in str(info.value)


# What a size looks like, written with \d and \s: Hypothesis draws any script's digits and spaces for them.
SIZE_LIKE = r"\s*\d{1,22}(\.\d{1,3})?\s*[kmgtpeKMGTPE]?i?[bB]?\s*"
SIZE_MAX = 2**64 - 1  # what the kernel keeps sizes in
NON_ASCII_DIGITS = st.characters(categories=("Nd",)).filter(lambda c: not c.isascii())


@given(st.one_of(st.from_regex(SIZE_LIKE, fullmatch=True), st.text(max_size=12)))
def test_every_size_accepted_is_ascii_and_round_trips_within_range(text: str) -> None:
    try:
        n = parse_size(text)
    except ConfigError:
        return
    assert text.isascii(), f"{text!r} accepted as {n}"
    assert 0 <= n <= SIZE_MAX
    assert parse_size(format_size(n)) == n == parse_size(str(n))


@given(st.text(st.one_of(NON_ASCII_DIGITS, st.sampled_from("0123456789")), min_size=1, max_size=8), st.data())
def test_non_ascii_digits_are_refused(digits: str, data: st.DataObject) -> None:
    if digits.isascii():  # at least one digit of another script
        digits += data.draw(NON_ASCII_DIGITS)
    unit = data.draw(st.sampled_from(["", "M", "Ki", "G"]))
    with pytest.raises(ConfigError, match=r"memory\.max"):
        parse_size(digits + unit, "memory.max")


@pytest.mark.parametrize("big", [2**64, "16E", "16384P", "17179869184G", f"{2**64}"])
def test_sizes_beyond_64_bits_are_refused(big: int | str) -> None:
    assert parse_size(SIZE_MAX) == SIZE_MAX
    with pytest.raises(ConfigError, match=r"memory.max: .* more than 2\*\*64 - 1 bytes"):
        parse_size(big, "memory.max")


def test_limit_words() -> None:
    assert parse_limit("max") == MAX
    assert parse_limit("unlimited") == MAX
    assert parse_limit("2M") == 2 << 20


@given(st.sets(st.integers(min_value=0, max_value=300)))
def test_cpuset_round_trips(cpus: set[int]) -> None:
    assert parse_cpuset(format_cpuset(cpus)) == tuple(sorted(cpus))


@given(st.lists(st.tuples(st.integers(0, 64), st.integers(0, 8)), max_size=8))
def test_cpuset_parses_unions_of_ranges(ranges: list[tuple[int, int]]) -> None:
    text = ",".join(f"{lo}-{lo + n}" if n else str(lo) for lo, n in ranges)
    expected = sorted({c for lo, n in ranges for c in range(lo, lo + n + 1)})
    assert parse_cpuset(text) == tuple(expected)


@pytest.mark.parametrize("bad", ["3-1", "a", "1,,2", "-1", "1-", "0-3;5", "1 2"])
def test_bad_cpusets(bad: str) -> None:
    with pytest.raises(ConfigError, match="cpuset"):
        parse_cpuset(bad)


def test_cpuset_outside_host_cpus() -> None:
    with pytest.raises(ConfigError, match="online"):
        CpusetResources(cpus="0-4095")
    assert CpusetResources(cpus="0,0").cpus == "0"


@given(st.integers(min_value=1, max_value=10000))
def test_weight_shares_weight_is_identity(weight: int) -> None:
    shares = weight_to_shares(weight)
    assert 2 <= shares <= 262144
    assert shares_to_weight(shares) == weight


@given(st.integers(min_value=2, max_value=262144), st.integers(min_value=2, max_value=262144))
def test_shares_to_weight_is_monotonic_and_in_range(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert 1 <= shares_to_weight(lo) <= shares_to_weight(hi) <= 10000


def test_crun_formula_anchors() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39  # 1 + (1022 * 9999) // 262142
    assert shares_to_weight(262144) == 10000
    for bad in (1, 262145, 0):
        with pytest.raises(ConfigError):
            shares_to_weight(bad)


@given(st.integers(min_value=10, max_value=1000))
def test_blkio_weight_round_trip(w: int) -> None:
    assert abs(io_weight_to_blkio(blkio_weight_to_io(w)) - w) <= 1


def test_resources_normalise_and_list_controllers() -> None:
    r = Resources(
        cpu=CpuResources(cpus=0.2),
        memory=MemoryResources(max="64M", swap=0),
        pids=PidsResources(max="max"),
        hugetlb=(HugetlbLimit("2MB", "4M"),),
    )
    assert r.cpu is not None and r.cpu.quota_us == 20000 and r.cpu.period == 100000
    assert r.memory is not None and r.memory.max == 64 << 20
    assert r.pids is not None and r.pids.max == MAX
    assert r.controllers() == {Controller.CPU, Controller.MEMORY, Controller.PIDS, Controller.HUGETLB}
    assert Resources(memory=MemoryResources()).controllers() == frozenset()


@pytest.mark.parametrize(
    "build",
    [
        lambda: CpuResources(weight=100, shares=1024),
        lambda: CpuResources(weight=0),
        lambda: CpuResources(cpus=-1),
        lambda: CpuResources(quota_us=10),
        lambda: CpuResources(cpus=1, quota_us=100000),
        lambda: MemoryResources(max="-5M"),
        lambda: MemoryResources(high="lots"),
        lambda: PidsResources(max="1K"),
        lambda: PidsResources(max=-1),
        lambda: HugetlbLimit("3XB", 1),
        lambda: IoDeviceLimit(8, 0, rbps="fast"),
        lambda: Resources(memory="1G"),  # type: ignore[arg-type]
        lambda: Controller.parse("bogus"),
    ],
)
def test_bad_resources_are_config_errors(build: object) -> None:
    with pytest.raises(ConfigError):
        build()  # type: ignore[operator]


def test_plans_for_both_versions() -> None:
    r = Resources(
        cpu=CpuResources(shares=1024, cpus=0.5),
        memory=MemoryResources(max="64M", swap="16M"),
        pids=PidsResources(max=10),
        io=IoResources_example(),
    )
    v2 = {w.names[0]: w.value for c in r.controllers() for w in plan_v2(r, c, "v2")}
    assert v2["cpu.weight"] == "39"
    assert v2["cpu.max"] == "50000 100000"
    assert v2["memory.max"] == str(64 << 20)
    assert v2["memory.swap.max"] == str(16 << 20)
    assert v2["pids.max"] == "10"
    assert v2["io.max"] == "8:0 rbps=1048576 wiops=max"
    v1 = [(w.names[0], w.value) for c in sorted(r.controllers(), key=str) for w in plan_v1(r, c, "v1")]
    assert ("cpu.shares", "1024") in v1
    assert v1.index(("cpu.cfs_period_us", "100000")) < v1.index(("cpu.cfs_quota_us", "50000"))
    assert ("memory.memsw.limit_in_bytes", str(80 << 20)) in v1
    assert ("blkio.throttle.read_bps_device", "8:0 1048576") in v1
    with pytest.raises(UnsupportedError, match=r"memory\.high.*hybrid"):
        plan_v1(Resources(memory=MemoryResources(high="1G")), Controller.MEMORY, "hybrid")


def IoResources_example() -> object:
    from nsprim.cgroup import IoResources

    return IoResources(limits=(IoDeviceLimit(8, 0, rbps="1M", wiops="max"),))


_INF = float("inf")
_MiB_OR_MAX = st.one_of(st.just("max"), st.integers(min_value=6, max_value=64).map(lambda n: n << 20))


@given(_MiB_OR_MAX, st.one_of(st.none(), _MiB_OR_MAX), _MiB_OR_MAX, st.one_of(st.none(), _MiB_OR_MAX))
def test_v1_memory_writes_keep_the_limit_under_memsw_at_every_moment(
    limit: int | str, extra: int | str | None, new_max: int | str, swap: int | str | None
) -> None:
    """The kernel refuses memory.limit_in_bytes above memsw and memsw below the limit, so each write
    of a plan made for the values in force must be accepted, and the last state be the one asked for."""
    from nsprim.cgroup.v1 import MemoryNow

    def num(v: int | str | None) -> float:
        return _INF if v in ("max", None) else float(v)  # type: ignore[arg-type]

    memsw = "max" if limit == "max" or extra in ("max", None) else limit + extra  # type: ignore[operator]
    state = {"memory.limit_in_bytes": num(limit), "memory.memsw.limit_in_bytes": num(memsw)}
    res = Resources(memory=MemoryResources(max=new_max, swap=swap))
    for w in plan_v1(res, Controller.MEMORY, "hybrid", MemoryNow(limit, memsw)):  # type: ignore[arg-type]
        value = _INF if w.value == "-1" else float(w.value)
        if w.names[0] == "memory.limit_in_bytes":
            assert value <= state["memory.memsw.limit_in_bytes"], "the kernel would refuse this limit"
        else:
            assert value >= state["memory.limit_in_bytes"], "the kernel would refuse this memsw"
        state[w.names[0]] = value
    assert state["memory.limit_in_bytes"] == num(new_max)
    if swap is not None:
        assert state["memory.memsw.limit_in_bytes"] == num(new_max) + num(swap)
    elif memsw != "max" and limit != "max":  # a limit alone keeps the swap allowed
        assert state["memory.memsw.limit_in_bytes"] == num(new_max) + (num(memsw) - num(limit))


def test_memory_sizes_beyond_what_the_kernel_keeps_are_refused() -> None:
    from nsprim.cgroup.resources import MEMORY_MAX_BYTES

    assert MemoryResources(max=MEMORY_MAX_BYTES).max == MEMORY_MAX_BYTES
    for too_big in (MEMORY_MAX_BYTES + 1, 2**63, 2**64 - 1):  # "no limit" to the kernel's page counters
        with pytest.raises(ConfigError, match="largest limit the kernel keeps"):
            MemoryResources(max=too_big)
        with pytest.raises(ConfigError, match=r"memory\.swap"):
            MemoryResources(max="1G", swap=too_big)
    with pytest.raises(ConfigError):
        MemoryResources(max=2**64)  # the kernel's parser would wrap it around to 0
