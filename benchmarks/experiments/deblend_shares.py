"""Experiment: other ways to share a blend's pixels among the fitted sources (session 11).

Fits the blends of a blend set with the run's model at the true centres (``shares="model"``:
the fitted models scaled to their plain data shares), then shares each blend's light above the sky
among the sources with other per-pixel weights and prints the brighter galaxy's median |dF/F|
overall and by flux ratio (0-0.3, 0.3-0.6, 0.6-1), and the fainter galaxies' median (then, for
``model``, the brighter galaxy's median dF/F in the equal-flux bin and its |dF/F| by separation):

``model``        the fitted models M_i (deblend's ``shares="model"``);
``sym``          SDSS symmetric templates of the blend, min(D(x), D(x')), x' the mirror of x about c_i;
``sym_own``      the same of each source's own light D - sum_{j != i} M_j;
``geo``, ``mean`` geometric and arithmetic means of M_i and ``sym_own``;
``min_eps E``    min(M_i, sym_own_i) + E M_i;
``max_eps E``    max(min(M_i, sym_own_i), E M_i) (what deblend's ``shares="symmetric"`` does, E = 0.01);
``iterated``     ``min_eps 0.003`` with the other sources' capped shares subtracted instead of their models.

Usage::

    python benchmarks/experiments/deblend_shares.py RUN [--seed 3] [--n 300] [--prior-weight 10]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates

sys.path.insert(0, str(Path(__file__).parent))
from deblend_variants import blend_set  # noqa: E402

from avader import paths  # noqa: E402
from avader.deblend_benchmark import _truth  # noqa: E402
from avader.deblending import FLUX_RATIO_BINS, deblend  # noqa: E402
from avader.training import load_run_model  # noqa: E402


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--prior-weight", type=float, default=10.0)
    args = parser.parse_args(argv)
    blends_set = blend_set(args.profile, args.seed, args.n)
    model = load_run_model(paths.runs_dir() / args.run)
    rows = np.arange(args.n)
    blends = blends_set.get_images(rows)
    comps, centres, _, n_src = _truth(blends_set, rows)
    cat = blends_set.catalog
    sky = np.asarray(cat["zero_level"], float)[rows]
    ratio = np.asarray(cat["flux_ratio"], float)[rows]
    out = deblend(model, blends, centres=centres, noise_sigma=np.asarray(cat["noise_sigma"], float)[rows],
                  background=sky, psf_fwhm=np.asarray(cat["psf_fwhm_pix"], float)[rows],
                  prior_weight=args.prior_weight, refine=0, shares="model")
    size = blends.shape[1]
    yy, xx = np.indices((size, size))

    def mirror(img, c):
        return map_coordinates(img, [2 * c[1] - yy, 2 * c[0] - xx], order=1, mode="constant", cval=0.0)

    errors = {}
    for b in range(args.n):
        m = n_src[b]
        light = blends[b] - sky[b]
        models = out["sources"][b, :m].astype(float)
        true = comps[b, :m].sum(axis=(1, 2))

        def shared(weights, light=light):
            total = weights.sum(0)
            return (np.where(total > 0, weights / np.maximum(total, 1e-30), 0) * light).sum(axis=(1, 2))

        sym = np.stack([np.clip(np.minimum(light, mirror(light, c)), 0, None) for c in out["centres"][b, :m]])
        own = []
        for i in range(m):
            own_light = light - (models.sum(0) - models[i])
            own.append(np.clip(np.minimum(own_light, mirror(own_light, out["centres"][b, i])), 0, None))
        own = np.stack(own)
        variants = {"model": models, "sym": sym, "sym_own": own, "geo": np.sqrt(models * own),
                    "mean": 0.5 * (models + own)}
        for eps in (0.0, 0.003, 0.01, 0.03, 0.1, 0.3):
            variants[f"min_eps {eps:g}"] = np.minimum(models, own) + eps * models
            variants[f"max_eps {eps:g}"] = np.maximum(np.minimum(models, own), eps * models)
        capped = variants["min_eps 0.003"]
        first = np.where(capped.sum(0) > 0, capped / np.maximum(capped.sum(0), 1e-30), 0) * light
        again = []
        for i in range(m):
            own_light = light - (first.sum(0) - first[i])
            again.append(np.clip(np.minimum(own_light, mirror(own_light, out["centres"][b, i])), 0, None))
        variants["iterated"] = np.minimum(models, np.stack(again)) + 0.003 * models
        for name, weights in variants.items():
            errors.setdefault(name, []).append((shared(weights) - true) / true)
    for name, values in errors.items():
        bright = np.array([abs(v[0]) for v in values])
        faint = np.concatenate([np.abs(v[1:]) for v in values])
        bins = [round(float(np.median(bright[(ratio >= lo) & (ratio < hi)])), 3)
                for lo, hi in zip(FLUX_RATIO_BINS[:-1], FLUX_RATIO_BINS[1:], strict=True)]
        print(f"{name:12s} brighter {np.median(bright):.3f} by flux ratio {bins} fainter {np.median(faint):.3f}")
    # the equal-flux pairs with the models' shares: bias, and |dF/F| as the pair closes
    separation = np.asarray(cat["separation_rhalf"], float)[rows]
    signed = np.array([v[0] for v in errors["model"]])
    equal = ratio >= 0.6
    by_separation = [(lo, hi, int((equal & (separation >= lo) & (separation < hi)).sum()),
                      round(float(np.median(np.abs(signed[equal & (separation >= lo) & (separation < hi)]))), 3))
                     for lo, hi in ((0, 1.5), (1.5, 2.5), (2.5, 3.5), (3.5, np.inf))]
    print(f"model, flux ratio >= 0.6: median dF/F of the brighter {np.median(signed[equal]):+.3f}; "
          f"|dF/F| by separation (r_half from, to, blends, median) {by_separation}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
