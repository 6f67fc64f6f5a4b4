"""The paper's figures, one function each: from a run directory and a GalaxySet to a Figure.

Each function picks what to show (rows, components, samples) with the analysis modules and
draws it with the pure builders of :mod:`avader.plotting`; nothing is saved here. The notebooks
call one of these and :func:`avader.plotting.save_figure` per heading.

| paper figure | function | notebook |
|---|---|---|
| example inputs | :func:`example_inputs` | 01 |
| training loss curves | :func:`training_curves` | 03 |
| inputs, reconstructions, residuals | :func:`reconstructions` | 02, 03 |
| best and worst reconstructions | :func:`best_worst` | 03 |
| mixture overlap | :func:`mixture_overlap` | 04 |
| highest-gamma / random members per component | :func:`component_members` | 04 |
| the reduced scheme | :func:`reduced_members` | 04 |
| component histograms per class | :func:`membership_histograms` | 04 |
"""

from __future__ import annotations

import numpy as np

from . import plotting
from .errors import AvaderError
from .runs import RunDir, read_json

__all__ = [
    "example_inputs",
    "catalogue",
    "training_curves",
    "reconstructions",
    "best_worst",
    "mixture_overlap",
    "component_members",
    "reduced_members",
    "membership_histograms",
    "latent_projection",
    "clustering_metrics",
]


def example_inputs(galaxies, n: int = 32, seed: int = 0):
    """Random inputs with their family (or label) and number of companions in the titles."""
    columns = [c for c in ("family", "label_name", "n_companions") if c in galaxies.catalog.colnames]
    return plotting.plot_examples(galaxies, n=n, seed=seed, columns=columns or ("id",))


def catalogue(galaxies):
    """Distributions of the catalogue's truth or label columns."""
    return plotting.plot_catalogue(galaxies.catalog)


def training_curves(run):
    """Losses of every epoch of both phases (warm-up shaded)."""
    from .training import read_history

    return plotting.plot_history(read_history(run))


def reconstructions(model, galaxies, n: int = 8, seed: int = 0):
    """Random inputs, their reconstructions and the residuals."""
    from .clustering import example_images

    rows = np.sort(np.random.default_rng(seed).choice(len(galaxies), size=min(n, len(galaxies)), replace=False))
    images, recon = example_images(galaxies, rows, model=model)
    return plotting.plot_reconstructions(images, recon, titles=[str(galaxies.ids[r]) for r in rows])


def best_worst(model, galaxies, n: int = 8, batch_size: int = 256):
    """The galaxies reconstructed best and worst (per-image sum of squared errors)."""
    from .clustering import assign, best_worst_rows, example_images

    sse = assign(model, galaxies, batch_size=batch_size, progress=False, reconstruction_error=True)["sse"]
    best, worst = best_worst_rows(sse, n=n)
    best_images, best_recon = example_images(galaxies, best, model=model)
    worst_images, worst_recon = example_images(galaxies, worst, model=model)
    return plotting.plot_best_worst(best_images, best_recon, worst_images, worst_recon,
                                    best_sse=sse[best], worst_sse=sse[worst])


def _clusters(run):
    from .clustering import read_clusters

    return read_clusters(RunDir(run).path)


def _clustering_metrics(run) -> dict:
    path = RunDir(run) / "metrics.json"
    metrics = read_json(path).get("clustering") if path.is_file() else None
    if not metrics:
        raise AvaderError(f"{path}: no clustering metrics (run avader cluster first)")
    return metrics


def mixture_overlap(run):
    """Mean responsibilities of each component's members (the paper's mixture overlap)."""
    from .clustering import mixture_overlap as overlap

    table = _clusters(run)
    return plotting.plot_mixture_overlap(overlap(np.asarray(table["responsibilities"]), np.asarray(table["component"])))


