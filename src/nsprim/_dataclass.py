"""``@dataclass`` that compiles nothing when a class is made.

The standard decorator writes the source of ``__init__``, ``__repr__``,
``__eq__``, ``__hash__`` and ``__setattr__`` for every class and compiles it
with :func:`exec`: about 0.3 ms a class, and importing what a container needs
makes over a hundred of them.  A command such as ``nsprim-runtime create`` is
started again and again and pays that every time, so nsprim's value classes
use this one instead: the same semantics (frozen, ``order``, ``slots``,
``kw_only``, ``field()``, ``__post_init__``, ``replace()``, ``fields()``),
with the methods shared by every class and driven by a table of its fields.
An ``__init__`` is compiled, as the standard one is, only for a class made
often enough to be worth it.

To every other tool the classes are dataclasses: ``__dataclass_fields__``
(and so :func:`dataclasses.fields`, :func:`dataclasses.replace`,
:func:`dataclasses.is_dataclass`) and ``__signature__`` are built the first
time something asks for them.  Type checkers see :mod:`dataclasses` itself.
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False  # typing is not imported: a runtime's `start` and `kill` make a value class or two
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeVar

    _T = TypeVar("_T")

__all__ = ["dataclass", "field", "fields", "replace", "MISSING"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: No default (the standard module's sentinel is not imported: it costs the import of :mod:`inspect`).
MISSING: Any = _Missing()

#: Calls of a class's shared ``__init__`` after which its own is compiled.
COMPILE_AFTER = 64


class Field:
    """A field: its name, type and the options given to :func:`field`."""

    __slots__ = ("compare", "default", "default_factory", "hash", "init", "kw_only", "metadata", "name", "repr", "type")

    def __init__(
        self,
        default: Any,
        default_factory: Any,
        init: bool,
        repr: bool,
        hash: bool | None,
        compare: bool,
        metadata: Mapping[Any, Any] | None,
        kw_only: Any,
    ) -> None:
        self.name = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.hash = hash
        self.compare = compare
        self.metadata = metadata
        self.kw_only = kw_only

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r})"


def _field(
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    init: bool = True,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
    metadata: Mapping[Any, Any] | None = None,
    kw_only: Any = MISSING,
) -> Any:
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, init, repr, hash, compare, metadata, kw_only)


def _is_classvar(annotation: object) -> bool:
    if isinstance(annotation, str):
        head = annotation.split("[", 1)[0].strip()
        return head == "ClassVar" or head.endswith(".ClassVar")
    return getattr(annotation, "__origin__", annotation) is getattr(_typing(), "ClassVar", None)


def _typing() -> Any:
    import typing

    return typing


class _Spec:
    """What the shared methods of one class need: its fields, as tables."""

    __slots__ = (
        "calls",
        "compare",
        "defaults",
        "fields",
        "frozen",
        "hashed",
        "n_positional",
        "names",
        "params",
        "post_init",
        "qualname",
        "shown",
        "slots",
    )

    def __init__(self, cls: type, fields: tuple[Field, ...], frozen: bool, slots: bool) -> None:
        self.qualname = cls.__qualname__
        self.fields = fields
        init = [f for f in fields if f.init]
        positional = [f for f in init if not f.kw_only]
        keyword = [f for f in init if f.kw_only]
        #: (name, default, factory) in the order of the signature: positional fields first.
        self.params = tuple((f.name, f.default, f.default_factory) for f in positional + keyword)
        self.n_positional = len(positional)
        self.names = frozenset(f.name for f in init)
        #: The fields not taken by ``__init__`` that it sets all the same.
        self.defaults = tuple((f.name, f.default, f.default_factory) for f in fields if not f.init)
        self.frozen = frozen
        self.slots = slots
        self.post_init = hasattr(cls, "__post_init__")
        self.compare = _getter([f.name for f in fields if f.compare])
        self.hashed = _getter([f.name for f in fields if (f.compare if f.hash is None else f.hash)])
        self.shown = tuple(f.name for f in fields if f.repr)
        self.calls = 0


def _getter(names: list[str]) -> Callable[[object], tuple[object, ...]]:
    if not names:
        return lambda _obj: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    getter: Callable[[object], tuple[object, ...]] = attrgetter(*names)
    return getter


def _spec(obj: object) -> _Spec:
    spec: _Spec = type(obj)._nsprim_dataclass  # type: ignore[attr-defined]
    return spec


def _init(self: object, *args: object, **kwargs: object) -> None:
    cls = type(self)
    spec: _Spec = cls._nsprim_dataclass  # type: ignore[attr-defined]
    if len(args) > spec.n_positional:
        given, takes = len(args) + 1, spec.n_positional + 1
        raise TypeError(f"{spec.qualname}.__init__() takes {takes} positional arguments but {given} were given")
    spec.calls += 1
    if spec.calls == COMPILE_AFTER and cls.__dict__.get("__init__") is _init:
        setattr(cls, "__init__", _compiled_init(cls, spec))  # noqa: B010 - a method replaced on the class
    target: dict[str, object] | None = None if spec.slots else self.__dict__
    taken = 0
    for i, (name, default, factory) in enumerate(spec.params):
        if i < len(args):
            value = args[i]
            if kwargs and name in kwargs:
                raise TypeError(f"{spec.qualname}.__init__() got multiple values for argument '{name}'")
        elif name in kwargs:
            value = kwargs[name]
            taken += 1
        elif default is not MISSING:
            value = default
        elif factory is not MISSING:
            value = factory()
        else:
            raise TypeError(f"{spec.qualname}.__init__() missing required argument: '{name}'")
        if target is None:
            object.__setattr__(self, name, value)
        else:
            target[name] = value
    if taken != len(kwargs):
        unknown = next(k for k in kwargs if k not in spec.names)
        raise TypeError(f"{spec.qualname}.__init__() got an unexpected keyword argument '{unknown}'")
    for name, default, factory in spec.defaults:
        if default is not MISSING or factory is not MISSING:
            object.__setattr__(self, name, default if default is not MISSING else factory())
    if spec.post_init:
        self.__post_init__()  # type: ignore[attr-defined]


def _compiled_init(cls: type, spec: _Spec) -> Callable[..., None]:
    """An ``__init__`` of the class's own, compiled as the standard module does, for a class made often."""
    args, body, env = ["self"], [], {"MISSING": MISSING, "setattr": object.__setattr__}
    for i, (name, default, factory) in enumerate(spec.params):
        if i == spec.n_positional:
            args.append("*")
        if default is not MISSING:
            env[f"d_{name}"] = default
            args.append(f"{name}=d_{name}")
        elif factory is not MISSING:
            env[f"f_{name}"] = factory
            args.append(f"{name}=MISSING")
            body.append(f" if {name} is MISSING: {name} = f_{name}()")
        else:
            args.append(name)
        body.append(f" setattr(self, {name!r}, {name})" if spec.slots else f" self.__dict__[{name!r}] = {name}")
    for name, default, factory in spec.defaults:
        if default is not MISSING:
            env[f"d_{name}"] = default
            body.append(f" setattr(self, {name!r}, d_{name})")
        elif factory is not MISSING:
            env[f"f_{name}"] = factory
            body.append(f" setattr(self, {name!r}, f_{name}())")
    if spec.post_init:
        body.append(" self.__post_init__()")
    source = f"def __init__({', '.join(args)}):\n" + ("\n".join(body) or " pass") + "\n"
    namespace: dict[str, Any] = {}
    exec(source, env, namespace)
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    return init


