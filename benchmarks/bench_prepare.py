"""Preparation benchmark: 424x424 colour JPEGs -> 128x128 GalaxySet, against the original per-image recipe.

Synthetic SDSS-like cutouts (424 x 424 JPEG, the size of the Zenodo GZ2 and Kaggle images: an
elliptical galaxy, sometimes a companion, sky noise, gri-like colours) are written to a temporary
folder, then prepared in the same run by

``original``  the upstream recipe, one image at a time in one process: decode, centre crop 318 px,
              ``skimage.color.rgb2gray`` on BGR order, ``skimage.transform.resize(anti_aliasing=True)``
              to 128 x 128, min-max stretch to uint8 (kept in memory, nothing written);
``avader_1``  ``avader.sources.prepare("images", ...)`` with one worker, written to a GalaxySet file;
``avader``    the same with every core (the default).

Rates are images per second of wall time (best of the repeats; every repeat is recorded), with
the CPU time per image alongside, since this machine may be shared (see the load averages).
The bar: ``avader`` at least 3x the ``original`` rate. ``agreement`` compares the two recipes'
pixels (0..255 levels). Each method runs once on 4 images before the timings (imports, first calls).
``memory`` (full mode): the peak anonymous memory of a fresh process preparing N and 4N images
(the 4N folder hard-links each JPEG four times); flat in N means a GZ2-sized run (about 240k
images) fits too.

Usage::

    python benchmarks/bench_prepare.py --smoke   # seconds: 60 images
    python benchmarks/bench_prepare.py           # 2000 images (400 distinct), 3 repeats, memory at 2000 / 8000

Writes ``benchmarks/results/prepare.json`` (``prepare_smoke.json`` with ``--smoke``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, also when a test loads this file by path
import _common as common

SIDE = 424  # input JPEG side, pixels (Zenodo GZ2 / Kaggle)
SIZE = 128  # output side, pixels
BAR = 3.0


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Write ``n`` synthetic 424x424 colour galaxy JPEGs named 0.jpg .. n-1.jpg."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:SIDE, :SIDE].astype(np.float32)
    colour = np.array([1.0, 0.85, 0.6], dtype=np.float32)  # (R, G, B) = (i, r, g) of a red galaxy
    files = []
    for i in range(n):
        image = np.zeros((SIDE, SIDE), np.float32)
        for k in range(1 + int(rng.random() < 0.4)):
            cx, cy = (SIDE / 2 + rng.normal(0, 3, 2)) if k == 0 else rng.uniform(100, 324, 2)
            q, pa = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
            re, amp = rng.uniform(8, 40) / (1 + 2 * k), rng.uniform(0.4, 1.0) / (1 + k)
            dx, dy = x - cx, y - cy
            u = dx * np.cos(pa) + dy * np.sin(pa)
            v = (-dx * np.sin(pa) + dy * np.cos(pa)) / q
            image += amp * np.exp(-((np.hypot(u, v) / re) ** 0.6))
        rgb = image[..., None] * colour * 230 + rng.normal(8, 3, (SIDE, SIDE, 3))
        path = folder / f"{i}.jpg"
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(path, quality=90)
        files.append(path)
    return files


def original_recipe(files) -> np.ndarray:
    """The upstream per-image recipe (skimage), single process; returns (n, 128, 128) uint8."""
    from PIL import Image
    from skimage.color import rgb2gray
    from skimage.transform import resize

    out = np.empty((len(files), SIZE, SIZE), np.uint8)
    lo_px, hi_px = (SIDE - 318) // 2, (SIDE - 318) // 2 + 318
    for i, path in enumerate(files):
        rgb = np.asarray(Image.open(path))
        grey = rgb2gray(rgb[lo_px:hi_px, lo_px:hi_px, ::-1])  # upstream's arrays were BGR
        small = resize(grey, (SIZE, SIZE), anti_aliasing=True)
        out[i] = ((small - small.min()) / (small.max() - small.min()) * 255).astype(np.uint8)
    return out


def _timed(fn):
    wall, cpu = time.perf_counter(), common.cpu_seconds()
    value = fn()
    return value, time.perf_counter() - wall, common.cpu_seconds() - cpu


def child(args) -> None:
    """Memory measurement in a fresh process: prepare a folder, report peak anonymous memory."""
    from avader.sources import prepare

    with common.PeakSampler("RssAnon") as anon:
        start = time.perf_counter()
        prepare("images", args.data, size=SIZE, input=args.folder, progress=False, overwrite=True)
        seconds = time.perf_counter() - start
    n = len(list(Path(args.folder).iterdir()))
    Path(args.json).write_text(json.dumps({
        "n": n, "seconds": round(seconds, 3), "images_per_second": round(n / seconds, 1),
        "main_peak_rss_anon_mib": round(anon.peak, 1),
        "worker_peak_rss_mib": round(common.children_peak_rss_mib(), 1)}))


def memory_run(folder: Path, tmp: Path) -> dict:
    """Run :func:`child` on ``folder`` in a fresh subprocess (files in ``tmp``) and return its result."""
    result = common.run_child(__file__, ["--folder", str(folder), "--data", str(tmp / "memory.fits")], tmp)
    logging.info("memory N=%d: main peak anon %.0f MiB, worker peak %.0f MiB", result["n"],
                 result["main_peak_rss_anon_mib"], result["worker_peak_rss_mib"])
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="60 images, one repeat (seconds)")
    parser.add_argument("--n", type=int, help="images (default 400; smoke 60)")
    parser.add_argument("--repeats", type=int, help="timed repeats of each method (default 3; smoke 1)")
    parser.add_argument("--out", type=Path, help="result file")
    common.add_child_options(parser, "--folder")
    args = common.parse_args(parser, argv, child)
    if args is None:
        return 0
    from avader.data import GalaxySet
    from avader.preprocess import default_workers
    from avader.runs import machine_info
    from avader.sources import prepare

    copies = 1 if args.smoke else 5
    n = (args.n or (60 if args.smoke else 2000)) // copies * copies
    repeats = args.repeats or (1 if args.smoke else 3)
    load_before = common.load_average()
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        tmp = Path(tmp)
        folder = tmp / "jpegs"
        folder.mkdir()
        t0 = time.perf_counter()
        (tmp / "distinct").mkdir()
        distinct = make_jpegs(tmp / "distinct" if copies > 1 else folder, n // copies)
        files = distinct
        if copies > 1:  # hard links: n files from n / copies distinct JPEGs (same decoding cost)
            files = []
            for copy in range(copies):
                for path in distinct:
                    os.link(path, folder / f"{copy}{path.name}")
                    files.append(folder / f"{copy}{path.name}")
        logging.info("wrote %d synthetic %dx%d JPEGs (%d distinct) in %.1f s", len(files), SIDE, SIDE, len(distinct),
                     time.perf_counter() - t0)
        methods = {
            "original": lambda: original_recipe(files),
            "avader_1": lambda: prepare("images", tmp / "one.fits", size=SIZE, input=folder, workers=1,
                                        progress=False, overwrite=True),
            "avader": lambda: prepare("images", tmp / "all.fits", size=SIZE, input=folder, progress=False,
                                      overwrite=True),
        }
        warm = tmp / "warm"
        warm.mkdir()
        for path in files[:4]:
            os.link(path, warm / path.name)
        original_recipe(files[:4])  # imports and first-call costs out of the timings
        prepare("images", tmp / "warm.fits", size=SIZE, input=warm, progress=False, overwrite=True)
        runs = {name: [] for name in methods}
        reference = None
        for _ in range(repeats):
            for name, fn in methods.items():
                value, wall, cpu = _timed(fn)
                if name == "original":
                    reference = value
                runs[name].append({"seconds": round(wall, 3), "images_per_second": round(n / wall, 1),
                                   "cpu_ms_per_image": round(1e3 * cpu / n, 3)})
                logging.info("%-9s %7.1f images/s  (%.2f CPU ms/image)", name, n / wall, 1e3 * cpu / n)
        best = {name: max(r["images_per_second"] for r in rs) for name, rs in runs.items()}
        prepared = GalaxySet.read(tmp / "all.fits")
        row_of = {path.name: i for i, path in enumerate(files)}
        order = [row_of[name] for name in prepared.catalog["file"]]  # the set is sorted by id (file stem)
        diff = np.abs(np.asarray(prepared.images).astype(float) - reference[order].astype(float))
        memory = None
        if not args.smoke:
            big = tmp / "big"
            big.mkdir()
            for copy in range(4):  # 4N files: hard links to the N JPEGs (decoding cost and memory as distinct files)
                for path in files:
                    os.link(path, big / f"{copy}_{path.stem}.jpg")
            memory = {"small": memory_run(folder, tmp), "large": memory_run(big, tmp)}
    speedup = round(best["avader"] / best["original"], 2)
    cpu_ms = {name: min(r["cpu_ms_per_image"] for r in rs) for name, rs in runs.items()}
    result = {
        "benchmark": "avader.sources.prepare('images'): 424x424 JPEG -> 128x128 uint8 GalaxySet, vs the original "
                     "per-image skimage recipe",
        "command": "python benchmarks/bench_prepare.py" + (" --smoke" if args.smoke else ""),
        "mode": "smoke" if args.smoke else "full",
        "n_images": n, "distinct_images": n // copies, "input_side": SIDE, "output_side": SIZE, "repeats": repeats, "workers": default_workers(),
        "images_per_second_best": best, "runs": runs,
        "speedup_vs_original": speedup, "speedup_one_worker": round(best["avader_1"] / best["original"], 2),
        "cpu_ms_per_image_best": cpu_ms,
        "cpu_time_ratio": round(cpu_ms["original"] / cpu_ms["avader_1"], 2),
        "bar": BAR, "passed": speedup >= BAR,
        "agreement_levels": {"mean_abs": round(float(diff.mean()), 3), "p99_abs": float(np.percentile(diff, 99)),
                             "max_abs": float(diff.max())},
        "memory": memory,
        "load_average_before": load_before,
        "load_average_after": common.load_average(),
        "machine": machine_info(with_devices=False),
    }
    out = args.out or common.RESULTS / ("prepare_smoke.json" if args.smoke else "prepare.json")
    common.write_result(out, result)
    logging.info("avader %.1f images/s vs original %.1f images/s: %.2fx (bar %.1fx: %s); wrote %s",
                 best["avader"], best["original"], speedup, BAR, "passed" if speedup >= BAR else "FAILED", out)
    return 0 if speedup >= BAR or args.smoke else 1  # smoke mode says nothing about the bar


if __name__ == "__main__":
    sys.exit(main())
