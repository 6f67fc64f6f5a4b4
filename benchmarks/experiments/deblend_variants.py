"""Experiment: the deblending benchmark of a run's model under other deblend() settings.

Runs :func:`avader.deblending.benchmark` on the profile's blend set (``ensure_blends``, the first
100 blends) and prints, per method, the brighter galaxy's median |dF/F| overall, below 2 half-light
radii, by flux ratio and by separation, its median SSIM, detection precision and recall and the
seconds per blend.

Usage::

    python benchmarks/experiments/deblend_variants.py RUN ['{"detection": {"contrast": 0.15}}'] \
        [--methods avader,avader_true_centres] [--seed 0] [--detector DETRUN[:THRESHOLD]]

``--detector`` takes the learned detector of another run directory (``detector_variants.py``
trains them), at its own threshold or the one given.
"""

import argparse
import json
import sys

from avader import paths
from avader.config import load_config
from avader.data import GalaxySet, ensure_blends
from avader.deblending import benchmark
from avader.training import load_run_model


def blend_set(profile: str, seed: int, n: int) -> GalaxySet:
    """The profile's blend set of a seed (``ensure_blends``: ``blends_<profile>.fits`` for seed 0,
    ``blends_<profile>_seed<S>.fits`` otherwise), simulated anew when it holds another number of blends
    (seeded, so the first blends stay the same)."""
    return GalaxySet.read(ensure_blends(load_config(profile, [f"seed={seed}"]), n=n))


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("options", nargs="?", default="{}", help="deblend() keyword arguments as JSON")
    parser.add_argument("--methods", default="avader")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--seed", type=int, default=0, help="seed of the blend set")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--detector", help="run directory whose detector.keras gives avader's centres[:threshold]")
    args = parser.parse_args(argv)
    blends = blend_set(args.profile, args.seed, args.n)
    model = load_run_model(paths.runs_dir() / args.run)
    options = json.loads(args.options)
    methods = args.methods.split(",")
    detector = None
    if args.detector:
        from avader.detector import load_detector

        name, _, threshold = args.detector.partition(":")
        detector = load_detector(paths.runs_dir() / name, threshold=float(threshold) if threshold else None)
    result = benchmark(model, blends, methods=methods, deblend_options=options, detector=detector)
    for method in methods:
        r = result["methods"][method]

        def bright(summary):
            return round(summary["bright"]["abs_dflux"], 3)

        print(method, options, args.detector or "", "|dF/F| overall", bright(r["overall"]), "close", bright(r["close"]),
              "by flux ratio", [bright(b) for b in r["by_flux_ratio"]],
              "by separation", [bright(b) for b in r["by_separation"]],
              "SSIM", round(r["overall"]["bright"]["ssim"], 3),
              "precision/recall", round(r["detection"]["precision"], 2), round(r["detection"]["recall"], 2),
              "s/blend", round(r["seconds_per_blend"], 2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
