"""Moved modules and names keep working under their old paths (with a warning where they go)."""

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


def test_nsprim_start_warns_and_is_lowlevel_start() -> None:
    import nsprim
    import nsprim.lowlevel

    with pytest.warns(DeprecationWarning, match="nsprim.start moved to nsprim.lowlevel.start"):
        old = nsprim.start  # type: ignore[attr-defined]
    assert old is nsprim.lowlevel.start
    assert "start" not in nsprim.__all__


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("spawn", "nsprim.spawning"),
        ("run", "nsprim.spawning"),
        ("open_streams", "nsprim.spawning"),
        ("join_namespaces", "nsprim.spawning"),
        ("Streams", "nsprim.spawning"),
        ("start", "nsprim.lowlevel"),
        ("ParentAction", "nsprim.lowlevel"),
    ],
)
def test_process_creation_keeps_its_names_in_nsprim_process(name: str, module: str) -> None:
    import warnings

    import nsprim.process

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both modules are public: no warning
        old = getattr(nsprim.process, name)
    assert old is getattr(importlib.import_module(module), name)


def test_headline_classes_are_exported_lazily() -> None:
    import subprocess

    code = (
        "import sys, nsprim\n"
        "assert 'nsprim.container' not in sys.modules and 'nsprim.security' not in sys.modules\n"
        "from nsprim.container import Container\n"
        "from nsprim.security import SecurityPolicy\n"
        "assert nsprim.Container is Container and nsprim.SecurityPolicy is SecurityPolicy\n"
        "assert {'Container', 'SecurityPolicy'} <= set(nsprim.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# (old path, old name) -> the class in nsprim.errors it now names
OLD_ERRORS = {
    ("nsprim", "ProcessLookupFailed"): "NoSuchProcessError",
    ("nsprim.errors", "ProcessLookupFailed"): "NoSuchProcessError",
    ("nsprim", "UnsafeTarEntry"): "UnsafeTarEntryError",
    ("nsprim.errors", "UnsafeTarEntry"): "UnsafeTarEntryError",
    ("nsprim.fs.layers", "UnsafeTarEntry"): "UnsafeTarEntryError",
    ("nsprim.fs.layers.members", "UnsafeTarEntry"): "UnsafeTarEntryError",
    ("nsprim.fs.layers.tar", "UnsafeTarEntry"): "UnsafeTarEntryError",
    ("nsprim.errors", "CGroupTimeout"): "CGroupTimeoutError",
    ("nsprim.cgroup", "CGroupTimeout"): "CGroupTimeoutError",
    ("nsprim.cgroup.events", "CGroupTimeout"): "CGroupTimeoutError",
    ("nsprim.cgroup", "CGroupBusyError"): "CGroupBusyError",
    ("nsprim.cgroup.group", "CGroupBusyError"): "CGroupBusyError",
    ("nsprim.container.registry", "NoSuchContainerError"): "NoSuchContainerError",
    ("nsprim.container.registry", "ContainerRunningError"): "ContainerRunningError",
    ("nsprim.security", "SecurityConfigError"): "SecurityConfigError",
    ("nsprim.security", "UnknownCapabilityError"): "UnknownCapabilityError",
    ("nsprim.security", "SeccompProfileError"): "SeccompProfileError",
    ("nsprim.security", "UnknownSyscallError"): "UnknownSyscallError",
    ("nsprim.security.errors", "BPFError"): "BPFError",
    ("nsprim.security.seccomp.interp", "BPFError"): "BPFError",
}


@pytest.mark.parametrize(("old", "name"), sorted(OLD_ERRORS))
def test_an_exception_keeps_its_old_path_and_name(old: str, name: str) -> None:
    import nsprim.errors

    new = getattr(nsprim.errors, OLD_ERRORS[old, name])
    assert getattr(importlib.import_module(old), name) is new
    assert issubclass(new, nsprim.errors.NsprimError) and new.__module__ == "nsprim.errors"


def test_layer_tar_is_split_into_extract_and_commit() -> None:
    import nsprim.fs.layers as layers
    from nsprim.fs.layers import commit as commit_module
    from nsprim.fs.layers import extract

    # the package's `commit` stays the function, its module is reached through sys.modules
    assert layers.commit is sys.modules["nsprim.fs.layers.commit"].commit
    assert callable(commit_module) and layers.extract_layer is extract.extract_layer
    sys.modules.pop("nsprim.fs.layers.tar", None)
    with pytest.warns(DeprecationWarning, match="nsprim.fs.layers.tar moved to nsprim.fs.layers.extract"):
        tar = importlib.import_module("nsprim.fs.layers.tar")
    assert (
        tar.commit is layers.commit and tar.apply_layer is extract.apply_layer and tar.LayerStats is layers.LayerStats
    )


def test_the_old_file_watcher_name_warns_and_is_the_waiter() -> None:
    from nsprim.cgroup import events

    with pytest.warns(DeprecationWarning, match="FileChangeWaiter"):
        old = events.FileWatcher
    assert old is events.FileChangeWaiter
