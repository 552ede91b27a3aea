"""nsprim.units: the size parser below the primitives, named by nsprim.cgroup too."""

from __future__ import annotations

import ast
from pathlib import Path

import nsprim.units
from nsprim import cgroup
from nsprim.cgroup import units as cgroup_units


def test_cgroup_names_the_same_size_functions() -> None:
    for name in ("parse_size", "format_size", "SIZE_MAX"):
        assert getattr(cgroup_units, name) is getattr(nsprim.units, name)
    assert cgroup.parse_size is nsprim.units.parse_size and cgroup.format_size is nsprim.units.format_size
    assert nsprim.units.parse_size("1.5G") == 1610612736 and nsprim.units.format_size(1610612736) == "1536M"


def test_units_imports_no_primitive() -> None:
    tree = ast.parse(Path(nsprim.units.__file__).read_text())
    ours = {
        ("." * n.level) + (n.module or "")
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("nsprim"))
    }
    plain = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours |= {name for name in plain if name.startswith("nsprim")}
    assert ours == {".errors"}, ours