def _repr(self: object) -> str:
    spec = _spec(self)
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in spec.shown)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: object, other: object) -> object:
    if other.__class__ is not self.__class__:
        return NotImplemented
    values = _spec(self).compare
    return values(self) == values(other)


def _hash(self: object) -> int:
    return hash(_spec(self).hashed(self))


def _ordering(
    op: Callable[[tuple[object, ...], tuple[object, ...]], bool], name: str
) -> Callable[[object, object], object]:
    def compare(self: object, other: object) -> object:
        if other.__class__ is not self.__class__:
            return NotImplemented
        values = _spec(self).compare
        return op(values(self), values(other))

    compare.__name__ = compare.__qualname__ = name
    return compare


def _orderings() -> dict[str, Callable[[object, object], object]]:
    import operator

    return {
        name: _ordering(getattr(operator, name.strip("_")), name) for name in ("__lt__", "__le__", "__gt__", "__ge__")
    }


def _frozen_error(name: str) -> Exception:
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise _frozen_error(name)


def _frozen_delattr(self: object, name: str) -> None:
    raise _frozen_error(name)


def _getstate(self: object) -> list[object]:
    return [getattr(self, f.name) for f in _spec(self).fields]


def _setstate(self: object, state: list[object]) -> None:
    for f, value in zip(_spec(self).fields, state, strict=True):
        object.__setattr__(self, f.name, value)


