"""The VaDE algorithm check on scikit-learn's digits (benchmarks/bench_digits.py).

The quick tests check the benchmark's helpers. ``test_vade_beats_kmeans_on_hard_digits`` trains
avader's dense VaDE through :func:`avader.training.train` on the four digits that k-means on
pixels confuses most ({1, 3, 8, 9}: k-means accuracy 0.63), two complete runs with the
benchmark's unsupervised choice (the most even cluster sizes), and asserts that VaDE's Hungarian
accuracy beats k-means' by ``MARGIN``. Single runs of this configuration, seeds 0-9 (2 CPU
cores, shared): accuracy 0.87, 0.63, 0.91, 0.92, 0.57, 0.84, 0.68, 0.90, 0.83, 0.91 with size entropies
1.372, 1.250, 1.385, 1.382, 1.301, 1.382, 1.306, 1.381, 1.360, 1.381 (log 4 = 1.386): every run
below 0.7 had the lower entropy of its pair, and the chosen run of every pair (0-1, 2-3, 4-5,
6-7, 8-9) beat k-means by at least 0.21. The slow test runs the benchmark's
``library`` variant on all ten digits (three seeds, three runs each).
"""

import json

import numpy as np
import pytest

HARD_DIGITS = (1, 3, 8, 9)  # k-means on pixels: Hungarian accuracy 0.63 on these 719 images
MARGIN = 0.10               # VaDE minus k-means accuracy; the smallest difference seen was 0.21


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_digits")


def test_digits_arrays_and_galaxyset(bench, tmp_path):
    from avader.data import GalaxySet

    images, labels = bench.load_digits_arrays(classes=HARD_DIGITS)
    assert images.shape == (719, 8, 8) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert set(np.unique(labels)) == set(HARD_DIGITS)
    subset, sub_labels = bench.load_digits_arrays(n=100, seed=3)
    assert subset.shape == (100, 8, 8) and len(np.unique(sub_labels)) == 10
    path = bench.write_digits(tmp_path / "digits.fits", images, labels)
    stored = GalaxySet.read(path)
    np.testing.assert_array_equal(stored.get_images(slice(None)), images)
    np.testing.assert_array_equal(np.asarray(stored.catalog["label"]), labels)


def test_overrides_resolve_to_the_plain_vade_elbo(bench):
    from avader.config import load_config
    from avader.training import latent_weight_schedule

    config = load_config("smoke", bench.digits_overrides(warmup_epochs=3, vade_epochs=4, latent_weight=1.0))
    assert config.model.architecture == "dense" and config.model.dense_units == (500, 500, 2000)
    assert config.training.warmup_mode == "ae" and config.training.vade_epochs == 4
    weights = [latent_weight_schedule(epoch, config.training) for epoch in range(4)]
    assert weights == [1.0, 1.0, 1.0, 1.0]


def test_vade_beats_kmeans_on_hard_digits(bench, tmp_path):
    images, labels = bench.load_digits_arrays(classes=HARD_DIGITS)
    path = bench.write_digits(tmp_path / "digits.fits", images, labels)
    overrides = bench.digits_overrides(n_components=len(HARD_DIGITS), warmup_epochs=40, vade_epochs=30,
                                       init_restarts=1)
    runs = [bench.train_digits(path, seed, overrides, tmp_path / f"run{seed}") for seed in (0, 1)]
    chosen = max(runs, key=lambda run: run["size_entropy"])
    kmeans = bench.kmeans_pixels(images, labels, seed=0)
    assert kmeans["accuracy"] < 0.7
    assert chosen["components_used"] == len(HARD_DIGITS)
    assert chosen["accuracy"] >= kmeans["accuracy"] + MARGIN
    assert chosen["nmi"] > kmeans["nmi"]


@pytest.mark.slow
def test_benchmark_smoke_writes_its_report(bench, tmp_path):
    """``bench_digits.py --smoke`` end to end (about 15 s; slow only to keep this file short)."""
    output = tmp_path / "digits_smoke.json"
    report = bench.main(["--smoke", "--variants", "library", "--warmup-epochs", "1", "--vade-epochs", "1",
                         "--output", str(output)])
    stored = json.loads(output.read_text())
    assert stored["library"]["accuracy"]["values"] == report["library"]["accuracy"]["values"]
    run = stored["per_seed"][0]["library"]["runs"][0]
    assert 0.0 < run["accuracy"] <= 1.0 and 0.0 <= run["size_entropy"] <= np.log(10) + 1e-9
    assert stored["overrides"]["training.warmup_epochs"] == 1 and stored["latent_weight"] == 0.2
    assert stored["kmeans_accuracy"]["mean"] == pytest.approx(0.79, abs=0.02)
    assert "cpu_cores" in stored["machine"]


@pytest.mark.slow
def test_digits_check_library_beats_kmeans(bench, tmp_path):
    """The benchmark's library variant (all digits, seeds 0-2, three runs each; about 10 minutes)."""
    report = bench.main(["--variants", "library", "--output", str(tmp_path / "digits.json")])
    vade = np.array(report["library"]["accuracy"]["values"])
    kmeans = np.array(report["kmeans_accuracy"]["values"])
    assert np.all(vade > kmeans)
    assert vade.mean() >= kmeans.mean() + 0.03
