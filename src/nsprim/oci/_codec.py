"""JSON <-> frozen dataclasses, driven by the dataclasses' own type hints.

The OCI documents are large trees of optional fields.  Rather than a
hand-written loader per object, each model class declares its fields with
:func:`spec_field` (the JSON key where it is not the camelCase of the Python
name, the integer range, whether the field is required) and this module walks
the hints.  Every error names the field's path from the document's root
(``linux.namespaces[2].type``); keys the model does not know are kept in the
object's ``extra`` mapping and written back, so a round trip loses nothing.
"""

from __future__ import annotations

import enum
import sys
import types
import typing
from collections.abc import Mapping
from typing import TypeVar, Union

if sys.version_info >= (3, 11):
    from typing import Self, dataclass_transform
else:  # pragma: no cover - typing_extensions costs its import of inspect
    from typing_extensions import Self, dataclass_transform


from .._dataclass import dataclass
from ..errors import SpecError

__all__ = ["JSON", "Model", "decode", "encode", "spec_field", "enum_label"]

JSON = Union[None, bool, int, float, str, list["JSON"], dict[str, "JSON"]]  # noqa: UP007 (a runtime alias)

T = TypeVar("T")
_MISSING: typing.Any = object()

# Integer ranges by the Go types of the spec's own bindings.
_RANGES: dict[str, tuple[int, int]] = {
    "u8": (0, 2**8 - 1),
    "u16": (0, 2**16 - 1),
    "u32": (0, 2**32 - 1),
    "u64": (0, 2**64 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1),
}

_LABELS: dict[type, str] = {}
E = TypeVar("E", bound=type[enum.Enum])


def enum_label(label: str) -> typing.Callable[[E], E]:
    """Name an enum's values in errors ("unknown namespace type ...")."""

    def mark(cls: E) -> E:
        _LABELS[cls] = label
        return cls

    return mark


class _FieldSpec:
    __slots__ = ("default", "factory", "key", "kind", "required")

    def __init__(
        self,
        default: object,
        factory: typing.Callable[[], object] | None,
        key: str | None,
        kind: str,
        required: bool,
    ) -> None:
        self.default, self.factory, self.key, self.kind, self.required = default, factory, key, kind, required


def spec_field(
    default: object = _MISSING,
    *,
    factory: typing.Callable[[], object] | None = None,
    key: str | None = None,
    kind: str = "i64",
    required: bool = False,
) -> typing.Any:
    """A model field: *key* overrides the JSON name, *kind* the integer range, *required* its presence."""
    return _FieldSpec(default, factory, key, kind, required)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(spec_field,))
class ModelMeta(type):
    """Makes frozen, slotted, keyword-only records from annotated class bodies.

    Like ``@dataclass(frozen=True, kw_only=True)``, but nothing is generated
    or compiled when the class is made: a runtime command imports the whole
    model on every call, and ~40 dataclasses cost tens of milliseconds.
    """

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, typing.Any]) -> ModelMeta:
        fields = []
        for field_name in namespace.get("__annotations__", {}):
            if field_name.startswith("_"):
                continue
            value = namespace.pop(field_name, _MISSING)
            spec = value if isinstance(value, _FieldSpec) else _FieldSpec(value, None, None, "i64", False)
            fields.append((field_name, spec))
        namespace["__slots__"] = tuple(n for n, _ in fields)
        namespace["_model_fields"] = tuple(fields)
        return super().__new__(mcs, name, bases, namespace)


class Model(metaclass=ModelMeta):
    """Base of the OCI model's records: frozen, compared and hashed by value."""

    __slots__ = ()
    _model_fields: typing.ClassVar[tuple[tuple[str, _FieldSpec], ...]] = ()

    def __init__(self, **values: object) -> None:
        for name, spec in self._model_fields:
            if name in values:
                value = values.pop(name)
            elif spec.factory is not None:
                value = spec.factory()
            elif spec.default is not _MISSING:
                value = spec.default
            else:
                raise TypeError(f"{type(self).__name__}() needs `{name}`")
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(f"{type(self).__name__}() has no field `{next(iter(values))}`")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n, _ in self._model_fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        # Mappings (extra, annotations, ...) are left out: equal records still hash equal.
        return hash((type(self), *(v for v in self._values() if not isinstance(v, Mapping))))

    def __repr__(self) -> str:
        shown = []
        for name, spec in self._model_fields:
            value = getattr(self, name)
            default = spec.factory() if spec.factory is not None else spec.default
            if value != default:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def __reduce__(self) -> tuple[typing.Callable[..., object], tuple[object, ...]]:
        return (_rebuild, (type(self), dict(zip([n for n, _ in self._model_fields], self._values(), strict=True))))

    def replace(self, **changes: object) -> Self:
        """A copy with *changes* applied."""
        values = dict(zip([n for n, _ in self._model_fields], self._values(), strict=True))
        values.update(changes)
        return type(self)(**values)


