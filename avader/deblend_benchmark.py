"""The deblending benchmark: avader against the classical photutils and sep deblenders.

:func:`benchmark` runs every method on a simulated blend set (``avader simulate --blends``, the
isolated components in the ``COMPONENTS`` HDU) and scores each recovered source against its truth
(:func:`source_metrics`: MSE, PSNR, SSIM, flux error, centroid and ellipticity errors), overall,
for close blends (separation below 2 half-light radii of the brighter galaxy) and binned by
separation and flux ratio; :func:`benchmark_run` does it with a run's model and writes the JSON.
The fit itself lives in :mod:`avader.deblending`.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from .deblending import (
    DEFAULT_MODEL_ERROR,
    DEFAULT_SHARES,
    DEFAULT_SYMMETRY,
    FLUX_RATIO_BINS,
    SEPARATION_BINS,
    deblend,
    detect,
    estimate_noise,
)
from .errors import AvaderError

__all__ = [
    "photutils_deblend",
    "sep_deblend",
    "source_metrics",
    "match_sources",
    "benchmark",
    "benchmark_run",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- classical baselines
def photutils_deblend(image, noise_sigma: float | None = None, background: float | None = None, nsigma: float = 3.0,
                      max_sources: int | None = None) -> dict:
    """Baseline: photutils segmentation + ``deblend_sources``; each source keeps its segment's pixels.

    Returns
    -------
    dict
        ``sources`` (m, h, w) background-subtracted image times each segment mask, ``centres``
        (m, 2), ``flux`` (m,) segment fluxes, ``segmentation`` (h, w).
    """
    found = detect(image, noise_sigma, background, nsigma=nsigma, max_sources=max_sources)
    data = np.asarray(image, np.float64) - found["background"]
    labels = found["segmentation"]
    sources = np.stack([data * (labels == k + 1) for k in range(len(found["centres"]))]) if len(found["centres"]) \
        else np.zeros((0, *data.shape))
    return {"sources": sources.astype(np.float32), "centres": found["centres"], "flux": sources.sum(axis=(1, 2)),
            "segmentation": labels}


def sep_deblend(image, noise_sigma: float | None = None, background: float | None = None, thresh: float = 1.5,
                minarea: int = 5, deblend_cont: float = 0.005, max_sources: int | None = None) -> dict:
    """Baseline: SExtractor's algorithm through ``sep`` (3x3 filter, 32 deblending levels); each
    source keeps the pixels of its segmentation-map region. Same outputs as :func:`photutils_deblend`."""
    import sep

    image = np.ascontiguousarray(image, dtype=np.float64)
    border_sky, sigma = (float(v[0]) for v in estimate_noise(image))
    sigma = float(noise_sigma) if noise_sigma is not None else sigma
    data = np.ascontiguousarray(image - (float(background) if background is not None else border_sky))
    try:
        objects, segmap = sep.extract(data, thresh, err=sigma, minarea=minarea, deblend_nthresh=32,
                                      deblend_cont=deblend_cont, segmentation_map=True)
    except Exception as err:  # sep raises plain Exception on internal limits
        log.warning("sep failed on an image (%s); no sources", err)
        objects, segmap = np.zeros(0, dtype=[("x", "f8"), ("y", "f8")]), np.zeros(data.shape, np.int32)
    sources = np.stack([data * (segmap == k + 1) for k in range(len(objects))]) if len(objects) \
        else np.zeros((0, *data.shape))
    flux = sources.sum(axis=(1, 2))
    order = np.argsort(-flux)[:max_sources] if max_sources else np.argsort(-flux)
    centres = np.column_stack([objects["x"], objects["y"]]).reshape(-1, 2)
    return {"sources": sources[order].astype(np.float32), "centres": centres[order], "flux": flux[order],
            "segmentation": segmap}


# --------------------------------------------------------------------------- metrics
def source_metrics(truth, estimate) -> dict[str, float]:
    """Per-source quality of a separated image against the true isolated source.

    Parameters
    ----------
    truth, estimate : array_like, shape (h, w)
        Noise-free true source and the recovered source, same (stored) units, no background.

    Returns
    -------
    dict
        ``mse``; ``psnr`` (dB, peak = truth's range; inf when identical); ``ssim``
        (scikit-image, ``data_range`` = truth's range); ``dflux`` = (F_est - F_true) / F_true with
        F the image sum; ``centroid_error`` (pixels, between light centroids); ``ellipticity_error``
        |e_est - e_true| of adaptive second-moment distortions (nan when undefined). Centroids and
        moments use the estimate clipped at zero.
    """
    from skimage.metrics import structural_similarity

    from .morphology import centroid, second_moments

    truth = np.asarray(truth, np.float64)
    estimate = np.asarray(estimate, np.float64)
    span = float(truth.max() - truth.min()) or 1.0
    mse = float(np.mean((estimate - truth) ** 2))
    f_true = float(truth.sum())
    positive = np.clip(estimate, 0.0, None)
    xt, yt = centroid(truth)
    xe, ye = centroid(positive) if positive.sum() > 0 else (math.nan, math.nan)
    mt = second_moments(truth, weighted=True)
    me = second_moments(positive, weighted=True) if positive.sum() > 0 else {"e1": math.nan, "e2": math.nan}
    return {"mse": mse, "psnr": float(10 * np.log10(span**2 / mse)) if mse > 0 else math.inf,
            "ssim": float(structural_similarity(truth, estimate, data_range=span)),
            "dflux": (float(estimate.sum()) - f_true) / f_true if f_true else math.nan,
            "centroid_error": float(math.hypot(xe - xt, ye - yt)),
            "ellipticity_error": float(math.hypot(me["e1"] - mt["e1"], me["e2"] - mt["e2"]))}


def match_sources(true_centres, found_centres, max_distance) -> list[tuple[int, int]]:
    """One-to-one matching of found to true sources by centre distance (Hungarian).

    Parameters
    ----------
    true_centres : array_like, shape (t, 2)
    found_centres : array_like, shape (f, 2)
    max_distance : float or array_like, shape (t,)
        Pixels; pairs farther apart are never matched.

    Returns
    -------
    list of (true index, found index)
    """
    from scipy.optimize import linear_sum_assignment

    true_centres = np.asarray(true_centres, np.float64).reshape(-1, 2)
    found_centres = np.asarray(found_centres, np.float64).reshape(-1, 2)
    if not len(true_centres) or not len(found_centres):
        return []
    limit = np.broadcast_to(np.asarray(max_distance, np.float64), (len(true_centres),))
    distance = np.hypot(*(true_centres[:, None, :] - found_centres[None, :, :]).transpose(2, 0, 1))
    cost = np.where(distance <= limit[:, None], distance, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if distance[r, c] <= limit[r]]


# --------------------------------------------------------------------------- benchmark
METHODS = ("avader", "avader_peaks", "avader_true_centres", "photutils", "sep")
_METRICS = ("mse", "psnr", "ssim", "dflux", "abs_dflux", "centroid_error", "ellipticity_error")


def _truth(blendset, rows):
    """True components (m, 3, h, w), centres list and the blend-level columns of ``rows``."""
    cat = blendset.catalog
    if "COMPONENTS" not in blendset.extra or "n_sources" not in cat.colnames:
        raise AvaderError(f"{blendset.path or 'blend set'}: not a simulated blend set (needs the COMPONENTS HDU "
                          "and the n_sources, x_k, y_k columns; avader simulate --blends)")
    comps = np.asarray(blendset.extra["COMPONENTS"][rows], np.float32)
    n_src = np.asarray(cat["n_sources"])[rows]
    centres = [np.array([[cat[f"x_{k}"][r], cat[f"y_{k}"][r]] for k in range(n_src[i])]) for i, r in enumerate(rows)]
    r_half = np.column_stack([np.asarray(cat[f"r_half_{k}"], np.float64)[rows] for k in range(comps.shape[1])])
    return comps, centres, r_half, n_src


def _run_method(method, model, blends, noise, sky, true_centres, fit_options, detector=None):
    """Per blend a (sources (m, h, w), centres (m, 2)) pair; wall and CPU seconds per blend."""
    started, cpu_started = time.perf_counter(), time.process_time()
    if method in ("avader", "avader_peaks", "avader_true_centres"):
        truth = method == "avader_true_centres"
        options = {**fit_options, "refine": 0} if truth else fit_options
        result = deblend(model, blends, centres=true_centres if truth else None, noise_sigma=noise, background=sky,
                         detector=detector if method == "avader" else None, **options)
        outputs = [(result["sources"][b, :m], result["centres"][b, :m]) for b, m in enumerate(result["n_sources"])]
    elif method in ("photutils", "sep"):
        split = photutils_deblend if method == "photutils" else sep_deblend
        outputs = [(r["sources"], r["centres"]) for r in
                   (split(blends[b], noise[b], None if sky is None else sky[b]) for b in range(len(blends)))]
    else:
        raise AvaderError(f"methods: unknown method {method!r} (known: {', '.join(METHODS)})")
    n = len(blends)
    return outputs, (time.perf_counter() - started) / n, (time.process_time() - cpu_started) / n


def _medians(rows: dict, select: np.ndarray) -> dict:
    out = {"n": int(select.sum())}
    for key in _METRICS:
        values = np.asarray(rows[key], np.float64)[select]
        values = values[~np.isnan(values)]
        out[key] = float(np.median(values)) if len(values) else None
    return out


def _summaries(rows: dict) -> dict:
    """Medians for the brighter galaxy, the fainter ones and all sources, in the given selection."""
    role = np.asarray(rows["source"])
    sep = np.asarray(rows["separation_rhalf"])
    ratio = np.asarray(rows["flux_ratio"])

    def three(select):
        return {"bright": _medians(rows, select & (role == 0)), "faint": _medians(rows, select & (role > 0)),
                "all": _medians(rows, select)}

    everything = np.ones(len(role), bool)
    out = {"overall": three(everything), "close": three(sep < 2.0), "by_separation": [], "by_flux_ratio": [],
           "bins": []}
    sep_bins = list(zip(SEPARATION_BINS[:-1], SEPARATION_BINS[1:], strict=True))
    flux_bins = list(zip(FLUX_RATIO_BINS[:-1], FLUX_RATIO_BINS[1:], strict=True))
    for lo, hi in sep_bins:
        out["by_separation"].append({"separation_rhalf": [lo, hi], **three((sep >= lo) & (sep < hi))})
    for lo, hi in flux_bins:
        out["by_flux_ratio"].append({"flux_ratio": [lo, hi], **three((ratio >= lo) & (ratio < hi))})
    for (slo, shi) in sep_bins:
        for (flo, fhi) in flux_bins:
            select = (sep >= slo) & (sep < shi) & (ratio >= flo) & (ratio < fhi)
            out["bins"].append({"separation_rhalf": [slo, shi], "flux_ratio": [flo, fhi], **three(select)})
    return out


def _finite(value):
    """JSON-safe copy: non-finite floats become None, arrays lists."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def benchmark(model, blendset, methods=("avader", "photutils", "sep"), n: int | None = None, steps: int = 150,
              tol: float = 1e-4, prior_weight: float = 1.0, batch_size: int = 32, match_radius: float = 1.0,
              use_catalog_sky: bool = True, deblend_options=None, detector=None, progress: bool = False) -> dict:
    """Score deblenders on a simulated blend set with ground truth.

    Every true source is matched (Hungarian, within ``match_radius`` of its half-light radius, at
    least 2 pixels) to one found source; an unmatched true source counts with an empty image
    (dF/F = -1). Metrics per source are those of :func:`source_metrics`; blends are binned by
    the separation of the two brightest galaxies in units of the brighter one's half-light radius
    (:data:`SEPARATION_BINS`) and by their flux ratio (:data:`FLUX_RATIO_BINS`).

    Parameters
    ----------
    model : avader.model.VaDE
        Needed for the ``avader*`` methods.
    blendset : GalaxySet
        Blend set from ``avader.simulate.simulate(..., blends=True)``.
    methods : sequence of str
        From :data:`METHODS`: ``avader`` (centres from ``detector``, or from :func:`detect` without
        one), ``avader_peaks`` (centres from :func:`detect`), ``avader_true_centres``,
        ``photutils``, ``sep``.
    n : int, optional
        Use the first ``n`` blends (default all).
    steps, tol, prior_weight, batch_size
        Passed to :func:`deblend`.
    match_radius : float
        Matching radius, units of the true source's half-light radius.
    deblend_options : dict, optional
        Further :func:`deblend` arguments (``refine``, ``images``, ``photometry``, ``zoom_widths``, ...).
    detector : avader.detector.Detector, optional
        The learned detector of the ``avader`` method.
    use_catalog_sky : bool
        Give every method the catalogue's ``noise_sigma`` and sky level ``zero_level`` (and avader
        the PSF FWHM ``psf_fwhm_pix``), as a survey pipeline knows them from a field larger than the stamp (else each method estimates the
        noise from the stamp's border and avader fits the sky, the baselines take the border median).
    progress : bool

    Returns
    -------
    dict (JSON-safe)
        ``n_blends``, ``settings``, ``methods`` (per method: ``seconds_per_blend``, ``detection``
        (precision, recall, counts) and medians ``overall``, ``close`` (separation < 2 r_half),
        ``by_separation``, ``by_flux_ratio``, ``bins``, each for ``bright``, ``faint`` and ``all``
        sources), ``bar`` (the issue's acceptance checks, when avader and photutils both ran) and
        ``per_source`` (columns of one row per method and true source).
    """
    rows_idx = np.arange(len(blendset) if n is None else min(int(n), len(blendset)))
    blends = blendset.get_images(rows_idx)
    comps, true_centres, r_half, n_src = _truth(blendset, rows_idx)
    cat = blendset.catalog
    known = use_catalog_sky and {"noise_sigma", "zero_level"} <= set(cat.colnames)
    noise = np.asarray(cat["noise_sigma"], np.float64)[rows_idx] if known else estimate_noise(blends)[1]
    sky = np.asarray(cat["zero_level"], np.float64)[rows_idx] if known else None
    separation = np.asarray(cat["separation_rhalf"], np.float64)[rows_idx]
    ratio = np.asarray(cat["flux_ratio"], np.float64)[rows_idx]
    fit_options = {"steps": steps, "tol": tol, "prior_weight": prior_weight, "batch_size": batch_size,
                   "model_error": DEFAULT_MODEL_ERROR, "symmetry": DEFAULT_SYMMETRY,
                   "shares": DEFAULT_SHARES, "progress": progress, **(deblend_options or {})}
    if known and "psf_fwhm_pix" in cat.colnames:
        fit_options.setdefault("psf_fwhm", np.asarray(cat["psf_fwhm_pix"], np.float64)[rows_idx])
    columns = ("method", "blend", "source", "n_sources", "separation_rhalf", "flux_ratio", "matched", *_METRICS)
    per_source = {c: [] for c in columns}
    results = {}
    for method in methods:
        outputs, seconds, cpu_seconds = _run_method(method, model, blends, noise, sky, true_centres, fit_options,
                                                    detector)
        n_found = n_matched = 0
        for b, (sources, centres) in enumerate(outputs):
            limit = np.maximum(2.0, match_radius * r_half[b, :n_src[b]])
            pairs = dict(match_sources(true_centres[b], centres, limit))
            n_found += len(centres)
            n_matched += len(pairs)
            for k in range(n_src[b]):
                estimate = sources[pairs[k]] if k in pairs else np.zeros_like(comps[b, k])
                metrics = source_metrics(comps[b, k], estimate)
                metrics["abs_dflux"] = abs(metrics["dflux"])
                row = {"method": method, "blend": int(rows_idx[b]), "source": k, "n_sources": int(n_src[b]),
                       "separation_rhalf": separation[b], "flux_ratio": ratio[b], "matched": k in pairs, **metrics}
                for c in columns:
                    per_source[c].append(row[c])
        select = {c: np.asarray(v)[np.asarray(per_source["method"]) == method] for c, v in per_source.items()}
        n_true = int(n_src.sum())
        results[method] = {"seconds_per_blend": seconds, "cpu_seconds_per_blend": cpu_seconds,
                           "detection": {"precision": n_matched / n_found if n_found else None,
                                         "recall": n_matched / n_true, "n_true": n_true, "n_found": n_found,
                                         "n_matched": n_matched},
                           **_summaries(select)}
        log.info("%s: %.2f s per blend, median SSIM (bright) %s", method, seconds,
                 results[method]["overall"]["bright"]["ssim"])
    settings = {k: v for k, v in fit_options.items() if k != "psf_fwhm"}
    settings["detector"] = "learned" if detector is not None else "peaks"
    out = {"n_blends": len(rows_idx), "settings": {**settings, "match_radius": match_radius,
                                                   "use_catalog_sky": bool(known), "methods": list(methods)},
           "methods": results, "per_source": per_source}
    if "avader" in results and "photutils" in results:
        out["bar"] = _bar(results["avader"], results["photutils"])
    return _finite(out)


def _bar(ours: dict, theirs: dict) -> dict:
    """The issue's acceptance checks: beat photutils on the brighter galaxy's median SSIM and |dF/F|
    (overall and below 2 r_half), |dF/F| at most 5% in every flux-ratio bin, at most 2 s per blend."""
    checks = {}
    for scope in ("overall", "close"):
        a, b = ours[scope]["bright"], theirs[scope]["bright"]
        checks[f"ssim_beats_photutils_{scope}"] = bool(a["ssim"] is not None and b["ssim"] is not None
                                                       and a["ssim"] > b["ssim"])
        checks[f"abs_dflux_beats_photutils_{scope}"] = bool(a["abs_dflux"] is not None and b["abs_dflux"] is not None
                                                            and a["abs_dflux"] < b["abs_dflux"])
    worst = [entry["bright"]["abs_dflux"] for entry in ours["by_flux_ratio"] if entry["bright"]["n"]]
    checks["worst_bin_abs_dflux_bright"] = max(worst) if worst else None
    checks["abs_dflux_bright_within_5pc"] = bool(worst and max(worst) <= 0.05)
    checks["seconds_per_blend"] = ours["seconds_per_blend"]
    checks["speed_within_2s"] = bool(ours["seconds_per_blend"] <= 2.0)
    checks["all_met"] = all(v for k, v in checks.items() if isinstance(v, bool))
    return checks



def benchmark_run(run_dir, blends_file, out=None, n: int | None = None, steps: int | None = None,
                  overwrite: bool = False, progress: bool = True, deblend_options=None, detector="auto",
                  methods=None, prior_weight: float | None = None, augment: int | None = None) -> dict:
    """Run :func:`benchmark` with a run's model on a blend set and store the results.

    Parameters
    ----------
    run_dir : str or path
        Run name or folder holding ``model.keras``.
    blends_file : path
        Simulated blend set (``avader simulate --blends``).
    out : path, optional
        JSON file to write; default ``<run>/deblend_benchmark.json``.
    n : int, optional
        Only the first ``n`` blends.
    steps : int, optional
        Optimiser steps per blend; default ``analysis.deblend_steps`` of the run.
    overwrite : bool
        Replace an existing results file.
    progress : bool
    deblend_options : dict, optional
        Further :func:`deblend` arguments (e.g. ``{"model_error": 0.0}``).
    detector : {"auto", "learned", "peaks"} or Detector
        Centres of the ``avader`` method (:func:`avader.detector.resolve_detector`): by default the
        run's learned detector when it has one.
    methods : sequence of str, optional
        Default: avader, photutils and sep, and ``avader_peaks`` too when avader uses a learned detector.
    prior_weight : float, optional
        Weight of the mixture prior in avader's fit; default ``analysis.deblend_prior_weight`` of the run.
    augment : {1, 2, 4}, optional
        Mirrored fits averaged per blend by avader (:func:`deblend`); default ``analysis.deblend_augment``
        of the run (``deblend_options`` may also set it).

    Returns
    -------
    dict
        The results of :func:`benchmark`, with ``path`` (the JSON file written).
    """
    from .config import AnalysisConfig
    from .data import GalaxySet
    from .detector import resolve_detector
    from .runs import RunDir, write_json_atomic
    from .training import load_run_model

    run = RunDir(run_dir)
    target = Path(out) if out else run / "deblend_benchmark.json"
    if target.exists() and not overwrite:
        raise AvaderError(f"{target}: exists; pass overwrite=True (--overwrite) to replace it")
    analysis = run.load_config().analysis if run.exists() else AnalysisConfig()  # model.keras alone: defaults
    steps = steps or analysis.deblend_steps
    prior_weight = analysis.deblend_prior_weight if prior_weight is None else prior_weight
    augment = analysis.deblend_augment if augment is None else augment
    deblend_options = {"augment": augment, **(deblend_options or {})}
    detector = resolve_detector(run.path, detector)
    if methods is None:
        methods = ("avader", "avader_peaks", "photutils", "sep") if detector is not None else ("avader", "photutils", "sep")
    results = benchmark(load_run_model(run.path), GalaxySet.read(blends_file), methods=methods, n=n, steps=steps,
                        prior_weight=prior_weight, progress=progress, deblend_options=deblend_options, detector=detector)
    results["blends_file"] = str(Path(blends_file).resolve())
    results["run"] = str(run.path)
    write_json_atomic(target, results, overwrite=True)
    results["path"] = str(target)
    return results
