"""docs/architecture.rst stays true: every module it names exists, and it names every package."""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PKG = ROOT / "src" / "nsprim"
ARCHITECTURE = DOCS / "architecture.rst"


def _named_in_architecture() -> list[str]:
    return sorted(set(re.findall(r"\bnsprim(?:\.[A-Za-z_]\w*)*", ARCHITECTURE.read_text())))


def _import(name: str) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the old paths warn on import
        return importlib.import_module(name)


def test_the_architecture_page_is_in_the_docs() -> None:
    assert re.search(r"^\s+architecture$", (DOCS / "index.rst").read_text(), re.M)
    assert (ROOT / "_native").is_dir() and "_native/" in ARCHITECTURE.read_text()


@pytest.mark.parametrize("name", _named_in_architecture())
def test_what_the_architecture_page_names_exists(name: str) -> None:
    module, rest = name, ""
    while True:
        try:
            obj = _import(module)
            break
        except ModuleNotFoundError:
            module, _, last = module.rpartition(".")
            assert module, f"docs/architecture.rst names {name}, which does not exist"
            rest = f"{last}.{rest}" if rest else last
    for part in filter(None, rest.split(".")):
        assert hasattr(obj, part), f"docs/architecture.rst names {name}, which does not exist"
        obj = getattr(obj, part)


def test_the_architecture_page_names_every_package() -> None:
    """Each module and package of nsprim's top level, and each package one level down."""
    top = {"nsprim._sys"}
    for path in PKG.iterdir():
        if path.name.startswith("_"):
            continue
        if path.suffix == ".py" or (path / "__init__.py").is_file():
            top.add(f"nsprim.{path.name.removesuffix('.py')}")
        if (path / "__init__.py").is_file():
            top |= {f"nsprim.{path.name}.{p.name}" for p in path.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(top - set(_named_in_architecture()))
    assert not missing, f"docs/architecture.rst does not say where these belong: {missing}"
