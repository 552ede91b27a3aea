"""Pure parts of user namespaces: id map summaries, subordinate slots, the unmapped-id hint."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.container.userns import SLOT_SIZE, free_slots, slots
from nsprim.errors import StepError, SyscallError
from nsprim.idmap import IdMap, write_id_maps
from nsprim.plan import Mkdir

BIG = IdMap.of([(i * 10, 100000 + i * 10, 5) for i in range(340)])


def test_a_map_of_340_ranges_is_summarized_in_one_line() -> None:
    assert BIG.summary() == "0->100000+5, 10->100010+5, 20->100020+5 ... and 337 more"
    assert str(BIG) == BIG.summary()
    assert IdMap.single(0, 1000).summary() == "0->1000+1"


def test_a_refused_map_write_names_the_map_in_one_line() -> None:
    # Our own (initial) namespace's map is written once and for all: any write is refused.
    with pytest.raises(SyscallError) as info:
        write_id_maps(os.getpid(), BIG, None, deny_setgroups=False)
    text = str(info.value)
    assert "\n" not in text and "... and 337 more" in text and text.count("->") == 3, text


def test_an_unmapped_id_is_explained() -> None:
    text = str(StepError(errno.EOVERFLOW, Mkdir("/run/nsprim/root"), 8))
    assert text.startswith("mkdir `/run/nsprim/root`: Value too large for defined data type (an id not mapped")
    assert "uid_map or gid_map" in text and text.endswith("[plan step 8]")


spans = st.lists(st.tuples(st.integers(0, 2**24), st.integers(1, 4 * SLOT_SIZE)), max_size=6)


@given(
    st.lists(st.tuples(st.integers(0, 2**24), st.integers(0, 8 * SLOT_SIZE)), max_size=4),
    spans,
    spans,
)
def test_free_slots_are_whole_unused_and_in_order(
    ranges: list[tuple[int, int]], used_u: list[tuple[int, int]], used_g: list[tuple[int, int]]
) -> None:
    used_uids = [(s, s + n) for s, n in used_u]
    used_gids = [(s, s + n) for s, n in used_g]
    every = list(slots(ranges))
    found = list(free_slots(ranges, ranges, used_uids, used_gids))
    for u, g in found:
        assert u == g and any(s <= u and u + SLOT_SIZE <= s + n for s, n in ranges)
        for a, b in (*used_uids, *used_gids):
            assert b <= u or u + SLOT_SIZE <= a
    # Every slot that no span touches is offered, first come first.
    untouched = [u for u in every if all(b <= u or u + SLOT_SIZE <= a for a, b in (*used_uids, *used_gids))]
    assert [u for u, _ in found] == untouched


def test_slots_split_ranges_into_whole_slots() -> None:
    assert list(slots([(100000, 3 * SLOT_SIZE + 5), (10, 100)])) == [100000 + k * SLOT_SIZE for k in range(3)]
