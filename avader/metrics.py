"""Clustering and distribution metrics.

Definitions (``labels``: true classes, ``assignments``: mixture components, any hashable values):

* **contingency** ``N[c, k]``: number of objects of class ``c`` assigned to component ``k``,
  rows and columns in sorted order of the distinct values.
* **many-to-one mapping**: each component is mapped to the class it overlaps most
  (``argmax_c N[c, k]``, ties to the first class in sorted order); several components may share a
  class. Its accuracy ``sum_k max_c N[c, k] / N`` is the **purity**.
* **one-to-one mapping** (Hungarian): ``scipy.optimize.linear_sum_assignment`` maximising the
  matched counts of the (possibly rectangular) contingency matrix; each class receives at most one
  component and each component at most one class, so with more components than classes the
  unmatched components count as wrong.
* :func:`hungarian_accuracy` uses one-to-one when there are no more components than classes (the
  usual clustering accuracy of DEC/VaDE papers) and many-to-one when components outnumber classes
  (AstroVaDEr's 12 components against a handful of morphological classes); ``one_to_one`` forces
  either.
* **balanced accuracy**: mean over classes of the fraction of each class predicted correctly by
  the mapped predictions.
* **NMI** and **ARI**: scikit-learn's ``normalized_mutual_info_score`` (arithmetic normalisation)
  and ``adjusted_rand_score``; they need no mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from avader.errors import AvaderError

__all__ = [
    "contingency",
    "component_mapping",
    "hungarian_accuracy",
    "purity",
    "balanced_accuracy",
    "nmi",
    "ari",
    "clustering_scores",
    "label_free_scores",
    "bin_factor",
    "factor_nmi",
    "compare_distributions",
]

logger = logging.getLogger(__name__)


def _pair(labels, assignments) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).ravel()
    assignments = np.asarray(assignments).ravel()
    if labels.shape != assignments.shape:
        raise AvaderError(f"assignments: length {assignments.size} does not match labels ({labels.size})")
    if labels.size == 0:
        raise AvaderError("labels: empty")
    return labels, assignments


def contingency(labels, assignments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of each (class, component) pair.

    Parameters
    ----------
    labels, assignments : array_like, shape (n,)
        True classes and component indices (any sortable values).

    Returns
    -------
    matrix : ndarray, shape (n_classes, n_components), int64
        ``matrix[i, j]`` objects of class ``classes[i]`` in component ``components[j]``.
    classes : ndarray, shape (n_classes,)
        Distinct labels, sorted.
    components : ndarray, shape (n_components,)
        Distinct assignments, sorted.
    """
    labels, assignments = _pair(labels, assignments)
    classes, row = np.unique(labels, return_inverse=True)
    components, col = np.unique(assignments, return_inverse=True)
    matrix = np.zeros((classes.size, components.size), dtype=np.int64)
    np.add.at(matrix, (row.ravel(), col.ravel()), 1)
    return matrix, classes, components


def _resolve_one_to_one(one_to_one: bool | None, matrix: np.ndarray) -> bool:
    if one_to_one is None:
        return matrix.shape[1] <= matrix.shape[0]
    return bool(one_to_one)


def _mapping_columns(matrix: np.ndarray, one_to_one: bool) -> np.ndarray:
    """Row index mapped to each column of ``matrix``; -1 for an unmatched column."""
    if not one_to_one:
        return np.argmax(matrix, axis=0)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(matrix, maximize=True)
    mapped = np.full(matrix.shape[1], -1, dtype=np.int64)
    mapped[cols] = rows
    return mapped


def component_mapping(labels, assignments, one_to_one: bool | None = None) -> dict:
    """Class given to each component (see the module notes for the two mappings).

    Parameters
    ----------
    labels, assignments : array_like, shape (n,)
    one_to_one : bool or None
        ``True`` Hungarian, ``False`` many-to-one, ``None`` one-to-one unless components
        outnumber classes.

    Returns
    -------
    dict
        Component value -> class value; a component left unmatched by the one-to-one mapping
        maps to ``None``.
    """
    matrix, classes, components = contingency(labels, assignments)
    mapped = _mapping_columns(matrix, _resolve_one_to_one(one_to_one, matrix))
    return {
        _python(component): None if row < 0 else _python(classes[row])
        for component, row in zip(components, mapped, strict=True)
    }


