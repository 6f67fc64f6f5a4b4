"""VaDE algorithm check on real labelled data that ships offline: scikit-learn's digits.

scikit-learn's ``load_digits`` (1797 images of 8x8, values 0..16, ten classes) are divided by 16,
stored as a float32 GalaxySet with a ``label`` column and trained with avader's own path,
:func:`avader.training.train` (profile ``smoke`` plus :func:`digits_overrides`): the dense VaDE
network of Jiang et al. (2017) (64-500-500-2000-10, no L2), a deterministic autoencoder warm-up,
the diagonal Gaussian-mixture initialisation of phase 2 and a constant latent weight
(``latent_weight`` w/2 with ``anneal_epochs`` 0, so the schedule's ``2 w`` holds from the start).
The default weight is 0.2, i.e. the reconstruction SSE counts 5 times relative to the plain
ELBO (weight 1); ``--latent-weight 1`` measures the plain ELBO.

Assignments are ``argmax`` of :meth:`avader.model.VaDE.responsibilities` on all images; the score
is the one-to-one Hungarian accuracy (:func:`avader.metrics.hungarian_accuracy`) and NMI, beside
k-means on the pixels (``KMeans(10, n_init=10, random_state=seed)``) in the same run.

Variants (``--variants``), each per seed:

``library``     avader as it is, one mixture fit (``init_restarts`` 1), three complete runs;
``likelihood``  avader's choice among five mixture fits by log-likelihood, one run;
``balance``     twenty mixture fits, the one with the most even cluster sizes chosen
                (``training.init_select: balance``, :func:`avader.training.fit_mixture`), three runs.

Among a seed's complete runs the one whose final assignments have the most even cluster sizes
(highest :func:`size_entropy`, no labels used) is the seed's result; the runs chosen by the
lowest final training loss (the ELBO) are recorded too, as is every run.

Usage::

    python benchmarks/bench_digits.py --smoke    # seconds: 2 + 2 epochs, one seed, one run
    python benchmarks/bench_digits.py            # the check: 3 seeds, all variants

Writes ``benchmarks/results/digits.json`` (``digits_smoke.json`` with ``--smoke``).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = [
    "load_digits_arrays",
    "write_digits",
    "digits_overrides",
    "kmeans_pixels",
    "train_digits",
    "run_variant",
    "VARIANTS",
    "main",
]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
log = logging.getLogger(__name__)


def load_digits_arrays(classes=None, n=None, seed: int = 0):
    """scikit-learn's digits as images in [0, 1].

    Parameters
    ----------
    classes : sequence of int, optional
        Keep only these digits (default: all ten).
    n : int, optional
        Keep a seeded random subset of this many images (default: all).
    seed : int
        Seed of the subset.

    Returns
    -------
    images : ndarray, shape (m, 8, 8), float32 in [0, 1]
        Pixel values divided by 16.
    labels : ndarray, shape (m,), int64
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    keep = np.arange(len(labels)) if classes is None else np.flatnonzero(np.isin(labels, list(classes)))
    if n is not None and n < len(keep):
        keep = np.sort(np.random.default_rng(seed).choice(keep, n, replace=False))
    return images[keep], labels[keep]


def write_digits(path, images, labels) -> Path:
    """Write ``images`` (m, 8, 8) float32 and ``labels`` (m,) as a GalaxySet with ``id`` and ``label``."""
    from avader.data import GalaxySet

    catalog = {"id": np.arange(len(labels), dtype=np.int64), "label": np.asarray(labels, dtype=np.int64)}
    meta = {"SOURCE": "sklearn.datasets.load_digits", "RECIPE": "pixels / 16"}
    return GalaxySet.from_arrays(images, catalog, meta).write(path, overwrite=True)


