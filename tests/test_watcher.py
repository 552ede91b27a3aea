"""The cleanup watcher: what a SIGKILLed owner registered is removed, what it forgot is not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nsprim

from .conftest import requires_root

SRC = str(Path(nsprim.__file__).resolve().parent.parent)


def _killed_owner(script: str) -> list[str]:
    """Run *script* (it prints one line, then sleeps), SIGKILL it, return that line's words."""
    env = {**os.environ, "PYTHONPATH": SRC}
    argv = [sys.executable, "-c", textwrap.dedent(script)]
    owner = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert owner.stdout is not None
        words = owner.stdout.readline().split()
    finally:
        owner.kill()
        owner.wait()
    return words


def _gone(paths: list[Path], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(p.exists() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not any(p.exists() for p in paths)


def test_registered_trees_of_any_path_length_are_removed_and_forgotten_ones_kept(tmp_path: Path) -> None:
    trees = [tmp_path / ("t" * n) for n in (1, 200, 255)]  # records of different lengths in one pipe
    deep = tmp_path / "deep"
    for t in trees:
        (t / "sub").mkdir(parents=True)
        (t / "sub" / "file").write_text("x")
    deep.mkdir()
    kept = tmp_path / "kept"
    kept.mkdir()
    script = f"""
        import time
        from nsprim._sys import watcher
        for p in {[str(t) for t in trees]!r} + [{str(kept)!r}]:
            watcher.watch_tree(p)
        watcher.forget_tree({str(kept)!r})
        print("ready", flush=True)
        time.sleep(600)
    """
    assert _killed_owner(script) == ["ready"]
    assert _gone(trees)
    assert kept.is_dir()


@requires_root
def test_a_killed_owners_warm_pool_leaves_no_cgroup() -> None:
    script = """
        import time
        from nsprim.container import Container
        box = Container(["true"]).host_root().memory("64M").warm(3)
        deadline = time.monotonic() + 10
        while len(box._supply._cgroups) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        print(*(d for cg in box._supply._cgroups for d in cg.directories.values()), flush=True)
        time.sleep(600)
    """
    dirs = [Path(d) for d in _killed_owner(script)]
    assert len(dirs) >= 3 and all(d.is_absolute() for d in dirs)
    assert _gone(dirs)
