"""Tests of avader.detector: inputs, targets, peaks, the focal loss, training and use in deblend()."""

import json
import math

import numpy as np
import pytest

from avader.errors import AvaderError


def _blobs(centres, size=32, sigma=1.8, fluxes=None):
    y, x = np.indices((size, size))
    image = np.zeros((size, size))
    for k, (cx, cy) in enumerate(centres):
        image += (1.0 if fluxes is None else fluxes[k]) * np.exp(-0.5 * ((x - cx) ** 2 + (y - cy) ** 2) / sigma**2)
    return image


def test_detector_inputs_scale_and_stretch():
    from avader.detector import detector_inputs

    image = 0.1 + 0.5 * _blobs([(15.0, 16.0)])
    x = detector_inputs(image, background=0.1, noise_sigma=0.001)
    assert x.shape == (1, 32, 32, 2) and x.dtype == np.float32
    assert x[0, 16, 15, 0] == pytest.approx(1.0, abs=0.01)       # light over its peak
    assert x[0, 16, 15, 1] == pytest.approx(1.0, abs=0.01)       # asinh over its value at the peak
    # the asinh channel lifts the faint wing: at 4 sigma of the blob the linear channel is tiny
    wing = x[0, 16, 15 + 7]
    assert wing[0] < 0.01 and wing[1] > 5 * wing[0]
    # scale-free: the same scene in other units gives the same inputs
    y = detector_inputs(10 * image, background=1.0, noise_sigma=0.01)
    np.testing.assert_allclose(x, y, atol=1e-5)
    with pytest.raises(AvaderError, match="expected"):
        detector_inputs(np.zeros((2, 2, 2, 2)))


def test_heatmap_targets_hand_case():
    from avader.detector import heatmap_targets

    heat = heatmap_targets([np.array([[3.2, 4.0], [np.nan, np.nan], [40.0, 1.0]])], size=8, sigma=1.0)
    assert heat.shape == (1, 8, 8)
    assert heat[0, 4, 3] == 1.0                                   # nearest pixel of (3.2, 4.0) is (x 3, y 4)
    assert heat[0, 4, 4] == pytest.approx(math.exp(-0.8**2 / 2), rel=1e-6)
    assert heat[0, 0, 0] == pytest.approx(math.exp(-(3.2**2 + 16) / 2), rel=1e-5)
    assert np.sum(heat == 1.0) == 1                               # NaN and outside centres ignored


def test_find_peaks_orders_refines_and_thresholds():
    from avader.detector import find_peaks

    heat = np.zeros((10, 10))
    heat[2, 3], heat[2, 4] = 0.9, 0.3                             # a peak with weight to its right
    heat[7, 7] = 0.5
    heat[5, 1] = 0.2                                              # below the threshold
    centres, scores = find_peaks(heat, threshold=0.25)
    np.testing.assert_allclose(scores, [0.9, 0.5])
    np.testing.assert_allclose(centres[0], [3 + 0.3 / 1.2, 2.0])  # probability-weighted mean of the 3x3 window
    np.testing.assert_allclose(centres[1], [7.0, 7.0])
    centres, _ = find_peaks(heat, threshold=0.25, max_sources=1)
    assert len(centres) == 1
    assert find_peaks(np.zeros((4, 4)))[0].shape == (0, 2)


def test_focal_loss_hand_case():
    from avader.detector import focal_loss

    target = np.zeros((1, 2, 2), np.float32)
    target[0, 0, 0], target[0, 1, 1] = 1.0, 0.5
    logits = np.array([[[0.0, -1.0], [1.0, 2.0]]], np.float32)
    p = 1 / (1 + np.exp(-logits[0]))
    expected = (-(1 - p[0, 0]) ** 2 * np.log(p[0, 0])
                - p[0, 1] ** 2 * np.log(1 - p[0, 1])
                - p[1, 0] ** 2 * np.log(1 - p[1, 0])
                - (1 - 0.5) ** 4 * p[1, 1] ** 2 * np.log(1 - p[1, 1])) / 1.0
    assert float(np.asarray(focal_loss(target, logits))[0]) == pytest.approx(expected, rel=1e-5)
    # a confident, right answer costs almost nothing; a confident wrong one costs much
    right = np.where(target == 1.0, 8.0, -8.0).astype(np.float32)
    assert float(np.asarray(focal_loss(target, right))[0]) < 1e-3
    assert float(np.asarray(focal_loss(target, -right))[0]) > 5.0


def test_detector_refuses_images_of_another_size_and_bad_training_settings(tmp_path):
    from avader.detector import Detector, build_detector, train_detector

    detector = Detector(build_detector(16, (2, 4)))
    with pytest.raises(AvaderError, match="trained at 16x16 pixels, got 32x32"):
        detector(np.zeros((1, 32, 32)))
    run = _smoke_run(tmp_path)
    with pytest.raises(AvaderError, match="at least 10 blends and 1 epoch"):
        train_detector(run, n_blends=5, epochs=1, progress=False)
    with pytest.raises(AvaderError, match="precision: must be"):
        train_detector(run, n_blends=12, epochs=1, precision="float8", workers=1, progress=False)
    assert not (run / "detector.keras").exists()


