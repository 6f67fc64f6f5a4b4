"""Pure figure builders for deblending (to be merged into :mod:`avader.plotting`).

Arrays or result dicts in, a ``matplotlib.figure.Figure`` out; nothing is read or written here.
"""

from __future__ import annotations

import numpy as np

from .plotting import image_grid, plt

__all__ = ["plot_deblend_examples", "plot_deblend_benchmark", "plot_remove_companion"]

_METHOD_STYLE = {"avader": ("C0", "o"), "avader_true_centres": ("C2", "s"), "photutils": ("C1", "^"),
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
