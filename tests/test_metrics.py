"""Tests of avader.metrics against hand-computed cases."""

import logging

import numpy as np
import pytest
from scipy.stats import norm

from avader import metrics
from avader.errors import AvaderError

# labels / assignments / contingency written out by hand:
# MORE: 2 classes, 4 components: [[2, 1, 0, 0], [0, 0, 2, 1]]
MORE = ([0, 0, 0, 1, 1, 1], [0, 0, 1, 2, 2, 3])
# DIFFER: 2 classes, 2 components: [[3, 3], [0, 2]]
DIFFER = ([0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1])


def test_contingency_by_hand():
    matrix, classes, components = metrics.contingency(*MORE)
    assert matrix.dtype == np.int64
    assert matrix.tolist() == [[2, 1, 0, 0], [0, 0, 2, 1]]
    assert classes.tolist() == [0, 1] and components.tolist() == [0, 1, 2, 3]
    matrix, classes, _ = metrics.contingency(["S", "E", "S"], [4, 4, 9])
    assert classes.tolist() == ["E", "S"] and matrix.tolist() == [[1, 0], [1, 1]]


def test_relabelled_partition_scores_one():
    labels, assignments = [0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 3, 3]
    for one_to_one in (None, True, False):
        assert metrics.hungarian_accuracy(labels, assignments, one_to_one=one_to_one) == 1.0
    scores = metrics.clustering_scores(labels, assignments)
    for name in ("accuracy", "purity", "balanced_accuracy", "nmi", "ari"):
        assert scores[name] == pytest.approx(1.0)
    assert metrics.component_mapping(labels, assignments) == {0: 1, 1: 0, 3: 2}


def test_more_components_than_classes():
    labels, assignments = MORE
    # many-to-one (the default here): every component goes to its majority class -> 6/6
    assert metrics.hungarian_accuracy(labels, assignments) == 1.0
    assert metrics.hungarian_accuracy(labels, assignments, one_to_one=False) == 1.0
    # one-to-one: only components 0 and 2 get a class -> (2 + 2) / 6
    assert metrics.hungarian_accuracy(labels, assignments, one_to_one=True) == pytest.approx(4 / 6)
    assert metrics.component_mapping(labels, assignments) == {0: 0, 1: 0, 2: 1, 3: 1}
    assert metrics.component_mapping(labels, assignments, one_to_one=True) == {0: 0, 1: None, 2: 1, 3: None}
    assert metrics.balanced_accuracy(labels, assignments) == 1.0
    assert metrics.balanced_accuracy(labels, assignments, one_to_one=True) == pytest.approx(2 / 3)
    scores = metrics.clustering_scores(labels, assignments)
    assert scores["accuracy"] == 1.0 and scores["accuracy_one_to_one"] == pytest.approx(4 / 6)
    assert (scores["n"], scores["n_classes"], scores["n_components"]) == (6, 2, 4)


def test_one_to_one_and_many_to_one_differ():
    labels, assignments = DIFFER
    # many-to-one: both components go to class 0 -> (3 + 3) / 8
    assert metrics.hungarian_accuracy(labels, assignments, one_to_one=False) == pytest.approx(0.75)
    # one-to-one: 0 -> 0 and 1 -> 1 gives 3 + 2 = 5 (the swap gives 0 + 3) -> 5 / 8
    assert metrics.hungarian_accuracy(labels, assignments, one_to_one=True) == pytest.approx(0.625)
    assert metrics.hungarian_accuracy(labels, assignments) == pytest.approx(0.625)  # K == C: one-to-one
    assert metrics.purity(labels, assignments) == pytest.approx(0.75)
    # many-to-one predicts class 0 for all: recalls 6/6 and 0/2; one-to-one: 3/6 and 2/2
    assert metrics.balanced_accuracy(labels, assignments) == pytest.approx(0.5)
    assert metrics.balanced_accuracy(labels, assignments, one_to_one=True) == pytest.approx(0.75)
    scores = metrics.clustering_scores(labels, assignments)
    assert scores["accuracy"] == pytest.approx(0.625)
    assert scores["accuracy_many_to_one"] == pytest.approx(0.75)
    assert scores["balanced_accuracy"] == pytest.approx(0.5)
    assert scores["balanced_accuracy_one_to_one"] == pytest.approx(0.75)


def test_fewer_components_than_classes():
    labels, assignments = [0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 1, 1]
    assert metrics.hungarian_accuracy(labels, assignments) == pytest.approx(4 / 6)
    assert metrics.balanced_accuracy(labels, assignments) == pytest.approx(2 / 3)


def test_purity_by_hand_and_string_labels():
    labels = [0, 0, 1, 1, 1, 2, 2, 2, 2]
    assignments = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert metrics.purity(labels, assignments) == pytest.approx(7 / 9)  # 2 + 2 + 3
    names = ["E", "E", "S", "S", "S"]
    assert metrics.component_mapping(names, [5, 5, 7, 7, 5]) == {5: "E", 7: "S"}
    assert metrics.purity(names, [5, 5, 7, 7, 5]) == pytest.approx(4 / 5)


