"""Clustering analysis: assignments, metrics against truth and Galaxy Zoo 2 votes, baselines.

A trained (or imported) VaDE assigns each galaxy the responsibilities gamma = q(c | x) of its
latent mean and the component argmax gamma. :func:`cluster_run` does this for a run directory and
writes, inside it,

``clusters.fits``  one row per galaxy: ``id``, ``latent_mean`` (d,), ``latent_log_var`` (d,),
                   ``responsibilities`` (K,), ``component``, ``reduced_component``, ``sse`` (per-image
                   sum of squared reconstruction errors) and each baseline's assignment;
``metrics.json``   under the key ``"clustering"`` (other analyses add their own keys).

Metrics, for VaDE and for every baseline alike:

* label-free: Calinski-Harabasz and silhouette (seeded subsample of ``analysis.silhouette_sample``),
  both in the VaDE latent space (``label_free``: comparable across methods) and in the method's own
  feature space (``label_free_own``);
* with labels (:func:`label_targets`): :func:`avader.metrics.clustering_scores` per target. Simulated
  data: the truth ``family``; Galaxy Zoo 2 (Hart et al. 2016 columns): the vote-cut classes of
  :func:`gz2_vote_classes`; Galaxy10: ``label``. Galaxies without a class are left out of that target;
* simulated data: ``factor_nmi``, the NMI of the components with the paper's four factors
  (:func:`truth_factors`): binned axial ratio, binned orientation (elongated galaxies only),
  profile (the family) and companion presence.

Baselines (K = ``n_components``, the run seed): ``kmeans_pixels`` (k-means on images block-averaged
to ``pixel_size`` x ``pixel_size``), ``pca_gmm`` (PCA of those pixels to ``latent_dim`` dimensions,
then the diagonal Gaussian mixture of :func:`avader.training.fit_mixture`), ``gmm_warmup`` (that
mixture on the latent means of the warm-up VAE, :func:`avader.training.warmup_checkpoint`: VaDE's
own starting point) and ``kmeans_latent`` (k-means on the VaDE latent means). Fits use a seeded
subsample of at most ``fit_sample`` galaxies; every galaxy is then assigned.

Encoding streams batches from the (memory-mapped) GalaxySet and releases the pages it has read, so
memory is flat in the number of galaxies apart from the per-galaxy outputs (a few hundred bytes).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import mmap
import time
from pathlib import Path

import numpy as np

from .data import GalaxySet, write_atomic
from .errors import AvaderError
from .metrics import bin_factor, clustering_scores, factor_nmi, label_free_scores
from .runs import RunDir, read_json, write_json_atomic

__all__ = [
    "GZ2_CUTS",
    "BASELINES",
    "assign",
    "reconstruct",
    "cluster_run",
    "read_clusters",
    "run_baselines",
    "score_partition",
    "label_targets",
    "truth_factors",
    "gz2_vote_classes",
    "mixture_overlap",
    "reduced_scheme",
    "companion_components",
    "downsample",
    "example_rows",
    "example_images",
    "best_worst_rows",
    "project_latents",
]

log = logging.getLogger(__name__)

BASELINES = ("kmeans_pixels", "pca_gmm", "gmm_warmup", "kmeans_latent")

# Galaxy Zoo 2 vote cuts of the paper (Hart et al. 2016 debiased fractions; total votes > 20 on each task).
# name -> (task prefix, {class: answer}, cut, (parent cut name, parent class) or None)
GZ2_CUTS = {
    "smooth_featured": ("t01_smooth_or_features", {"smooth": "a01_smooth", "featured": "a02_features_or_disk"},
                        0.430, None),
    "edge_on": ("t02_edgeon", {"edge-on": "a04_yes", "face-on": "a05_no"}, 0.715, ("smooth_featured", "featured")),
    "bar": ("t03_bar", {"bar": "a06_bar", "no-bar": "a07_no_bar"}, 0.8, ("edge_on", "face-on")),
    "odd": ("t06_odd", {"odd": "a14_yes"}, 0.4, None),
}
GZ2_MIN_VOTES = 20  # a task counts only with more than this many votes
COMPANION_THRESHOLD = 0.5  # a component is a companion component when more of its members than this have companions
ELONGATED_AXIS_RATIO = 0.7  # orientation is scored only for galaxies with axis_ratio below this (b/a)


# ---------------------------------------------------------------- inference
class _PageReleaser:
    """Drop the pages of a memory-mapped image cube once read (keeps resident memory flat in N)."""

    def __init__(self, images):
        self.mm = None
        base = images
        while base is not None and not isinstance(base, mmap.mmap):
            base = getattr(base, "base", None)
        if base is None or not isinstance(images, np.ndarray) or not images.flags.c_contiguous:
            return
        try:
            self.offset = images.ctypes.data - np.frombuffer(base, dtype=np.uint8).ctypes.data
        except (TypeError, ValueError, BufferError):
            return
        self.mm, self.row_bytes = base, images[0].nbytes

    def release(self, first: int, stop: int) -> None:
        if self.mm is None:
            return
        start = (self.offset + first * self.row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        end = (self.offset + stop * self.row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > start:
            try:
                self.mm.madvise(mmap.MADV_DONTNEED, start, end - start)
            except (OSError, ValueError, AttributeError):
                self.mm = None


def _inference_step(model, with_sse: bool):
    import tensorflow as tf
    from keras import ops

    size, channels = model.model_config.image_size, model.model_config.channels

    @tf.function(input_signature=[tf.TensorSpec((None, size, size, channels), tf.float32)], reduce_retracing=True)
    def step(x):
        mean, log_var = model.encode(x)
        outputs = [mean, log_var, model.responsibilities(mean)]
        if with_sse:
            reconstruction = ops.cast(model.decode(mean), "float32")
            outputs.append(ops.sum(ops.square(x - reconstruction), axis=(1, 2, 3)))
        return outputs

    return step


def assign(model, galaxyset: GalaxySet, batch_size: int = 256, progress: bool = True, rows=None,
           reconstruction_error: bool = False) -> dict:
    """Latent means, responsibilities and components of every galaxy, streamed in batches.

    Parameters
    ----------
    model : avader.model.VaDE
        A trained or imported model; its ``image_size`` must match the images.
    galaxyset : GalaxySet
        Read memory-mapped; images are read batch by batch (the next batch while the current one
        is encoded) and their pages released, so no image is kept.
    batch_size : int
        Images per inference batch.
    progress : bool
        tqdm progress bar.
    rows : array of int, optional
        Only these rows (used in increasing order); default all.
    reconstruction_error : bool
        Also decode the latent means and return the per-image sum of squared errors.

    Returns
    -------
    dict
        ``row`` (n,) int64, ``id`` (n,), ``latent_mean`` and ``latent_log_var`` (n, d) float32,
        ``responsibilities`` (n, K) float32 with rows summing to 1, ``component`` (n,) int32
        (argmax of the responsibilities) and, if asked, ``sse`` (n,) float32 (squared pixel units).
    """
    config = model.model_config
    if galaxyset.shape[1:] != (config.image_size, config.image_size):
        where = galaxyset.path or "GalaxySet"
        raise AvaderError(f"{where}: images are {galaxyset.shape[1]}x{galaxyset.shape[2]} but the model expects "
                          f"{config.image_size}x{config.image_size}")
    rows = np.arange(len(galaxyset)) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
    n, d, k = len(rows), config.latent_dim, config.n_components
    contiguous = n == 0 or rows[-1] - rows[0] + 1 == n
    out = {"row": rows, "id": galaxyset.ids[rows], "latent_mean": np.empty((n, d), np.float32),
           "latent_log_var": np.empty((n, d), np.float32), "responsibilities": np.empty((n, k), np.float32)}
    if reconstruction_error:
        out["sse"] = np.empty(n, np.float32)
    step = _inference_step(model, reconstruction_error)
    pages = _PageReleaser(galaxyset.images)

    def read(start):
        chunk = rows[start:start + batch_size]
        index = slice(int(chunk[0]), int(chunk[-1]) + 1) if contiguous else chunk
        images = galaxyset.get_images(index)
        pages.release(int(chunk[0]), int(chunk[-1]) + 1)
        return images.reshape(len(chunk), *images.shape[1:3], -1)

    starts = range(0, n, batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="encode", unit="gal", leave=False)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, 0) if n else None
        for start in starts:
            images = pending.result()
            if start + batch_size < n:
                pending = pool.submit(read, start + batch_size)
            results = [np.asarray(r) for r in step(images)]
            stop = start + len(images)
            out["latent_mean"][start:stop], out["latent_log_var"][start:stop] = results[0], results[1]
            out["responsibilities"][start:stop] = results[2]
            if reconstruction_error:
                out["sse"][start:stop] = results[3]
            if bar is not None:
                bar.update(len(images))
    if bar is not None:
        bar.close()
    out["component"] = np.argmax(out["responsibilities"], axis=1).astype(np.int32)
    elapsed = time.perf_counter() - started
    log.info("encoded %d galaxies in %.1f s (%.1f per second)", n, elapsed, n / max(elapsed, 1e-9))
    return out


def reconstruct(model, images, batch_size: int = 64) -> np.ndarray:
    """Reconstructions from the latent means of ``images`` (m, h, w) float32 in [0, 1]; returns (m, h, w)."""
    images = np.asarray(images, dtype=np.float32)
    parts = [np.asarray(model(images[s:s + batch_size, ..., None], training=False), dtype=np.float32)[..., 0]
             for s in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros_like(images)


# ---------------------------------------------------------------- mixture summaries
def mixture_overlap(responsibilities, components) -> np.ndarray:
    """Mean responsibility vector of each component's members (the paper's mixture overlap).

    Parameters
    ----------
    responsibilities : array_like, shape (n, K)
    components : array_like, shape (n,), int
        Assigned component of each galaxy (usually the argmax of ``responsibilities``).

    Returns
    -------
    ndarray, shape (K, K), float64
        Row ``k``: mean of ``responsibilities`` over the members of ``k``; nan for an empty component.
    """
    gamma = np.asarray(responsibilities, dtype=np.float64)
    components = np.asarray(components).ravel()
    if gamma.ndim != 2 or len(gamma) != len(components):
        raise AvaderError(f"responsibilities: shape {gamma.shape} does not match {len(components)} components")
    k = gamma.shape[1]
    sums = np.zeros((k, k))
    np.add.at(sums, components, gamma)
    counts = np.bincount(components, minlength=k)[:k].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def reduced_scheme(responsibilities, exclude) -> np.ndarray:
    """Re-assign members of excluded components to their most probable remaining component.

    Parameters
    ----------
    responsibilities : array_like, shape (n, K)
    exclude : sequence of int
        Components to empty (for example companion or artefact components).

    Returns
    -------
    ndarray, shape (n,), int32
        argmax of the responsibilities over the components not excluded; galaxies whose primary
        component is kept keep it.
    """
    gamma = np.asarray(responsibilities, dtype=np.float64)
    k = gamma.shape[1]
    exclude = sorted({int(c) for c in exclude})
    if any(c < 0 or c >= k for c in exclude):
        raise AvaderError(f"reduced_exclude: components must be in 0..{k - 1}, got {exclude}")
    if len(exclude) >= k:
        raise AvaderError(f"reduced_exclude: excluding all {k} components leaves nothing to assign to")
    masked = gamma.copy()
    masked[:, exclude] = -np.inf
    return np.argmax(masked, axis=1).astype(np.int32)


def companion_components(components, catalog, n_components: int | None = None,
                         threshold: float = COMPANION_THRESHOLD) -> list[int]:
    """Components whose members mostly have companions, from the simulation's truth.

    Parameters
    ----------
    components : array_like, shape (n,), int
    catalog : astropy.table.Table or mapping
        With an ``n_companions`` column (simulated data).
    n_components : int, optional
        K; default ``max(components) + 1``.
    threshold : float
        A component is selected when the fraction of its members with ``n_companions > 0`` exceeds
        this (default 0.5: most members have a neighbour).

    Returns
    -------
    list of int
        Sorted component indices (empty components are never selected).
    """
    if "n_companions" not in _colnames(catalog):
        raise AvaderError("catalogue: no n_companions column to identify companion components")
    components = np.asarray(components).ravel()
    k = int(n_components or components.max() + 1)
    has = (np.asarray(catalog["n_companions"]) > 0).astype(np.float64)
    members = np.bincount(components, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.bincount(components, weights=has, minlength=k) / members
    return [int(c) for c in np.flatnonzero((members > 0) & (fraction > threshold))]


# ---------------------------------------------------------------- labels and truth
def _colnames(catalog) -> list[str]:
    return list(catalog.colnames) if hasattr(catalog, "colnames") else list(catalog)


def _column(catalog, name, fill=np.nan):
    values = catalog[name]
    return np.ma.filled(values, fill) if np.ma.isMaskedArray(values) else np.asarray(values)


def gz2_vote_classes(catalog, fraction: str = "debiased", min_votes: int = GZ2_MIN_VOTES) -> dict[str, np.ndarray]:
    """The paper's Galaxy Zoo 2 vote-cut classes from Hart et al. (2016) columns.

    Cuts (:data:`GZ2_CUTS`), each applied only when the task's total votes (sum of its answers'
    ``_count`` columns) exceed ``min_votes``: smooth / featured when that answer's fraction > 0.430;
    edge-on / face-on > 0.715 among featured galaxies only; bar / no-bar > 0.8 among face-on galaxies
    only; odd when the "odd: yes" fraction > 0.4, else not-odd. Debiased fractions need not sum to one,
    so when both answers of a task pass the cut the galaxy is left unclassified (ambiguous).

    Parameters
    ----------
    catalog : astropy.table.Table or mapping of columns
        Hart16 columns such as ``t01_smooth_or_features_a01_smooth_debiased`` and ``..._count``
        (names matched case-insensitively).
    fraction : str
        Fraction column suffix: ``debiased`` (paper), ``fraction`` or ``weighted_fraction``.
    min_votes : int
        A task's votes must exceed this.

    Returns
    -------
    dict of str to ndarray, shape (n,), str
        ``smooth_featured`` (smooth, featured), ``edge_on`` (edge-on, face-on), ``bar`` (bar, no-bar),
        ``odd`` (odd, not-odd); ``""`` where the galaxy is not classified.
    """
    lookup = {name.lower(): name for name in _colnames(catalog)}

    def get(name, fill=np.nan):
        if name.lower() not in lookup:
            raise AvaderError(f"catalogue: no Galaxy Zoo 2 column {name!r} (Hart et al. 2016 names expected)")
        return np.asarray(_column(catalog, lookup[name.lower()], fill), dtype=np.float64)

    out = {}
    for name, (task, answers, cut, parent) in GZ2_CUTS.items():
        counts = [c for c in lookup if c.startswith(f"{task}_") and c.endswith("_count")]
        if not counts:
            raise AvaderError(f"catalogue: no Galaxy Zoo 2 vote counts for task {task!r}")
        votes = sum(get(c, 0.0) for c in counts)
        enough = votes > min_votes
        labels = np.full(len(votes), "", dtype=object)
        if name == "odd":
            value = get(f"{task}_{answers['odd']}_{fraction}")
            labels[enough & (value > cut)] = "odd"
            labels[enough & (value <= cut)] = "not-odd"
        else:
            passed = {cls: get(f"{task}_{answer}_{fraction}") > cut for cls, answer in answers.items()}
            a, b = passed.values()
            for cls, ok in passed.items():
                labels[enough & ok & ~(a & b)] = cls
        if parent is not None:
            labels[out[parent[0]] != parent[1]] = ""
        out[name] = labels.astype(str)
    return out


def truth_factors(catalog, analysis=None, elongated_axis_ratio: float = ELONGATED_AXIS_RATIO) -> dict[str, np.ndarray]:
    """The paper's four factors as integer labels, from simulated truth columns (-1 = not scored).

    ``axis_ratio``: ``bin_factor(axis_ratio, analysis.axis_ratio_bins)``; ``orientation``:
    ``bin_factor(position_angle mod 180, analysis.orientation_bins)`` for galaxies with
    ``axis_ratio < elongated_axis_ratio`` only (a round galaxy has no orientation), -1 elsewhere;
    ``profile``: code of ``family``; ``companions``: 1 if ``n_companions > 0`` else 0. Factors whose
    columns are missing are left out.

    Returns
    -------
    dict of str to ndarray, shape (n,), int64
    """
    from .config import AnalysisConfig

    analysis = analysis or AnalysisConfig()
    names = set(_colnames(catalog))
    out = {}
    if "axis_ratio" in names:
        q = np.asarray(_column(catalog, "axis_ratio"), dtype=np.float64)
        out["axis_ratio"] = bin_factor(q, analysis.axis_ratio_bins)
        if "position_angle" in names:
            pa = np.mod(np.asarray(_column(catalog, "position_angle"), dtype=np.float64), 180.0)
            out["orientation"] = np.where(q < elongated_axis_ratio, bin_factor(pa, analysis.orientation_bins), -1)
    if "family" in names:
        out["profile"] = np.unique(np.asarray(catalog["family"]).astype(str), return_inverse=True)[1].astype(np.int64)
    if "n_companions" in names:
        out["companions"] = (np.asarray(_column(catalog, "n_companions", 0)) > 0).astype(np.int64)
    return out


def label_targets(catalog, labels=None, analysis=None) -> tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """What to score the components against.

    Parameters
    ----------
    catalog : astropy.table.Table
    labels : None, str or array_like of shape (n,)
        None: detect (``family`` -> simulation; Hart16 columns -> GZ2 vote classes; ``label`` ->
        Galaxy10); a column name; or one label per galaxy.
    analysis : AnalysisConfig, optional
        Bins of the truth factors.

    Returns
    -------
    kind : str
        ``simulation``, ``gz2``, ``galaxy10``, ``column:<name>``, ``array`` or ``none``.
    targets : dict of str to ndarray, shape (n,), str
        Class labels; ``""`` marks a galaxy without a class for that target.
    factors : dict of str to ndarray, shape (n,), int64
        :func:`truth_factors` for simulated data, else empty.
    """
    names = _colnames(catalog)
    n = len(catalog)
    if labels is not None and not isinstance(labels, str):
        values = np.asarray(labels)
        if values.shape != (n,):
            raise AvaderError(f"labels: need one label per galaxy ({n}), got shape {values.shape}")
        return "array", {"label": values.astype(str)}, {}
    if isinstance(labels, str):
        if labels not in names:
            raise AvaderError(f"labels: no catalogue column {labels!r}")
        return f"column:{labels}", {labels: np.asarray(_column(catalog, labels, "")).astype(str)}, {}
    if "family" in names:
        return "simulation", {"family": np.asarray(catalog["family"]).astype(str)}, truth_factors(catalog, analysis)
    if any(name.lower() == "t01_smooth_or_features_a01_smooth_debiased" for name in names):
        return "gz2", gz2_vote_classes(catalog), {}
    if "label" in names:
        return "galaxy10", {"label": np.asarray(_column(catalog, "label", -1)).astype(str)}, {}
    return "none", {}, {}


# ---------------------------------------------------------------- baselines
def downsample(images, size: int = 16) -> np.ndarray:
    """Images (m, h, w) reduced to (m, size * size) float32 features: block means when ``size``
    divides the sides, else an anti-aliased resize; images no larger than ``size`` are only flattened."""
    images = np.asarray(images, dtype=np.float32)
    m, h, w = images.shape
    if h <= size and w <= size:
        return images.reshape(m, -1)
    if h % size == 0 and w % size == 0:
        return images.reshape(m, size, h // size, size, w // size).mean(axis=(2, 4)).reshape(m, -1)
    from skimage.transform import resize

    return resize(images, (m, size, size), anti_aliasing=True, preserve_range=True).astype(np.float32).reshape(m, -1)


def _pixel_features(galaxyset, size, chunk=2048):
    pages = _PageReleaser(galaxyset.images)
    parts = []
    for start in range(0, len(galaxyset), chunk):
        stop = min(start + chunk, len(galaxyset))
        parts.append(downsample(galaxyset.get_images(slice(start, stop)), size))
        pages.release(start, stop)
    return np.concatenate(parts)


def _predict_diag_gmm(x, fit, chunk=8192) -> np.ndarray:
    log_w = np.log(np.asarray(fit["weights"], dtype=np.float64))
    means = np.asarray(fit["means"], dtype=np.float64)
    var = np.asarray(fit["variances"], dtype=np.float64)
    norm = log_w - 0.5 * np.log(2 * np.pi * var).sum(axis=1)
    out = np.empty(len(x), np.int32)
    for start in range(0, len(x), chunk):
        block = np.asarray(x[start:start + chunk], dtype=np.float64)
        quad = ((block[:, None, :] - means[None]) ** 2 / var[None]).sum(axis=-1)
        out[start:start + chunk] = np.argmax(norm[None] - 0.5 * quad, axis=1)
    return out


def run_baselines(galaxyset, latents, n_components: int, seed: int, warmup_latents=None, restarts: int = 1,
                  pixel_size: int = 16, pca_dim: int | None = None, fit_sample: int = 20000) -> dict:
    """Fit and apply the clustering baselines (see the module notes).

    Parameters
    ----------
    galaxyset : GalaxySet
        Images for the pixel baselines (read in chunks; features of ``pixel_size ** 2`` float32 per galaxy).
    latents : ndarray, shape (n, d)
        VaDE latent means (for ``kmeans_latent``).
    n_components : int
        K, as the VaDE.
    seed : int
        Seed of the subsample, k-means, PCA and the mixtures.
    warmup_latents : ndarray, shape (n, d), optional
        Warm-up VAE latent means; without them ``gmm_warmup`` is not run.
    restarts : int
        Mixture restarts of :func:`avader.training.fit_mixture` (best log-likelihood).
    pixel_size : int
        Side of the downsampled images (pixels).
    pca_dim : int, optional
        PCA dimensions; default ``d`` (the VaDE latent dimension).
    fit_sample : int
        Fits use at most this many galaxies (seeded subsample); predictions cover all.

    Returns
    -------
    dict
        name -> ``{"components": (n,) int32, "features": (n, f) float32, "seconds": float}``.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    from .training import fit_mixture

    latents = np.asarray(latents, dtype=np.float32)
    n = len(latents)
    rng = np.random.default_rng([seed, 7])
    fit_rows = np.sort(rng.choice(n, fit_sample, replace=False)) if n > fit_sample else np.arange(n)
    out = {}

    def kmeans(features):
        model = KMeans(n_clusters=n_components, n_init=3, random_state=seed).fit(features[fit_rows])
        return model.predict(features).astype(np.int32)

    def timed(name, features, fn):
        started = time.perf_counter()
        out[name] = {"components": fn(features), "features": features, "seconds": time.perf_counter() - started}
        log.info("baseline %s: %.1f s", name, out[name]["seconds"])

    started = time.perf_counter()
    pixels = _pixel_features(galaxyset, pixel_size)
    log.info("pixel features %s in %.1f s", pixels.shape, time.perf_counter() - started)
    timed("kmeans_pixels", pixels, kmeans)
    pca = PCA(n_components=min(pca_dim or latents.shape[1], *pixels.shape), random_state=seed).fit(pixels[fit_rows])
    projected = pca.transform(pixels).astype(np.float32)
    timed("pca_gmm", projected,
          lambda f: _predict_diag_gmm(f, fit_mixture(f[fit_rows], n_components, seed=seed, restarts=restarts)))
    if warmup_latents is not None:
        warm = np.asarray(warmup_latents, dtype=np.float32)
        timed("gmm_warmup", warm,
              lambda f: _predict_diag_gmm(f, fit_mixture(f[fit_rows], n_components, seed=seed, restarts=restarts)))
    timed("kmeans_latent", latents, kmeans)
    return out


