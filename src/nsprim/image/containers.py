"""Containers of an image store that keep their changes: an upper dir and the image it is over.

``ROOT/containers/<name>/`` holds ``upper/`` (the overlay's upper dir: what
the container changed), ``.upper.work/`` (the overlay's work dir) and
``image.json`` (the image's name and its manifest's descriptor).  ``nsprim
run --name NAME IMAGE`` makes one, ``nsprim commit NAME REF`` turns its
changes into an image, ``nsprim rm NAME`` removes it; the store's ``gc``
keeps the image of every entry, even once its name is gone.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from .._dataclass import dataclass
from ..errors import ConfigError, ImageError, ImageNotFoundError, SpecError, SyscallError
from .model import Descriptor

__all__ = ["ContainerEntry", "ContainerEntries"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class ContainerEntry:
    """One container's entry: its name, its upper dir, and the image (name, manifest) under it."""

    name: str
    path: Path
    image: str
    descriptor: Descriptor

    @property
    def upper(self) -> Path:
        """The overlay's upper dir: what the container changed."""
        return self.path / "upper"


class ContainerEntries:
    """The entries under *root* (an image store's ``containers/``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, name: str, image: str, descriptor: Descriptor) -> ContainerEntry:
        """A new entry *name* over *image* (its manifest *descriptor*), with an empty upper dir;
        a name in use is refused."""
        if not _NAME.fullmatch(name):
            raise ConfigError(f"container name `{name}`: letters, digits, `_`, `.` and `-`", what="name")
        self.root.mkdir(mode=0o700, exist_ok=True)
        staged = self.root / f".new-{uuid.uuid4().hex}"
        staged.mkdir(mode=0o700)
        try:
            (staged / "upper").mkdir(mode=0o755)
            manifest = {"mediaType": descriptor.media_type, "digest": descriptor.digest, "size": descriptor.size}
            record = {"name": name, "image": image, "manifest": manifest}
            (staged / "image.json").write_text(json.dumps(record) + "\n")
            try:
                os.rename(staged, self.root / name)  # refused if it exists (and is not empty)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise ConfigError(f"container name `{name}` is in use (nsprim rm {name})", what="name") from None
                raise SyscallError(exc.errno or errno.EIO, "rename", self.root / name) from None
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return self.get(name)

    def get(self, name: str) -> ContainerEntry:
        """The entry *name*; :class:`~nsprim.errors.ImageNotFoundError` if there is none."""
        path = self.root / name
        if not _NAME.fullmatch(name) or not (path / "image.json").is_file():
            raise ImageNotFoundError(f"container `{name}`: none of that name in `{self.root}`", blob=name)
        try:
            record = json.loads((path / "image.json").read_text())
            m = record["manifest"]
            descriptor = Descriptor(media_type=str(m["mediaType"]), digest=str(m["digest"]), size=int(m["size"]))
            return ContainerEntry(name, path, str(record["image"]), descriptor.check("manifest"))
        except (ValueError, KeyError, TypeError, SpecError) as exc:
            raise ImageError(f"container `{name}`: `{path / 'image.json'}` is damaged ({exc})", blob=name) from None

    def entries(self) -> list[ContainerEntry]:
        """Every entry, by name."""
        if not self.root.is_dir():
            return []
        return [self.get(p.name) for p in sorted(self.root.iterdir()) if not p.name.startswith(".")]

    def remove(self, name: str) -> None:
        """Delete the entry *name* and its changes."""
        entry = self.get(name)
        trash = self.root / f".rm-{uuid.uuid4().hex}"
        try:
            os.rename(entry.path, trash)
        except OSError as exc:
            raise SyscallError(exc.errno or errno.EIO, "remove", entry.path) from None
        shutil.rmtree(trash, ignore_errors=True)