def test_nmi_and_ari_by_hand():
    # independent partitions: ARI = (0 - 2/3) / (2 - 2/3) = -0.5, NMI = 0
    assert metrics.ari([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)
    assert metrics.nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    # MI = ln 2, H = ln 2 and 1.5 ln 2 -> NMI = 1 / 1.25
    assert metrics.nmi([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(0.8)


def test_label_errors():
    with pytest.raises(AvaderError, match="length"):
        metrics.hungarian_accuracy([0, 1], [0, 1, 2])
    with pytest.raises(AvaderError, match="empty"):
        metrics.purity([], [])


def test_label_free_scores_by_hand():
    points = np.array([[0.0], [1.0], [10.0], [11.0]])
    scores = metrics.label_free_scores(points, [0, 0, 1, 1])
    # between 100 / (k - 1) over within 1 / (n - k)
    assert scores["calinski_harabasz"] == pytest.approx(200.0)
    expected = np.mean([1 - 1 / 10.5, 1 - 1 / 9.5])
    assert scores["silhouette"] == pytest.approx(expected)
    assert scores["n_clusters"] == 2 and scores["silhouette_n"] == 4


def test_label_free_scores_subsample_is_seeded():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    assignments = rng.integers(0, 3, size=600)
    points = centres[assignments] + rng.standard_normal((600, 2))
    full = metrics.label_free_scores(points, assignments, silhouette_sample=None)
    first = metrics.label_free_scores(points, assignments, silhouette_sample=200, seed=1)
    again = metrics.label_free_scores(points, assignments, silhouette_sample=200, seed=1)
    other = metrics.label_free_scores(points, assignments, silhouette_sample=200, seed=2)
    assert first == again and first["silhouette"] != other["silhouette"]
    assert first["silhouette_n"] == 200 and full["silhouette_n"] == 600
    assert first["silhouette"] == pytest.approx(full["silhouette"], abs=0.05)
    assert first["calinski_harabasz"] == full["calinski_harabasz"]  # always on all points


def test_label_free_scores_single_cluster(caplog):
    with caplog.at_level(logging.WARNING, logger="avader.metrics"):
        scores = metrics.label_free_scores(np.random.default_rng(0).normal(size=(20, 3)), np.zeros(20))
    assert np.isnan(scores["calinski_harabasz"]) and np.isnan(scores["silhouette"])
    assert scores["n_clusters"] == 1
    assert "silhouette undefined" in caplog.text
    with pytest.raises(AvaderError, match="latents"):
        metrics.label_free_scores(np.zeros((5, 2)), np.zeros(4))


def test_bin_factor():
    values = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, np.nan, -1.0]
    assert metrics.bin_factor(values, [0.0, 1.0, 2.0]).tolist() == [0, 0, 1, 1, 1, -1, -1, -1]
    quartiles = metrics.bin_factor(np.arange(100.0), 4)
    assert np.bincount(quartiles).tolist() == [25, 25, 25, 25]
    with pytest.raises(AvaderError, match="edges"):
        metrics.bin_factor(values, [2.0, 1.0])


def test_factor_nmi():
    assignments = [0, 0, 1, 1, 2, 2, 3, 3]
    factors = {
        "type": [5, 5, 6, 6, 7, 7, 8, 8],  # the same partition
        "side": [0, 1, 0, 1, 0, 1, 0, 1],  # independent of it
        "partial": [0, 0, 1, 1, -1, -1, -1, -1],  # only the first four known
    }
    result = metrics.factor_nmi(assignments, factors)
    assert list(result) == ["type", "side", "partial"]
    assert result["type"] == pytest.approx(1.0)
    assert result["side"] == pytest.approx(0.0, abs=1e-12)
    assert result["partial"] == pytest.approx(1.0)
    with pytest.raises(AvaderError, match="side"):
        metrics.factor_nmi(assignments, {"side": [0, 1]})


def test_compare_distributions_by_hand():
    result = metrics.compare_distributions({"q": [0, 1, 2, 3, np.nan]}, {"q": [1, 2, 3, 4], "extra": [1, 2]})
    assert list(result) == ["q"]
    row = result["q"]
    assert row["n_real"] == 4 and row["n_generated"] == 4
    assert row["wasserstein"] == pytest.approx(1.0 / np.sqrt(1.25))  # shift 1 over the real std
    assert row["ks_statistic"] == pytest.approx(0.25)
    assert row["mean_real"] == pytest.approx(1.5) and row["mean_generated"] == pytest.approx(2.5)


def test_compare_distributions_shifted_normal():
    rng = np.random.default_rng(0)
    real = {"x": rng.normal(3.0, 2.0, size=20000)}
    shifted = {"x": rng.normal(4.0, 2.0, size=20000)}
    same = {"x": rng.normal(3.0, 2.0, size=20000)}
    row = metrics.compare_distributions(real, shifted)["x"]
    assert row["wasserstein"] == pytest.approx(0.5, abs=0.03)
    assert row["ks_statistic"] == pytest.approx(2 * norm.cdf(0.25) - 1, abs=0.02)
    assert row["ks_pvalue"] < 1e-10
    row = metrics.compare_distributions(real, same)["x"]
    assert row["wasserstein"] < 0.03
    assert row["ks_pvalue"] > 0.01


def test_compare_distributions_degenerate(caplog):
    with caplog.at_level(logging.WARNING, logger="avader.metrics"):
        result = metrics.compare_distributions({"a": [1.0, 1.0, 1.0], "b": [np.nan, 1.0]}, {"a": [1, 2], "b": [1, 2]})
    assert np.isnan(result["a"]["wasserstein"]) and np.isfinite(result["a"]["ks_statistic"])
    assert np.isnan(result["b"]["ks_statistic"]) and result["b"]["n_real"] == 1
    assert "constant" in caplog.text
    with pytest.raises(AvaderError, match="generated: no statistic 'a'"):
        metrics.compare_distributions({"a": [1, 2]}, {"b": [1, 2]}, statistics=["a"])
    with pytest.raises(AvaderError, match="in common"):
        metrics.compare_distributions({"a": [1, 2]}, {"b": [1, 2]})
