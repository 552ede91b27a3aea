"""``nsprim pull``, ``images``, ``rmi`` and ``image save|load|gc``: the image store, as podman has them.

Every command takes ``--root DIR``, the store (default ``$NSPRIM_STORE``, else
``/var/lib/nsprim/images``).
"""

from __future__ import annotations

import argparse

from .progress import human_size, terminal_progress

TYPE_CHECKING = False  # (typing itself is not imported)
if TYPE_CHECKING:
    from ..image.store import ImageStore

__all__ = [
    "configure_pull",
    "configure_images",
    "configure_rmi",
    "configure_image",
    "cmd_pull",
    "cmd_images",
    "cmd_rmi",
    "cmd_image",
    "configure_push",
    "cmd_push",
    "configure_commit",
    "cmd_commit",
    "add_root",
    "add_registry_options",
    "open_store",
    "tls_verify",
]


def add_root(p: argparse.ArgumentParser) -> None:
    """``--root DIR``: the image store."""
    p.add_argument("--root", metavar="DIR", help="the image store (default: $NSPRIM_STORE or /var/lib/nsprim/images)")


def add_registry_options(p: argparse.ArgumentParser) -> None:
    """``--tls-verify``, ``--cert-file``, ``--authfile``, ``--platform`` and ``-q``, as podman pull has them."""
    p.add_argument("--tls-verify", default="true", choices=("true", "false"), metavar="true|false",
                   help="require HTTPS with a verified certificate (false: plain HTTP or any certificate)")  # fmt: skip
    p.add_argument("--cert-file", metavar="PEM", help="CA certificates to trust besides the system's")
    p.add_argument("--authfile", metavar="FILE", help="credentials (default: the files podman and docker read)")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="the platform to pull (default: this host's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")


def open_store(args: argparse.Namespace) -> ImageStore:
    """The image store ``--root`` names."""
    from ..image.store import ImageStore

    return ImageStore(args.root)


def tls_verify(args: argparse.Namespace) -> bool:
    """``--tls-verify`` as a bool."""
    return bool(args.tls_verify == "true")


def configure_pull(p: argparse.ArgumentParser) -> None:
    add_root(p)
    add_registry_options(p)
    p.add_argument("ref", metavar="REF", help="[REGISTRY/]NAME[:TAG][@DIGEST]")


def cmd_pull(args: argparse.Namespace) -> int:
    from ..image import Platform

    store = open_store(args)
    progress = None if args.quiet else terminal_progress()
    try:
        image = store.pull(args.ref, platform=Platform.parse(args.platform) if args.platform else None,
                           progress=progress, tls_verify=tls_verify(args), auth_file=args.authfile,
                           ca_file=args.cert_file)  # fmt: skip
    finally:
        if progress is not None:
            progress.close()
    print(image.id.partition(":")[2])
    return 0


def configure_push(p: argparse.ArgumentParser) -> None:
    add_root(p)
    add_registry_options(p)
    p.add_argument("image", metavar="IMAGE", help="an image of the store")
    p.add_argument("dest", nargs="?", metavar="DESTINATION", help="[REGISTRY/]NAME[:TAG] (default: IMAGE's name)")


def cmd_push(args: argparse.Namespace) -> int:
    if args.platform:
        from ..errors import ConfigError

        raise ConfigError("--platform: a push sends the image as it is in the store", what="platform")
    store = open_store(args)
    progress = None if args.quiet else terminal_progress()
    try:
        desc = store.push(args.image, args.dest, progress=progress, tls_verify=tls_verify(args),
                          auth_file=args.authfile, ca_file=args.cert_file)  # fmt: skip
    finally:
        if progress is not None:
            progress.close()
    print(desc.digest)
    return 0


def configure_images(p: argparse.ArgumentParser) -> None:
    add_root(p)
    p.add_argument("-q", "--quiet", action="store_true", help="image IDs only")
    p.add_argument("--no-trunc", action="store_true", help="whole image IDs")


