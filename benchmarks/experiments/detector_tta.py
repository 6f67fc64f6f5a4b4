"""Experiment: test-time augmentation of the learned detector (#9).

Scores the run's detector on a blend set (``ensure_blends`` of a seed) at several thresholds, as
trained and with its heat maps averaged over the eight flips and quarter turns of each blend (in
probability and in logit): precision, recall and the fraction of blends detected exactly
(``avader.detector._scores``: every source matched within 2 pixels, nothing else).

Usage::

    python benchmarks/experiments/detector_tta.py RUN SEED N
"""

import sys

import numpy as np
from deblend_variants import blend_set  # this folder is on sys.path when run as a script

from avader import paths
from avader.deblend_benchmark import _truth
from avader.detector import _scores, load_detector


def main(argv) -> int:
    run, seed, n = argv[0], int(argv[1]), int(argv[2])
    blends = blend_set("quick", seed, n)
    cat = blends.catalog
    images = blends.get_images(slice(0, len(blends)))
    noise, sky = np.asarray(cat["noise_sigma"]), np.asarray(cat["zero_level"])
    centres = _truth(blends, np.arange(len(blends)))[1]
    detector = load_detector(paths.runs_dir() / run)
    plain = detector.heatmaps(images, sky, noise)
    prob, logit = np.zeros_like(plain, np.float64), np.zeros_like(plain, np.float64)
    for turns in range(4):
        for flip in (False, True):
            t = np.rot90(images, turns, axes=(1, 2))
            t = t[:, :, ::-1] if flip else t
            h = detector.heatmaps(np.ascontiguousarray(t), sky, noise)
            h = np.rot90(h[:, :, ::-1] if flip else h, -turns, axes=(1, 2)).astype(np.float64)
            p = np.clip(h, 1e-6, 1 - 1e-6)
            prob += h / 8
            logit += np.log(p / (1 - p)) / 8
    for name, maps in (("as trained", plain), ("averaged probability", prob), ("averaged logit", 1 / (1 + np.exp(-logit)))):
        for threshold in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45):
            s = _scores(maps, centres, threshold)
            print(f"seed {seed} {name} threshold {threshold}: precision {s['precision']:.3f} recall {s['recall']:.3f} "
                  f"exact {s['exact']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
