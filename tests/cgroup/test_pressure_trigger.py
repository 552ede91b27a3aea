"""PressureTrigger, pure: what is rendered for the kernel, and what the kernel would refuse is refused first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.cgroup import PressureResource, PressureTrigger
from nsprim.errors import ConfigError

windows_us = st.integers(500_000, 10_000_000)


@given(st.sampled_from(list(PressureResource)), windows_us, st.data(), st.booleans())
def test_a_valid_trigger_renders_what_the_kernel_parses(
    resource: PressureResource, window_us: int, data: st.DataObject, full: bool
) -> None:
    stall_us = data.draw(st.integers(1, window_us))
    t = PressureTrigger(resource.value, stall_us / 1e6, window_us / 1e6, full=full)  # type: ignore[arg-type]
    assert t.resource is resource and t.file_name == f"{resource.value}.pressure"
    kind, stall, window = t.render().split()
    assert kind == ("full" if full else "some")
    assert (int(stall), int(window)) == (stall_us, window_us) == (t.stall_us, t.window_us)


@given(st.one_of(st.floats(max_value=0.499), st.floats(min_value=10.001)).filter(lambda w: w == w))
def test_a_window_outside_the_kernels_bounds_is_refused(window: float) -> None:
    with pytest.raises(ConfigError, match="window") as info:
        PressureTrigger(PressureResource.CPU, 0.1, window)
    assert info.value.what == "window"


@given(windows_us, st.one_of(st.floats(max_value=0.0), st.floats(min_value=10.001)))
def test_a_stall_of_nothing_or_over_the_window_is_refused(window_us: int, stall: float) -> None:
    with pytest.raises(ConfigError, match="stall"):
        PressureTrigger(PressureResource.IO, stall, window_us / 1e6)


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("disk", 0.1), "resource"),
        (("cpu", "0.1"), "stall"),
        (("cpu", True), "stall"),
        (("cpu", 0.1, float("nan")), "window"),
    ],
)
def test_bad_values_name_the_field(args: tuple[object, ...], what: str) -> None:
    with pytest.raises(ConfigError) as info:
        PressureTrigger(*args)  # type: ignore[arg-type]
    assert info.value.what == what
