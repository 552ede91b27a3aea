"""A directory of immutable layers, images made of them, and container roots on top.

Layout of a :class:`LayerStore` at ``ROOT``::

    ROOT/layers/<hex>/diff/        the layer in overlay form (whiteouts as 0/0 devices)
    ROOT/layers/<hex>/layer.tar    its OCI tar; <hex> is the sha256 of these bytes
                                   (not kept when added with ``keep_tar=False``: an
                                   image store keeps the compressed blob instead)
    ROOT/layers/<hex>/layer.json   digest, size and whether the tar is kept
    ROOT/images/<name>.json        an image: its layer digests, base first
    ROOT/containers/<id>/          upper/, work/ and merged/ of one container root
    ROOT/tmp/                      staging: everything is built here, then renamed

``ROOT`` is 0700, made so when the store is opened: layers keep their device
nodes, setuid binaries and file capabilities, which only root may reach.

A layer is added whole or not at all (built in ``tmp/`` and renamed), and is
never written to again: containers stack it read-only under their own upper
dir, so any number of containers of an image share one copy of its layers::

    store = LayerStore("/var/lib/x")
    base = store.add_tar("base.tar")
    image = store.save_image("app", [base])
    with store.create_container(image) as root:      # mounted overlay
        (root.merged / "hello").write_text("hi")
        layer = root.commit()                         # the change, as a new layer
    store.save_image("app2", [*image.layers, layer.digest])

Mount only inside a private mount namespace (``nsprim.unshare("mnt")``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from ..._dataclass import dataclass
from ..._paths import StrPath
from ...errors import ConfigError, LayerError, LayerLimitError, SyscallError
from ..overlay import OverlayMount, OverlayOptions
from .commit import commit
from .digest import Digest, HashingWriter, parse_digest
from .extract import extract_layer
from .limits import DEFAULT_LIMITS, ExtractLimits
from .members import TarSource
from .tree import remove_tree, walk

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from ..rootfs import RootFS

__all__ = ["Layer", "Image", "LayerStore", "ContainerRoot", "disk_usage"]


_IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Layer:
    """One stored layer: its digest, its directory (``diff``), its tar's size and whether the tar is kept."""

    digest: Digest
    path: Path
    size: int
    has_tar: bool = True

    @property
    def diff(self) -> Path:
        """The layer's contents in overlay form, to stack as a lower dir."""
        return self.path / "diff"

    @property
    def tar(self) -> Path:
        """The layer's OCI tar (its sha256 is :attr:`digest`); absent unless :attr:`has_tar`."""
        return self.path / "layer.tar"

    @property
    def hex(self) -> str:
        """The digest without its ``sha256:`` prefix."""
        return self.digest.split(":", 1)[1]


@dataclass(frozen=True)
class Image:
    """A named, ordered list of layers, *base first* (the OCI ``rootfs.diff_ids`` order)."""

    name: str
    layers: tuple[Digest, ...]

    def __post_init__(self) -> None:
        if not _IMAGE_NAME.fullmatch(self.name):
            raise ConfigError(f"bad image name {self.name!r} (letters, digits, `._:@-`)", what="name")
        if not self.layers:
            raise ConfigError(f"image {self.name!r} needs at least one layer", what="layers")


def disk_usage(path: StrPath) -> int:
    """Bytes allocated under *path*, each inode once, on *path*'s file system only (``du -sx``)."""
    seen: set[tuple[int, int]] = set()
    total = 0

    def count(p: str) -> None:
        nonlocal total
        try:
            st = os.lstat(p)
        except OSError:
            return
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512

    count(os.fspath(path))
    dev = os.lstat(path).st_dev
    for dirpath, dirnames, filenames in walk(path):
        # stay on one file system (du -x): a mounted container root is not disk use
        dirnames[:] = [d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == dev]
        for name in (*dirnames, *filenames):
            count(os.path.join(dirpath, name))
    return total


