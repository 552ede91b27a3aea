"""Property: any change made in a container round-trips through commit and apply.

Hypothesis builds a random lower tree and a random sequence of changes
(writes, deletes, renames, chmods, directory replacements, symlinks, new
directories) made through a mounted overlay.  The committed tar, extracted
as a layer over the same lower tree or applied onto a copy of it, must
reproduce exactly what the container saw.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsprim.fs.layers import apply_layer, commit, extract_layer
from nsprim.fs.overlay import OverlayMount

from .helpers import snapshot

NAMES = st.sampled_from(["a", "b", "c", "dd", "e.txt"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map(tuple)

base_trees = st.lists(st.tuples(PATHS, st.sampled_from(["file", "dir"]), st.binary(max_size=20)), max_size=12)
ops = st.lists(
    st.tuples(
        st.sampled_from(["write", "delete", "rename", "chmod", "replace_dir", "mkdir", "symlink"]),
        PATHS,
        PATHS,
        st.binary(max_size=20),
        st.sampled_from([0o600, 0o644, 0o755, 0o700]),
    ),
    min_size=1,
    max_size=10,
)


def build(root: Path, tree: list[tuple[tuple[str, ...], str, bytes]]) -> None:
    for parts, kind, data in tree:
        p = root.joinpath(*parts)
        try:
            if kind == "dir":
                p.mkdir(parents=True, exist_ok=True)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
        except OSError:
            continue  # a file where a directory was wanted: skip


def apply_op(m: Path, op: tuple[str, tuple[str, ...], tuple[str, ...], bytes, int]) -> None:
    kind, a, b, data, mode = op
    pa, pb = m.joinpath(*a), m.joinpath(*b)
    try:
        if kind == "write":
            pa.parent.mkdir(parents=True, exist_ok=True)
            pa.write_bytes(data)
        elif kind == "delete":
            if pa.is_dir() and not pa.is_symlink():
                shutil.rmtree(pa)
            else:
                pa.unlink()
        elif kind == "rename":
            if pb.exists() or pb.is_symlink() or pa == pb or pa in pb.parents:
                return
            pb.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(pa, pb)  # renaming a lower dir is EXDEV with redirect_dir=off: move copies
        elif kind == "chmod":
            if not pa.is_symlink():
                os.chmod(pa, mode)
        elif kind == "replace_dir":
            if pa.is_dir() and not pa.is_symlink():
                shutil.rmtree(pa)
                pa.mkdir()
                (pa / "new").write_bytes(data)
        elif kind == "mkdir":
            pa.mkdir(parents=True, exist_ok=True)
        elif kind == "symlink":
            pa.parent.mkdir(parents=True, exist_ok=True)
            os.symlink("/".join(b), pa)
    except OSError:
        pass  # not possible in this tree (a file in the way, ...): the container would see an error too


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=base_trees, changes=ops)
def test_changes_round_trip_through_commit_and_apply(
    tmp_path: Path,
    tree: list[tuple[tuple[str, ...], str, bytes]],
    changes: list[tuple[str, tuple[str, ...], tuple[str, ...], bytes, int]],
) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        base = work / "base"
        base.mkdir()
        build(base, tree)
        for d in ("upper", "work", "merged", "check"):
            (work / d).mkdir()
        with OverlayMount(work / "merged", [base], work / "upper", work / "work") as ov:
            for op in changes:
                apply_op(ov.target, op)
            view = snapshot(ov.target, times=True)
        tar = work / "layer.tar"
        commit(work / "upper", tar)

        extract_layer(tar, work / "layer")
        with OverlayMount(work / "check", [work / "layer", base]) as ro:
            assert snapshot(ro.target, times=True) == view

        flat = work / "flat"
        shutil.copytree(base, flat, symlinks=True)
        apply_layer(tar, flat)
        assert snapshot(flat, times=True) == view
    finally:
        shutil.rmtree(work)


@pytest.mark.parametrize("seed", range(3))
def test_double_commit_is_stable(tmp_path: Path, seed: int) -> None:
    """Committing, extracting and committing again gives the same tar (same digest)."""
    base = tmp_path / "base"
    build(base, [(("a", "b"), "file", b"x"), (("c",), "dir", b""), (("dd",), "file", bytes([seed]))])
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    with OverlayMount(tmp_path / "merged", [base], tmp_path / "upper", tmp_path / "work") as ov:
        apply_op(ov.target, ("delete", ("a", "b"), ("a",), b"", 0))
        apply_op(ov.target, ("replace_dir", ("c",), ("c",), b"y", 0))
        apply_op(ov.target, ("write", ("n",), ("n",), bytes([seed]), 0))
    first = commit(tmp_path / "upper", tmp_path / "1.tar")
    extract_layer(tmp_path / "1.tar", tmp_path / "layer")
    second = commit(tmp_path / "layer", tmp_path / "2.tar")
    assert first.digest == second.digest
