"""Pure figure builders of the clustering analysis (to be merged into :mod:`avader.plotting`).

Arrays in, ``matplotlib.figure.Figure`` out, optional ``ax=`` where a figure has one panel;
nothing is saved here (use :func:`avader.plotting.save_figure`). The selections (which rows to
show) come from :mod:`avader.clustering`: :func:`~avader.clustering.example_rows`,
:func:`~avader.clustering.example_images`, :func:`~avader.clustering.best_worst_rows` and
:func:`~avader.clustering.project_latents`.
"""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np

from .plotting import image_grid

__all__ = [
    "plot_component_examples",
    "plot_reconstructions",
    "plot_best_worst",
    "plot_membership_histograms",
    "plot_mixture_overlap",
    "plot_latent_projection",
    "plot_metrics_table",
]

log = logging.getLogger(__name__)

_METHOD_LABELS = {"vade": "VaDE", "kmeans_pixels": "k-means (pixels)", "pca_gmm": "PCA + GMM",
                  "gmm_warmup": "GMM (warm-up VAE)", "kmeans_latent": "k-means (VaDE latents)",
                  "vade_reduced": "VaDE reduced"}


def plot_component_examples(images, reconstructions=None, counts=None, title: str | None = None, size: float = 0.9):
    """Example members of each component: one row per component, inputs then reconstructions.

    Parameters
    ----------
    images : ndarray, shape (K, m, h, w), float in [0, 1]
        Members of each component (nan images for missing members are left blank), e.g. from
        ``example_images(galaxyset, example_rows(...))``.
    reconstructions : ndarray, shape (K, m, h, w), optional
        Their reconstructions, shown to the right of the inputs.
    counts : sequence of int, optional
        Members per component, written in the row labels.
    title : str, optional
    size : float
        Inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
        ``K * m`` axes (``K * 2m`` with reconstructions).
    """
    images = np.asarray(images, dtype=np.float32)
    k, m = images.shape[:2]
    panels = images if reconstructions is None else np.concatenate([images, np.asarray(reconstructions)], axis=1)
    titles = ["inputs"] + [""] * (m - 1) + (["reconstructions"] + [""] * (m - 1) if reconstructions is not None else [])
    labels = [f"c{c}" + (f" ({int(counts[c])})" if counts is not None else "") for c in range(k)]
    return image_grid(panels, titles=titles, row_labels=labels, size=size, suptitle=title)


