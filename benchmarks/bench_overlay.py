"""Overlay benchmark (issue #4): a container root by overlay mount vs. by copying the image.

Two questions:

1. **Overlay vs. copy.**  Giving a container its own writable root costs either
   an overlay mount (and its unmount), whatever the image size, or a copy of
   the image (``cp -a``), proportional to it.  Cases per image size (10 MB,
   100 MB; 1 GB with ``--full``): ``overlay SIZE`` = ``OverlayMount.mount()`` +
   ``unmount()`` over the image directory with an (empty) upper dir;
   ``cp -a SIZE`` = ``cp -a`` of the image directory (page cache warm; the
   removal of the copy is not timed).  The ratio cp/overlay is how many times
   cheaper the overlay is.
2. **Mount cost vs. depth.**  ``OverlayMount`` over 1, 10, 100 and 500 lower
   layers (one small file each), mount + unmount.  Up to a page of options
   the classic ``mount(2)`` is used, above it the new mount API with one
   ``lowerdir+`` per layer (the note says which).

The image is files of 256 KiB in directories of 64, on the file system of
``--dir`` (default: a temporary directory under /tmp).  Everything is mounted
in a private mount namespace entered first.

Run as root: ``python benchmarks/bench_overlay.py [--quick] [--full] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import nsprim
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import _harness as h  # after the path set-up above

import nsprim
from nsprim import _sys
from nsprim.fs.overlay import OverlayMount

SIZES_MB = (10, 100)
FULL_SIZES_MB = (10, 100, 1024)
DEPTHS = (1, 10, 100, 500)
FILE_SIZE = 256 << 10


def make_image(path: Path, size_mb: int) -> None:
    """size_mb of 256 KiB files, 64 per directory."""
    count = size_mb * (1 << 20) // FILE_SIZE
    for i in range(count):
        d = path / f"d{i // 64:03d}"
        if i % 64 == 0:
            d.mkdir(parents=True)
        (d / f"f{i:05d}").write_bytes(os.urandom(FILE_SIZE))


def overlay_case(name: str, work: Path, lower: Sequence[Path]) -> h.Case:
    for sub in ("upper", "work", "merged"):
        (work / sub).mkdir(parents=True)
    ov = OverlayMount(work / "merged", list(lower), work / "upper", work / "work")

    def once() -> None:
        ov.mount()
        ov.unmount()

    return h.Case(name, h.timed(once), note=f"{len(lower)} lower, {ov.choose_api()} mount API")


def raw_case(name: str, work: Path, lower: Path) -> h.Case:
    """The same overlay by bare mount(2)/umount2(2): what nsprim's Python adds on top."""
    for sub in ("upper", "work", "merged"):
        (work / sub).mkdir(parents=True)
    data = f"lowerdir={lower},upperdir={work / 'upper'},workdir={work / 'work'}"
    target = str(work / "merged")

    def once() -> None:
        _sys.mount("overlay", target, "overlay", 0, data)
        _sys.umount(target, 0)

    return h.Case(name, h.timed(once), note="bare system calls, no checks")


def copy_case(name: str, image: Path, dest: Path) -> h.Case:
    cp = shutil.which("cp") or "/bin/cp"

    def run(count: int) -> list[float]:
        out = []
        for _ in range(count):
            t0 = time.perf_counter_ns()
            subprocess.run([cp, "-a", str(image), str(dest)], check=True)
            out.append((time.perf_counter_ns() - t0) / 1000.0)
            shutil.rmtree(dest)
            os.sync()  # write back outside the timed region, not in the next case's
        return out

    return h.Case(name, run, note="cp -a, page cache warm")


def extend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--full", action="store_true", help="also the 1 GB image (needs ~2 GB free and a minute)")
    p.add_argument("--dir", type=Path, default=None, help="where to build the images (default: a temp dir in /tmp)")


def main(argv: Sequence[str] | None = None) -> int:
    args = h.parse_args(__doc__ or "", argv, extend)
    if os.geteuid() != 0:
        print("skipped: run as root (mounts overlays)")
        return 0
    nsprim.unshare("mnt")  # private mount namespace: nothing here reaches the host
    if args.wait_quiet:
        h.wait_for_quiet(args.wait_quiet)
    cfg = h.Config.from_args(args)
    sizes = FULL_SIZES_MB if args.full else SIZES_MB
    base = Path(tempfile.mkdtemp(prefix="nsprim-bench-overlay-", dir=args.dir))
    monitor = h.LoadMonitor()
    all_results: dict[str, h.Stats] = {}
    ratios: list[h.Ratio] = []
    try:
        # 1. overlay vs cp -a, per image size
        ov_cases, cp_cases = [], []
        for mb in sizes:
            label = f"{mb} MB" if mb < 1024 else f"{mb // 1024} GB"
            image = base / f"image-{mb}"
            make_image(image, mb)
            ov_cases.append(overlay_case(f"overlay {label}", base / f"ov-{mb}", [image]))
            cp_cases.append(copy_case(f"cp -a {label}", image, base / f"copy-{mb}"))
        os.sync()
        ov_cases.append(raw_case(f"raw mount(2) {sizes[0]} MB", base / "raw", base / f"image-{sizes[0]}"))
        monitor.__enter__()
        ov_res = h.run_interleaved(ov_cases, cfg)
        copies = 2 if args.quick else (3 if args.full else 5)
        cp_res = h.run_interleaved(cp_cases, h.Config(iterations=copies, rounds=copies, warmup=1))
        ratios.append(
            h.Ratio(f"OverlayMount / raw mount(2) {sizes[0]} MB", ov_res[ov_cases[0].name], ov_res[ov_cases[-1].name])
        )
        for ov_case, cp_case in zip(ov_cases[:-1], cp_cases, strict=True):
            ratios.append(h.Ratio(f"{cp_case.name} / {ov_case.name}", cp_res[cp_case.name], ov_res[ov_case.name]))
        all_results.update(ov_res)
        all_results.update(cp_res)
        h.print_table({**ov_res, **cp_res}, "container root: overlay mount+umount vs copying the image")
        print("  ratios (cp -a / overlay: how many times the copy costs the overlay; and nsprim's overhead):")
        h.print_ratios(ratios)

        # 2. mount cost vs number of lower layers
        layers_dir = base / "layers"
        layers = []
        for i in range(max(DEPTHS)):
            p = layers_dir / f"layer-{i:04d}"
            p.mkdir(parents=True)
            (p / f"f{i}").write_text(str(i))
            layers.append(p)
        os.sync()
        depth_cases = [overlay_case(f"{n} layers", base / f"depth-{n}", layers[:n][::-1]) for n in DEPTHS]
        depth_cfg = h.Config(iterations=20, rounds=5, warmup=2) if args.quick else h.Config(iterations=100, rounds=10)
        depth_res = h.run_interleaved(depth_cases, depth_cfg)
        monitor.__exit__(None, None, None)
        all_results.update(depth_res)
        one = depth_res[depth_cases[0].name]
        depth_ratios = [h.Ratio(f"{c.name} / 1 layer", depth_res[c.name], one) for c in depth_cases[1:]]
        print()
        h.print_table(depth_res, "overlay mount+umount vs number of lower layers")
        h.print_ratios(depth_ratios)
        ratios += depth_ratios
        print(f"\n{monitor.describe()}")
        if args.json:
            h.write_json(args.json, h.as_json(all_results, ratios))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
