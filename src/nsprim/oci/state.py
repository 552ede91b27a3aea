"""The state of a container, as ``state ID`` prints it (runtime-spec ``runtime.md``)."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping

from ..errors import SpecError
from ._codec import JSON, Model, decode, encode, enum_label, spec_field
from .spec import SPEC_VERSION

__all__ = ["State", "Status"]


@enum_label("status")
class Status(str, enum.Enum):
    """Where a container is in its life cycle; ``paused`` is runc's addition, kept by engines."""

    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class State(Model):
    """``{"ociVersion", "id", "status", "pid", "bundle", "annotations"}``."""

    oci_version: str = spec_field(default=SPEC_VERSION, key="ociVersion", required=True)
    id: str = spec_field(required=True)
    status: Status = spec_field(required=True)
    pid: int | None = spec_field(default=None, kind="i32")
    bundle: str = spec_field(required=True)
    annotations: Mapping[str, str] = spec_field(factory=dict)
    extra: Mapping[str, JSON] = spec_field(factory=dict)

    @classmethod
    def from_dict(cls, data: object) -> State:
        return decode(cls, data)

    @classmethod
    def loads(cls, text: str | bytes) -> State:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"parse state: {exc}") from None

    def to_dict(self) -> dict[str, JSON]:
        return encode(self)

    def dumps(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)
