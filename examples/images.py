"""Images: pull, run, change, commit, push, in a few lines.

Pulls SOURCE into an image store, runs it, runs it again keeping its changes
in an upper dir, commits those as a new layer of a new image, pushes that to
DEST, and pulls DEST into a second, empty store to show the change travelled
(and that only the new layer did: the pushed image shares the rest).

Run as root:  python examples/images.py SOURCE DEST [--tls-verify=false] [--root DIR]
e.g.          python examples/images.py 127.0.0.1:5000/busybox:latest 127.0.0.1:5000/busybox:changed --tls-verify=false

Without ``--root`` the stores are temporary directories, removed at the end.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from nsprim.container import Container
from nsprim.image.store import ImageStore

__all__ = ["main"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("--tls-verify", default="true", choices=("true", "false"))
    p.add_argument("--root", type=Path, help="the image store (default: a temporary one)")
    args = p.parse_args()
    verify = args.tls_verify == "true"

    with tempfile.TemporaryDirectory(prefix="nsprim-images-") as tmp:
        store = ImageStore(args.root or Path(tmp) / "store")
        image = store.pull(args.source, tls_verify=verify)  # 1. pull
        print(f"pulled {image.name}: {len(image.layers)} layers")

        r = Container.from_image(image.name, ["echo", "hello from the image"], store=store).run(capture_output=True)
        print(r.stdout.decode().strip())  # 2. run

        upper = Path(tmp) / "upper"  # 3. change: the container's upper dir, kept
        upper.mkdir()
        change = ["sh", "-c", "echo changed in a container > /etc/motd"]
        if Container.from_image(image.name, change, store=store, upper=upper).run().returncode != 0:
            raise SystemExit("the change failed")

        changed = store.commit(image, upper, args.dest, comment="add /etc/motd")  # 4. commit
        print(f"committed {changed.name}: {len(changed.layers)} layers")

        store.push(changed.name, tls_verify=verify)  # 5. push
        elsewhere = ImageStore(Path(tmp) / "elsewhere")
        again = elsewhere.pull(args.dest, tls_verify=verify)
        r = Container.from_image(again.name, ["cat", "/etc/motd"], store=elsewhere).run(capture_output=True)
        print(f"pulled back {again.name}: {r.stdout.decode().strip()}")
        usage = store.usage()
        print(f"{len(usage.images)} images, {usage.stored} bytes of layers stored, {usage.saved} saved by sharing")


if __name__ == "__main__":
    main()