def _warmup_model(run: RunDir, config):
    """The warm-up VAE of a run (:func:`avader.training.warmup_checkpoint`), or (None, reason)."""
    from .model import build_vade
    from .training import warmup_checkpoint

    if config.training.warmup_epochs < 1:
        return None, "the run has no warm-up phase (training.warmup_epochs = 0)"
    path = warmup_checkpoint(run.path)
    if path is None:
        return None, f"no warm-up checkpoint in {run.checkpoints}"
    model = build_vade(config.model, seed=config.seed)
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError) as err:
        return None, f"cannot load {path} ({str(err).splitlines()[0]})"
    return model, ""


# ---------------------------------------------------------------- scores
def score_partition(components, latents, features=None, targets=None, factors=None, silhouette_sample=5000,
                    seed: int = 0, n_components: int | None = None) -> dict:
    """All scores of one partition (VaDE, a baseline or the reduced scheme).

    Parameters
    ----------
    components : array_like, shape (n,), int
    latents : ndarray, shape (n, d)
        VaDE latent means: the common space of ``label_free``.
    features : ndarray, shape (n, f), optional
        The method's own space for ``label_free_own`` (default ``latents``).
    targets : dict of str to ndarray (n,) str, optional
        Class labels, ``""`` = unlabelled (left out).
    factors : dict of str to ndarray (n,) int, optional
        Truth factors, -1 = not scored.
    silhouette_sample, seed : int
        Silhouette subsample size and seed.
    n_components : int, optional
        K, the length of ``sizes`` (default ``max(components) + 1``).

    Returns
    -------
    dict
        ``sizes`` (members per component), ``label_free``, ``label_free_own``, ``labels`` (target ->
        :func:`avader.metrics.clustering_scores`) and ``factor_nmi`` (factor -> NMI).
    """
    components = np.asarray(components).ravel()
    out = {"sizes": np.bincount(components, minlength=n_components or 0).tolist(),
           "label_free": label_free_scores(latents, components, silhouette_sample, seed)}
    out["label_free_own"] = (out["label_free"] if features is None or features is latents
                             else label_free_scores(features, components, silhouette_sample, seed))
    out["labels"] = {}
    for name, labels in (targets or {}).items():
        keep = labels != ""
        if keep.sum() >= 2:
            out["labels"][name] = clustering_scores(labels[keep], components[keep])
    out["factor_nmi"] = factor_nmi(components, factors) if factors else {}
    return out


