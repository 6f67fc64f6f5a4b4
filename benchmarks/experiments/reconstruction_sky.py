"""Experiment: the sky level of a run's reconstructions against the real images'.

Prints the median over 1,500 seeded galaxies of the mean of the 4-pixel border (the sky) of the
real images and of the bare decoded latent means, and the sky a squared-error decoder should
predict there, E[max(0, n)] = sigma / sqrt(2 pi) for the median border noise sigma.

Usage::

    python benchmarks/experiments/reconstruction_sky.py RUN [RUN ...]
"""

import sys

import numpy as np

from avader import generation as gen
from avader import paths
from avader.clustering import assign
from avader.data import GalaxySet
from avader.runs import RunDir
from avader.training import load_run_model


def main(argv) -> int:
    for name in argv:
        run = RunDir(paths.runs_dir() / name)
        galaxies = GalaxySet.read(run.load_config().dataset_path())
        model = load_run_model(run.path)
        rows = np.sort(np.random.default_rng([0, 8]).choice(len(galaxies), min(1500, len(galaxies)), replace=False))
        real = galaxies.get_images(rows)
        decoded = gen.decode_latents(model, assign(model, galaxies, 256, progress=False, rows=rows)["latent_mean"])
        sigma = float(np.median(gen.noise_levels(real)))
        print(f"{name}: border mean real {np.median(real[:, :4].mean((1, 2))):.4f}, "
              f"reconstructions {np.median(decoded[:, :4].mean((1, 2))):.4f}, "
              f"clipped-noise sky sigma/sqrt(2 pi) {sigma / np.sqrt(2 * np.pi):.4f} (sigma {sigma:.4f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
