"""The file system tests mount for real: they need root.

The private mount namespace they run in, and the check for mounts left
behind, are the suite's (``tests/conftest.py``).
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the file system tests mount for real and need root")
