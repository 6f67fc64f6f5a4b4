"""Experiment: train a learned detector with other settings and score its detection on blend sets.

Trains :func:`avader.detector.train_detector` into ``data/runs/NAME`` (a folder holding RUN's
``config.yaml`` and the detector; RUN's model is not needed) and prints, for the profile's blend
set of each seed, the detection precision, recall and the fraction of blends detected exactly
(every galaxy matched within max(2 px, its half-light radius), as the benchmark matches, and
nothing else), overall and by flux ratio (0-0.3, 0.3-0.6, 0.6-1), for peak detection
(:func:`avader.deblending.detect`) and for the detector at the given thresholds.

Usage::

    python benchmarks/experiments/detector_variants.py RUN NAME '{"n_blends": 8000, "epochs": 20}' \
        [--seeds 0,1] [--thresholds 0.3,0.4] [--no-train]

Then the deblending benchmark with it: ``deblend_variants.py RUN '{}' --detector NAME``.
"""

import argparse
import json
import shutil
import sys

import numpy as np
from deblend_variants import blend_set  # the same blend files (this folder is on sys.path when run as a script)

from avader import paths
from avader.deblend_benchmark import _truth, match_sources
from avader.deblending import FLUX_RATIO_BINS, detect
from avader.detector import find_peaks, load_detector, train_detector


def scores(found, centres, r_half, n_src, ratio) -> dict:
    n_found = n_matched = 0
    exact = np.zeros(len(found), bool)
    for b, f in enumerate(found):
        pairs = match_sources(centres[b], f, np.maximum(2.0, r_half[b, :n_src[b]]))
        n_found, n_matched = n_found + len(f), n_matched + len(pairs)
        exact[b] = len(pairs) == n_src[b] == len(f)
    bins = zip(FLUX_RATIO_BINS[:-1], FLUX_RATIO_BINS[1:], strict=True)
    return {"precision": round(n_matched / max(n_found, 1), 3), "recall": round(float(n_matched / n_src.sum()), 3),
            "exact": round(float(exact.mean()), 3),
            "exact_by_flux_ratio": [round(float(exact[(ratio >= lo) & (ratio < hi)].mean()), 3) for lo, hi in bins]}


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run whose config.yaml sets the image size, simulation and seed")
    parser.add_argument("name", help="run folder to create for the detector")
    parser.add_argument("settings", nargs="?", default="{}", help="train_detector() keyword arguments as JSON")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--thresholds", default="", help="comma-separated; default the detector's own")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--no-train", action="store_true", help="score the detector NAME already has")
    args = parser.parse_args(argv)
    target = paths.runs_dir() / args.name
    if not args.no_train:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(paths.runs_dir() / args.run / "config.yaml", target / "config.yaml")
        info = train_detector(target, overwrite=True, **json.loads(args.settings))
        print("trained", args.name, json.dumps({k: info[k] for k in ("threshold", "validation", "seconds_training")}))
    detector = load_detector(target)
    thresholds = [float(t) for t in args.thresholds.split(",") if t] or [detector.threshold]
    for seed in (int(s) for s in args.seeds.split(",")):
        blends = blend_set(args.profile, seed, args.n)
        rows = np.arange(len(blends))
        images = blends.get_images(rows)
        _, centres, r_half, n_src = _truth(blends, rows)
        cat = blends.catalog
        noise, sky = np.asarray(cat["noise_sigma"]), np.asarray(cat["zero_level"])
        ratio = np.asarray(cat["flux_ratio"])
        peaks = [detect(images[b], noise[b], sky[b], max_sources=4)["centres"] for b in rows]
        print(f"seed {seed} peaks", scores(peaks, centres, r_half, n_src, ratio), flush=True)
        heat = detector.heatmaps(images, sky, noise)
        for t in thresholds:
            learned = [find_peaks(h, t, 4)[0] for h in heat]
            print(f"seed {seed} {args.name} threshold {t}", scores(learned, centres, r_half, n_src, ratio), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
