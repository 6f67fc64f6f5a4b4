"""Pure figure builders for generation: arrays in, ``Figure`` out, nothing saved.

To be merged into :mod:`avader.plotting`; save with :func:`avader.plotting.save_figure`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .plotting import image_grid

__all__ = [
    "plot_generated_per_component",
    "plot_interpolation",
    "plot_realism_histograms",
    "plot_component_distances",
]

log = logging.getLogger(__name__)

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
