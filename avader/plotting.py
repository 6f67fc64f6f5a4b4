"""Pure figure builders and the one ``save_figure``.

Every builder takes arrays or objects and returns a ``matplotlib.figure.Figure`` (most accept
an optional ``ax=``); nothing here reads or writes files except :func:`save_figure`, which writes
``figures/<name>.png`` and ``.pdf`` and returns the paths. Figure names carry the paper's figure
number, ``figNN_<what>``. The Agg backend is used, so figures build without a display.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import paths  # noqa: E402
from .data import write_atomic  # noqa: E402

__all__ = [
    "save_figure",
    "image_grid",
    "plot_examples",
    "plot_history",
    "plot_catalogue",
    "plot_component_examples",
    "plot_reconstructions",
    "plot_best_worst",
    "plot_membership_histograms",
    "plot_mixture_overlap",
    "plot_latent_projection",
    "plot_metrics_table",
    "plot_generated_per_component",
    "plot_interpolation",
    "plot_realism_histograms",
    "plot_component_distances",
    "plot_deblend_examples",
    "plot_deblend_benchmark",
    "plot_remove_companion",
]

log = logging.getLogger(__name__)


def save_figure(fig, name: str, directory=None, formats=("png", "pdf"), dpi: int = 120, close: bool = True) -> list[Path]:
    """Write ``fig`` as ``<directory>/<name>.<format>`` for each format, atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    name : str
        File stem, ``figNN_<what>``.
    directory : path, optional
        Default :func:`avader.paths.figures_dir`.
    formats : sequence of str
    dpi : int
        Resolution of raster formats.
    close : bool
        Close the figure afterwards (frees memory in long notebooks).

    Returns
    -------
    list of Path
    """
    directory = Path(directory) if directory is not None else paths.figures_dir()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = directory / f"{name}.{fmt}"

        def write(tmp, fmt=fmt):
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=_metadata(fmt))

        written.append(write_atomic(target, write, overwrite=True))
    if close:
        plt.close(fig)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return written


def _metadata(fmt: str) -> dict:
    # Reproducible files: no creation dates embedded.
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "avader"}
    if fmt == "png":
        return {"Software": "avader"}
    return {}


def image_grid(images, nrows: int | None = None, ncols: int | None = None, titles=None, row_labels=None,
               cmap: str = "gray", vmin=0.0, vmax=1.0, size: float = 1.2, suptitle: str | None = None, fig=None):
    """A grid of grey images without axes.

    Parameters
    ----------
    images : ndarray, shape (n, height, width) or (rows, cols, height, width)
    nrows, ncols : int, optional
        Grid shape for a flat stack (default: as square as possible).
    titles : sequence of str, optional
        One per image (flat order).
    row_labels : sequence of str, optional
        One per row, written on the left.
    vmin, vmax : float or None
        Colour limits; None scales each image by itself.
    size : float
        Inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 4:
        nrows, ncols = images.shape[:2]
        images = images.reshape(-1, *images.shape[2:])
    n = len(images)
    if ncols is None:
        ncols = int(np.ceil(np.sqrt(n))) if nrows is None else int(np.ceil(n / nrows))
    if nrows is None:
        nrows = int(np.ceil(n / ncols))
    fig = fig or plt.figure(figsize=(ncols * size, nrows * size + (0.4 if suptitle else 0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if k < n:
            ax.imshow(images[k], cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", interpolation="nearest")
            if titles is not None and k < len(titles):
                ax.set_title(titles[k], fontsize=7, pad=2)
    if row_labels is not None:
        for row, label in enumerate(row_labels[:nrows]):
            axes[row, 0].set_ylabel(label, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.subplots_adjust(wspace=0.04, hspace=0.15 if titles is not None else 0.04)
    return fig


def plot_examples(galaxyset, n: int = 24, seed: int = 0, columns=("family",), ncols: int = 8):
    """Random example inputs of a GalaxySet with a catalogue column in each title (paper: example inputs)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(galaxyset), size=min(n, len(galaxyset)), replace=False))
    names = [c for c in columns if c in galaxyset.catalog.colnames]
    titles = [" ".join(str(galaxyset.catalog[c][r]) for c in names) for r in rows] if names else None
    return image_grid(galaxyset.get_images(rows), ncols=ncols, titles=titles, suptitle=f"{n} random inputs")


def plot_history(history, ax=None):
    """Training curves: losses per epoch, phases shaded (paper: training loss curves).

    Parameters
    ----------
    history : mapping of str to array or astropy Table
        Columns of ``history.csv``: ``epoch``, ``phase``, ``loss``, ``reconstruction_loss``,
        ``kl_loss``, ``val_*``, ``latent_weight``.
    """
    fig = None
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    else:
        axes = [ax, ax.twinx()]
        fig = ax.figure
    epoch = np.asarray(history["epoch"], dtype=float)
    phase = np.asarray(history["phase"]).astype(str)
    columns = set(history.colnames) if hasattr(history, "colnames") else set(history)
    for panel, keys in ((0, ("reconstruction_loss", "val_reconstruction_loss")), (1, ("kl_loss", "val_kl_loss"))):
        for key, style in zip(keys, ("-", "--")):
            if key in columns:
                axes[panel].plot(epoch, np.asarray(history[key], dtype=float), style, label=key.replace("_", " "))
    axes[0].set_ylabel("reconstruction loss (sum of squared errors per image)")
    axes[1].set_ylabel("latent term (KL or VaDE)")
    axes[1].set_yscale("symlog")
    for a in axes[:2]:
        a.set_xlabel("epoch")
        warm = epoch[phase == "warmup"]
        if len(warm):
            a.axvspan(warm.min() - 0.5, warm.max() + 0.5, color="0.9", zorder=0, label="warm-up")
        tail = epoch[phase == "decoder"]
        if len(tail):
            a.axvspan(tail.min() - 0.5, tail.max() + 0.5, color="0.95", zorder=0, label="decoder only")
        a.legend(fontsize=7)
    fig.tight_layout()
    return fig


_TRUTH_COLUMNS = ("family", "axis_ratio", "position_angle", "sersic_index", "r_half", "snr", "n_companions",
                  "label_name", "label", "t01_smooth_or_features_a01_smooth_debiased")


def plot_catalogue(catalog, columns=None, ncols: int = 4):
    """Histograms of the catalogue's truth or label columns (categorical columns as bar charts).

    Parameters
    ----------
    catalog : astropy.table.Table
    columns : sequence of str, optional
        Default: the known truth/label columns present (family, axis ratio, orientation,
        Sersic index, half-light radius, S/N, companions, Galaxy10 label, GZ2 smooth fraction).
    """
    columns = [c for c in (columns or _TRUTH_COLUMNS) if c in catalog.colnames]
    if not columns:
        columns = [c for c in catalog.colnames if c != "id" and np.asarray(catalog[c]).ndim == 1][:ncols]
    nrows = max(1, int(np.ceil(len(columns) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, columns):
        values = np.asarray(catalog[name])
        if values.dtype.kind in "USO" or (values.dtype.kind in "iu" and len(np.unique(values)) <= 12):
            labels, counts = np.unique(values.astype(str), return_counts=True)
            ax.bar(labels, counts, color="C0")
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        else:
            finite = values[np.isfinite(values)]
            log_scale = name == "snr" and finite.size and finite.min() > 0
            bins = np.geomspace(finite.min(), finite.max(), 30) if log_scale else 30
            ax.hist(finite, bins=bins, color="C0")
            if log_scale:
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("galaxies", fontsize=8)
    for ax in list(axes.flat)[len(columns):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- from clustering
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


# ---------------------------------------------------------------- from generation
_STAT_LABELS = {
    "axis_ratio": "axis ratio b/a",
    "position_angle": "position angle (deg)",
    "concentration": "concentration 5 log10(R80/R20)",
    "r_half": "half-light radius (px)",
    "gini": "Gini",
    "m20": "M20",
    "asymmetry": "asymmetry",
}


def plot_generated_per_component(images, components=None, ncols: int | None = None, size: float = 0.6,
                                 title: str | None = "generated galaxies per component"):
    """Generated galaxies, one row per component (paper: generated galaxies per component).

    Parameters
    ----------
    images : ndarray, shape (K, m, h, w), float in [0, 1]
        ``images[c]`` the galaxies generated from component ``c`` (for example
        :func:`avader.generation.published_generation`).
    components : sequence, optional
        Row labels (default ``0 .. K-1``).
    ncols : int, optional
        Show only the first ``ncols`` galaxies of each row.
    size : float
        Inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images: expected shape (components, per_component, h, w), got {images.shape}")
    if ncols is not None:
        images = images[:, :ncols]
    labels = [f"c{c}" for c in (range(len(images)) if components is None else components)]
    return image_grid(images, row_labels=labels, size=size, suptitle=title)


def plot_interpolation(images, labels: Sequence[str] | None = None, size: float = 1.2, title: str | None = None):
    """Interpolation strips: one row per pair of endpoints.

    Parameters
    ----------
    images : ndarray, shape (steps, h, w) or (rows, steps, h, w)
        From :func:`avader.generation.interpolate`.
    labels : sequence of str, optional
        One per row (for example ``"c3 -> c7"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    steps = images.shape[1]
    titles = [f"t={t:.2f}" for t in np.linspace(0.0, 1.0, steps)] + [""] * (images.shape[0] - 1) * steps
    return image_grid(images, row_labels=labels, titles=titles, size=size, suptitle=title)


def plot_realism_histograms(samples: Mapping[str, Mapping[str, np.ndarray]], distances=None,
                            statistics: Sequence[str] | None = None, reference: str = "real", bins: int = 30,
                            ncols: int = 3):
    """Histograms of each statistic for real and generated samples, distances in the titles.

    Parameters
    ----------
    samples : mapping of str to mapping of str to ndarray (n,)
        ``{"real": {...}, "VaDE": {...}, "VAE baseline": {...}}``: measured statistics per sample.
    distances : mapping of str to mapping, optional
        Per non-reference sample the output of :func:`avader.generation.realism` (its
        ``"statistics"`` entry, or that dict itself): the standardised Wasserstein distance of each
        statistic is written in the panel title.
    statistics : sequence of str, optional
        Panels; default the statistics of the reference sample.
    reference : str
        Key of the real sample (drawn filled).
    bins : int
        Histogram bins over the common finite range.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if reference not in samples:
        raise ValueError(f"samples: no reference sample {reference!r}")
    statistics = list(statistics or samples[reference])
    nrows = int(np.ceil(len(statistics) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
    for ax, name in zip(axes.flat[:len(statistics)], statistics, strict=True):
        values = {key: np.asarray(s[name], dtype=np.float64) for key, s in samples.items() if name in s}
        finite = [v[np.isfinite(v)] for v in values.values()]
        pooled = np.concatenate(finite) if finite else np.zeros(0)
        low, high = np.percentile(pooled, [0.5, 99.5]) if pooled.size else (0.0, 1.0)
        if not high > low:
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, bins + 1)
        parts = []
        for key, v in values.items():
            v = v[np.isfinite(v)]
            if key == reference:
                ax.hist(v, bins=edges, density=True, color="0.75", label=f"{key} ({v.size})")
            else:
                ax.hist(v, bins=edges, density=True, histtype="step", lw=1.5, label=f"{key} ({v.size})")
                w = _distance(distances, key, name)
                if w is not None:
                    parts.append(f"{key} {w:.3f}")
        ax.set_title(_STAT_LABELS.get(name, name) + ("\nW: " + ", ".join(parts) if parts else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(statistics):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _distance(distances, key, name):
    if not distances or key not in distances or distances[key] is None:
        return None
    entry = distances[key]
    entry = entry.get("statistics", entry)
    value = entry.get(name, {}).get("wasserstein")
    return None if value is None or not np.isfinite(value) else float(value)


def plot_component_distances(table, components: Sequence | None = None, statistics: Sequence[str] | None = None,
                             counts: Sequence[int] | None = None, ax=None, vmax: float | None = None):
    """Heatmap of the standardised Wasserstein distance per component and statistic, values written in.

    Parameters
    ----------
    table : array_like, shape (K, S), or mapping
        Distances (nan where not compared), or the output of
        :func:`avader.generation.realism_per_component` (its ``wasserstein_table``,
        ``table_components``, ``table_statistics`` and real counts are used).
    components, statistics : sequence, optional
        Row and column labels.
    counts : sequence of int, optional
        Real galaxies per component, shown in the row labels.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(table, Mapping):
        components = table["table_components"] if components is None else components
        statistics = table["table_statistics"] if statistics is None else statistics
        if counts is None:
            counts = [table["components"][str(k)]["n_real"] for k in components]
        table = table["wasserstein_table"]
    values = np.asarray(table, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"table: expected (components, statistics), got shape {values.shape}")
    components = list(range(values.shape[0])) if components is None else list(components)
    statistics = [f"s{j}" for j in range(values.shape[1])] if statistics is None else list(statistics)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.1 * len(statistics) + 2.0, 0.38 * len(components) + 1.4))
    else:
        fig = ax.figure
    finite = values[np.isfinite(values)]
    top = vmax if vmax is not None else (max(float(finite.max()), 0.1) if finite.size else 1.0)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0.0, vmax=top, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        text = "-" if not np.isfinite(v) else f"{v:.2f}"
        colour = "white" if np.isfinite(v) and v < 0.6 * top else "black"
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(statistics)), [_STAT_LABELS.get(s, s).split(" ")[0] for s in statistics],
                  rotation=30, ha="right", fontsize=8)
    row_labels = [f"c{k}" + (f" ({counts[i]})" if counts is not None else "") for i, k in enumerate(components)]
    ax.set_yticks(range(len(components)), row_labels, fontsize=8)
    fig.colorbar(image, ax=ax, label="Wasserstein (real std units)")
    ax.set_title("generated vs real, per component", fontsize=9)
    fig.tight_layout()
    return fig

# ---------------------------------------------------------------- from deblending
_METHOD_STYLE = {"avader": ("C0", "o"), "avader_peaks": ("C9", "D"), "avader_true_centres": ("C2", "s"), "photutils": ("C1", "^"),
                 "sep": ("C3", "v")}


def plot_deblend_examples(blends, sources, residuals, truths=None, noise_sigma=None, size: float = 1.2):
    """Blends, their separated sources and residuals, one blend per row.

    Parameters
    ----------
    blends : ndarray, shape (n, h, w)
        Blend images (stored units).
    sources : ndarray, shape (n, k, h, w)
        Separated sources (empty slots zero).
    residuals : ndarray, shape (n, h, w)
        Blend minus model.
    truths : ndarray, shape (n, k_true, h, w), optional
        True isolated sources, shown after the fitted ones.
    noise_sigma : array_like, shape (n,), optional
        Residuals are shown on +-5 sigma (default: +-5 times their own robust scatter).
    size : float
        Inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
        Panels are scaled per row by the blend's peak; residuals map -5 sigma..+5 sigma to black..white.
    """
    blends = np.asarray(blends, np.float64)
    sources = np.asarray(sources, np.float64)
    residuals = np.asarray(residuals, np.float64)
    n, k = sources.shape[:2]
    k_true = 0 if truths is None else np.asarray(truths).shape[1]
    if noise_sigma is None:
        noise_sigma = 1.4826 * np.median(np.abs(residuals - np.median(residuals, axis=(1, 2), keepdims=True)),
                                         axis=(1, 2))
    noise_sigma = np.maximum(np.broadcast_to(np.asarray(noise_sigma, np.float64), (n,)), 1e-12)
    panels = []
    for i in range(n):
        low = np.median(blends[i][:2])
        peak = max(blends[i].max() - low, 1e-12)
        row = [(blends[i] - low) / peak] + [sources[i, j] / peak for j in range(k)]
        if truths is not None:
            row += [np.asarray(truths[i, j], np.float64) / peak for j in range(k_true)]
        row.append(0.5 + residuals[i] / (10.0 * noise_sigma[i]))
        panels.append(row)
    titles = (["blend"] + [f"source {j}" for j in range(k)] + [f"true {j}" for j in range(k_true)]
              + ["residual (+-5 sigma)"])
    fig = image_grid(np.array(panels), titles=titles * n, size=size, vmin=0.0, vmax=1.0)
    return fig


def _series(results: dict, method: str, key: str, metric: str, role: str):
    entries = results["methods"][method][key]
    values = [e[role][metric] for e in entries]
    return np.array([np.nan if v is None else v for v in values], np.float64)


def plot_deblend_benchmark(results: dict, role: str = "bright"):
    """Benchmark summary: median SSIM and median |dF/F| against separation and flux ratio, and detection.

    Parameters
    ----------
    results : dict
        The output of :func:`avader.deblending.benchmark` (or its JSON file, loaded).
    role : {"bright", "faint", "all"}
        Which sources the medians describe.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    methods = list(results["methods"])
    sep_edges = [e["separation_rhalf"] for e in results["methods"][methods[0]]["by_separation"]]
    flux_edges = [e["flux_ratio"] for e in results["methods"][methods[0]]["by_flux_ratio"]]
    sep_labels = [f"{lo:g}-{hi:g}" if hi is not None else f">{lo:g}" for lo, hi in sep_edges]
    flux_labels = [f"{lo:g}-{min(hi, 1.0):.1f}" for lo, hi in flux_edges]
    panels = [(axes[0, 0], "by_separation", "ssim", sep_labels, "separation (r_half)", "median SSIM"),
              (axes[0, 1], "by_separation", "abs_dflux", sep_labels, "separation (r_half)", "median |dF/F|"),
              (axes[1, 0], "by_flux_ratio", "ssim", flux_labels, "flux ratio (faint / bright)", "median SSIM"),
              (axes[1, 1], "by_flux_ratio", "abs_dflux", flux_labels, "flux ratio (faint / bright)", "median |dF/F|")]
    for ax, key, metric, labels, xlabel, ylabel in panels:
        for method in methods:
            colour, marker = _METHOD_STYLE.get(method, ("0.4", "x"))
            ax.plot(np.arange(len(labels)), _series(results, method, key, metric, role), marker=marker,
                    color=colour, label=method)
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{ylabel} ({role})")
        if metric == "abs_dflux":
            ax.axhline(0.05, color="0.5", ls=":", lw=1)
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=8)
    ax = axes[0, 2]
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        det = results["methods"][method]["detection"]
        values = [det["recall"], det["precision"] if det["precision"] is not None else np.nan]
        ax.bar(np.arange(2) + (i - (len(methods) - 1) / 2) * width, values, width,
               color=_METHOD_STYLE.get(method, ("0.4", "x"))[0], label=method)
    ax.set_xticks([0, 1], ["recall", "precision"])
    ax.set_ylim(0, 1.05)
    ax.set_title("detection")
    ax = axes[1, 2]
    rows = []
    for method in methods:
        overall = results["methods"][method]["overall"][role]
        close = results["methods"][method]["close"][role]
        rows.append([method, _fmt(overall["ssim"]), _fmt(overall["abs_dflux"]), _fmt(close["ssim"]),
                     _fmt(close["abs_dflux"]), _fmt(results["methods"][method]["seconds_per_blend"], 2)])
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=["method", "SSIM", "|dF/F|", "SSIM <2r", "|dF/F| <2r", "s/blend"],
                     loc="center", fontsize=8)
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    ax.set_title(f"medians, {role} galaxy ({results['n_blends']} blends)")
    fig.tight_layout()
    return fig


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot_remove_companion(images, cleaned, titles=None, size: float = 1.2):
    """Inputs with a companion (top row) and their decodings from the nearest companion-free component.

    Parameters
    ----------
    images, cleaned : ndarray, shape (n, h, w), float in [0, 1]
    titles : sequence of str, optional
        One per column (e.g. component moves "3 -> 7").

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = np.asarray(images)
    cleaned = np.asarray(cleaned)
    grid = np.stack([images, cleaned])
    flat_titles = list(titles) + [""] * len(images) if titles is not None else None
    return image_grid(grid, titles=flat_titles, row_labels=["input", "companion removed"], size=size)