def component_members(run, galaxies, model=None, n: int = 8, how: str = "top", seed: int = 0):
    """Members of every component, inputs then reconstructions: the highest-responsibility
    members (``how="top"``) or a random draw (``how="random"``)."""
    from .clustering import example_images, example_rows

    table = _clusters(run)
    gamma, comps = np.asarray(table["responsibilities"]), np.asarray(table["component"])
    rows = example_rows(gamma, comps, n=n, how=how, seed=seed)
    images, recon = example_images(galaxies, rows, model=model)
    counts = np.bincount(comps, minlength=gamma.shape[1])
    title = "highest-responsibility members" if how == "top" else "random members"
    return plotting.plot_component_examples(images, recon, counts=counts, title=f"{title} per component")


def reduced_members(run, galaxies, n: int = 8, seed: int = 0):
    """Random members of each component of the reduced scheme (companion components re-assigned)."""
    from .clustering import example_images, example_rows

    table = _clusters(run)
    gamma, reduced = np.asarray(table["responsibilities"]), np.asarray(table["reduced_component"])
    rows = example_rows(gamma, reduced, n=n, how="random", seed=seed)
    excluded = _clustering_metrics(run).get("reduced", {}).get("exclude", [])
    keep = [k for k in range(gamma.shape[1]) if k not in set(excluded)]
    images, _ = example_images(galaxies, rows[keep])
    counts = np.bincount(reduced, minlength=gamma.shape[1])[keep]
    removed = ", ".join(str(k) for k in excluded) or "none"
    return plotting.plot_component_examples(images, counts=counts,
                                            title=f"reduced scheme (components {removed} re-assigned)")


def membership_histograms(run, galaxies):
    """Distribution over components of each class: truth families, companions, Galaxy10 labels or
    the GZ2 vote-cut classes, whichever the catalogue has."""
    from .clustering import gz2_vote_classes

    table = _clusters(run)
    catalog = galaxies.catalog
    groups = {}
    for name in ("family", "label_name"):
        if name in catalog.colnames:
            groups[name] = np.asarray(catalog[name]).astype(str)
    if "n_companions" in catalog.colnames:
        groups["companions"] = np.where(np.asarray(catalog["n_companions"]) > 0, "with companion", "isolated")
    if "axis_ratio" in catalog.colnames:
        q = np.asarray(catalog["axis_ratio"])
        groups["axis ratio"] = np.where(q < 0.4, "b/a < 0.4", np.where(q < 0.7, "0.4-0.7", "b/a > 0.7"))
    if not groups:
        groups = gz2_vote_classes(catalog)
    if not groups:
        raise AvaderError(f"{galaxies.path}: the catalogue has no classes to histogram")
    return plotting.plot_membership_histograms(np.asarray(table["component"]), groups,
                                               n_components=np.asarray(table["responsibilities"]).shape[1])


def latent_projection(run, galaxies, method: str = "pca", sample: int = 5000, seed: int = 0):
    """2-D projection of the latent means coloured by component and by each truth factor."""
    from .clustering import project_latents, truth_factors

    table = _clusters(run)
    rows, xy = project_latents(np.asarray(table["latent_mean"]), method=method, sample=sample, seed=seed)
    factors = {}
    catalog = galaxies.catalog
    for name in ("family", "label_name"):
        if name in catalog.colnames:
            factors[name] = np.asarray(catalog[name]).astype(str)[rows]
    for name in ("axis_ratio", "n_companions"):
        if name in catalog.colnames:
            factors[name] = np.asarray(catalog[name])[rows]
    if not factors:
        factors = {k: np.asarray(v)[rows] for k, v in truth_factors(catalog).items()}
    return plotting.plot_latent_projection(xy, np.asarray(table["component"])[rows], factors=factors)


def clustering_metrics(run):
    """VaDE against the baselines: NMI, accuracies, factor NMI, silhouette, Calinski-Harabasz."""
    return plotting.plot_metrics_table(_clustering_metrics(run))
