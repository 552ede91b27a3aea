"""Images: pulling and unpacking from a local registry, and running a cached image, against the tools.

A docker-registry on 127.0.0.1 (a configuration of its own, a temporary storage) holds one image: a
busybox-static base layer and a layer of 24 MiB in 192 files of random bytes (so gzip cannot shrink
it), put in by ``skopeo``.  One iteration is one whole command, started with ``subprocess.run``:

* **pull + unpack** into an empty store: ``nsprim pull --root DIR`` (fetched, verified, extracted into
  the layer store) vs ``skopeo copy docker://… oci:DIR`` then ``umoci unpack`` of it (the same work
  done by the two tools podman's world uses); the directories are removed between iterations, untimed.
* **a second run** of the image, its layers cached: ``nsprim run --root DIR IMAGE /bin/true`` vs
  ``podman run --rm IMAGE true`` with podman's default runtime (private storage, vfs, no network).

Printed ratios of medians, with the targets: **nsprim pull / skopeo + umoci <= 1.0** and **nsprim run
IMAGE / podman run <= 1.0**.

Run as root: ``python benchmarks/bench_images.py [--quick] [--no-podman] [--json out.json]``.  Exit
status 0 even on a MISS (it is a measurement) unless ``--strict``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nsprim
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import _harness as h  # after the path set-up above

from nsprim.image import ImageConfig, ImageLayout, ImageRootFS, Manifest, MediaType, Platform
from nsprim.image.model import ContainerSettings

__all__ = ["main"]


def _tar(add: Callable[[tarfile.TarFile], None]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        add(tar)
    return raw.getvalue()


def _image(base: Path, busybox: str) -> ImageLayout:
    """An OCI layout with ``bench:1``: busybox, then 24 MiB of random bytes."""
    root = base / "rootfs"
    (root / "bin").mkdir(parents=True)
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        (root / d).mkdir()
    shutil.copy2(busybox, root / "bin/busybox")
    for name in ("true", "sh", "cat", "echo"):
        os.symlink("busybox", root / "bin" / name)
    rng = random.Random(1)

    def data(tar: tarfile.TarFile) -> None:
        for i in range(192):
            info = tarfile.TarInfo(f"data/{i:03d}.bin")
            info.size = 128 << 10
            tar.addfile(info, io.BytesIO(rng.randbytes(info.size)))

    tars = [_tar(lambda tar: tar.add(root, arcname=".")), _tar(data)]
    layout = ImageLayout.create(base / "layout")
    layers = tuple(layout.write_blob(gzip.compress(t, 6, mtime=0), MediaType.OCI_LAYER_GZIP) for t in tars)
    config = ImageConfig(
        architecture=Platform.host().architecture, os="linux", config=ContainerSettings(cmd=("/bin/true",)),
        rootfs=ImageRootFS(type="layers", diff_ids=tuple("sha256:" + hashlib.sha256(t).hexdigest() for t in tars)),
    )  # fmt: skip
    manifest = Manifest(schema_version=2, media_type=MediaType.OCI_MANIFEST,
                        config=layout.write_blob(config.dumps(), MediaType.OCI_CONFIG), layers=layers)  # fmt: skip
    layout.add_image(manifest, "bench")
    return layout


@contextmanager
def _registry(base: Path, binary: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
              "storage": {"filesystem": {"rootdirectory": str(base / "storage")}},
              "http": {"addr": f"127.0.0.1:{port}", "secret": "nsprim-bench"}}  # fmt: skip
    base.mkdir(parents=True)
    (base / "config.yml").write_text(json.dumps(config))
    process = subprocess.Popen([binary, "serve", str(base / "config.yml")], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def _fresh(name: str, argvs: Callable[[Path], Sequence[Sequence[str]]], scratch: Path) -> h.Case:
    """Commands run one after the other in a new directory, removed after each iteration (untimed)."""

    def run(count: int) -> list[float]:
        out = []
        for i in range(count):
            work = scratch / f"{name.split()[0]}-{i}"
            work.mkdir()
            t0 = time.perf_counter_ns()
            for argv in argvs(work):
                _check(argv)
            out.append((time.perf_counter_ns() - t0) / 1000.0)
            shutil.rmtree(work)
        return out

    return h.Case(name, run)


def _check(argv: Sequence[str]) -> None:
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {r.returncode}: {r.stderr.decode(errors='replace')[-600:]}")


def _command(name: str, argv: Sequence[str]) -> h.Case:
    return h.Case(name, h.timed(lambda: _check(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    def extend(p: argparse.ArgumentParser) -> None:
        p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
        p.add_argument("--no-podman", action="store_true", help="leave podman out")

    args = h.parse_args("image pull and run benchmark", argv, extend)
    cfg = h.Config.from_args(args)
    if args.iterations is None:
        cfg.iterations, cfg.rounds, cfg.warmup = (6, 2, 1) if args.quick else (20, 4, 2)
    tools = {name: h.tool(name) for name in ("docker-registry", "skopeo", "umoci", "busybox")}
    import compileall

    # As an installed package has them (PYTHONDONTWRITEBYTECODE may be set here): no compiling per call.
    compileall.compile_dir(os.path.dirname(nsprim.__file__), quiet=1)
    cli = shutil.which("nsprim", path=os.path.dirname(sys.executable)) or shutil.which("nsprim")
    if os.geteuid() != 0 or cli is None or None in tools.values():
        print("skipped: needs root, nsprim (pip install -e .), docker-registry, skopeo, umoci and busybox")
        return 0
    with tempfile.TemporaryDirectory(prefix="nsprim-images-bench-") as tmp:
        base = Path(tmp)
        return _measure(args, cfg, base, cli, {k: v for k, v in tools.items() if v is not None})


def _measure(args: argparse.Namespace, cfg: h.Config, base: Path, cli: str, tools: dict[str, str]) -> int:
    layout = _image(base / "image", tools["busybox"])
    with _registry(base / "registry", tools["docker-registry"]) as host:
        ref = f"{host}/bench:1"
        subprocess.run([tools["skopeo"], "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout.path}:bench",
                        f"docker://{ref}"], check=True)  # fmt: skip
        scratch = base / "scratch"
        scratch.mkdir()

        def nsprim_pull(d: Path) -> list[list[str]]:
            return [[cli, "pull", "--root", str(d), "--tls-verify=false", "-q", ref]]

        def skopeo_umoci(d: Path) -> list[list[str]]:
            return [
                [tools["skopeo"], "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{d}/o:latest"],
                [tools["umoci"], "unpack", "--image", f"{d}/o:latest", str(d / "bundle")],
            ]

        cases = [_fresh("nsprim pull", nsprim_pull, scratch), _fresh("skopeo + umoci", skopeo_umoci, scratch)]
        pairs: list[tuple[str, str, float | None]] = [("nsprim pull", "skopeo + umoci", 1.0)]
        store = base / "store"
        subprocess.run([cli, "pull", "--root", str(store), "--tls-verify=false", "-q", ref], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        cases.append(_command("nsprim run IMAGE", [cli, "run", "--root", str(store), ref, "/bin/true"]))
        podman = None if args.no_podman else shutil.which("podman")
        if podman is not None:
            pm = h.private_podman(podman, base)
            subprocess.run([*pm, "pull", "--quiet", "--tls-verify=false", ref], check=True, stdout=subprocess.DEVNULL)
            run = [*pm, "run", "--rm", ref, "true"]
            try:
                _check(run)
            except RuntimeError as exc:  # crun 1.8, podman's default, refuses a hybrid cgroup host
                print(f"podman run with its default runtime fails ({str(exc).splitlines()[-1][-80:]}): with runc")
                run = [*pm, "--runtime", "runc", "run", "--rm", ref, "true"]
            cases.append(_command("podman run", run))
            pairs.append(("nsprim run IMAGE", "podman run", 1.0))
        load = h.LoadMonitor()
        try:
            with load:
                results = h.run_interleaved(cases, cfg)
        finally:
            if podman is not None:
                subprocess.run([*pm, "rmi", "--all", "--force"], capture_output=True)
    h.print_table(results, "one whole command (µs):")
    ratios = [h.Ratio(f"{a} / {b}", results[a], results[b], target) for a, b, target in pairs]
    print("\nratios of medians:")
    h.print_ratios(ratios)
    print(load.describe())
    if args.json:
        h.write_json(args.json, h.as_json(results, ratios))
    return 1 if args.strict and any(r.passed is False for r in ratios) else 0


if __name__ == "__main__":
    sys.exit(main())