def _summary(methods: dict) -> dict:
    """Per target and factor, each method's NMI and whether VaDE beats every baseline."""
    summary = {"nmi": {}, "factor_nmi": {}}
    for key, getter in (("nmi", lambda m, t: m["labels"].get(t, {}).get("nmi")),
                        ("factor_nmi", lambda m, t: m["factor_nmi"].get(t))):
        names = sorted({t for m in methods.values() for t in (m["labels"] if key == "nmi" else m["factor_nmi"])})
        for target in names:
            values = {name: getter(m, target) for name, m in methods.items()}
            others = [v for name, v in values.items() if name in BASELINES and v is not None and np.isfinite(v)]
            vade = values.get("vade")
            summary[key][target] = {**values, "vade_above_all_baselines": bool(
                vade is not None and np.isfinite(vade) and all(vade > v for v in others))}
    return summary


def _clean(value):
    """JSON-ready copy: numpy to Python, nan/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------- the run-level entry point
def cluster_run(run_dir, data=None, overwrite: bool = False, progress: bool = True, baselines: bool = True,
                labels=None, exclude=None, pixel_size: int = 16, fit_sample: int = 20000) -> dict:
    """Assign, score and compare: write ``clusters.fits`` and ``metrics.json["clustering"]`` in the run.

    Parameters
    ----------
    run_dir : str or path
        Run name or folder holding ``config.yaml`` and ``model.keras`` (trained or imported).
    data : path, optional
        GalaxySet to analyse; default the run's training data (``config.dataset_path()``).
    overwrite : bool
        Replace an existing ``clusters.fits`` and ``clustering`` entry (other metrics keys are kept).
    progress : bool
        Progress bars while encoding.
    baselines : bool
        Also fit and score the baselines of :data:`BASELINES`.
    labels : None, str or array_like
        See :func:`label_targets`.
    exclude : sequence of int, optional
        Components of the reduced scheme; default ``analysis.reduced_exclude``, and when that is
        empty the companion components of :func:`companion_components` (simulated data).
    pixel_size, fit_sample : int
        Passed to :func:`run_baselines`.

    Returns
    -------
    dict
        The ``clustering`` metrics (as written, nan as None).
    """
    from .training import load_run_model

    started = time.time()
    run = RunDir(run_dir)
    config = run.load_config()
    clusters_path, metrics_path = run / "clusters.fits", run / "metrics.json"
    existing = read_json(metrics_path) if metrics_path.is_file() else {}
    if not overwrite and (clusters_path.exists() or "clustering" in existing):
        raise AvaderError(f"{clusters_path}: clustering results exist; pass overwrite=True (--overwrite) to replace them")
    model = load_run_model(run.path)
    data_path = Path(data) if data is not None else config.dataset_path()
    galaxies = GalaxySet.read(data_path)
    analysis, seed = config.analysis, config.seed
    result = assign(model, galaxies, batch_size=analysis.batch_size, progress=progress, reconstruction_error=True)
    gamma, components, latents = result["responsibilities"], result["component"], result["latent_mean"]
    k = gamma.shape[1]
    kind, targets, factors = label_targets(galaxies.catalog, labels, analysis)

    if exclude is None and analysis.reduced_exclude:
        exclude, source = list(analysis.reduced_exclude), "analysis.reduced_exclude"
    elif exclude is None and "n_companions" in galaxies.catalog.colnames:
        exclude, source = companion_components(components, galaxies.catalog, k), "truth (companion components)"
    else:
        exclude, source = list(exclude or []), "argument" if exclude else "none"
    reduced = reduced_scheme(gamma, exclude)

    partitions = {"vade": (components, latents)}
    skipped, settings = {}, {}
    if baselines:
        warm_model, reason = _warmup_model(run, config)
        warm_latents = None
        if warm_model is None:
            log.warning("baseline gmm_warmup skipped: %s", reason)
            skipped["gmm_warmup"] = reason
        else:
            warm_latents = assign(warm_model, galaxies, analysis.batch_size, progress)["latent_mean"]
        fitted = run_baselines(galaxies, latents, k, seed, warm_latents, restarts=config.training.init_restarts,
                               pixel_size=pixel_size, fit_sample=fit_sample)
        partitions.update({name: (b["components"], b["features"]) for name, b in fitted.items()})
        settings = {"pixel_size": pixel_size, "pca_dim": int(fitted["pca_gmm"]["features"].shape[1]),
                    "fit_sample": int(min(fit_sample, len(latents))), "n_components": k, "seed": seed,
                    "mixture_restarts": config.training.init_restarts,
                    "seconds": {name: round(b["seconds"], 2) for name, b in fitted.items()}}
    methods = {name: score_partition(comp, latents, feats, targets, factors, analysis.silhouette_sample, seed, k)
               for name, (comp, feats) in partitions.items()}
    metrics = {
        "run": str(run.path), "data": str(Path(data_path).resolve()), "n": len(latents), "n_components": k,
        "latent_dim": int(latents.shape[1]), "seed": seed, "labels": kind,
        "targets": {t: dict(zip(*np.unique(v[v != ""], return_counts=True), strict=True)) for t, v in targets.items()},
        "factors": {f: int((v >= 0).sum()) for f, v in factors.items()},
        "methods": methods,
        "summary": _summary(methods),
        "mixture_weights": model.prior.get_mixture()["weights"],
        "mixture_overlap": mixture_overlap(gamma, components),
        "reduced": {"exclude": exclude, "source": source, "n_reassigned": int((reduced != components).sum()),
                    "scores": score_partition(reduced, latents, None, targets, factors, analysis.silhouette_sample,
                                              seed, k)},
        "baselines": {"settings": settings, "skipped": skipped},
        "reconstruction_sse": {"mean": float(result["sse"].mean()), "median": float(np.median(result["sse"]))},
        "seconds": round(time.time() - started, 2),
    }
    metrics = _clean(metrics)
    _write_clusters(clusters_path, result, reduced, {n: p[0] for n, p in partitions.items() if n != "vade"},
                    {"RUN": run.path.name, "NCOMP": k, "LATDIM": int(latents.shape[1]), "EXCLUDE": ",".join(map(str, exclude)),
                     "LABELS": kind})
    existing = read_json(metrics_path) if metrics_path.is_file() else {}
    existing["clustering"] = metrics
    write_json_atomic(metrics_path, existing)
    log.info("wrote %s and %s", clusters_path, metrics_path)
    return metrics


def _write_clusters(path: Path, result: dict, reduced, baseline_components: dict, meta: dict) -> Path:
    from astropy.io import fits
    from astropy.table import Table

    table = Table()
    table["id"] = result["id"]
    for name in ("latent_mean", "latent_log_var", "responsibilities", "component"):
        table[name] = result[name]
    table["reduced_component"] = reduced
    table["sse"] = result["sse"]
    for name, comps in baseline_components.items():
        table[name] = np.asarray(comps, dtype=np.int32)
    hdu = fits.table_to_hdu(table)
    hdu.name = "CLUSTERS"
    for key, value in meta.items():
        hdu.header[key] = value
    write_atomic(path, lambda tmp: fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, checksum=True), overwrite=True)
    return path


def read_clusters(path):
    """The ``clusters.fits`` table of a run directory (or of a file path) as an astropy Table."""
    from astropy.table import Table

    path = Path(path)
    if path.is_dir():
        path = path / "clusters.fits"
    if not path.is_file():
        raise AvaderError(f"{path}: no such file (run avader cluster first)")
    return Table.read(path, hdu="CLUSTERS")


# ---------------------------------------------------------------- selections for figures
def example_rows(responsibilities, components, n: int = 8, how: str = "top", seed: int = 0) -> np.ndarray:
    """Rows of example members of each component.

    Parameters
    ----------
    responsibilities : array_like, shape (N, K)
    components : array_like, shape (N,), int
    n : int
        Examples per component.
    how : {"top", "random"}
        The members with the highest responsibility for their component, or a seeded random draw.
    seed : int

    Returns
    -------
    ndarray, shape (K, n), int64
        Row indices; -1 where a component has fewer than ``n`` members.
    """
    if how not in ("top", "random"):
        raise AvaderError(f"how: must be 'top' or 'random', got {how!r}")
    gamma = np.asarray(responsibilities)
    components = np.asarray(components).ravel()
    rng = np.random.default_rng(seed)
    out = np.full((gamma.shape[1], n), -1, dtype=np.int64)
    for c in range(gamma.shape[1]):
        members = np.flatnonzero(components == c)
        if how == "top":
            chosen = members[np.argsort(-gamma[members, c], kind="stable")[:n]]
        else:
            chosen = rng.choice(members, size=min(n, len(members)), replace=False)
        out[c, :len(chosen)] = chosen
    return out


def example_images(galaxyset: GalaxySet, rows, model=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (and reconstructions) at ``rows`` of any shape, -1 entries giving nan images.

    Returns
    -------
    images : ndarray, shape (*rows.shape, h, w), float32
    reconstructions : ndarray of the same shape, or None without ``model``
    """
    rows = np.asarray(rows, dtype=np.int64)
    h, w = galaxyset.shape[1:]
    valid = rows >= 0
    wanted = np.unique(rows[valid])
    images = np.full((*rows.shape, h, w), np.nan, dtype=np.float32)
    recon = np.full_like(images, np.nan) if model is not None else None
    if wanted.size:
        loaded = galaxyset.get_images(wanted)
        where = np.searchsorted(wanted, rows[valid])
        images[valid] = loaded[where]
        if model is not None:
            recon[valid] = reconstruct(model, loaded)[where]
    return images, recon