def digits_overrides(n_components: int = 10, warmup_epochs: int = 100, vade_epochs: int = 100,
                     batch_size: int = 100, learning_rate: float = 2e-3, init_restarts: int = 5,
                     latent_weight: float = 1.0, extra=None) -> dict:
    """Configuration overrides (on the ``smoke`` profile) of the dense VaDE digits check.

    Parameters
    ----------
    n_components : int
        Mixture components (the number of classes).
    warmup_epochs, vade_epochs : int
        Autoencoder pretraining and VaDE epochs.
    batch_size : int
        Images per step.
    learning_rate : float
        Adam's initial learning rate (decays by 0.9 every 10 epochs, floor 1e-5).
    init_restarts : int
        Mixture fits on the pretrained latents; the best log-likelihood wins.
    latent_weight : float
        Constant weight of the VaDE latent term (1: the plain ELBO).
    extra : mapping, optional
        Further ``section.key`` overrides, applied last.
    """
    overrides = {
        "data.image_size": 8,
        "data.validation_fraction": 0.0,
        "data.test_fraction": 0.0,
        "model.architecture": "dense",
        "model.image_size": 8,
        "model.dense_units": [500, 500, 2000],
        "model.latent_dim": 10,
        "model.n_components": n_components,
        "model.output_activation": "sigmoid",
        "model.l2": 0.0,
        "training.batch_size": batch_size,
        "training.learning_rate": learning_rate,
        "training.lr_decay": 0.9,
        "training.lr_decay_epochs": 10.0,
        "training.lr_floor": 1e-5,
        "training.clip_value": 0.0,
        "training.warmup_epochs": warmup_epochs,
        "training.warmup_mode": "ae",
        "training.init_samples": 100000,
        "training.init_restarts": init_restarts,
        "training.vade_periods": 1,
        "training.anneal_epochs": 0,
        "training.static_epochs": vade_epochs,
        "training.latent_weight": latent_weight / 2.0,
        "training.flips": False,
        "training.checkpoint_every": 0,
    }
    overrides.update(dict(extra or {}))
    return overrides


def kmeans_pixels(images, labels, seed: int) -> dict:
    """k-means on the raw pixels: ``{"accuracy", "nmi"}`` of ``KMeans(K, n_init=10, random_state=seed)``."""
    from sklearn.cluster import KMeans

    from avader.metrics import hungarian_accuracy, nmi

    k = len(np.unique(labels))
    assignments = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(images.reshape(len(images), -1))
    return {"accuracy": hungarian_accuracy(labels, assignments, one_to_one=True), "nmi": nmi(labels, assignments)}


def train_digits(data_path, seed: int, overrides: dict, run_dir) -> dict:
    """One complete avader training run on a digits GalaxySet, scored against its ``label`` column.

    Parameters
    ----------
    data_path : path
        GalaxySet of :func:`write_digits`.
    seed : int
        The run's ``seed`` (network initialisation, batches, z sampling, mixture fits).
    overrides : mapping
        ``section.key`` overrides of the ``smoke`` profile (:func:`digits_overrides`).
    run_dir : path
        Run directory (replaced).

    Returns
    -------
    dict
        ``seed``; ``accuracy`` and ``nmi`` of ``argmax`` responsibilities on all images;
        ``init_accuracy`` (the mixture right after phase 2) and ``init_log_likelihood``;
        ``final_loss``, ``final_reconstruction``, ``final_latent`` (training means of the last
        epoch: loss = reconstruction + weight * latent, the negative ELBO at weight 1);
        ``eval_loss``, ``eval_reconstruction``, ``eval_latent`` (the same, deterministic, from the
        latent means of all images); ``size_entropy`` (nats, :func:`size_entropy` of the
        assignments); ``components_used``; ``latent_std`` (mean over dimensions of the spread of
        the latent means) and ``seconds`` (wall clock).
    """
    from avader.config import load_config
    from avader.data import GalaxySet
    from avader.metrics import hungarian_accuracy, nmi
    from avader.model import build_vade
    from avader.training import load_run_model, read_history, size_entropy, train

    started = time.time()
    config = load_config("smoke", {**overrides, "seed": seed})
    run = train(config, data=data_path, run_dir=run_dir, overwrite=True, progress=False)
    seconds = time.time() - started
    galaxies = GalaxySet.read(data_path)
    images = galaxies.get_images(slice(None))
    labels = np.asarray(galaxies.catalog["label"])
    k = config.model.n_components
    init = build_vade(config.model, seed=seed)
    init.load_weights(run.checkpoints / f"epoch{config.training.warmup_epochs:04d}_init.weights.h5")
    init_assignments = np.argmax(np.asarray(init.responsibilities(images)), axis=1)
    model = load_run_model(run)
    mean = np.asarray(model.encode(images)[0])
    assignments = np.argmax(np.asarray(model.responsibilities(mean)), axis=1)
    terms = model.per_sample_losses(images, training=False)
    reconstruction = float(np.mean(np.asarray(terms["reconstruction"])))
    latent = float(np.mean(np.asarray(terms["latent"])))
    weight = float(np.asarray(model.latent_weight))
    last = read_history(run)[-1]
    init_phase = run.manifest().get("phases", {}).get("init", {})
    return {
        "seed": seed,
        "accuracy": hungarian_accuracy(labels, assignments, one_to_one=True),
        "nmi": nmi(labels, assignments),
        "init_accuracy": hungarian_accuracy(labels, init_assignments, one_to_one=True),
        "init_log_likelihood": init_phase.get("log_likelihood"),
        "final_loss": float(last["loss"]),
        "final_reconstruction": float(last["reconstruction_loss"]),
        "final_latent": float(last["kl_loss"]),
        "eval_loss": reconstruction + weight * latent,
        "eval_reconstruction": reconstruction,
        "eval_latent": latent,
        "size_entropy": size_entropy(assignments, k),
        "components_used": int(len(np.unique(assignments))),
        "latent_std": float(mean.std(axis=0).mean()),
        "seconds": round(seconds, 1),
    }