class _Lazy:
    """A class attribute computed on first access, then stored on the class."""

    def __init__(self, cls: type, name: str, make: Callable[[type], object], *, on_instances: bool) -> None:
        self.cls, self.name, self.make, self.on_instances = cls, name, make, on_instances

    def __get__(self, obj: object, owner: type | None = None) -> object:
        if obj is not None and not self.on_instances:
            raise AttributeError(self.name)
        value = self.make(self.cls)
        if self.on_instances:
            setattr(self.cls, self.name, value)
        return value


def _standard_fields(cls: type) -> dict[str, Any]:
    import dataclasses

    result = {}
    for f in _spec_of(cls).fields:
        std: Any = dataclasses.field(
            default=dataclasses.MISSING if f.default is MISSING else f.default,
            default_factory=dataclasses.MISSING if f.default_factory is MISSING else f.default_factory,
            init=f.init,
            repr=f.repr,
            hash=f.hash,
            compare=f.compare,
            metadata=f.metadata,
            kw_only=bool(f.kw_only),
        )
        std.name, std.type = f.name, f.type
        std._field_type = dataclasses._FIELD  # type: ignore[attr-defined]  # what fields() and replace() look for
        result[f.name] = std
    return result


class _Factory:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


#: What a signature shows as the default of a field with a default_factory (as the standard module does).
_FACTORY = _Factory()


def _signature(cls: type) -> object:
    import inspect

    spec = _spec_of(cls)
    kinds = {f.name: f for f in spec.fields}
    params = []
    for i, (name, default, factory) in enumerate(spec.params):
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if i < spec.n_positional else inspect.Parameter.KEYWORD_ONLY
        shown_default = default if default is not MISSING else (MISSING if factory is MISSING else _FACTORY)
        params.append(
            inspect.Parameter(
                name,
                kind,
                default=inspect.Parameter.empty if shown_default is MISSING else shown_default,
                annotation=kinds[name].type,
            )
        )
    return inspect.Signature(params, return_annotation=None)


def _spec_of(cls: type) -> _Spec:
    spec: _Spec = cls.__dict__["_nsprim_dataclass"]
    return spec


def _set(cls: type, name: str, value: object) -> None:
    if name not in cls.__dict__:
        setattr(cls, name, value)


def _collect(cls: type, kw_only: bool) -> tuple[Field, ...]:
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        base_spec = base.__dict__.get("_nsprim_dataclass")
        if base_spec is not None:
            found.update((f.name, f) for f in base_spec.fields)
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - inspect costs what this module saves
    for name, annotation in annotations.items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(value, MISSING, True, True, None, True, None, MISSING)
        f.name, f.type = name, annotation
        if f.kw_only is MISSING:
            f.kw_only = kw_only
        if type(f.default) in (list, dict, set):
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed: use default_factory")
        if isinstance(value, Field):
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        found[name] = f
    fields = tuple(found.values())
    seen_default = False
    for f in fields:
        if not f.init or f.kw_only:
            continue
        if f.default is not MISSING or f.default_factory is not MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
    return fields