def best_worst_rows(sse, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the ``n`` smallest and ``n`` largest per-image reconstruction errors (best first, worst first)."""
    order = np.argsort(np.asarray(sse), kind="stable")
    return order[:n], order[::-1][:n]


def project_latents(latents, method: str = "pca", sample: int | None = 5000, seed: int = 0):
    """2-D projection of latent means (a seeded subsample of ``sample`` points when larger).

    Parameters
    ----------
    latents : array_like, shape (n, d)
    method : {"pca", "tsne"}
        PCA (fast, default) or t-SNE (scikit-learn, seeded, PCA initialisation).
    sample : int or None
    seed : int

    Returns
    -------
    rows : ndarray, shape (m,), int64
        The projected rows, sorted.
    xy : ndarray, shape (m, 2), float32
    """
    latents = np.asarray(latents, dtype=np.float64)
    n = len(latents)
    rows = (np.sort(np.random.default_rng(seed).choice(n, sample, replace=False)) if sample and n > sample
            else np.arange(n))
    x = latents[rows]
    if method == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(x)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, max(2.0, (len(x) - 1) / 3))).fit_transform(x)
    else:
        raise AvaderError(f"method: must be 'pca' or 'tsne', got {method!r}")
    return rows.astype(np.int64), xy.astype(np.float32)