def test_build_detector_shapes_and_errors():
    from avader.detector import build_detector

    net = build_detector(32, filters=(4, 8))
    assert net.input_shape == (None, 32, 32, 2) and net.output_shape == (None, 32, 32)
    with pytest.raises(AvaderError, match="divisible"):
        build_detector(30, filters=(4, 8, 16))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run directory with a detector trained briefly on 32x32 simulated blends."""
    from avader.config import load_config
    from avader.detector import train_detector
    from avader.runs import RunDir

    run = RunDir(tmp_path_factory.mktemp("detector_run") / "run")
    run.path.mkdir()
    run.write_config(load_config("smoke"))
    info = train_detector(run.path, n_blends=320, epochs=6, filters=(8, 16), batch_size=16, learning_rate=3e-3,
                          workers=1, progress=False)
    return run.path, info


def test_train_detector_writes_the_network_and_its_record(trained_run):
    from avader.detector import DETECTOR_FILE, TRAIN_ID_START, load_detector, train_detector

    run, info = trained_run
    assert (run / DETECTOR_FILE).is_file()
    record = json.loads((run / "detector.json").read_text())
    assert record == json.loads(json.dumps(info))
    assert record["first_blend_id"] == TRAIN_ID_START and record["n_validation"] == 32
    assert len(record["loss"]) == 6 and record["loss"][-1] < record["loss"][0]
    detector = load_detector(run)
    assert detector.threshold == record["threshold"] and detector.image_size == 32
    with pytest.raises(AvaderError, match="exists"):
        train_detector(run, n_blends=20, epochs=1, progress=False)


def test_detector_learns_to_find_the_sources_of_new_blends(trained_run):
    """Even 6 epochs on 288 blends recover most galaxies of blends it never saw (ids 0..)."""
    from avader.config import load_config
    from avader.deblend_benchmark import match_sources
    from avader.detector import load_detector
    from avader.simulate import simulate

    run, _ = trained_run
    config = load_config("smoke")
    blends = simulate(40, image_size=32, seed=config.seed, config=config.simulation, blends=True, workers=1,
                      progress=False)
    cat = blends.catalog
    found = load_detector(run)(blends.get_images(np.arange(40)), np.asarray(cat["zero_level"]),
                               np.asarray(cat["noise_sigma"]), max_sources=4)
    matched = n_true = n_found = 0
    for b in range(40):
        truth = np.array([[cat[f"x_{k}"][b], cat[f"y_{k}"][b]] for k in range(int(cat["n_sources"][b]))])
        matched += len(match_sources(truth, found[b]["centres"], np.full(len(truth), 2.0)))
        n_true, n_found = n_true + len(truth), n_found + len(found[b]["centres"])
    assert matched / n_true > 0.6 and matched / max(n_found, 1) > 0.6


def test_load_detector_names_a_missing_or_broken_file(tmp_path):
    from avader.detector import load_detector

    with pytest.raises(AvaderError, match="no detector.keras"):
        load_detector(tmp_path)
    (tmp_path / "detector.keras").write_bytes(b"not a keras file")
    with pytest.raises(AvaderError, match="detector.keras: cannot load"):
        load_detector(tmp_path)


class _FixedDetector:
    """Stands in for a Detector: the same centres for every image, recording its calls."""

    def __init__(self, centres):
        self.centres = np.asarray(centres, float)
        self.calls = []

    def __call__(self, images, background=None, noise_sigma=None, max_sources=None):
        self.calls.append(len(images))
        return [{"centres": self.centres[:max_sources], "scores": np.ones(len(self.centres))} for _ in images]


def test_deblend_takes_its_centres_from_a_detector():
    """Two touching blobs that peak detection merges: the detector's two centres give two sources."""
    from avader.deblending import deblend, detect
    from avader.model import ModelConfig, build_vade

    config = ModelConfig(architecture="dense", image_size=32, dense_units=(8,), latent_dim=2, n_components=2, l2=0.0)
    model = build_vade(config, seed=0)
    centres = [(14.0, 16.0), (18.0, 16.0)]
    image = 0.02 + _blobs(centres, sigma=2.5) + np.random.default_rng(1).normal(0, 0.001, (32, 32))
    assert len(detect(image, 0.001, 0.02)["centres"]) == 1
    fake = _FixedDetector(centres)
    result = deblend(model, image, noise_sigma=0.001, background=0.02, steps=2, refine=0, min_flux_ratio=0.0,
                     detector=fake)
    assert fake.calls == [1] and result["n_sources"][0] == 2
    np.testing.assert_allclose(np.sort(result["centres"][0][:, 0]), [14.0, 18.0], atol=0.5)
    # given centres win over the detector, which is then not asked
    result = deblend(model, image, centres=[np.array([centres[0]])], noise_sigma=0.001, background=0.02, steps=2,
                     refine=0, detector=fake)
    assert fake.calls == [1] and result["n_sources"][0] == 1