def cmd_images(args: argparse.Namespace) -> int:
    from ..image.reference import ImageReference

    usage = open_store(args).usage()
    if args.quiet:
        for ids in dict.fromkeys(u.image.id.partition(":")[2][: None if args.no_trunc else 12] for u in usage.images):
            print(ids)
        return 0
    rows = [("REPOSITORY", "TAG", "IMAGE ID", "SIZE", "SHARED", "UNIQUE")]
    for u in usage.images:
        ref = ImageReference.parse(u.image.name)
        repository, tag = ref.name, ref.tag or "<none>"
        image_id = u.image.id.partition(":")[2][: None if args.no_trunc else 12]
        rows.append((repository, tag, image_id, human_size(u.size), human_size(u.shared), human_size(u.unique)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    count = len(usage.images)
    print(f"{count} image{'s' * (count != 1)}: {human_size(usage.total)} of layers, {human_size(usage.stored)} "
          f"stored (each layer once), {human_size(usage.saved)} saved by sharing")  # fmt: skip
    return 0


def configure_rmi(p: argparse.ArgumentParser) -> None:
    add_root(p)
    p.add_argument("refs", nargs="+", metavar="IMAGE", help="a name or an image ID (or its first digits)")


def cmd_rmi(args: argparse.Namespace) -> int:
    store = open_store(args)
    images = [store.image(ref) for ref in args.refs]  # every name found before anything is removed
    for image in images:
        store.remove(image.name, collect=False)
        print(f"Untagged: {image.name}")
    collected = store.gc()
    for image in images:
        if not any(i.id == image.id for i in store.images()):
            print(f"Deleted: {image.id.partition(':')[2]}")
    if collected.bytes:
        print(f"Freed {human_size(collected.bytes)}")
    return 0


def configure_commit(p: argparse.ArgumentParser) -> None:
    add_root(p)
    p.add_argument("-m", "--message", default="", help="the comment of the new layer's history entry")
    p.add_argument("container", metavar="CONTAINER", help="a container run as `nsprim run --name NAME IMAGE`")
    p.add_argument("ref", metavar="REF", help="the new image's name")


def cmd_commit(args: argparse.Namespace) -> int:
    store = open_store(args)
    entry = store.containers.get(args.container)
    image = store.commit(store.image_of(entry.descriptor, entry.image), entry.upper, args.ref, comment=args.message)
    print(image.id.partition(":")[2])
    return 0


def configure_image(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="image_command", required=True, metavar="COMMAND")
    save = sub.add_parser("save", help="write images to an OCI layout or a docker archive")
    add_root(save)
    save.add_argument("--format", default="oci-dir", choices=("oci-dir", "docker-archive"),
                      help="oci-dir (a directory, default) or docker-archive (a tar docker load reads)")  # fmt: skip
    save.add_argument("-o", "--output", required=True, metavar="PATH", help="the directory or file to write")
    save.add_argument("refs", nargs="+", metavar="IMAGE")
    load = sub.add_parser("load", help="add the images of an OCI layout or a docker archive")
    add_root(load)
    load.add_argument("-i", "--input", required=True, metavar="PATH", help="an OCI layout directory or an archive")
    load.add_argument("--name", metavar="REF", help="the name to give the (one) image")
    bundle = sub.add_parser("bundle", help="write an OCI runtime bundle of an image (for nsprim-runtime, runc)")
    add_root(bundle)
    bundle.add_argument("-o", "--output", required=True, metavar="DIR", help="the bundle (new, or an empty directory)")
    bundle.add_argument("--entrypoint", metavar="WORD", help="replace the image's Entrypoint (one word)")
    bundle.add_argument("image", metavar="IMAGE")
    bundle.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD", help="replace the image's Cmd")
    gc = sub.add_parser("gc", help="remove the blobs and layers no image names")
    add_root(gc)


def cmd_image(args: argparse.Namespace) -> int:
    store = open_store(args)
    if args.image_command == "save":
        store.save(args.refs, args.output, format=args.format)
        return 0
    if args.image_command == "load":
        for image in store.load(args.input, name=args.name):
            print(f"Loaded image: {image.name}")
        return 0
    if args.image_command == "bundle":
        from ..image.bundle import image_bundle

        entrypoint = None if args.entrypoint is None else [args.entrypoint]
        print(image_bundle(store, args.image, args.output, args.cmd, entrypoint=entrypoint))
        return 0
    collected = store.gc()
    print(f"Removed {collected.blobs} blobs and {collected.layers} layers, {human_size(collected.bytes)}")
    return 0
