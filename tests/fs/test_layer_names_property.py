"""Properties of tar names, whiteouts and extraction, with Hypothesis.

Pure parts first (name cleaning, symlink containment, whiteout
classification); then whole extractions of small generated tars, cheap
enough to run a hundred: whatever the tar, extraction stays below its
directory, whiteouts delete what they name, and anything wrong with the
bytes comes back as an NsprimError with nothing left behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsprim.errors import NsprimError
from nsprim.fs.layers import UnsafeTarEntryError, apply_layer, extract_layer
from nsprim.fs.layers.members import OPAQUE_MARKER, WHITEOUT_PREFIX, classify, clean_name, symlink_escapes

COMPONENTS = ["a", "b", ".", "..", "", "é", ".wh.a", ".wh.b", ".wh.", ".wh...", ".wh..wh.a", OPAQUE_MARKER, "a\0"]
names = st.builds(
    lambda lead, parts, trail: lead + "/".join(parts) + trail,
    st.sampled_from(["", "/", "./", "//"]),
    st.lists(st.sampled_from(COMPONENTS), min_size=0, max_size=5),
    st.sampled_from(["", "/"]),
)


@given(name=st.one_of(names, st.text(max_size=40)))
def test_a_cleaned_name_stays_below_the_root(name: str) -> None:
    try:
        parts = clean_name(name)
    except UnsafeTarEntryError as exc:
        assert exc.entry == name
        return
    assert all(p not in ("", ".", "..") and "/" not in p and "\0" not in p for p in parts)
    joined = posixpath.normpath(posixpath.join("/root", *parts))
    assert joined == "/root" or joined.startswith("/root/")
    assert clean_name("/".join(parts)) == parts  # idempotent


@given(
    parts=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4).map(tuple),
    target=st.builds("/".join, st.lists(st.sampled_from(["a", "..", ".", "", "b"]), max_size=6)),
    absolute=st.booleans(),
)
def test_a_symlink_said_to_stay_inside_resolves_inside(parts: tuple[str, ...], target: str, absolute: bool) -> None:
    target = "/" + target if absolute else target
    if symlink_escapes(parts, target):
        return
    assert not target.startswith("/")
    # every prefix of the walk stays at or below the root, so the end does too
    where = posixpath.normpath(posixpath.join("/root", *parts[:-1], target))
    assert where == "/root" or where.startswith("/root/")


@given(name=names)
def test_whiteouts_name_what_they_delete(name: str) -> None:
    try:
        parts = clean_name(name)
    except UnsafeTarEntryError:
        return
    if not parts:
        return
    info = tarfile.TarInfo(name)
    base = parts[-1]
    try:
        mem = classify(info, parts)
    except UnsafeTarEntryError as exc:
        gone = base[len(WHITEOUT_PREFIX) :]
        assert base.startswith(WHITEOUT_PREFIX) and (gone in ("", ".", "..") or gone.startswith(WHITEOUT_PREFIX))
        assert exc.entry == name
        return
    if base == OPAQUE_MARKER:
        assert (mem.kind, mem.parts) == ("opaque", parts[:-1])
    elif base.startswith(WHITEOUT_PREFIX):
        assert mem.kind == "whiteout" and mem.parts == (*parts[:-1], base[len(WHITEOUT_PREFIX) :])
        assert not mem.parts[-1].startswith(WHITEOUT_PREFIX) and mem.parts[-1] not in ("", ".", "..")
    else:
        assert (mem.kind, mem.parts) == ("entry", parts)


# ---- whole extractions ---------------------------------------------------------------------------

SMALL = ["a", "b", "..", ".wh.a", ".wh.b", OPAQUE_MARKER]
small_names = st.builds(
    lambda lead, parts: lead + "/".join(parts),
    st.sampled_from(["", "/"]),
    st.lists(st.sampled_from(SMALL), min_size=1, max_size=3),
)
members = st.lists(
    st.tuples(
        small_names,
        st.sampled_from(["file", "dir", "symlink", "hardlink"]),
        st.sampled_from(["a", "b", "../a", "/etc", "a/b", "..", "b/../../x"]),
        st.binary(max_size=8),
    ),
    min_size=1,
    max_size=8,
)


def build_tar(entries: list[tuple[str, str, str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, link, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = 0o755
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, link
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, link
            else:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if kind == "file" else None)
    return buf.getvalue()


def lower_tree(root: Path) -> None:
    (root / "a").mkdir(parents=True)
    (root / "a" / "a").write_bytes(b"lower")
    (root / "b").write_bytes(b"lower b")


def planned(name: str) -> tuple[str, tuple[str, ...]] | None:
    try:
        parts = clean_name(name)
        return (
            (classify(tarfile.TarInfo(name), parts).kind, classify(tarfile.TarInfo(name), parts).parts)
            if parts
            else None
        )
    except UnsafeTarEntryError:
        return None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=members)
def test_any_tar_stays_inside_and_whiteouts_delete_what_they_name(entries: list[tuple[str, str, str, bytes]]) -> None:
    work = Path(tempfile.mkdtemp(prefix="nsprim-test-"))
    try:
        (work / "outside").mkdir()
        (work / "tar").write_bytes(build_tar(entries))
        root = work / "sub" / "root"
        lower_tree(root)
        try:
            apply_layer(work / "tar", root)
        except NsprimError:
            ok = False
        else:
            ok = True
        with contextlib.suppress(NsprimError):
            extract_layer(work / "tar", work / "sub" / "layer")
        assert list((work / "outside").iterdir()) == []  # nothing escaped, through `..` or a symlink
        assert {p.name for p in (work / "sub").iterdir()} <= {"root", "layer"}
        if not ok:
            return
        plans = [planned(name) for name, *_ in entries]
        for i, p in enumerate(plans):
            if p is None:
                continue
            kind, target = p
            later = [q for q in plans[i + 1 :] if q is not None and q[0] == "entry"]
            if kind == "whiteout" and not any(q[1][: len(target)] == target for q in plans if q and q[0] == "entry"):
                assert not os.path.lexists(root.joinpath(*target))  # deleted, and nothing put back
            if kind == "entry" and entries[i][1] == "file" and not any(target[: len(q[1])] == q[1] for q in later):
                path = root.joinpath(*target)
                assert stat.S_ISREG(os.lstat(path).st_mode) and path.read_bytes() == entries[i][3]
    finally:
        shutil.rmtree(work)


BASE = build_tar(
    [
        ("d", "dir", "", b""),
        ("d/f", "file", "", b"hello"),
        ("d/l", "symlink", "f", b""),
        ("h", "hardlink", "d/f", b""),
        ("d/.wh.gone", "file", "", b""),
        ("d/.wh..wh..opq", "file", "", b""),
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, len(BASE))),
)
def test_any_bytes_give_a_layer_or_a_typed_error_and_nothing_else(
    edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(BASE)
    for pos, byte in edits:
        data[pos] = byte
    work = Path(tempfile.mkdtemp(prefix="nsprim-test-"))
    try:
        (work / "t.tar").write_bytes(bytes(data[:cut]))
        try:
            extract_layer(work / "t.tar", work / "layer")
        except NsprimError:
            assert sorted(p.name for p in work.iterdir()) == ["t.tar"]  # all or nothing
        else:
            assert sorted(p.name for p in work.iterdir()) == ["layer", "t.tar"]
    finally:
        shutil.rmtree(work)