def _rebuild(cls: type[Model], values: dict[str, object]) -> Model:
    return cls(**values)


@dataclass(frozen=True)
class _Field:
    name: str
    key: str
    hint: object
    kind: str
    required: bool


_PLANS: dict[type[Model], tuple[_Field, ...]] = {}


def _plan(cls: type[Model]) -> tuple[_Field, ...]:
    plan = _PLANS.get(cls)
    if plan is None:
        scope = vars(sys.modules[cls.__module__])
        hints = {n: eval(h, scope) if isinstance(h, str) else h for n, h in cls.__annotations__.items()}
        plan = tuple(
            _Field(name, spec.key or _camel(name), hints[name], spec.kind, spec.required)
            for name, spec in cls._model_fields
            if name != "extra"
        )
        _PLANS[cls] = plan
    return plan


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value[:60]}"' if len(value) <= 60 else f'"{value[:57]}..."'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _fail(path: str, message: str) -> SpecError:
    return SpecError(f"{path or '(document)'}: {message}", field=path or None)


def _decode(hint: object, value: object, path: str, kind: str) -> object:
    if hint is JSON:
        return value
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _decode(args[0], value, path, kind)
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise _fail(path, f"expected an array, got {_describe(value)}")
        return tuple(_decode(item, v, f"{path}[{i}]", kind) for i, v in enumerate(value))
    if origin is Mapping or origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise _fail(path, f"expected an object, got {_describe(value)}")
        out: dict[str, object] = {}
        for k, v in value.items():
            out[k] = _decode(item, v, f'{path}["{k}"]', kind)
        return out
    if hint is str:
        if not isinstance(value, str):
            raise _fail(path, f"expected a string, got {_describe(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _fail(path, f"expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail(path, f"expected an integer, got {_describe(value)}")
        low, high = _RANGES[kind]
        if not low <= value <= high:
            raise _fail(path, f"{value} is out of range ({low}..{high})")
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            label = _LABELS.get(typing.cast(type, hint), "value")
            known = ", ".join(f'"{m.value}"' for m in hint)
            raise _fail(path, f"unknown {label} {_describe(value)} (one of {known})") from None
    if isinstance(hint, type) and issubclass(hint, Model):
        return decode(hint, value, path)
    raise TypeError(f"unsupported model type {hint!r}")  # pragma: no cover - a programming error


M = TypeVar("M", bound=Model)


def decode(cls: type[M], data: object, path: str = "") -> M:
    """Build *cls* from the JSON value *data* (found at *path*), or raise :class:`SpecError`."""
    if not isinstance(data, dict):
        raise _fail(path, f"expected an object, got {_describe(data)}")
    values: dict[str, object] = {}
    seen = set()
    for f in _plan(cls):
        seen.add(f.key)
        sub = f"{path}.{f.key}" if path else f.key
        if f.key not in data:
            if f.required:
                raise _fail(sub, "required, but missing")
            continue
        values[f.name] = _decode(f.hint, data[f.key], sub, f.kind)
    extra = {k: v for k, v in data.items() if k not in seen}
    if extra:
        values["extra"] = extra
    return cls(**values)


def _empty(value: object) -> bool:
    return value is None or value is False or value == "" or value == 0 or value == () or value == {}


def _encode_value(value: object) -> JSON:
    if isinstance(value, enum.Enum):
        return _encode_value(value.value)
    if isinstance(value, Model):
        return encode(value)
    if isinstance(value, tuple):
        return [_encode_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_encode_value(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__}")  # pragma: no cover


def encode(obj: Model) -> dict[str, JSON]:
    """The JSON object of a model value: fields as the spec's Go bindings write them
    (empty optional fields left out), then the unknown keys it was loaded with."""
    out: dict[str, JSON] = {}
    for f in _plan(type(obj)):
        value = getattr(obj, f.name)
        optional = typing.get_origin(f.hint) in (Union, types.UnionType)
        if value is None or (not f.required and not optional and _empty(value)):
            continue
        out[f.key] = _encode_value(value)
    extra = getattr(obj, "extra", None)
    if extra:
        for k, v in extra.items():
            out.setdefault(k, v)
    return out