# variant -> (mixture fits in phase 2, complete runs per seed, choice among the fits)
VARIANTS = {
    "library": {"init_restarts": 1, "runs": 3, "init_select": "likelihood"},
    "likelihood": {"init_restarts": 5, "runs": 1, "init_select": "likelihood"},
    "balance": {"init_restarts": 20, "runs": 3, "init_select": "balance"},
}
SELECTION_RULES = {
    "size_entropy": lambda run: -run["size_entropy"],
    "final_loss": lambda run: run["final_loss"],
    "eval_loss": lambda run: run["eval_loss"],
}


def run_variant(data_path, seed: int, variant: str, overrides: dict, workdir, runs: int | None = None) -> dict:
    """The complete runs of one variant and seed, and the run each selection rule picks.

    Run ``r`` has seed ``1000 + 10 * seed + r`` (so run 0 of every variant shares its warm-up).
    The headline rule is the highest :func:`size_entropy` of the final assignments.
    """
    spec = VARIANTS[variant]
    n_runs = runs or spec["runs"]
    overrides = {**overrides, "training.init_restarts": spec["init_restarts"],
                 "training.init_select": spec["init_select"]}
    started = time.time()
    results = [train_digits(data_path, 1000 + 10 * seed + r, overrides, Path(workdir) / f"{variant}_{seed}_{r}")
               for r in range(n_runs)]
    picks = {name: min(range(n_runs), key=lambda r: key(results[r])) for name, key in SELECTION_RULES.items()}
    return {
        "variant": variant,
        "init_restarts": spec["init_restarts"],
        "mixture_selection": spec["init_select"],
        "accuracy": results[picks["size_entropy"]]["accuracy"],
        "nmi": results[picks["size_entropy"]]["nmi"],
        "selected": picks,
        "accuracy_by_rule": {name: results[r]["accuracy"] for name, r in picks.items()},
        "runs": results,
        "seconds": round(time.time() - started, 1),
    }


