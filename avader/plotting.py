"""Pure figure builders and the one ``save_figure``.

Every builder takes arrays or objects and returns a ``matplotlib.figure.Figure`` (most accept
an optional ``ax=``); nothing here reads or writes files except :func:`save_figure`, which writes
``figures/<name>.png`` and ``.pdf`` and returns the paths. Figure names carry the paper's figure
number, ``figNN_<what>``. The Agg backend is used, so figures build without a display.
"""

from __future__ import annotations

import logging
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
