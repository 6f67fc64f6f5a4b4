"""Diagnostic of a run's latent space: how much of it is the sky level, and how well it clusters.

For the warm-up checkpoint and the final model of a run, the latent means of every galaxy of the
run's GalaxySet are clustered with :func:`avader.training.fit_mixture` (K = the run's components;
raw and standardised latents) and scored by NMI against a catalogue column (default ``family``);
each latent dimension's correlation with the image's sky level (median of its 4-pixel frame,
:func:`avader.deblending.estimate_noise`) is reported, as are PCA + GMM on 16x16 block averages
(the clustering baseline) and the sky level itself binned into K quantiles. No labels are used in any fit.

Usage::

    python benchmarks/diag_latents.py --run quick [--label family] [--out FILE]

Writes ``benchmarks/results/latents_<run name>.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="quick", help="run name or folder (default quick)")
    parser.add_argument("--label", default="family", help="catalogue column to score against")
    parser.add_argument("--restarts", type=int, default=3, help="mixture fits per clustering")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from sklearn.decomposition import PCA

    from avader.clustering import _predict_diag_gmm
    from avader.data import GalaxySet
    from avader.deblending import estimate_noise
    from avader.metrics import nmi
    from avader.model import build_vade
    from avader.runs import RunDir, machine_info
    from avader.training import encode_dataset, fit_mixture, load_run_model, warmup_checkpoint

    run = RunDir(args.run)
    config = run.load_config()
    galaxies = GalaxySet.read(config.dataset_path())
    labels = np.asarray(galaxies.catalog[args.label]).astype(str)
    images = galaxies.get_images(slice(None)).astype(np.float32)
    sky = estimate_noise(images)[0]
    k = config.model.n_components

    def score(features) -> float:
        fit = fit_mixture(features, k, seed=config.seed, restarts=args.restarts)
        return float(nmi(labels, _predict_diag_gmm(features, fit)))

    models = {}
    warm = warmup_checkpoint(run.path)
    if warm is not None:
        models["warmup"] = build_vade(config.model, seed=0)
        models["warmup"].load_weights(warm)
    if (run / "model.keras").is_file():
        models["final"] = load_run_model(run.path)
    result = {"benchmark": "latent-space diagnostic", "command": common.command_line(__file__, argv),
              "run": str(run.path), "data": str(config.dataset_path()), "label": args.label, "n": int(len(images)),
              "n_components": k, "models": {}}
    for name, model in models.items():
        z = np.asarray(encode_dataset(model, galaxies, None, batch_size=256)[0])
        corr = [float(abs(np.corrcoef(z[:, i], sky)[0, 1])) for i in range(z.shape[1])]
        result["models"][name] = {
            "nmi_gmm_latent": score(z),
            "nmi_gmm_latent_standardised": score((z - z.mean(0)) / (z.std(0) + 1e-12)),
            "abs_corr_with_sky": corr,
            "dims_with_abs_corr_above_0_9": int(sum(c > 0.9 for c in corr)),
            "latent_std": z.std(0).tolist(),
        }
        logging.info("%s: NMI %.4f (standardised %.4f); %d of %d dims |r(sky)| > 0.9", name,
                     result["models"][name]["nmi_gmm_latent"], result["models"][name]["nmi_gmm_latent_standardised"],
                     result["models"][name]["dims_with_abs_corr_above_0_9"], z.shape[1])
    side = images.shape[1] // 16
    blocks = images[:, :16 * side, :16 * side].reshape(len(images), 16, side, 16, side).mean((2, 4))
    pcs = PCA(config.model.latent_dim, random_state=config.seed).fit_transform(blocks.reshape(len(images), -1))
    result["nmi_pca_gmm_16x16"] = score(pcs)
    bins = np.digitize(sky, np.quantile(sky, np.linspace(0, 1, k + 1)[1:-1]))
    result["nmi_sky_quantiles"] = float(nmi(labels, bins))
    result["machine"] = machine_info(with_devices=False)
    logging.info("PCA + GMM on 16x16: %.4f; sky level in %d quantile bins: %.4f", result["nmi_pca_gmm_16x16"], k,
                 result["nmi_sky_quantiles"])
    out = args.out or common.RESULTS / f"latents_{run.path.name}.json"
    common.write_result(out, result)
    logging.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