def _smoke_run(root, **analysis):
    from avader.config import load_config
    from avader.runs import RunDir

    overrides = [f"analysis.{key}={value}" for key, value in analysis.items()]
    run = RunDir(root / "run")
    run.path.mkdir(parents=True)
    run.write_config(load_config("smoke", overrides))
    return run.path


def test_ensure_detector_trains_once_and_again_when_the_settings_change(tmp_path, monkeypatch):
    import avader.detector as detector_module
    from avader.config import load_config

    run = _smoke_run(tmp_path, detector_blends=24, detector_epochs=1)
    calls = []
    real = detector_module.train_detector
    monkeypatch.setattr(detector_module, "train_detector", lambda *a, **k: calls.append(k) or real(*a, **k))
    first = detector_module.ensure_detector(run, progress=False)
    assert isinstance(first, detector_module.Detector) and len(calls) == 1
    assert calls[0]["n_blends"] == 24 and calls[0]["epochs"] == 1
    detector_module.ensure_detector(run, progress=False)             # current: loaded, not trained
    assert len(calls) == 1
    changed = load_config("smoke", ["analysis.detector_blends=20", "analysis.detector_epochs=1"])
    detector_module.ensure_detector(run, changed, progress=False)    # stale: trained again
    assert len(calls) == 2 and calls[1]["n_blends"] == 20
    assert detector_module.ensure_detector(run, load_config("smoke", ["analysis.detector_blends=0"])) is None


def test_resolve_detector_choices(tmp_path):
    from avader.detector import Detector, build_detector, resolve_detector

    (tmp_path / "run").mkdir()
    run = tmp_path / "run"
    assert resolve_detector(run, "auto") is None and resolve_detector(run, "peaks") is None
    with pytest.raises(AvaderError, match="no detector.keras"):
        resolve_detector(run, "learned")
    with pytest.raises(AvaderError, match="'auto', 'learned' or 'peaks'"):
        resolve_detector(run, "sextractor")
    given = Detector(build_detector(16, (2, 4)))
    assert resolve_detector(run, given) is given
    given.network.save(run / "detector.keras")
    assert isinstance(resolve_detector(run, "auto"), Detector)
    assert resolve_detector(run, "peaks") is None


def test_training_is_deterministic_for_a_seed(tmp_path):
    from avader.detector import load_detector, train_detector

    weights = []
    for name in ("a", "b"):
        run = _smoke_run(tmp_path / name)
        train_detector(run, n_blends=40, epochs=2, filters=(4, 8), batch_size=8, workers=1, progress=False)
        weights.append(load_detector(run).network.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))
    run = _smoke_run(tmp_path / "c")
    train_detector(run, n_blends=40, epochs=2, filters=(4, 8), batch_size=8, workers=1, seed=5, progress=False)
    other = load_detector(run).network.get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(weights[0], other, strict=True))


def test_cli_trains_a_detector_and_deblend_records_which_centres_it_used(tmp_path):
    from avader.cli import main
    from avader.data import GalaxySet
    from avader.model import build_vade
    from avader.runs import RunDir
    from avader.simulate import simulate

    run = _smoke_run(tmp_path, detector_blends=24, detector_epochs=1)
    config = RunDir(run).load_config()
    build_vade(config.model, seed=0).save(run / "model.keras")
    blends = simulate(3, image_size=config.model.image_size, seed=0, blends=True, workers=1, progress=False,
                      out=tmp_path / "blends.fits")
    args = ["deblend", "--run", str(run), "--blends", str(blends), "--steps", "2"]
    assert main(args + ["--out", str(tmp_path / "peaks.fits")]) == 0        # auto without a detector: peaks
    assert GalaxySet.read(tmp_path / "peaks.fits").meta["DETECTOR"] == "peaks"
    assert main(args + ["--out", str(tmp_path / "x.fits"), "--detector", "learned"]) == 2
    assert main(["train-detector", "--run", str(run)]) == 0
    assert json.loads((run / "detector.json").read_text())["n_blends"] == 24
    assert main(["train-detector", "--run", str(run)]) == 2                # refuses to overwrite
    assert main(args + ["--out", str(tmp_path / "learned.fits")]) == 0
    assert GalaxySet.read(tmp_path / "learned.fits").meta["DETECTOR"] == "learned"
    assert main(args + ["--benchmark", "--out", str(tmp_path / "b.json")]) == 0
    results = json.loads((tmp_path / "b.json").read_text())
    assert results["settings"]["detector"] == "learned"
    assert set(results["methods"]) == {"avader", "avader_peaks", "photutils", "sep"}