def private_root(root: Path, what: str = "layer store") -> None:
    """Create *root* 0700, or make an existing one 0700; refuse one another user owns.

    Layers keep what the image's tars hold: setuid-root binaries, file
    capabilities, device nodes (0666 ``/dev/mem`` if a tar says so).  Below a
    root only its owner can enter, no other user can run or open them (as
    Docker's ``/var/lib/docker`` is 0700).
    """
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(root, 0o700)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SyscallError(exc.errno, "open", root, detail=f"open {what} `{root}`") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise ConfigError(
                f"open {what} `{root}`: owned by uid {st.st_uid}, not by this user (uid {os.geteuid()}), "
                "who could change its layers",
                what="root",
            )
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


class LayerStore:
    """Immutable layers named by the sha256 of their tar, and images made of them.

    Opening a store makes its root 0700 (see the module's docs).  *limits*
    bound what each tar added may unpack to (default
    :class:`~nsprim.fs.layers.ExtractLimits()`); ``add_tar`` and ``add_dir``
    take their own too.
    """

    def __init__(self, root: StrPath, *, limits: ExtractLimits | None = None) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.limits = limits or DEFAULT_LIMITS
        private_root(self.root)
        for sub in ("layers", "images", "containers", "tmp"):
            try:
                (self.root / sub).mkdir(mode=0o700, exist_ok=True)
            except OSError as exc:
                raise SyscallError(exc.errno, "mkdir", self.root / sub) from None

    def __repr__(self) -> str:
        return f"<LayerStore {self.root}>"

    # ---- layers -----------------------------------------------------------------------------

    def _layer_dir(self, digest: Digest) -> Path:
        return self.root / "layers" / digest.split(":", 1)[1]

    def has_layer(self, digest: str) -> bool:
        """Whether the store holds the layer *digest*."""
        return (self._layer_dir(parse_digest(digest)) / "layer.json").is_file()

    def layer(self, digest: str) -> Layer:
        """The stored layer *digest* (``sha256:...``); ConfigError if it is not there."""
        d = parse_digest(digest)
        meta = self._layer_dir(d) / "layer.json"
        try:
            info = json.loads(meta.read_text())
        except FileNotFoundError:
            raise ConfigError(f"layer `{d}` is not in the store `{self.root}`", what="digest") from None
        return Layer(d, meta.parent, int(info["size"]), bool(info.get("tar", True)))

    def layers(self) -> list[Layer]:
        """Every stored layer."""
        return [self.layer("sha256:" + p.name) for p in sorted((self.root / "layers").iterdir())]

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        tmp = self.root / "tmp" / uuid.uuid4().hex
        tmp.mkdir()
        try:
            yield tmp
        finally:
            with contextlib.suppress(OSError):
                remove_tree(tmp)

    def _install(
        self,
        staged: Path,
        tar: Path,
        digest: Digest,
        size: int,
        limits: ExtractLimits | None,
        label: str,
        keep_tar: bool = True,
    ) -> Layer:
        """Extract *tar* (already in *staged*) and rename the whole layer into place."""
        final = self._layer_dir(digest)
        if self.has_layer(digest):
            return self.layer(digest)
        # below the 0700 root: the layer may keep its devices, setuid bits and capabilities
        extract_layer(tar, staged / "diff", preserve_special=True, limits=limits or self.limits, label=label)
        if keep_tar:
            os.chmod(tar, 0o444)
        else:
            tar.unlink()
        meta = {"digest": digest, "size": size, "tar": keep_tar}
        (staged / "layer.json").write_text(json.dumps(meta) + "\n")
        try:
            os.rename(staged, final)
        except OSError:
            if self.has_layer(digest):  # someone else added it meanwhile
                return self.layer(digest)
            raise
        return Layer(digest, final, size, keep_tar)

    def add_tar(self, src: TarSource, *, limits: ExtractLimits | None = None, keep_tar: bool = True) -> Layer:
        """Add the OCI layer tar *src* (a path or a binary file); return the layer.

        The tar is copied into the store while its sha256 is computed, then
        extracted safely (see :func:`~nsprim.fs.layers.extract.extract_layer`),
        within *limits* (default: the store's), and kept beside the directory
        unless *keep_tar* is false (for a caller that keeps the layer's bytes
        elsewhere, as an image store keeps the compressed blob).  Adding a
        layer the store has is a no-op.  On any error nothing is left.
        """
        lim = limits or self.limits
        label = os.fspath(src) if isinstance(src, (str, os.PathLike)) else None
        with self._staging() as staged:
            tar = staged / "layer.tar"
            try:
                with contextlib.ExitStack() as stack:
                    f = stack.enter_context(open(src, "rb")) if isinstance(src, (str, os.PathLike)) else src
                    with open(tar, "wb") as out:
                        hw = HashingWriter(out)
                        while chunk := f.read(_CHUNK):
                            hw.write(chunk)
                            if hw.size > lim.max_tar_size:
                                raise LayerLimitError(
                                    f"a tar of more than {lim.max_tar_size} bytes, more than contents of max_size="
                                    f"{lim.max_size} and headers take (raise it with ExtractLimits(max_size=...))",
                                    limit="max_size",
                                    value=hw.size,
                                    maximum=lim.max_tar_size,
                                )
            except LayerError as exc:
                raise exc.in_layer(label or "<stream>") from None
            except OSError as exc:
                raise SyscallError(exc.errno, "read", label, detail=f"add layer `{label or '<stream>'}`") from None
            return self._install(staged, tar, hw.digest, hw.size, lim, label or hw.digest, keep_tar)

    def add_dir(self, upper: StrPath, *, merged: StrPath | None = None, limits: ExtractLimits | None = None) -> Layer:
        """Commit directory *upper* (an overlay upper dir, or any tree) as a new layer.

        See :func:`~nsprim.fs.layers.commit.commit` for *merged*; *limits* as for :meth:`add_tar`.
        """
        with self._staging() as staged:
            tar = staged / "layer.tar"
            stats = commit(upper, tar, merged=merged)
            assert stats.digest is not None
            return self._install(staged, tar, stats.digest, stats.size, limits, os.fspath(upper))

    def remove_layer(self, digest: str) -> None:
        """Delete layer *digest*; refused while an image uses it."""
        d = parse_digest(digest)
        users = [img.name for img in self.images() if d in img.layers]
        if users:
            raise ConfigError(f"layer `{d}` is used by images {', '.join(users)}", what="digest")
        path = self._layer_dir(d)
        if not path.exists():
            raise ConfigError(f"layer `{d}` is not in the store `{self.root}`", what="digest")
        trash = self.root / "tmp" / ("rm-" + uuid.uuid4().hex)
        os.rename(path, trash)  # gone from the store at once, then deleted
        remove_tree(trash)

    # ---- images -----------------------------------------------------------------------------

    def save_image(self, name: str, layers: Sequence[Layer | str]) -> Image:
        """Record image *name* as *layers* (base first); every layer must be in the store."""
        digests = tuple(parse_digest(x.digest if isinstance(x, Layer) else x) for x in layers)
        image = Image(name, digests)
        for d in digests:
            if not self.has_layer(d):
                raise ConfigError(f"image {name!r}: layer `{d}` is not in the store", what="layers")
        tmp = self.root / "tmp" / f"image-{uuid.uuid4().hex}.json"
        tmp.write_text(json.dumps({"name": name, "layers": list(digests)}, indent=1) + "\n")
        os.rename(tmp, self.root / "images" / f"{name}.json")
        return image

    def image(self, name: str) -> Image:
        """The image called *name*."""
        if not _IMAGE_NAME.fullmatch(name):
            raise ConfigError(f"bad image name {name!r}", what="name")
        try:
            info = json.loads((self.root / "images" / f"{name}.json").read_text())
        except FileNotFoundError:
            raise ConfigError(f"no image {name!r} in the store `{self.root}`", what="name") from None
        return Image(info["name"], tuple(parse_digest(d) for d in info["layers"]))

    def images(self) -> list[Image]:
        """Every image in the store."""
        return [self.image(p.stem) for p in sorted((self.root / "images").glob("*.json"))]

    def remove_image(self, name: str) -> None:
        """Forget image *name* (its layers stay until removed)."""
        self.image(name)
        (self.root / "images" / f"{name}.json").unlink()

    def lower_dirs(self, image: Image | str) -> list[Path]:
        """The overlay lower dirs of *image*, top first."""
        img = self.image(image) if isinstance(image, str) else image
        return [self.layer(d).diff for d in reversed(img.layers)]

    # ---- containers ---------------------------------------------------------------------------

    def create_container(
        self,
        image: Image | str,
        *,
        name: str | None = None,
        options: OverlayOptions | None = None,
    ) -> ContainerRoot:
        """A fresh container root for *image*: new empty upper and work dirs, not yet mounted."""
        img = self.image(image) if isinstance(image, str) else image
        lower = self.lower_dirs(img)
        cid = name or uuid.uuid4().hex[:12]
        if not _IMAGE_NAME.fullmatch(cid):
            raise ConfigError(f"bad container name {cid!r}", what="name")
        base = self.root / "containers" / cid
        base.mkdir()
        for sub in ("upper", "work", "merged"):
            (base / sub).mkdir()
        return ContainerRoot(self, img, base, lower, options)

    def disk_usage(self) -> int:
        """Bytes the whole store takes on disk."""
        return disk_usage(self.root)


