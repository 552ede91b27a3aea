"""Layers and images: containers that share one copy of an image, and ``docker commit``.

Builds a two-layer image in a fresh LayerStore, starts several containers on
it (each a private overlay upper dir over the shared layers, each running a
shell as pid 1 of its own pid namespace), changes files in one, commits that
change as a new layer, starts a container from the new image, and prints the
disk use against copying the image for every container.

Run as root:  python examples/layers.py [--containers 4] [--size-mb 20]

Everything happens in a private mount namespace entered first, and in a
temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import nsprim
from nsprim.fs.layers import ContainerRoot, LayerStore, disk_usage
from nsprim.fs.rootfs import RootFS

__all__ = ["main"]


def mib(n: int) -> str:
    return f"{n / (1 << 20):8.1f} MiB"


def build_base(path: Path, size_mb: int) -> None:
    """A small distribution: busybox, /etc, and size_mb of 'libraries'."""
    busybox = shutil.which("busybox")
    (path / "bin").mkdir(parents=True)
    (path / "etc").mkdir()
    if busybox:
        shutil.copy2(busybox, path / "bin" / "busybox")
        for applet in ("sh", "cat", "ls", "echo", "hostname", "rm"):
            os.symlink("busybox", path / "bin" / applet)
    (path / "etc" / "os-release").write_text("ID=nsprim-demo\n")
    (path / "etc" / "motd").write_text("welcome\n")
    lib = path / "usr" / "lib"
    lib.mkdir(parents=True)
    for i in range(size_mb):
        (lib / f"lib{i}.so").write_bytes(os.urandom(1 << 20))


def build_app(path: Path) -> None:
    (path / "app").mkdir(parents=True)
    (path / "etc").mkdir()
    (path / "app" / "run.sh").write_text("echo app v1\n")
    (path / "etc" / "app.conf").write_text("mode=v1\n")


def run(root: ContainerRoot, script: str) -> str:
    """Run a shell in the container: its root is the mounted overlay."""
    if not (root.merged / "bin" / "busybox").exists():
        return "(no busybox on this host: not running a process)\n"
    r = nsprim.run(
        ["/bin/sh", "-c", script],
        new={"mnt", "pid", "uts", "ipc"},
        hostname=root.name,
        steps=RootFS(root.merged).steps(),
        env={"PATH": "/bin"},
        capture_output=True,
        timeout=30,
    )
    return (r.stdout or b"").decode() + (r.stderr or b"").decode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--containers", type=int, default=4)
    ap.add_argument("--size-mb", type=int, default=20, help="size of the base layer's data")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: this example mounts overlays", file=sys.stderr)
        return 1
    nsprim.unshare("mnt")  # a private mount namespace before anything is mounted

    work = Path(tempfile.mkdtemp(prefix="nsprim-layers-"))
    roots: list[ContainerRoot] = []
    try:
        store = LayerStore(work / "store")
        build_base(work / "src-base", args.size_mb)
        build_app(work / "src-app")
        base = store.add_dir(work / "src-base")
        app = store.add_dir(work / "src-app")
        image = store.save_image("demo", [base, app])
        print(f"image demo: {len(image.layers)} layers")
        for layer in (base, app):
            print(f"  {layer.digest[:19]}…  tar {mib(layer.size)}")

        for _ in range(args.containers):
            roots.append(store.create_container(image).mount())
        for root in roots:
            out = run(root, 'echo "$(hostname): $(cat /etc/app.conf)"')
            print(f"container {root.name}: {out.strip()}")

        changed = roots[0]
        print(f"\nchanging files in container {changed.name}")
        print(
            run(
                changed,
                "echo mode=v2 > /etc/app.conf; rm /etc/motd; echo 'echo app v2' > /app/run.sh; echo hi > /etc/new",
            ),
            end="",
        )
        for root in roots[1:2]:
            print(f"container {root.name} still sees: {(root.merged / 'etc' / 'app.conf').read_text().strip()}")
        layer = changed.commit("demo-v2")
        print(f"committed the change as layer {layer.digest[:19]}…  tar {mib(layer.size)}")
        with tarfile.open(layer.tar) as tf:
            print("  entries:", ", ".join(tf.getnames()))

        fresh = store.create_container("demo-v2").mount()
        roots.append(fresh)
        out = run(fresh, "cat /etc/app.conf /etc/new; ls /etc")
        print(f"container {fresh.name} of demo-v2:\n  " + out.strip().replace("\n", "\n  "))

        layers_use = sum(disk_usage(store.layer(d).diff) for d in store.image("demo-v2").layers)
        uppers = sum(disk_usage(r.upper) for r in roots)
        image_size = disk_usage(work / "src-base") + disk_usage(work / "src-app")
        print(f"\ndisk use for {len(roots)} containers:")
        print(f"  shared layers      {mib(layers_use)}")
        print(f"  container uppers   {mib(uppers)}")
        print(f"  total (overlay)    {mib(layers_use + uppers)}")
        print(f"  copying the image  {mib(image_size * len(roots))}  ({len(roots)} x {mib(image_size).strip()})")
        print(f"  saved              {(1 - (layers_use + uppers) / (image_size * len(roots))) * 100:.0f} %")
        tars = sum(disk_usage(layer.tar) for layer in store.layers())
        print(f"  (the store also keeps each layer's tar for export: {mib(tars).strip()})")
    finally:
        for root in roots:
            root.unmount()
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
