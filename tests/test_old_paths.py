"""The modules that moved into nsprim.fs keep working under their old names, with a warning."""

from __future__ import annotations

import importlib
import sys

import pytest

OLD = {
    "nsprim.mount": ("nsprim.fs.mount", "MountFlags"),
    "nsprim.overlay": ("nsprim.fs.overlay", "OverlayMount"),
    "nsprim.rootfs": ("nsprim.fs.rootfs", "RootFS"),
    "nsprim.rootfs_steps": ("nsprim.fs.steps", "MountInRoot"),
    "nsprim.layers": ("nsprim.fs.layers", "LayerStore"),
}


@pytest.mark.parametrize("old", sorted(OLD))
def test_an_old_path_warns_and_names_the_same_objects(old: str) -> None:
    new, name = OLD[old]
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_old_mount_names_the_mount_table_too() -> None:
    from nsprim.fs.mountinfo import MountInfo

    sys.modules.pop("nsprim.mount", None)
    with pytest.warns(DeprecationWarning):
        old = importlib.import_module("nsprim.mount")
    assert old.MountInfo is MountInfo


def test_old_layer_submodules_are_the_new_modules() -> None:
    sys.modules.pop("nsprim.layers", None)
    with pytest.warns(DeprecationWarning):
        importlib.import_module("nsprim.layers")
    from nsprim.fs.layers import store

    assert importlib.import_module("nsprim.layers.store") is store
