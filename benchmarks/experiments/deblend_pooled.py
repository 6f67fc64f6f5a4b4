"""Experiment: the deblending benchmark pooled over several blend sets (#9).

Runs :func:`avader.deblending.benchmark` (method ``avader``, the run's learned detector, the given
``deblend()`` options) on the blend set of each seed (``deblend_variants.blend_set``), prints each set's
brighter-galaxy median |dF/F| overall, below 2 half-light radii and by flux ratio, then the same medians
over the pooled sources of all sets, with the number of blends in each flux-ratio bin.

Usage::

    python benchmarks/experiments/deblend_pooled.py RUN '{"prior_weight": 10}' --sets 0:100,1:100,2:300,3:300
"""

import argparse
import json
import sys

import numpy as np
from deblend_variants import blend_set  # this folder is on sys.path when run as a script

from avader import paths
from avader.deblending import FLUX_RATIO_BINS, benchmark
from avader.detector import load_detector
from avader.training import load_run_model


def medians(rows, select):
    bright = select & (rows["source"] == 0)
    values = rows["abs_dflux"]
    out = {"overall": np.median(values[bright]), "close": np.median(values[bright & (rows["separation_rhalf"] < 2)])}
    out["by_flux_ratio"] = [np.median(values[bright & (rows["flux_ratio"] >= lo) & (rows["flux_ratio"] < hi)])
                            for lo, hi in zip(FLUX_RATIO_BINS[:-1], FLUX_RATIO_BINS[1:], strict=True)]
    out["n_by_flux_ratio"] = [int((bright & (rows["flux_ratio"] >= lo) & (rows["flux_ratio"] < hi)).sum())
                              for lo, hi in zip(FLUX_RATIO_BINS[:-1], FLUX_RATIO_BINS[1:], strict=True)]
    return out


def show(label, m):
    print(label, "|dF/F|", round(float(m["overall"]), 3), "close", round(float(m["close"]), 3), "by flux ratio",
          [round(float(v), 4) for v in m["by_flux_ratio"]], "blends per bin", m["n_by_flux_ratio"], flush=True)


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("options", nargs="?", default="{}", help="deblend() keyword arguments as JSON")
    parser.add_argument("--sets", default="0:100,1:100,2:300,3:300", help="seed:blends, comma-separated")
    parser.add_argument("--profile", default="quick")
    args = parser.parse_args(argv)
    model = load_run_model(paths.runs_dir() / args.run)
    detector = load_detector(paths.runs_dir() / args.run)
    options = json.loads(args.options)
    pooled = []
    for item in args.sets.split(","):
        seed, n = (int(v) for v in item.split(":"))
        result = benchmark(model, blend_set(args.profile, seed, n), methods=["avader"], deblend_options=options,
                           detector=detector)
        rows = {k: np.asarray(v) for k, v in result["per_source"].items()}
        rows["abs_dflux"] = rows["abs_dflux"].astype(np.float64)
        show(f"seed {seed} ({n} blends)", medians(rows, np.ones(len(rows["source"]), bool)))
        pooled.append(rows)
    rows = {k: np.concatenate([r[k] for r in pooled]) for k in pooled[0]}
    show(f"pooled ({args.sets})", medians(rows, np.ones(len(rows["source"]), bool)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
