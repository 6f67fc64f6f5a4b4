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
from avader.deblend_benchmark import _METRICS, _summaries
from avader.deblending import benchmark
from avader.detector import load_detector
from avader.training import load_run_model


def show(label, summary):
    """``summary``: the benchmark's medians (``_summaries``) of the brighter galaxy."""
    bins = summary["by_flux_ratio"]
    print(label, "|dF/F|", round(summary["overall"]["bright"]["abs_dflux"], 3), "close",
          round(summary["close"]["bright"]["abs_dflux"], 3), "by flux ratio",
          [round(b["bright"]["abs_dflux"], 4) for b in bins], "blends per bin", [b["bright"]["n"] for b in bins],
          flush=True)


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
        show(f"seed {seed} ({n} blends)", result["methods"]["avader"])
        pooled.append(result["per_source"])
    rows = {k: np.concatenate([np.asarray(r[k], np.float64 if k in _METRICS else None) for r in pooled])
            for k in pooled[0]}
    show(f"pooled ({args.sets})", _summaries(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
