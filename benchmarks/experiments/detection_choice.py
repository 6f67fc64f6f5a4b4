"""Experiment: per blend, keep the fit from the learned detector's centres or from peak detection's (#9).

Runs the deblending benchmark's ``avader`` (learned detector) and ``avader_peaks`` methods on a blend
set, then for each penalty per source picks, blend by blend, the fit with the lower chi^2 (summed over
the stamp) plus penalty x number of sources, and scores the picked sources with the benchmark's
matching: brighter galaxy's median |dF/F| overall, below 2 half-light radii and by flux ratio.

Usage::

    python benchmarks/experiments/detection_choice.py RUN SEED N
"""

import sys

import numpy as np
from deblend_variants import blend_set  # this folder is on sys.path when run as a script

import avader.deblend_benchmark as db
from avader import paths
from avader.detector import load_detector
from avader.training import load_run_model


def main(argv) -> int:
    run, seed, n = argv[0], int(argv[1]), int(argv[2])
    blends = blend_set("quick", seed, n)
    model = load_run_model(paths.runs_dir() / run)
    detector = load_detector(paths.runs_dir() / run)
    fits, deblend = {}, db.deblend

    def keep(model, images, **options):
        out = deblend(model, images, **options)
        fits["learned" if options.get("detector") is not None else "peaks"] = out
        return out

    db.deblend = keep
    try:
        db.benchmark(model, blends, methods=["avader", "avader_peaks"], detector=detector,
                     deblend_options={"prior_weight": 10})
    finally:
        db.deblend = deblend
    learned, peaks = fits["learned"], fits["peaks"]
    pixels = blends.shape[1] * blends.shape[2]
    run_method = db._run_method
    for penalty in (None, 0, 50, 100, 200, 400, 800, 1e9):
        pick = (np.zeros(len(learned["chi2"]), bool) if penalty is None else
                learned["chi2"] * pixels + penalty * learned["n_sources"] > peaks["chi2"] * pixels + penalty * peaks["n_sources"])

        def picked(method, model, images, *args, pick=pick, **kwargs):
            chosen = [(peaks if pick[b] else learned) for b in range(len(images))]
            return [(r["sources"][b, :r["n_sources"][b]], r["centres"][b, :r["n_sources"][b]])
                    for b, r in enumerate(chosen)], 0.0, 0.0

        db._run_method = picked
        try:
            r = db.benchmark(model, blends, methods=["avader"])["methods"]["avader"]
        finally:
            db._run_method = run_method

        def bright(s):
            return round(s["bright"]["abs_dflux"], 3)

        print(f"seed {seed} penalty {penalty}: peaks chosen in {int(pick.sum())} blends, |dF/F| {bright(r['overall'])}",
              f"close {bright(r['close'])} by flux ratio {[bright(b) for b in r['by_flux_ratio']]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