def _summary(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 + 2 epochs, one seed, one run per variant")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (smoke: 0)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=None,
                        help="default: all")
    parser.add_argument("--runs", type=int, default=None, help="complete runs per seed and variant "
                        "(default: the variant's; smoke: 1)")
    parser.add_argument("--warmup-epochs", type=int, default=None, help="default 50 (smoke: 2)")
    parser.add_argument("--vade-epochs", type=int, default=None, help="default 50 (smoke: 2)")
    parser.add_argument("--latent-weight", type=float, default=0.2,
                        help="constant weight of the VaDE latent term (1: the plain ELBO)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from avader.runs import machine_info, write_json_atomic

    seeds = args.seeds or ([0] if args.smoke else [0, 1, 2])
    variants = args.variants or list(VARIANTS)
    warmup = args.warmup_epochs if args.warmup_epochs is not None else (2 if args.smoke else 50)
    vade = args.vade_epochs if args.vade_epochs is not None else (2 if args.smoke else 50)
    overrides = digits_overrides(warmup_epochs=warmup, vade_epochs=vade, latent_weight=args.latent_weight)
    images, labels = load_digits_arrays()
    per_seed = []
    with tempfile.TemporaryDirectory(prefix="avader_digits_") as tmp:
        data_path = write_digits(Path(tmp) / "digits.fits", images, labels)
        for seed in seeds:
            entry = {"seed": seed, "kmeans": kmeans_pixels(images, labels, seed)}
            for variant in variants:
                entry[variant] = run_variant(data_path, seed, variant, overrides, tmp, runs=args.runs or (1 if args.smoke else None))
                log.info("seed %d %s: VaDE %.4f (runs %s), k-means %.4f, %.0f s", seed, variant,
                         entry[variant]["accuracy"], [round(r["accuracy"], 4) for r in entry[variant]["runs"]],
                         entry["kmeans"]["accuracy"], entry[variant]["seconds"])
            per_seed.append(entry)
    report = {
        "benchmark": "digits",
        "smoke": args.smoke,
        "data": "sklearn.datasets.load_digits: 1797 images of 8x8, pixels / 16 (float32), 10 classes",
        "metric": "one-to-one Hungarian accuracy of argmax responsibilities on all 1797 images",
        "kmeans": "KMeans(10, n_init=10, random_state=seed) on the 64 pixels",
        "seeds": seeds,
        "run_seeds": "1000 + 10 * seed + run",
        "warmup_epochs": warmup,
        "vade_epochs": vade,
        "latent_weight": args.latent_weight,
        "profile": "smoke",
        "overrides": overrides,
        "variants": {name: VARIANTS[name] for name in variants},
        "headline_rule": "size_entropy: among a seed's runs, the one whose cluster sizes are most even",
        "kmeans_accuracy": _summary([e["kmeans"]["accuracy"] for e in per_seed]),
        "kmeans_nmi": _summary([e["kmeans"]["nmi"] for e in per_seed]),
    }
    for variant in variants:
        report[variant] = {
            "accuracy": _summary([e[variant]["accuracy"] for e in per_seed]),
            "nmi": _summary([e[variant]["nmi"] for e in per_seed]),
            "accuracy_by_rule": {rule: _summary([e[variant]["accuracy_by_rule"][rule] for e in per_seed])
                                 for rule in SELECTION_RULES},
            "accuracy_all_runs": _summary([r["accuracy"] for e in per_seed for r in e[variant]["runs"]]),
            "seconds_per_seed": _summary([e[variant]["seconds"] for e in per_seed]),
        }
    headline = "balance" if "balance" in variants else variants[0]
    report["bar"] = {"accuracy": 0.85, "variant": headline, "accuracy_mean": report[headline]["accuracy"]["mean"],
                     "passed": bool(report[headline]["accuracy"]["mean"] >= 0.85
                                    and report[headline]["accuracy"]["mean"] > report["kmeans_accuracy"]["mean"])}
    report["per_seed"] = per_seed
    report["machine"] = machine_info()
    output = args.output or RESULTS / ("digits_smoke.json" if args.smoke else "digits.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output, report)
    for variant in variants:
        log.info("%s: VaDE %.4f +- %.4f; k-means %.4f", variant, report[variant]["accuracy"]["mean"],
                 report[variant]["accuracy"]["std"], report["kmeans_accuracy"]["mean"])
    log.info("wrote %s", output)
    return report


if __name__ == "__main__":
    main()
