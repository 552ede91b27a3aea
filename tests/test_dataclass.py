"""nsprim._dataclass behaves as the standard ``@dataclass`` for what nsprim uses.

Each class is made twice, with the standard decorator and with nsprim's, and
the two are compared: construction (and its errors), equality, hashing,
ordering, repr, frozenness, ``replace``, ``fields``, pickling, the
standard module's view of them, and the signatures documentation tools read.
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from collections.abc import Callable
from functools import cached_property
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim import _dataclass as nd

DECORATORS = {"standard": (dataclasses.dataclass, dataclasses.field), "nsprim": (nd.dataclass, nd.field)}


def make(which: str) -> dict[str, Any]:
    """The same classes, made by the decorator *which*."""
    dataclass, field = DECORATORS[which]
    made: dict[str, Any] = {}

    class Base:
        kind: ClassVar[str] = "base"

    @dataclass(frozen=True)
    class Point(Base):
        x: int
        y: int = 0
        tags: tuple[str, ...] = field(default_factory=tuple)
        note: str = field(default="", compare=False, repr=False)
        kind: ClassVar[str] = "point"

        @cached_property
        def norm(self) -> int:
            return self.x * self.x + self.y * self.y

    @dataclass(frozen=True)
    class Point3(Point):
        z: int = 0

    @dataclass(frozen=True, order=True)
    class Version:
        major: int
        minor: int = 0

    @dataclass(frozen=True, slots=True)
    class Raw:
        kind: int
        a: int = 0
        data: bytes = b""

    @dataclass(frozen=True, kw_only=True)
    class Options:
        name: str
        size: int = 1

    @dataclass
    class Mutable:
        items: list[int] = field(default_factory=list)
        count: int = 0

    @dataclass(frozen=True)
    class Checked:
        value: int
        derived: int = field(init=False, default=0)

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")
            object.__setattr__(self, "derived", self.value * 2)

    made.update(Point=Point, Point3=Point3, Version=Version, Raw=Raw, Options=Options, Mutable=Mutable, Checked=Checked)
    return made


STD, OURS = make("standard"), make("nsprim")
both = pytest.mark.parametrize("classes", [STD, OURS], ids=["standard", "nsprim"])


def outcome(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return ("value", call())
    except Exception as exc:
        return ("error", type(exc).__name__)


CALLS: list[tuple[str, tuple[object, ...], dict[str, object]]] = [
    ("Point", (1,), {}),
    ("Point", (1, 2), {"tags": ("a",)}),
    ("Point", (), {"x": 1, "y": 2}),
    ("Point", (), {}),
    ("Point", (1, 2, (), "n", 5), {}),
    ("Point", (1,), {"x": 2}),
    ("Point", (1,), {"bogus": 2}),
    ("Point3", (1, 2), {"z": 3}),
    ("Version", (1, 2), {}),
    ("Raw", (3,), {"data": b"x"}),
    ("Options", (), {"name": "a"}),
    ("Options", ("a",), {}),
    ("Mutable", (), {}),
    ("Checked", (2,), {}),
    ("Checked", (-1,), {}),
    ("Checked", (2,), {"derived": 1}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), CALLS)
def test_construction_matches_the_standard_decorator(
    name: str, args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    std = outcome(lambda: STD[name](*args, **kwargs))
    ours = outcome(lambda: OURS[name](*args, **kwargs))
    assert std[0] == ours[0]
    if std[0] == "error":
        assert std[1] == ours[1]
    else:
        assert repr(std[1]) == repr(ours[1])


@given(x=st.integers(), y=st.integers(), tags=st.lists(st.text(max_size=3), max_size=3), note=st.text(max_size=3))
def test_values_compare_hash_and_show_as_the_standard_ones(x: int, y: int, tags: list[str], note: str) -> None:
    for classes in (STD, OURS):
        a = classes["Point"](x, y, tuple(tags), note)
        b = classes["Point"](x, y, tuple(tags), "other")
        assert a == b and hash(a) == hash(b)  # note is not compared
        assert a != classes["Point"](x + 1, y)
        assert (a == classes["Point3"](x, y, tuple(tags))) is False
    assert repr(STD["Point"](x, y, tuple(tags), note)) == repr(OURS["Point"](x, y, tuple(tags), note))
    assert repr(STD["Point3"](x, y)) == repr(OURS["Point3"](x, y))


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=8))
def test_order_is_the_standard_one(pairs: list[tuple[int, int]]) -> None:
    std = sorted(STD["Version"](*p) for p in pairs)
    ours = sorted(OURS["Version"](*p) for p in pairs)
    assert [(v.major, v.minor) for v in std] == [(v.major, v.minor) for v in ours]
    a, b = OURS["Version"](1, 2), OURS["Version"](1, 3)
    assert a < b and a <= b and b > a and b >= a and not a > b
    with pytest.raises(TypeError):
        _ = a < STD["Version"](1, 2)


@both
def test_frozen_instances_refuse_assignment_with_the_standard_error(classes: dict[str, Any]) -> None:
    p = classes["Point"](1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.x
    with pytest.raises(dataclasses.FrozenInstanceError):
        classes["Raw"](1).a = 2
    assert p.norm == 1  # a cached_property still works on a frozen instance
    m = classes["Mutable"]()
    m.count = 3
    m.items.append(1)
    assert m == classes["Mutable"]([1], 3) and classes["Mutable"]().items is not m.items
    with pytest.raises(TypeError):
        hash(m)  # eq without frozen: unhashable


@both
def test_slots_classes_have_slots_and_pickle(classes: dict[str, Any]) -> None:
    raw = classes["Raw"](1, 2, b"x")
    assert not hasattr(raw, "__dict__") and set(type(raw).__slots__) == {"kind", "a", "data"}
    assert classes["Raw"](5).a == 0


def test_instances_pickle() -> None:
    # Pickled by reference to their classes, which must be reachable from their modules: nsprim's own.
    from nsprim._sys.spawn import RawStep, StepKind
    from nsprim.idmap import IdMap
    from nsprim.plan import Mount, SetHostname

    for value in (
        RawStep(StepKind.SYNC, a=3),
        IdMap.single(0, 1000),
        Mount("proc", "/proc", "proc"),
        SetHostname("box"),
    ):
        assert pickle.loads(pickle.dumps(value)) == value


def test_replace_and_fields_match_the_standard_ones() -> None:
    for classes, replace, fields in ((STD, dataclasses.replace, dataclasses.fields), (OURS, nd.replace, nd.fields)):
        p = classes["Point"](1, 2, ("a",), "n")
        q = replace(p, y=5)
        assert (q.x, q.y, q.tags, q.note) == (1, 5, ("a",), "n")
        assert [f.name for f in fields(p)] == ["x", "y", "tags", "note"]
        assert [f.name for f in fields(classes["Point3"])] == ["x", "y", "tags", "note", "z"]
        with pytest.raises(ValueError, match="init=False"):
            replace(classes["Checked"](1), derived=3)
    with pytest.raises(TypeError):
        nd.fields(object())


def test_the_standard_module_sees_dataclasses() -> None:
    p = OURS["Point"](1, 2)
    assert dataclasses.is_dataclass(p) and dataclasses.is_dataclass(OURS["Point"])
    assert [f.name for f in dataclasses.fields(p)] == ["x", "y", "tags", "note"]
    assert dataclasses.replace(p, x=7) == OURS["Point"](7, 2)
    assert dataclasses.asdict(p) == {"x": 1, "y": 2, "tags": (), "note": ""}
    assert dataclasses.astuple(OURS["Version"](1, 2)) == (1, 2)
    checked = dataclasses.fields(OURS["Checked"])
    assert [(f.name, f.init) for f in checked] == [("value", True), ("derived", False)]


@pytest.mark.parametrize("name", ["Point", "Point3", "Version", "Raw", "Options", "Mutable", "Checked"])
def test_signatures_match_the_standard_ones(name: str) -> None:
    std, ours = inspect.signature(STD[name]), inspect.signature(OURS[name])
    assert [(p.name, p.kind) for p in std.parameters.values()] == [(p.name, p.kind) for p in ours.parameters.values()]
    assert [repr(p.default) for p in std.parameters.values()] == [repr(p.default) for p in ours.parameters.values()]
    assert OURS[name].__match_args__ == STD[name].__match_args__


def test_class_level_defaults_and_class_variables_are_kept() -> None:
    assert OURS["Point"].y == STD["Point"].y == 0
    assert OURS["Point"].kind == "point" and OURS["Point"](1).kind == "point"
    assert "tags" not in OURS["Point"].__dict__  # a factory leaves no class attribute


def test_definition_errors_match_the_standard_ones() -> None:
    for dataclass, field in DECORATORS.values():
        with pytest.raises(TypeError, match="non-default argument"):

            @dataclass
            class Bad:
                a: int = 0
                b: int  # type: ignore[misc]

        with pytest.raises(ValueError, match="mutable default"):

            @dataclass
            class Mutable:
                a: list[int] = []  # noqa: RUF012

        with pytest.raises(ValueError):
            field(default=1, default_factory=int)
        with pytest.raises(ValueError):

            @dataclass(order=True, eq=False)
            class Unordered:
                a: int


def test_a_class_made_often_gets_its_own_compiled_init() -> None:
    @nd.dataclass(frozen=True)
    class Often:
        a: int
        b: tuple[int, ...] = nd.field(default_factory=tuple)
        c: str = "c"

    assert Often.__init__ is nd._init
    made = [Often(i, c=str(i)) for i in range(nd.COMPILE_AFTER + 5)]
    assert Often.__init__ is not nd._init
    assert made[-1] == Often(nd.COMPILE_AFTER + 4, (), str(nd.COMPILE_AFTER + 4))
    assert Often(1).b == () and Often(1, (2,)).b == (2,)
    with pytest.raises(TypeError):
        Often()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Often(1, d=2)  # type: ignore[call-arg]


def test_nsprim_uses_no_standard_dataclass() -> None:
    # Importing what a runtime command needs compiles nothing.
    import subprocess
    import sys

    code = (
        "import sys, nsprim.oci.convert, nsprim.oci.runtime.lifecycle, nsprim.container;"
        "print('dataclasses' in sys.modules, 'inspect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_every_module_uses_nsprim_dataclass() -> None:
    from tests.layout import PKG

    offenders = [
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if p.name != "_dataclass.py"
        and any(
            line.startswith(("from dataclasses import", "import dataclasses")) for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []


def test_the_stream_constants_are_subprocess_s() -> None:
    # Written out in nsprim.process so that importing it does not import subprocess.
    import subprocess

    from nsprim.process import DEVNULL, PIPE, STDOUT

    assert (PIPE, DEVNULL, STDOUT) == (subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT)
