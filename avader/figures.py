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
| generated galaxies per component | :func:`generated` | 05 |
| the same from the published weights | :func:`published_generated` | 05 |
| deblending demonstration | :func:`deblend_examples` | 06 |
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
    "generated",
    "published_generated",
    "interpolation",
    "realism",
    "realism_per_component",
    "deblend_examples",
    "deblend_benchmark",
    "deblend_image",
    "remove_companion",
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


def generated(model, per_component: int = 8, scale: float = 0.5, seed: int = 0):
    """Galaxies generated from every component, one row each: z ~ N(u_c, scale * lambda_c)."""
    from .generation import generate

    images, _ = generate(model, per_component=per_component, scale=scale, seed=seed)
    k = model.model_config.n_components
    return plotting.plot_generated_per_component(images.reshape(k, per_component, *images.shape[1:]))


def published_generated(weights, per_component: int = 45, seed: int = 0, scale: float = 0.5):
    """The paper's generation figure from the original authors' weights: 45 per component."""
    from .generation import published_generation

    images = published_generation(weights, per_component=per_component, seed=seed, scale=scale)
    return plotting.plot_generated_per_component(images, ncols=None, size=0.45,
                                                 title=f"published AstroVaDEr: {per_component} per component")


def interpolation(model, galaxies, steps: int = 8, seed: int = 0):
    """Decoded latent paths between random pairs of galaxies and between pairs of component means."""
    from .generation import interpolate

    rng = np.random.default_rng(seed)
    pairs = rng.choice(len(galaxies), size=(3, 2), replace=False)
    rows = [interpolate(model, galaxies.get_images(a), galaxies.get_images(b), steps=steps) for a, b in pairs]
    k = model.model_config.n_components
    comps = rng.choice(k, size=(2, 2), replace=False)
    rows += [interpolate(model, int(a), int(b), steps=steps) for a, b in comps]
    labels = [f"{galaxies.ids[a]}->{galaxies.ids[b]}" for a, b in pairs] + [f"c{a}->c{b}" for a, b in comps]
    return plotting.plot_interpolation(np.stack(rows), labels=labels)


def realism(report: dict, samples: dict):
    """Histograms of the realism statistics: real against VaDE and the plain-VAE baseline."""
    named = {"real": samples["real"], "VaDE": samples["vade"]}
    distances = {"VaDE": report["vade"]}
    if samples.get("baseline") is not None:
        named["VAE baseline"] = samples["baseline"]
        distances["VAE baseline"] = report["baseline"]
    return plotting.plot_realism_histograms(named, distances=distances)


def realism_per_component(report: dict):
    """Standardised Wasserstein distance per component and statistic."""
    return plotting.plot_component_distances(report["per_component"])


def deblend_examples(model, blendset, n: int = 6, steps: int = 150, seed: int = 0, detector=None,
                     prior_weight: float = 1.0, augment: int = 1):
    """Blends, the fitted sources, the truth and the residuals for random blends of a blend set
    (centres from ``detector``, an :class:`avader.detector.Detector`, or from peak detection;
    ``steps``, ``prior_weight`` and ``augment`` as in :func:`avader.deblending.deblend`)."""
    from .deblending import deblend

    rows = np.sort(np.random.default_rng(seed).choice(len(blendset), size=min(n, len(blendset)), replace=False))
    blends = blendset.get_images(rows)
    cat = blendset.catalog

    def column(name):
        return np.asarray(cat[name], np.float64)[rows] if name in cat.colnames else None

    noise = column("noise_sigma")
    result = deblend(model, blends, noise_sigma=noise, background=column("zero_level"),
                     psf_fwhm=column("psf_fwhm_pix"), steps=steps, detector=detector,
                     prior_weight=prior_weight, augment=augment)
    truths = np.asarray(blendset.extra["COMPONENTS"])[rows] if "COMPONENTS" in blendset.extra else None
    return plotting.plot_deblend_examples(blends, result["sources"], result["residual"], truths=truths,
                                          noise_sigma=noise)


def deblend_benchmark(results: dict):
    """Deblending metrics of avader, photutils and sep binned by separation and flux ratio."""
    return plotting.plot_deblend_benchmark(results)


def deblend_image(model, path, steps: int = 150, detector=None, prior_weight: float = 1.0, augment: int = 1):
    """Deblend a user's own image file (FITS, PNG or JPEG): the image, the sources, the residual
    (centres from ``detector`` or from peak detection)."""
    from .deblending import deblend, load_image

    image = load_image(path, size=model.model_config.image_size)[None]
    result = deblend(model, image, steps=steps, detector=detector, prior_weight=prior_weight, augment=augment)
    return plotting.plot_deblend_examples(image, result["sources"], result["residual"])


def remove_companion(run, galaxies, model, n: int = 8, seed: int = 0):
    """The paper's operation: galaxies of companion components re-decoded from the nearest
    companion-free component (inputs above, results below)."""
    from .deblending import remove_companion as remove

    table = _clusters(run)
    components = np.asarray(table["component"])
    excluded = _clustering_metrics(run).get("reduced", {}).get("exclude", [])
    if not excluded and "n_companions" in galaxies.catalog.colnames:
        # No component is mostly companions: use the one where they are most common.
        with_companion = np.asarray(galaxies.catalog["n_companions"]) > 0
        k = np.asarray(table["responsibilities"]).shape[1]
        fraction = np.bincount(components, with_companion, k) / np.maximum(np.bincount(components, minlength=k), 1)
        excluded = [int(np.argmax(fraction))]
    if not excluded:
        raise AvaderError(f"{RunDir(run).path}: no companion components identified (analysis.reduced_exclude)")
    members = np.flatnonzero(np.isin(components, excluded))
    rows = np.sort(np.random.default_rng(seed).choice(members, size=min(n, len(members)), replace=False))
    images = galaxies.get_images(rows)
    cleaned = remove(model, images, excluded)
    titles = [f"c{a}->c{b}" for a, b in zip(cleaned["original_component"], cleaned["component"])]
    return plotting.plot_remove_companion(images, cleaned["images"], titles=titles)
