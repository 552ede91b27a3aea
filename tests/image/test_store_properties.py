"""Properties of the pure parts of the image store and its commands (Hypothesis): the names loads give,
users resolved from generated passwd and group files, stop signals, and sizes as the commands show them."""

from __future__ import annotations

import re
import signal
import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from nsprim.cli.progress import human_size
from nsprim.errors import ImageError
from nsprim.image.reference import ImageReference
from nsprim.image.runconfig import parse_stop_signal, resolve_user
from nsprim.image.store import load_name

_names = st.from_regex(r"[a-z_][a-z0-9_-]{0,15}", fullmatch=True)
_ids = st.integers(min_value=0, max_value=2**31)


_directories = st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s and "\0" not in s)


@given(tag=st.text(max_size=40), directory=_directories)
def test_a_loaded_image_is_named_by_a_reference_or_refused_with_a_typed_error(tag: str, directory: str) -> None:
    try:
        name = load_name(tag, Path("/srv") / directory)
    except ImageError:  # (an ImageReferenceError naming the part: a tag that is no reference)
        return
    assert str(ImageReference.parse(name)) == name


@given(
    users=st.dictionaries(_names, st.tuples(_ids, _ids), min_size=1, max_size=6),
    groups=st.dictionaries(_names, st.tuples(_ids, st.lists(_names, max_size=4)), max_size=6),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_users_resolve_to_what_passwd_and_group_say(
    users: dict[str, tuple[int, int]], groups: dict[str, tuple[int, list[str]]], data: st.DataObject
) -> None:
    passwd = "".join(f"{n}:x:{u}:{g}:gecos:/home/{n}:/bin/sh\n" for n, (u, g) in users.items())
    group = "".join(f"{n}:x:{gid}:{','.join(members)}\n" for n, (gid, members) in groups.items())
    name = data.draw(st.sampled_from(sorted(users)))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "etc").mkdir()
        (Path(tmp) / "etc/passwd").write_text(passwd)
        (Path(tmp) / "etc/group").write_text(group)
        user = resolve_user(name, [Path(tmp)])
        uid, gid = users[name]
        assert (user.uid, user.gid, user.home) == (uid, gid, f"/home/{name}")
        assert set(user.groups) == {g for g, members in groups.values() if name in members} - {gid}
        if groups:
            named = data.draw(st.sampled_from(sorted(groups)))
            assert resolve_user(f"{name}:{named}", [Path(tmp)]).gid == groups[named][0]
        assert resolve_user(f"{uid}:{gid + 1}", [Path(tmp)]).gid == gid + 1


@given(st.sampled_from(sorted(s.name for s in signal.Signals if not s.name.startswith("SIG_"))))
def test_every_signal_is_named_with_or_without_sig_and_by_number(name: str) -> None:
    number = int(signal.Signals[name])
    assert parse_stop_signal(name) == parse_stop_signal(name[3:].lower()) == parse_stop_signal(str(number)) == number


@given(st.integers(min_value=0, max_value=10**18))
@example(999_500_000)  # 999.5 MB: rounds up into the next unit
def test_sizes_show_three_digits_at_most_and_grow_with_the_bytes(n: int) -> None:
    shown = human_size(n)
    assert re.fullmatch(r"\d+ B|\d+(\.\d+)?(e\+\d+)? [kMGTP]B", shown), shown
    if n < 10**15:
        number = float(shown.split()[0])
        assert number < 1000
    assert (n < 1000) == shown.endswith(" B")
