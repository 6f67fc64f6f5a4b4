"""Experiment: what the clustering NMI with ``family`` measures, on a clustered run (#7).

For the run's ``clusters.fits`` (``avader cluster --run RUN``) and its training data, prints

* per partition (VaDE's components and the baselines stored beside them): the mutual information
  I(C; family) in nats, the entropy H(C) of the partition, H(family), the NMI (arithmetic mean of the
  entropies, as ``avader.metrics``) and the number of non-empty clusters;
* a supervised probe of how much family information the features hold: 5-fold accuracy of a logistic
  regression and of 15 nearest neighbours (standardised features) from the VaDE latent means and from
  the 16 principal components of the 16x16 pixels that the PCA + GMM baseline clusters;
* PCA + GMM (the baseline's settings: 16x16 pixels, 16 components, 12 diagonal Gaussians, 5 restarts,
  the run's seed) on pixels weighted by a Gaussian about the stamp centre of each ``--widths`` sigma
  (fraction of the side, ``avader.model.centre_weights``; 0 = the baseline itself), with the NMI
  of its clusters with family and with companion presence.

Usage::

    python benchmarks/experiments/cluster_information.py RUN [--widths 0,0.125,0.25,0.375] [--data FILE]
"""

import argparse
import sys

import numpy as np
from astropy.table import Table
from scipy.stats import entropy
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, normalized_mutual_info_score
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from avader import paths
from avader.clustering import _predict_diag_gmm, downsample
from avader.data import GalaxySet
from avader.model import centre_weights
from avader.runs import RunDir
from avader.training import fit_mixture

PARTITIONS = ("component", "kmeans_pixels", "pca_gmm", "gmm_warmup", "kmeans_latent")


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--widths", default="0,0.125,0.25,0.375")
    parser.add_argument("--data", help="the GalaxySet the run was clustered on (default: its training data)")
    args = parser.parse_args(argv)
    run = RunDir(paths.runs_dir() / args.run)
    config = run.load_config()
    data = args.data or config.dataset_path()
    galaxies = GalaxySet.read(data)
    clusters = Table.read(run / "clusters.fits")
    if not np.array_equal(np.asarray(clusters["id"]), np.asarray(galaxies.catalog["id"])):
        raise SystemExit(f"{run / 'clusters.fits'}: ids differ from {data}")
    family = np.asarray(galaxies.catalog["family_code"])
    companions = np.asarray(galaxies.catalog["n_companions"]) > 0
    h_family = entropy(np.bincount(family))
    for name in PARTITIONS:
        if name not in clusters.colnames:
            continue
        c = np.asarray(clusters[name])
        info, h_c, nmi = mutual_info_score(family, c), entropy(np.bincount(c)), normalized_mutual_info_score(family, c)
        print(args.run, name, f"I(C;family) {info:.3f} H(C) {h_c:.3f} H(family) {h_family:.3f} NMI {nmi:.3f}",
              f"clusters {int((np.bincount(c) > 0).sum())}", flush=True)
    images = galaxies.get_images(slice(0, len(galaxies)))
    pcs = PCA(16, random_state=config.seed).fit_transform(downsample(images, 16))
    for name, features in (("VaDE latent means", np.asarray(clusters["latent_mean"], np.float64)), ("16 PCs", pcs)):
        scores = [cross_val_score(make_pipeline(StandardScaler(), clf), features, family, cv=5).mean()
                  for clf in (LogisticRegression(max_iter=2000), KNeighborsClassifier(15))]
        majority = np.bincount(family).max() / len(family)
        print(args.run, "family accuracy from", name, f"logistic {scores[0]:.3f} 15-NN {scores[1]:.3f}",
              f"(majority class {majority:.3f})", flush=True)
    for width in (float(w) for w in args.widths.split(",")):
        weighted = images * centre_weights(images.shape[1], width)
        projected = PCA(16, random_state=config.seed).fit_transform(downsample(weighted, 16)).astype(np.float32)
        c = _predict_diag_gmm(projected, fit_mixture(projected, 12, seed=config.seed, restarts=5))
        print(args.run, f"PCA + GMM, centre weight {width:.3f}: NMI family {normalized_mutual_info_score(family, c):.3f}",
              f"companions {normalized_mutual_info_score(companions, c):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
