"""Experiment: how the noise each decoded image is observed with moves the realism of reconstructions.

Decodes the latent means of a run's unseen galaxies (:func:`avader.data.ensure_heldout`) and compares
them with the real images (:func:`avader.generation.realism`) after observing each reconstruction
(:func:`avader.generation.observe_expected`) with a noise level (a) drawn at random from the real
images' levels, (b) the galaxy's own measured noise, (c) implied by its decoded sky
(:func:`avader.generation.noise_from_sky`). Prints axis ratio / concentration / half-light radius /
mean of six for three draws each.

Usage::

    python benchmarks/experiments/noise_pairing.py RUN
"""

import sys

import numpy as np

import avader as av
from avader import generation as gen
from avader.morphology import measure

BAR = ("axis_ratio", "concentration", "r_half")


def main(argv) -> int:
    run = av.RunDir(argv[0] if argv else "quick")
    config = run.load_config()
    galaxies = av.GalaxySet.read(av.ensure_heldout(config))
    model = av.load_run_model(run)
    real = galaxies.get_images(np.arange(len(galaxies)))
    means = np.concatenate([np.asarray(model.encode(real[s:s + 256])[0]) for s in range(0, len(real), 256)])
    decoded = gen.decode_latents(model, means, 256)
    own = measure(real, statistics=("noise",), border=4)["noise"]
    pool = gen.noise_levels(real, seed=0)
    floor = float(2 * np.median(pool))
    kwargs = {"statistics": gen.REALISM_STATISTICS, "min_threshold": floor}
    measured = measure(real, **kwargs)
    implied = np.clip(gen.noise_from_sky(decoded), pool.min(), pool.max())
    for mode in ("random", "own", "sky"):
        for draw in range(3):
            rng = np.random.default_rng([draw, 9])
            if mode == "random":
                levels = rng.choice(pool, size=len(decoded))
            elif mode == "own":
                levels = np.where(np.isfinite(own), own, np.median(pool))
            else:
                levels = implied
            observed = gen.observe_expected(decoded, levels, seed=int(rng.integers(2**31)))
            report = gen.realism(measured, measure(observed, **kwargs), gen.REALISM_STATISTICS, floor)
            distances = " / ".join(f"{report['statistics'][s]['wasserstein']:.3f}" for s in BAR)
            print(f"{mode} draw {draw}: {distances} / {report['mean_wasserstein']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
