"""``examples/images.py`` against a real registry: pull, run, change, commit, push, pulled back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..conftest import requires_root
from .registries import ImageSet, Registry, plain_registry, test_images

__all__ = ["plain_registry", "test_images"]  # fixtures, imported

pytestmark = requires_root

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "images.py"


def test_the_images_example_pulls_runs_commits_pushes_and_pulls_back(plain_registry: Registry,
                                                                      test_images: ImageSet) -> None:  # fmt: skip
    plain_registry.skopeo_copy(test_images.source("busybox"), "example/busybox:latest")
    source, dest = f"{plain_registry.host}/example/busybox:latest", f"{plain_registry.host}/example/changed:1"
    r = subprocess.run([sys.executable, str(EXAMPLE), source, dest, "--tls-verify=false"], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == [f"pulled {source}: 2 layers", "hello from the image", f"committed {dest}: 3 layers"]
    assert lines[3] == f"pulled back {dest}: changed in a container"
    assert lines[4].startswith("2 images, ")