class ContainerRoot:
    """The root file system of one container: an image's layers under a private upper dir.

    ``with`` mounts the overlay on :attr:`merged` and unmounts it after;
    :meth:`commit` turns the changes into a layer; :meth:`remove` deletes the
    upper dir (and everything else the container owns).
    """

    def __init__(
        self, store: LayerStore, image: Image, base: Path, lower: Sequence[Path], options: OverlayOptions | None
    ) -> None:
        self.store = store
        self.image = image
        self.path = base
        self.upper = base / "upper"
        self.work = base / "work"
        self.merged = base / "merged"
        self.overlay = OverlayMount(self.merged, list(lower), self.upper, self.work, options=options)

    def __repr__(self) -> str:
        return f"<ContainerRoot {self.path.name} image={self.image.name} mounted={self.overlay.mounted}>"

    @property
    def name(self) -> str:
        """The container's id in the store."""
        return self.path.name

    def mount(self) -> ContainerRoot:
        """Mount the overlay on :attr:`merged`."""
        self.overlay.mount()
        return self

    def unmount(self) -> None:
        """Unmount the overlay (a no-op if not mounted)."""
        self.overlay.unmount(detach=True)

    def rootfs(self) -> RootFS:
        """A :class:`~nsprim.fs.rootfs.RootFS` that mounts this container's overlay in the child.

        For ``nsprim.spawn(..., new={"mnt", "pid", ...}, steps=root.rootfs().steps())``:
        the overlay then exists only in the child's mount namespace.  Its other
        settings (binds, tmpfs, masked paths...) are changed as those of any
        frozen value: ``dataclasses.replace(root.rootfs(), sysfs=False)``.
        """
        from ..rootfs import RootFS

        return RootFS.from_overlay(self.overlay)

    def commit(self, image_name: str | None = None) -> Layer:
        """Store the container's changes as a new layer; with *image_name*, also save an image.

        The new image is the container's image plus the new layer on top.
        """
        layer = self.store.add_dir(self.upper, merged=self.merged if self.overlay.mounted else None)
        if image_name is not None:
            self.store.save_image(image_name, [*self.image.layers, layer.digest])
        return layer

    def remove(self) -> None:
        """Unmount and delete the container's own directories (never the layers)."""
        self.unmount()
        remove_tree(self.path)

    def __enter__(self) -> ContainerRoot:
        return self.mount()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unmount()