def _python(value):
    """A numpy scalar as the matching Python scalar (ints stay ints, strings stay strings)."""
    return value.item() if isinstance(value, np.generic) else value


def _matched_counts(matrix: np.ndarray, one_to_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """Correct predictions per class and class sizes under the chosen mapping."""
    mapped = _mapping_columns(matrix, one_to_one)
    correct = np.zeros(matrix.shape[0], dtype=np.int64)
    for col, row in enumerate(mapped):
        if row >= 0:
            correct[row] += matrix[row, col]
    return correct, matrix.sum(axis=1)


def hungarian_accuracy(labels, assignments, one_to_one: bool | None = None) -> float:
    """Fraction of objects whose component maps to their class.

    Parameters
    ----------
    labels, assignments : array_like, shape (n,)
    one_to_one : bool or None
        ``None`` (default): one-to-one Hungarian matching when there are no more components than
        classes, many-to-one (each component to its majority class, i.e. the purity) when components
        outnumber classes. ``True`` forces the Hungarian matching on the rectangular contingency
        matrix (unmatched components count as wrong); ``False`` forces many-to-one.

    Returns
    -------
    float in [0, 1]
    """
    matrix, _, _ = contingency(labels, assignments)
    correct, _ = _matched_counts(matrix, _resolve_one_to_one(one_to_one, matrix))
    return float(correct.sum() / matrix.sum())


def purity(labels, assignments) -> float:
    """``sum_k max_c N[c, k] / N``: the accuracy of the many-to-one mapping."""
    matrix, _, _ = contingency(labels, assignments)
    return float(matrix.max(axis=0).sum() / matrix.sum())


def balanced_accuracy(labels, assignments, one_to_one: bool = False) -> float:
    """Mean over classes of the recall of the mapped predictions.

    Parameters
    ----------
    labels, assignments : array_like, shape (n,)
    one_to_one : bool
        ``False`` (default): predictions from the many-to-one mapping; ``True``: from the Hungarian
        matching.

    Returns
    -------
    float in [0, 1]
        A class that no component maps to has recall 0.
    """
    matrix, _, _ = contingency(labels, assignments)
    correct, sizes = _matched_counts(matrix, bool(one_to_one))
    return float(np.mean(correct / sizes))


def nmi(labels, assignments) -> float:
    """Normalised mutual information (scikit-learn, arithmetic mean normalisation), in [0, 1]."""
    from sklearn.metrics import normalized_mutual_info_score

    labels, assignments = _pair(labels, assignments)
    return float(normalized_mutual_info_score(labels, assignments))


def ari(labels, assignments) -> float:
    """Adjusted Rand index (scikit-learn): 1 for identical partitions, about 0 for random ones."""
    from sklearn.metrics import adjusted_rand_score

    labels, assignments = _pair(labels, assignments)
    return float(adjusted_rand_score(labels, assignments))


def clustering_scores(labels, assignments) -> dict[str, float]:
    """All label-based scores at once.

    Returns
    -------
    dict of str to float
        ``accuracy`` (:func:`hungarian_accuracy` with its default rule), ``accuracy_one_to_one``,
        ``accuracy_many_to_one``, ``purity``, ``balanced_accuracy`` (many-to-one),
        ``balanced_accuracy_one_to_one``, ``nmi``, ``ari``, ``n``, ``n_classes``, ``n_components``.
    """
    matrix, _, _ = contingency(labels, assignments)
    one, one_sizes = _matched_counts(matrix, True)
    many, many_sizes = _matched_counts(matrix, False)
    total = matrix.sum()
    scores = {
        "accuracy": float((one if _resolve_one_to_one(None, matrix) else many).sum() / total),
        "accuracy_one_to_one": float(one.sum() / total),
        "accuracy_many_to_one": float(many.sum() / total),
        "purity": float(matrix.max(axis=0).sum() / total),
        "balanced_accuracy": float(np.mean(many / many_sizes)),
        "balanced_accuracy_one_to_one": float(np.mean(one / one_sizes)),
        "nmi": nmi(labels, assignments),
        "ari": ari(labels, assignments),
        "n": float(total),
        "n_classes": float(matrix.shape[0]),
        "n_components": float(matrix.shape[1]),
    }
    return scores


def label_free_scores(latents, assignments, silhouette_sample: int | None = 5000, seed: int = 0) -> dict:
    """Internal cluster-quality scores that need no labels.

    Parameters
    ----------
    latents : array_like, shape (n, d), float
        Points (for example latent means).
    assignments : array_like, shape (n,)
        Cluster of each point.
    silhouette_sample : int or None
        The silhouette (cost O(n**2)) is computed on this many points drawn without replacement with
        ``numpy.random.default_rng(seed)`` when ``n`` is larger; ``None`` uses all points.
    seed : int
        Seed of that subsample.

    Returns
    -------
    dict
        ``calinski_harabasz`` (float, higher is better), ``silhouette`` (float in [-1, 1]),
        ``n_clusters`` (int), ``silhouette_n`` (int, points used). A score that is undefined
        (fewer than two clusters, or every point its own cluster) is nan and logged.
    """
    from sklearn.metrics import calinski_harabasz_score, silhouette_score

    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim == 1:
        latents = latents[:, None]
    assignments = np.asarray(assignments).ravel()
    if latents.ndim != 2 or latents.shape[0] != assignments.size:
        raise AvaderError(f"latents: shape {latents.shape} does not match {assignments.size} assignments")
    n = assignments.size
    n_clusters = int(np.unique(assignments).size)
    out = {"calinski_harabasz": float("nan"), "silhouette": float("nan"), "n_clusters": n_clusters}
    if silhouette_sample is not None and n > silhouette_sample:
        index = np.sort(np.random.default_rng(seed).choice(n, size=int(silhouette_sample), replace=False))
    else:
        index = np.arange(n)
    out["silhouette_n"] = int(index.size)
    if 2 <= n_clusters < n:
        out["calinski_harabasz"] = float(calinski_harabasz_score(latents, assignments))
    else:
        logger.warning("calinski_harabasz undefined for %d clusters among %d points; nan", n_clusters, n)
    n_sub = int(np.unique(assignments[index]).size)
    if 2 <= n_sub < index.size:
        out["silhouette"] = float(silhouette_score(latents[index], assignments[index]))
    else:
        logger.warning("silhouette undefined for %d clusters among %d points; nan", n_sub, index.size)
    return out


def bin_factor(values, edges) -> np.ndarray:
    """Integer bin of each value, to turn a continuous factor into labels.

    Parameters
    ----------
    values : array_like, shape (n,), float
    edges : array_like of float, shape (m + 1,), increasing; or int m
        Bin ``i`` is ``[edges[i], edges[i + 1])``, the last bin closed on the right. An int asks for
        ``m`` bins of equal counts (edges at the quantiles of the finite values).

    Returns
    -------
    ndarray, shape (n,), int64
        Bin index in ``0 .. m - 1``; -1 for values outside the edges or not finite.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(values)
    if np.ndim(edges) == 0:
        m = int(edges)
        if m < 1 or not finite.any():
            raise AvaderError(f"edges: need at least one bin and finite values, got {edges!r}")
        edges = np.quantile(values[finite], np.linspace(0.0, 1.0, m + 1))
    edges = np.asarray(edges, dtype=np.float64).ravel()
    if edges.size < 2 or np.any(np.diff(edges) < 0):
        raise AvaderError(f"edges: need at least two non-decreasing values, got {edges.tolist()}")
    bins = np.searchsorted(edges, values, side="right") - 1
    bins[values == edges[-1]] = edges.size - 2
    inside = finite & (values >= edges[0]) & (values <= edges[-1])
    return np.where(inside, bins, -1).astype(np.int64)


def factor_nmi(assignments, factors: Mapping[str, Sequence], missing=-1) -> dict[str, float]:
    """NMI between the components and each ground-truth factor.

    Parameters
    ----------
    assignments : array_like, shape (n,)
    factors : mapping of str to array_like, shape (n,)
        Discrete factor labels (for example :func:`bin_factor` of axis ratio, or profile type).
    missing : scalar
        Entries whose factor label equals this are left out of that factor's NMI.

    Returns
    -------
    dict of str to float
        NMI per factor, in the order given; nan when fewer than two entries remain.
    """
    assignments = np.asarray(assignments).ravel()
    out = {}
    for name, labels in factors.items():
        labels = np.asarray(labels).ravel()
        if labels.size != assignments.size:
            raise AvaderError(
                f"factors[{name!r}]: length {labels.size} does not match assignments ({assignments.size})"
            )
        keep = labels != missing
        out[name] = nmi(labels[keep], assignments[keep]) if keep.sum() >= 2 else float("nan")
    return out


def compare_distributions(
    real: Mapping[str, Sequence[float]],
    generated: Mapping[str, Sequence[float]],
    statistics: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Distance between the real and generated distributions of each statistic.

    Non-finite values are dropped first. Both samples are standardised with the real sample's mean
    and standard deviation, so the Wasserstein distance is in units of the real spread (a pure shift
    by ``s`` standard deviations gives ``s``).

    Parameters
    ----------
    real, generated : mapping of str to array_like, shape (n_real,) and (n_generated,)
        For example the output of :func:`avader.morphology.measure`.
    statistics : sequence of str, optional
        Names to compare; default those present in both, in the order of ``real``.

    Returns
    -------
    dict of str to dict
        Per statistic: ``wasserstein`` (``scipy.stats.wasserstein_distance`` of the standardised
        samples), ``ks_statistic`` and ``ks_pvalue`` (``scipy.stats.ks_2samp``, scale-free),
        ``n_real``, ``n_generated`` (finite values used), ``mean_real``, ``std_real``,
        ``mean_generated``, ``std_generated``. Scores are nan, with a log message, when a sample has
        fewer than two finite values or the real spread is 0 (Wasserstein only).
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    if statistics is None:
        statistics = [name for name in real if name in generated]
        if not statistics:
            raise AvaderError("generated: no statistic in common with real")
    out = {}
    for name in statistics:
        for which, sample in (("real", real), ("generated", generated)):
            if name not in sample:
                raise AvaderError(f"{which}: no statistic {name!r}")
        a = np.asarray(real[name], dtype=np.float64).ravel()
        b = np.asarray(generated[name], dtype=np.float64).ravel()
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        nan = float("nan")
        row = {"wasserstein": nan, "ks_statistic": nan, "ks_pvalue": nan, "n_real": a.size, "n_generated": b.size}
        row.update({"mean_real": nan, "std_real": nan, "mean_generated": nan, "std_generated": nan})
        if a.size < 2 or b.size < 2:
            logger.warning("%s: fewer than two finite values (real %d, generated %d); nan", name, a.size, b.size)
            out[name] = row
            continue
        mean, std = float(a.mean()), float(a.std())
        row.update(
            {"mean_real": mean, "std_real": std, "mean_generated": float(b.mean()), "std_generated": float(b.std())}
        )
        ks = ks_2samp(a, b)
        row["ks_statistic"], row["ks_pvalue"] = float(ks.statistic), float(ks.pvalue)
        if std > 0:
            row["wasserstein"] = float(wasserstein_distance((a - mean) / std, (b - mean) / std))
        else:
            logger.warning("%s: the real sample is constant; wasserstein nan", name)
        out[name] = row
    return out