def plot_reconstructions(inputs, reconstructions, titles=None, residual_limit: float | None = None,
                         size: float = 1.2):
    """Inputs (top), reconstructions (middle) and residuals input - reconstruction (bottom).

    Parameters
    ----------
    inputs, reconstructions : ndarray, shape (m, h, w), float in [0, 1]
    titles : sequence of str, optional
        One per column, above the inputs.
    residual_limit : float, optional
        Symmetric colour limit of the residuals; default the largest absolute residual.

    Returns
    -------
    matplotlib.figure.Figure
        ``3 * m`` image axes and one colour bar axis for the residuals.
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    reconstructions = np.asarray(reconstructions, dtype=np.float32)
    residuals = inputs - reconstructions
    limit = residual_limit or float(np.nanmax(np.abs(residuals))) or 1.0
    m = len(inputs)
    fig, axes = plt.subplots(3, m, figsize=(m * size + 0.8, 3 * size), squeeze=False)
    rows = (("input", inputs, "gray", 0.0, 1.0), ("reconstruction", reconstructions, "gray", 0.0, 1.0),
            ("residual", residuals, "RdBu_r", -limit, limit))
    shown = None
    for r, (label, stack, cmap, vmin, vmax) in enumerate(rows):
        for c in range(m):
            ax = axes[r, c]
            shown_here = ax.imshow(stack[c], cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 2:
                shown = shown_here
        axes[r, 0].set_ylabel(label, fontsize=8)
    if titles is not None:
        for c, text in enumerate(titles[:m]):
            axes[0, c].set_title(str(text), fontsize=7, pad=2)
    fig.subplots_adjust(wspace=0.04, hspace=0.06, right=0.9)
    cax = fig.add_axes([0.92, 0.11, 0.012, 0.22])
    fig.colorbar(shown, cax=cax).ax.tick_params(labelsize=6)
    return fig


def plot_best_worst(best_inputs, best_reconstructions, worst_inputs, worst_reconstructions, best_sse=None,
                    worst_sse=None, size: float = 1.1):
    """Best and worst reconstructions (lowest and highest per-image sum of squared errors).

    Parameters
    ----------
    best_inputs, best_reconstructions, worst_inputs, worst_reconstructions : ndarray, shape (m, h, w)
    best_sse, worst_sse : sequence of float, optional
        Per-image errors, written above the inputs.

    Returns
    -------
    matplotlib.figure.Figure
        ``4 * m`` axes: rows best input, best reconstruction, worst input, worst reconstruction.
    """
    stack = np.stack([np.asarray(a, dtype=np.float32) for a in (best_inputs, best_reconstructions, worst_inputs,
                                                                 worst_reconstructions)])
    m = stack.shape[1]
    titles = [""] * (4 * m)
    for row, sse in ((0, best_sse), (2, worst_sse)):
        if sse is not None:
            titles[row * m:(row + 1) * m] = [f"SSE {float(v):.3g}" for v in sse]
    return image_grid(stack, titles=titles, size=size,
                      row_labels=["best input", "reconstruction", "worst input", "reconstruction"])


def plot_membership_histograms(components, groups, n_components: int | None = None, normalize: bool = True,
                               ncols: int = 2):
    """Distribution over components of each class, one panel per classification.

    Parameters
    ----------
    components : array_like, shape (n,), int
    groups : mapping of str to array_like, shape (n,)
        Classification name -> class of each galaxy (``""`` or None = no class), e.g. ``{"family":
        ...}`` or the GZ2 vote classes of :func:`avader.clustering.gz2_vote_classes`.
    n_components : int, optional
        K; default ``max(components) + 1``.
    normalize : bool
        Fraction of each class's members per component (default) rather than counts.
    ncols : int

    Returns
    -------
    matplotlib.figure.Figure
        One axis per classification.
    """
    components = np.asarray(components).ravel()
    k = int(n_components or components.max() + 1)
    names = list(groups)
    ncols = max(1, min(ncols, len(names)))
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.remove()
    x = np.arange(k)
    for ax, name in zip(axes.flat, names, strict=False):
        labels = np.asarray(groups[name]).astype(str)
        classes = [c for c in np.unique(labels) if c not in ("", "None")]
        width = 0.8 / max(1, len(classes))
        for i, cls in enumerate(classes):
            counts = np.bincount(components[labels == cls], minlength=k)[:k].astype(float)
            values = counts / max(counts.sum(), 1.0) if normalize else counts
            ax.bar(x - 0.4 + (i + 0.5) * width, values, width, label=f"{cls} ({int(counts.sum())})")
        ax.set_xticks(x)
        ax.set_xlabel("component")
        ax.set_ylabel("fraction of class" if normalize else "galaxies")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_mixture_overlap(overlap, ax=None, annotate: bool | None = None, cmap: str = "viridis"):
    """Heat map of the mixture overlap: row k is the mean responsibility vector of component k's members.

    Parameters
    ----------
    overlap : ndarray, shape (K, K)
        From :func:`avader.clustering.mixture_overlap` (nan rows for empty components).
    ax : matplotlib Axes, optional
    annotate : bool, optional
        Write the values in the cells (default when K <= 16).

    Returns
    -------
    matplotlib.figure.Figure
        The heat-map axis and its colour bar.
    """
    import seaborn as sns

    overlap = np.asarray(overlap, dtype=np.float64)
    k = overlap.shape[0]
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.45 * k + 2.0, 0.4 * k + 1.5))
    annotate = k <= 16 if annotate is None else annotate
    sns.heatmap(overlap, ax=ax, vmin=0.0, vmax=1.0, cmap=cmap, square=True, annot=annotate, fmt=".2f",
                annot_kws={"fontsize": 6}, cbar_kws={"label": "mean responsibility"})
    ax.set_xlabel("component c (responsibility)")
    ax.set_ylabel("assigned component k")
    return ax.figure


def _categorical(values) -> bool:
    values = np.asarray(values)
    return values.dtype.kind in "USObi" and np.unique(values).size <= 20


def plot_latent_projection(xy, components, factors=None, ncols: int = 3, point_size: float = 4.0):
    """2-D projection of the latent space coloured by component and by each truth factor.

    Parameters
    ----------
    xy : ndarray, shape (m, 2)
        Projected latent means (:func:`avader.clustering.project_latents`).
    components : array_like, shape (m,), int
        Component of each projected galaxy.
    factors : mapping of str to array_like, shape (m,), optional
        Extra colourings: categorical (strings or at most 20 distinct integers; ``""``/-1 grey) or
        continuous (floats, with a colour bar).
    ncols : int
    point_size : float

    Returns
    -------
    matplotlib.figure.Figure
        One axis per panel (components first) plus one colour bar axis per continuous factor.
    """
    xy = np.asarray(xy, dtype=np.float32)
    panels = {"component": np.asarray(components), **(dict(factors) if factors else {})}
    ncols = max(1, min(ncols, len(panels)))
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.remove()
    for ax, (name, values) in zip(axes.flat, panels.items(), strict=False):
        values = np.asarray(values)
        if _categorical(values):
            text = values.astype(str)
            missing = np.isin(text, ("", "-1", "None"))
            ax.scatter(xy[missing, 0], xy[missing, 1], s=point_size, c="0.85", lw=0, label="n/a" if missing.any() else None)
            classes = np.unique(text[~missing])
            cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
            for i, cls in enumerate(sorted(classes, key=lambda v: (len(v), v))):
                sel = text == cls
                ax.scatter(xy[sel, 0], xy[sel, 1], s=point_size, color=cmap(i % cmap.N), lw=0, label=cls)
            ax.legend(fontsize=6, markerscale=2.0, ncols=2 if len(classes) > 6 else 1, loc="best")
        else:
            values = values.astype(np.float64)
            finite = np.isfinite(values)
            ax.scatter(xy[~finite, 0], xy[~finite, 1], s=point_size, c="0.85", lw=0)
            shown = ax.scatter(xy[finite, 0], xy[finite, 1], s=point_size, c=values[finite], cmap="viridis", lw=0)
            fig.colorbar(shown, ax=ax)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _metric_columns(section: dict) -> list[tuple[str, tuple]]:
    """(column label, key path inside a method's scores) for the metrics table."""
    methods = section["methods"]
    first = next(iter(methods.values()))
    columns = []
    for target in first.get("labels", {}):
        columns += [(f"NMI {target}", ("labels", target, "nmi")), (f"acc {target}", ("labels", target, "accuracy")),
                    (f"bal. acc {target}", ("labels", target, "balanced_accuracy"))]
    for factor in first.get("factor_nmi", {}):
        columns.append((f"NMI {factor}", ("factor_nmi", factor)))
    columns += [("silhouette", ("label_free", "silhouette")), ("CH", ("label_free", "calinski_harabasz"))]
    return columns


def plot_metrics_table(metrics, columns=None, ax=None):
    """Table of VaDE against the baselines (best value of each column in bold).

    Parameters
    ----------
    metrics : dict
        The ``clustering`` section of ``metrics.json`` (or the whole file) written by
        :func:`avader.clustering.cluster_run`.
    columns : sequence of (str, tuple), optional
        Column label and key path within a method's scores, e.g. ``("NMI family", ("labels",
        "family", "nmi"))``; default: NMI, accuracy and balanced accuracy per target, factor NMI,
        silhouette and Calinski-Harabasz (both in the VaDE latent space).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        One axis holding the table.
    """
    section = metrics.get("clustering", metrics)
    methods = dict(section["methods"])
    if "reduced" in section and "scores" in section["reduced"]:
        methods["vade_reduced"] = section["reduced"]["scores"]
    columns = list(columns) if columns is not None else _metric_columns(section)

    def lookup(scores, path):
        for key in path:
            scores = scores.get(key) if isinstance(scores, dict) else None
        return scores if isinstance(scores, (int, float)) else None

    values = np.array([[np.nan if lookup(s, p) is None else lookup(s, p) for _, p in columns]
                       for s in methods.values()], dtype=np.float64)
    cells = [[("" if np.isnan(v) else (f"{v:.0f}" if abs(v) >= 100 else f"{v:.3f}")) for v in row] for row in values]
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 + 0.95 * len(columns) + 1.4, 0.35 * len(methods) + 0.8))
    ax.axis("off")
    table = ax.table(cellText=cells, rowLabels=[_METHOD_LABELS.get(m, m) for m in methods],
                     colLabels=[label for label, _ in columns], loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1.0, 1.3)
    for j in range(len(columns)):
        column = values[:, j]
        if np.isfinite(column).any():
            table[int(np.nanargmax(column)) + 1, j].set_text_props(fontweight="bold")
    return ax.figure
