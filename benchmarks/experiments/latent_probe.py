"""Experiment: what a run's latent means encode, as cross-validated linear R^2 of truth columns.

Encodes every galaxy of a simulated GalaxySet with the run's final model and fits, for each truth
quantity (log S/N, axis ratio, the two ellipticity components, log concentration, number of
companions, bulge-to-total, knot fraction, log PSF FWHM in pixels), a linear regression on the
latent means (3-fold cross-validation). High R^2 for a nuisance (S/N, PSF) means latent capacity spent on it.

Usage::

    python benchmarks/experiments/latent_probe.py RUN DATA.fits
"""

import sys

import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import cross_val_score

from avader import paths
from avader.data import GalaxySet
from avader.training import encode_dataset, load_run_model


def main(argv) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    run, data = argv
    galaxies = GalaxySet.read(data)
    cat = galaxies.catalog
    means, _ = encode_dataset(load_run_model(paths.runs_dir() / run), galaxies)
    means = np.asarray(means)
    pa = np.radians(np.asarray(cat["position_angle"], float))
    q = np.asarray(cat["axis_ratio"], float)
    targets = {"log_snr": np.log(cat["snr"]), "axis_ratio": q, "e_cos2pa": (1 - q) * np.cos(2 * pa),
               "e_sin2pa": (1 - q) * np.sin(2 * pa), "log_concentration": np.log(cat["concentration"]),
               "n_companions": cat["n_companions"], "bulge_to_total": cat["bulge_to_total"],
               "knot_fraction": cat["knot_fraction"], "log_psf_fwhm_pix": np.log(cat["psf_fwhm_pix"])}
    for name, values in targets.items():
        values = np.asarray(values, float)
        ok = np.isfinite(values)
        r2 = cross_val_score(LinearRegression(), means[ok], values[ok], cv=3).mean()
        print(f"{name:18s} R^2 {r2:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