def _with_slots(cls: type, fields: tuple[Field, ...]) -> type:
    namespace = dict(cls.__dict__)
    names = tuple(f.name for f in fields)
    inherited = {s for base in cls.__mro__[1:-1] for s in base.__dict__.get("__slots__", ())}
    namespace["__slots__"] = tuple(n for n in names if n not in inherited)
    for name in names:
        namespace.pop(name, None)
    namespace.pop("__dict__", None)
    namespace.pop("__weakref__", None)
    made = type(cls)(cls.__name__, cls.__bases__, namespace)
    made.__qualname__ = cls.__qualname__
    return made


def _process(
    cls: type, *, init: bool, repr: bool, eq: bool, order: bool, frozen: bool, kw_only: bool, slots: bool
) -> type:
    fields = _collect(cls, kw_only)
    if slots:
        cls = _with_slots(cls, fields)
    spec = _Spec(cls, fields, frozen, slots)
    cls._nsprim_dataclass = spec  # type: ignore[attr-defined]
    if init:
        _set(cls, "__init__", _init)
    if repr:
        _set(cls, "__repr__", _repr)
    explicit_hash = "__hash__" in cls.__dict__ and not (cls.__dict__["__hash__"] is None and "__eq__" in cls.__dict__)
    if eq:
        _set(cls, "__eq__", _eq)
    if order:
        for name, method in _orderings().items():
            if name in cls.__dict__:
                raise TypeError(f"cannot overwrite attribute {name} in class {cls.__name__}")
            setattr(cls, name, method)
    if frozen:
        for name in ("__setattr__", "__delattr__"):
            if name in cls.__dict__:
                raise TypeError(f"cannot overwrite attribute {name} in class {cls.__name__}")
        setattr(cls, "__setattr__", _frozen_setattr)  # noqa: B010
        setattr(cls, "__delattr__", _frozen_delattr)  # noqa: B010
        if slots:
            _set(cls, "__getstate__", _getstate)
            _set(cls, "__setstate__", _setstate)
    if not explicit_hash:
        if eq and frozen:
            cls.__hash__ = _hash  # type: ignore[assignment]
        elif eq:
            cls.__hash__ = None  # type: ignore[assignment]
    _set(cls, "__match_args__", tuple(name for name, _d, _f in spec.params[: spec.n_positional]))
    cls.__dataclass_fields__ = _Lazy(cls, "__dataclass_fields__", _standard_fields, on_instances=True)  # type: ignore[attr-defined]
    cls.__signature__ = _Lazy(cls, "__signature__", _signature, on_instances=False)  # type: ignore[attr-defined]
    return cls


def _dataclass(
    cls: type | None = None,
    /,
    *,
    init: bool = True,
    repr: bool = True,
    eq: bool = True,
    order: bool = False,
    frozen: bool = False,
    kw_only: bool = False,
    slots: bool = False,
) -> Any:
    if order and not eq:
        raise ValueError("eq must be true if order is true")

    def wrap(c: type) -> type:
        return _process(c, init=init, repr=repr, eq=eq, order=order, frozen=frozen, kw_only=kw_only, slots=slots)

    return wrap if cls is None else wrap(cls)


def _fields(obj: object) -> tuple[Field, ...]:
    spec = getattr(obj, "_nsprim_dataclass", None)
    if not isinstance(spec, _Spec):
        raise TypeError("must be called with a dataclass type or instance")
    return spec.fields


def _replace(obj: _T, /, **changes: Any) -> _T:
    spec = _spec(obj)
    for f in spec.fields:
        if not f.init and f.name in changes:
            raise ValueError(f"field {f.name} is declared with init=False, it cannot be specified with replace()")
    values = {name: getattr(obj, name) for name, _d, _f in spec.params if name not in changes}
    values.update(changes)
    return type(obj)(**values)


if TYPE_CHECKING:
    from dataclasses import dataclass, field, fields, replace
else:
    dataclass = _dataclass
    field = _field
    fields = _fields
    replace = _replace
