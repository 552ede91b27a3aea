"""Sphinx configuration for nsprim's documentation."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from nsprim import __version__  # noqa: E402

project = "nsprim"
author = "nsprim developers"
copyright = "2026, nsprim developers"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
intersphinx_mapping: dict[str, tuple[str, None]] = {}
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
doctest_global_setup = """
import nsprim
from nsprim import *
from nsprim.plan import *
from nsprim.cgroup import *
from nsprim.container import *
"""
# Docstring examples are doctests too, where they are complete.
doctest_test_doctest_blocks = "default"
