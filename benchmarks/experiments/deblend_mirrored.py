"""Experiment: the deblending benchmark on mirrored copies of a blend set (#9).

The decoder is not symmetric under flips, so a mirrored blend gets a different fit. This runs
:func:`avader.deblending.benchmark` (method ``avader``, the run's learned detector, one fit per blend) on
the blend set of a seed (``deblend_variants.blend_set``) as simulated and flipped left to right (x), top to
bottom (y) and both (xy), truth flipped with it, and prints the brighter galaxy's medians of each: how far a
single fit's medians move with the orientation alone, against which ``deblend(augment=4)`` averages the
four fits.

Usage::

    python benchmarks/experiments/deblend_mirrored.py RUN '{"prior_weight": 10}' --seed 3 --n 300
"""

import argparse
import json
import sys

import numpy as np
from deblend_pooled import show  # this folder is on sys.path when run as a script
from deblend_variants import blend_set

from avader import paths
from avader.data import GalaxySet
from avader.deblending import _flip, benchmark
from avader.detector import load_detector
from avader.training import load_run_model


def mirrored(blends: GalaxySet, flip: str) -> GalaxySet:
    """A copy of a simulated blend set with its images, true components and centres flipped."""
    images = np.asarray(blends.images)
    size = images.shape[-1]
    catalog = blends.catalog.copy()
    k = 0
    while f"x_{k}" in catalog.colnames:
        centres = np.column_stack([np.asarray(catalog[f"x_{k}"], float), np.asarray(catalog[f"y_{k}"], float)])
        _, centres = _flip(None, centres, flip, size)
        catalog[f"x_{k}"], catalog[f"y_{k}"] = centres[:, 0], centres[:, 1]
        k += 1
    extra = {**blends.extra, "COMPONENTS": _flip(blends.extra["COMPONENTS"], None, flip, size)[0]}
    return GalaxySet(_flip(images, None, flip, size)[0], catalog, meta=blends.meta, extra=extra)


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("options", nargs="?", default="{}", help="deblend() keyword arguments as JSON")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--profile", default="quick")
    args = parser.parse_args(argv)
    model = load_run_model(paths.runs_dir() / args.run)
    detector = load_detector(paths.runs_dir() / args.run)
    blends = blend_set(args.profile, args.seed, args.n)
    for flip in ("", "x", "y", "xy"):
        result = benchmark(model, mirrored(blends, flip), methods=["avader"], deblend_options=json.loads(args.options),
                           detector=detector)
        show(f"seed {args.seed} flipped {flip or 'none'}", result["methods"]["avader"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
