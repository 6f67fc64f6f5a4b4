"""Experiment: realism of a run's generated galaxies (at several sampling scales) and reconstructions.

Prints the standardised Wasserstein distance of each statistic between the real images and the
generated ones (:func:`avader.generation.realism_report`, not written to the run), for each scale,
then for the decoded latent means of the real galaxies and, with ``--baseline``, for the run's
plain VAE sampled the same way.

Usage::

    python benchmarks/experiments/realism_of_run.py RUN [--n 1000] [--sampler expost] [--baseline] [SCALE ...]
    # default scale: 0.5 for the mixture, 1 for the ex-post sampler
"""

import argparse
import sys

from avader import paths
from avader.generation import realism_report


def _line(label, report) -> str:
    distances = {k: round(v["wasserstein"], 3) for k, v in report["statistics"].items()}
    return f"{label}: {distances} mean {report['mean_wasserstein']:.3f}"


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("scales", nargs="*", type=float, default=[None])
    parser.add_argument("--n", type=int, default=1000, help="real galaxies (and as many generated)")
    parser.add_argument("--sampler", choices=("mixture", "expost"), default="mixture")
    parser.add_argument("--baseline", action="store_true", help="also the run's baseline VAE")
    args = parser.parse_args(argv)
    run = paths.runs_dir() / args.run
    for k, scale in enumerate(args.scales):
        report = realism_report(run, n=args.n, write=False, scale=scale, baseline=args.baseline and k == 0,
                                sampler=args.sampler)
        print(_line(f"{args.run} generated ({args.sampler}), scale {report['scale']}", report["vade"]), flush=True)
        if k == 0:
            print(_line(f"{args.run} reconstructions", report["reconstruction"]), flush=True)
            if report["baseline"] is not None:
                print(_line(f"{args.run} baseline VAE ({args.sampler})", report["baseline"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
