"""Experiment: the ex-post sampler fitted on held-out galaxies against one fitted on all of them.

Encodes a run's training data, splits it in two seeded halves, and prints the standardised
Wasserstein distances (axis ratio, concentration, half-light radius, ..., mean) to the first half of
the reconstructions, of the learned mixture (scale 0.5) and of the ex-post sampler
(:func:`avader.generation.fit_expost`) fitted on the second half, on the first (the compared
galaxies themselves, as many as the second) or on all galaxies. Decoded images
are observed as in :func:`avader.generation.realism_report` (:func:`observe_expected`).

Usage::

    python benchmarks/experiments/expost_holdout.py RUN [--max-sub 4]
"""

import argparse
import sys

import numpy as np

from avader import generation as gen
from avader import paths
from avader.clustering import assign
from avader.data import GalaxySet
from avader.morphology import measure
from avader.runs import RunDir
from avader.training import load_run_model


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--max-sub", type=int, default=4)
    args = parser.parse_args(argv)
    run = RunDir(paths.runs_dir() / args.run)
    galaxies = GalaxySet.read(run.load_config().dataset_path())
    model = load_run_model(run.path)
    result = assign(model, galaxies, 256, progress=False)
    latents, components = result["latent_mean"], result["component"]
    n, k = len(galaxies), model.model_config.n_components
    order = np.random.default_rng([0, 8]).permutation(n)
    compared, held_out = np.sort(order[: n // 2]), np.sort(order[n // 2:])
    real = galaxies.get_images(compared)
    noise = gen.noise_levels(real)
    floor = float(2.0 * np.median(noise))
    rng = np.random.default_rng([0, 9])
    kwargs = {"statistics": gen.REALISM_STATISTICS, "min_threshold": floor}
    measured_real = measure(real, **kwargs)

    def line(label, images):
        observed = gen.observe_expected(images, rng.choice(noise, size=len(images)), seed=int(rng.integers(2**31)))
        report = gen.realism(measured_real, measure(observed, **kwargs), gen.REALISM_STATISTICS, floor)
        distances = {s: round(v["wasserstein"], 3) for s, v in report["statistics"].items()}
        print(f"{args.run} {label}: {distances} mean {report['mean_wasserstein']:.3f}", flush=True)

    line("reconstructions", gen.decode_latents(model, latents[compared]))
    line("mixture, scale 0.5", gen.generate(model, len(compared), scale=0.5, seed=0)[0])
    for rows, name in ((held_out, "held-out half"), (compared, "compared half"), (np.arange(n), "all")):
        expost = gen.fit_expost(latents[rows], components[rows], k, max_sub=args.max_sub)
        images = gen.generate(model, len(compared), seed=0, expost=expost)[0]
        line(f"ex-post on {name} ({len(expost['parent'])} Gaussians)", images)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
