"""The house rules of ``src/nsprim``, checked on the source (see docs/architecture.rst).

No import cycle (imports inside functions and under ``TYPE_CHECKING`` count),
no module reaching for another module's private names, no hand-written file
over 600 lines, and each ``__all__`` naming only what exists and is public.
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings

import pytest

from . import layout


def test_no_import_cycle() -> None:
    found = layout.cycles()
    assert found == [], "import cycles: " + "; ".join(" → ".join(c) for c in found)


def test_no_module_imports_another_modules_private_name() -> None:
    found = {(i.importer, i.name) for i in layout.private_imports()}
    assert found == set()


def test_no_hand_written_file_over_600_lines() -> None:
    long = {
        str(p.relative_to(layout.PKG)) if layout.PKG in p.parents else p.name: n for p, n in layout.long_files().items()
    }
    assert long == {}


def test_the_analysis_sees_what_it_should() -> None:
    """The checker itself: it finds a known import inside a function, and resolves relative imports."""
    found = {(i.importer, i.imported) for i in layout.imports()}
    assert ("nsprim.cgroup.group", "nsprim.cgroup.tree") in found
    assert ("nsprim.security.seccomp.program", "nsprim.security.seccomp.interp") in found
    assert len(layout.modules()) > 50


@pytest.mark.parametrize("name", sorted(m for m in layout.modules() if "_" not in m.rpartition(".")[2][:1]))
def test_all_names_what_exists_and_nothing_private(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the old paths warn on import
        module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    assert len(set(exported)) == len(exported), f"{name}.__all__ names something twice"
    for item in exported:
        assert not item.startswith("_") or item == "__version__", f"{name}.__all__ exports the private {item}"
        assert hasattr(module, item), f"{name}.__all__ names {item}, which it does not have"


def _annotations_of(obj: object) -> dict[str, str]:
    """The annotations of a public function, or of a class' fields and public methods, as written."""
    found: dict[str, str] = {}
    functions: list[tuple[str, object]] = []
    if inspect.isclass(obj):
        for field_name, hint in vars(obj).get("__annotations__", {}).items():
            if not field_name.startswith("_"):
                found[field_name] = str(hint)
        for attr, value in vars(obj).items():
            if attr.startswith("_") and attr != "__init__":
                continue
            if isinstance(value, property):
                value = value.fget
            elif isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if inspect.isfunction(value):
                functions.append((attr, value))
    elif inspect.isfunction(obj):
        functions.append(("", obj))
    for fname, func in functions:
        for key, hint in getattr(func, "__annotations__", {}).items():
            found[f"{fname}({key})" if fname else key] = str(hint)
    return found


@pytest.mark.parametrize(
    "name", sorted(m for m in layout.modules() if not m.startswith("nsprim._sys") and "._" not in m)
)
def test_no_public_signature_says_any(name: str) -> None:
    """Above ``_sys`` every public signature names its types: ``Any`` hides a contract from its callers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(name)
    offenders = {
        f"{item}.{where}": hint
        for item in getattr(module, "__all__", ())
        for where, hint in _annotations_of(getattr(module, item)).items()
        if re.search(r"\bAny\b", hint)
    }
    assert offenders == {}
