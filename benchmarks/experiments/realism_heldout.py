"""Experiment: realism measured against a held-out simulated set, against the training galaxies.

For a run on the simulated default, compares the report of :func:`avader.generation.realism_report`
against (a) 2,000 of the training galaxies, the ex-post sampler fitted to the other training galaxies
(the report's behaviour up to session 9), and (b) the held-out set of :func:`avader.data.ensure_heldout`
(ids from 2,000,000, never trained on), the ex-post sampler fitted to every training galaxy. Prints
axis ratio / concentration / half-light radius / mean of six for each seed, sampler and comparison,
and writes them as JSON. ``--noise`` chooses how decoded images are observed (the report's ``noise``).

Usage::

    python benchmarks/experiments/realism_heldout.py RUN [--seeds 0 1 2] [--samplers mixture expost] \
        [--noise sky|random] [--out benchmarks/results/realism_heldout.json]
"""

import argparse
import json
import sys

import avader as av
from avader import paths
from avader.generation import realism_report

BAR = ("axis_ratio", "concentration", "r_half")


def _row(report: dict) -> dict:
    return {s: round(report["statistics"][s]["wasserstein"], 3) for s in BAR} | {
        "mean": round(report["mean_wasserstein"], 3)}


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=["mixture", "expost"])
    parser.add_argument("--comparisons", nargs="+", default=["training", "heldout"])
    parser.add_argument("--noise", default="sky", choices=("sky", "random"))
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    run = paths.runs_dir() / args.run
    config = av.RunDir(run).load_config()
    heldout = av.ensure_heldout(config)
    results = []
    for seed in args.seeds:
        for sampler in args.samplers:
            for comparison in args.comparisons:
                data = heldout if comparison == "heldout" else None
                report = realism_report(run, data=data, seed=seed, sampler=sampler, write=False,
                                        noise=args.noise)
                row = {"seed": seed, "sampler": sampler, "comparison": comparison, "noise": report["noise"], "n_fitted": report["n_fitted"],
                       "vade": _row(report["vade"]), "reconstruction": _row(report["reconstruction"]),
                       "baseline": _row(report["baseline"]) if report["baseline"] else None,
                       "per_component_mean": round(report["per_component"]["mean_wasserstein"], 3)}
                results.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"run": args.run, "results": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
