"""Tests of avader.model: architecture, published weights, responsibilities, loss, modes, saving."""

import math
import os
import subprocess
import sys
import textwrap

import h5py
import keras
import numpy as np
import pytest
from scipy.special import logsumexp

import avader
from avader.errors import AvaderError
from avader.model import (
    GaussianMixturePrior,
    LegacyBilinearUpSampling2D,
    ModelConfig,
    build_vade,
    load_published_weights,
    published_model_config,
)

TINY = ModelConfig(image_size=16, filters=(4, 4, 2), kernel_sizes=(3, 3, 3), decoder_kernel_size=3,
                   latent_dim=3, n_components=4)
PUBLISHED_H5 = avader.paths.home().parent / "shared" / "reference" / "astrovader_saved_weights.h5"
METRIC_NAMES = {"loss", "reconstruction_loss", "kl_loss", "latent_weight"}


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _random_mixture(config, seed):
    rng = np.random.default_rng(seed)
    k, d = config.n_components, config.latent_dim
    return rng.uniform(0.5, 2.0, k), rng.normal(0.0, 0.5, (k, d)), rng.uniform(0.3, 2.0, (k, d))


def _images(n=8, size=16, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 1)).astype(np.float32)


def _numpy_log_p(z, mixture):
    weights, means, variances = (np.asarray(mixture[k], np.float64) for k in ("weights", "means", "variances"))
    diff2 = (z[:, None, :] - means[None]) ** 2
    return np.log(weights)[None] + (-0.5 * (np.log(2 * np.pi * variances)[None] + diff2 / variances[None])).sum(-1)


def _numpy_vade_term(mean, log_var, mixture):
    """PAPER.md latent term with exact gamma from the latent mean (the deterministic evaluation path)."""
    weights, means, variances = (np.asarray(mixture[k], np.float64) for k in ("weights", "means", "variances"))
    log_p = _numpy_log_p(mean, mixture)
    log_gamma = log_p - logsumexp(log_p, axis=1, keepdims=True)
    gamma = np.exp(log_gamma)
    per_c = (np.log(2 * np.pi * variances)[None]
             + ((mean[:, None, :] - means[None]) ** 2 + np.exp(log_var)[:, None, :]) / variances[None]).sum(-1)
    return (-0.5 * (1 + log_var).sum(1) - (gamma * np.log(weights)[None]).sum(1)
            + (gamma * log_gamma).sum(1) + 0.5 * (gamma * per_c).sum(1))


def _numpy_terms(model, x):
    """Reconstruction SSE, standard-normal KL, VaDE term (per image) and the L2 penalty, in numpy."""
    mean, log_var = (_np(t) for t in model.encode(x))
    reconstruction = _np(model.decode(mean))
    sse = ((x - reconstruction) ** 2).sum(axis=(1, 2, 3))
    kl = -0.5 * (1 + log_var - mean**2 - np.exp(log_var)).sum(1)
    vade = _numpy_vade_term(mean, log_var, model.prior.get_mixture())
    l2 = model.model_config.l2 * sum((_np(v) ** 2).sum() for net in (model.encoder, model.decoder)
                                     for v in net.trainable_weights)
    return sse, kl, vade, l2


def _write_keras2_file(path, model, theta_scale=2.0, drop=(), extra=()):
    """A weights file in the Keras 2.3.1 layout of the published one, from ``model``'s weights."""
    names = []
    with h5py.File(path, "w") as f:
        for net in (model.encoder, model.decoder):
            for layer in net.layers:
                if not layer.weights and layer.name.startswith("Pool"):
                    f.create_group(layer.name).attrs["weight_names"] = np.array([], dtype=float)
                    names.append(layer.name)
                if not layer.weights or layer.name in drop:
                    continue
                group = f.create_group(layer.name)
                keys = [f"{layer.name}/{v.name}:0" for v in layer.weights]
                group.attrs["weight_names"] = np.array(keys, dtype="S")
                for key, variable in zip(keys, layer.weights, strict=True):
                    group.create_dataset(key, data=_np(variable).astype(np.float32))
                names.append(layer.name)
        for name in extra:
            group = f.create_group(name)
            group.attrs["weight_names"] = np.array([f"{name}/kernel:0"], dtype="S")
            group.create_dataset(f"{name}/kernel:0", data=np.zeros((3, 3), np.float32))
            names.append(name)
        mixture = model.prior.get_mixture()
        group = f.create_group("latentGMM_Layer")
        group.attrs["weight_names"] = np.array(["theta_p:0", "u_p:0", "lambda_p:0"], dtype="S")
        group.create_dataset("theta_p:0", data=mixture["weights"] * theta_scale)
        group.create_dataset("u_p:0", data=mixture["means"].T)
        group.create_dataset("lambda_p:0", data=mixture["variances"].T)
        names.append("latentGMM_Layer")
        f.attrs["layer_names"] = np.array(names, dtype="S")
    return path


# ---------------------------------------------------------------- configuration and architecture

def test_default_config_is_the_published_architecture():
    model = build_vade(ModelConfig())
    assert model.encoder.count_params() + model.decoder.count_params() == 870_889
    assert model.prior.count_params() == 12 + 20 * 12 * 2
    encoder = [layer.name for layer in model.encoder.layers if layer.weights]
    decoder = [layer.name for layer in model.decoder.layers if layer.weights]
    assert encoder == [f"Conv{i}" for i in range(1, 7)] + ["latentmean", "latentlog_var"]
    assert decoder == ["FC3"] + [f"Conv{i}" for i in range(7, 13)] + ["Output"]
    assert model.prior.name == "latentGMM_Layer"
    assert model.decoder.get_layer("reshape").output.shape[1:] == (16, 16, 16)
    assert [model.decoder.get_layer(f"Conv{i}").filters for i in range(7, 13)] == [16, 16, 64, 64, 64, 64]
    assert model.decoder.get_layer("Conv7").kernel_size == (5, 5)
    assert model.decoder.get_layer("Output").kernel_size == (3, 3)
    assert tuple(model.decoder.output.shape) == (None, 128, 128, 1)
    assert len(model.losses) == 2 * 16  # L2 on kernel and bias of each of the 16 layers


@pytest.mark.parametrize("key, value, message", [
    ("architecture", "cnn", "architecture: must be one of"),
    ("image_size", 100, "image_size: must be a multiple of 8"),
    ("kernel_sizes", (3, 5), "kernel_sizes: needs one entry per encoder block (3)"),
    ("filters", (), "filters: must be a non-empty list"),
    ("latent_dim", 0, "latent_dim: must be a positive integer"),
    ("l2", -0.1, "l2: must be a finite number >= 0"),
    ("upsampling", "bicubic", "upsampling: must be one of"),
    ("gamma_mode", "soft", "gamma_mode: must be one of"),
    ("output_activation", "tanh", "output_activation: must be one of"),
])
def test_config_validation_names_the_key(key, value, message):
    config = ModelConfig(**{key: value})
    with pytest.raises(AvaderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.validate()
    with pytest.raises(AvaderError):
        build_vade(config)


def test_config_lists_become_tuples_and_round_trip():
    config = ModelConfig(filters=[8, 8, 4], kernel_sizes=[3, 3, 3], image_size=32)
    assert config.filters == (8, 8, 4) and config.kernel_sizes == (3, 3, 3)
    config.validate()
    assert ModelConfig(**config.to_dict()) == config
    assert published_model_config().upsampling == "bilinear_legacy"


def test_legacy_upsampling_matches_tf1_resize_bilinear():
    import tensorflow as tf

    x = np.random.default_rng(0).random((2, 5, 7, 3)).astype(np.float32)
    reference = tf.raw_ops.ResizeBilinear(images=x, size=[10, 14], align_corners=False, half_pixel_centers=False)
    np.testing.assert_allclose(_np(LegacyBilinearUpSampling2D()(x)), reference.numpy(), atol=1e-6)
    assert not np.allclose(_np(keras.layers.UpSampling2D(2, interpolation="bilinear")(x)), reference.numpy())


# ---------------------------------------------------------------- published weights

@pytest.fixture(scope="module")
def published():
    if not PUBLISHED_H5.is_file():
        pytest.skip(f"published AstroVaDEr weights not found at {PUBLISHED_H5}")
    model = build_vade(published_model_config())
    loaded = load_published_weights(model, PUBLISHED_H5)
    return model, loaded


def test_published_weights_load_completely(published):
    model, loaded = published
    assert len(loaded) == 17 and loaded[0] == "Conv1" and "latentGMM_Layer" in loaded
    with h5py.File(PUBLISHED_H5, "r") as f:
        theta = f["latentGMM_Layer/theta_p:0"][...]
        u_p = f["latentGMM_Layer/u_p:0"][...]
        lambda_p = f["latentGMM_Layer/lambda_p:0"][...]
        conv5 = f["Conv5/Conv5/kernel:0"][...]
    mixture = model.prior.get_mixture()
    np.testing.assert_allclose(mixture["weights"], theta / theta.sum(), rtol=1e-5)
    np.testing.assert_array_equal(mixture["means"], u_p.T)
    np.testing.assert_allclose(mixture["variances"], lambda_p.T, rtol=1e-5)
    np.testing.assert_array_equal(_np(model.encoder.get_layer("Conv5").kernel), conv5)


def test_published_component_means_decode_to_centred_galaxies(published):
    model, _ = published
    means = model.prior.get_mixture()["means"]
    images = _np(model.decode(means))
    assert images.shape == (12, 128, 128, 1)
    images = images[..., 0]
    assert images.min() >= 0.0
    border = np.ones((128, 128), bool)
    border[8:-8, 8:-8] = False
    centre = images[:, 48:80, 48:80].mean(axis=(1, 2))
    assert np.all(centre > 2 * images[:, border].mean(axis=1))
    # training images were min-max stretched to [0, 1]: decoded means peak near 1
    assert np.all(np.abs(images.max(axis=(1, 2)) - 1.0) < 0.05)
    yy, xx = np.mgrid[:128, :128]
    centroid = [((images * grid).sum(axis=(1, 2)) / images.sum(axis=(1, 2))).mean() for grid in (yy, xx)]
    np.testing.assert_allclose(centroid, 63.5, atol=1.0)
    # the encoder maps the decoded means back close to the component means (latent scale ~1)
    encoded = _np(model.encode(images)[0])
    assert np.sqrt(((encoded - means) ** 2).mean()) < 0.35


def test_published_weights_with_half_pixel_upsampling_are_off_centre(published):
    model = build_vade(ModelConfig(upsampling="bilinear"))
    load_published_weights(model, PUBLISHED_H5)
    images = _np(model.decode(published[0].prior.get_mixture()["means"]))[..., 0]
    yy, _ = np.mgrid[:128, :128]
    assert ((images * yy).sum(axis=(1, 2)) / images.sum(axis=(1, 2))).mean() > 65.0


def test_wrong_architecture_is_refused_naming_the_layer(tmp_path):
    source = build_vade(TINY, seed=1)
    source.prior.set_mixture(*_random_mixture(TINY, 0))
    path = _write_keras2_file(tmp_path / "tiny.h5", source)

    same = build_vade(TINY, seed=2)
    load_published_weights(same, path)
    for a, b in zip(source.get_weights(), same.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    wider = build_vade(ModelConfig(**{**TINY.to_dict(), "filters": (4, 6, 2)}), seed=3)
    before = [w.copy() for w in wider.get_weights()]
    with pytest.raises(AvaderError, match=r"tiny\.h5: layer 'Conv3' weight kernel:0 has shape"):
        load_published_weights(wider, path)
    for a, b in zip(before, wider.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # nothing assigned when refused

    with pytest.raises(AvaderError, match=r"nofc3\.h5: layer 'FC3' is missing"):
        load_published_weights(same, _write_keras2_file(tmp_path / "nofc3.h5", source, drop=("FC3",)))
    with pytest.raises(AvaderError, match=r"extra\.h5: layer 'Conv99' in the file has no counterpart"):
        load_published_weights(same, _write_keras2_file(tmp_path / "extra.h5", source, extra=("Conv99",)))
    with pytest.raises(AvaderError, match=r"absent\.h5: weights file not found"):
        load_published_weights(same, tmp_path / "absent.h5")
    if PUBLISHED_H5.is_file():
        with pytest.raises(AvaderError, match=r"astrovader_saved_weights\.h5: layer 'Conv1' weight kernel:0"):
            load_published_weights(same, PUBLISHED_H5)


# ---------------------------------------------------------------- mixture and responsibilities

def test_responsibilities_match_numpy():
    prior = GaussianMixturePrior(3, 4, seed=0)
    prior.set_mixture(*_random_mixture(TINY, 1))
    mixture = prior.get_mixture()
    z = np.random.default_rng(2).normal(0, 1.5, (50, 3)).astype(np.float32)
    log_p = _numpy_log_p(z.astype(np.float64), mixture)
    gamma = _np(prior.responsibilities(z))
    np.testing.assert_allclose(gamma.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(gamma, np.exp(log_p - logsumexp(log_p, axis=1, keepdims=True)), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(_np(prior.log_prob(z)), logsumexp(log_p, axis=1), rtol=1e-5)
    np.testing.assert_allclose(_np(prior.log_prob_components(z)), log_p, rtol=1e-5)
    # far from every component the exact log-sum-exp still gives a proper distribution
    far = _np(prior.responsibilities(np.full((1, 3), 200.0, np.float32)))
    assert np.all(np.isfinite(far)) and math.isclose(far.sum(), 1.0, rel_tol=1e-6)


def test_model_responsibilities_exact_and_s3vdc():
    x = _images(6)
    model = build_vade(TINY, seed=0)
    model.prior.set_mixture(*_random_mixture(TINY, 3))
    mean = _np(model.encode(x)[0])
    log_p = _numpy_log_p(mean, model.prior.get_mixture())
    expected = np.exp(log_p - logsumexp(log_p, axis=1, keepdims=True))
    np.testing.assert_allclose(_np(model.responsibilities(x)), expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(_np(model.responsibilities(x[..., 0])), expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(_np(model.responsibilities(mean.astype(np.float32))), expected, rtol=1e-4, atol=1e-7)

    s3 = build_vade(ModelConfig(**{**TINY.to_dict(), "gamma_mode": "s3vdc"}), seed=0)
    s3.set_weights(model.get_weights())
    scaled = (-log_p - (-log_p).min()) / ((-log_p).max() - (-log_p).min() + 1e-12) * -50.0
    expected = np.exp(scaled - logsumexp(scaled, axis=1, keepdims=True))
    gamma = _np(s3.responsibilities(x))
    np.testing.assert_allclose(gamma, expected, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(gamma.sum(axis=1), 1.0, rtol=1e-6)


def test_set_mixture_checks_shapes_and_round_trips():
    prior = GaussianMixturePrior(3, 4, seed=0)
    weights, means, variances = _random_mixture(TINY, 4)
    prior.set_mixture(weights, means, variances)
    mixture = prior.get_mixture()
    np.testing.assert_allclose(mixture["weights"], weights / weights.sum(), rtol=1e-6)
    np.testing.assert_allclose(mixture["means"], means, rtol=1e-6)
    np.testing.assert_allclose(mixture["variances"], variances, rtol=1e-6)
    with pytest.raises(AvaderError, match=r"set_mixture means: expected shape \(4, 3\)"):
        prior.set_mixture(weights, means.T, variances)
    with pytest.raises(AvaderError, match="positive"):
        prior.set_mixture(weights, means, -variances)
    restored = GaussianMixturePrior.from_config(prior.get_config())
    assert (restored.latent_dim, restored.n_components, restored.name) == (3, 4, "latentGMM_Layer")


# ---------------------------------------------------------------- loss, modes, training

def test_loss_equals_numpy_formula_in_every_mode():
    x = _images(8)
    model = build_vade(TINY, seed=0)
    model.prior.set_mixture(*_random_mixture(TINY, 5))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    sse, kl, vade, l2 = _numpy_terms(model, x)
    expected_latent = {"ae": 0.0, "vae": kl.mean(), "vade": vade.mean()}
    test_function = None
    for mode, weight in (("ae", 0.3), ("vae", 1.0), ("vade", 0.45)):
        model.set_mode(mode, latent_weight=weight)
        assert model.mode == mode
        result = model.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)
        assert set(result) == METRIC_NAMES
        test_function = test_function or model.test_function
        assert model.test_function is test_function  # one traced step serves every mode
        np.testing.assert_allclose(result["reconstruction_loss"], sse.mean(), rtol=1e-5)
        np.testing.assert_allclose(result["kl_loss"], expected_latent[mode], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(result["latent_weight"], weight, rtol=1e-6)
        np.testing.assert_allclose(result["loss"], sse.mean() + weight * expected_latent[mode] + l2, rtol=1e-5)
    assert vade.mean() > kl.mean() > 0  # the three modes really differ on this batch
    with pytest.raises(AvaderError, match="mode: must be one of ae, vae, vade"):
        model.set_mode("gmm")


def test_balance_term_is_kl_of_batch_occupation_to_the_weights_in_vade_only():
    x = _images(8)
    model = build_vade(TINY, seed=0)
    mixture = _random_mixture(TINY, 5)
    model.prior.set_mixture(*mixture)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.set_mode("vade", latent_weight=0.45)
    plain = model.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    model.set_mode("vae", latent_weight=0.45)
    plain_vae = model.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    mean = _np(model.encode(x)[0])
    log_p = _numpy_log_p(mean, model.prior.get_mixture())
    occupation = np.exp(log_p - logsumexp(log_p, axis=1, keepdims=True)).mean(axis=0)
    weights = mixture[0] / mixture[0].sum()
    expected = float(np.sum(occupation * np.log(occupation / weights)))
    assert expected > 0.01  # the random mixture's weights differ from this batch's occupation
    model.balance_weight = 2.0
    model.compile(optimizer=keras.optimizers.Adam(1e-3))  # the weight is read when the step is traced
    model.set_mode("vade", latent_weight=0.45)
    result = model.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], plain + 2.0 * expected, rtol=1e-5)
    model.set_mode("vae", latent_weight=0.45)  # phase 1 ignores it
    vae = model.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(vae, plain_vae, rtol=1e-6)


def test_centre_weight_weighs_the_squared_errors_by_a_gaussian_about_the_stamp_centre():
    from avader.model import centre_weights

    w = centre_weights(16, 0.25)  # sigma 4 pixels
    assert w.shape == (16, 16) and w.dtype == np.float32
    assert w[7, 7] == w[8, 8] == w[7, 8] == pytest.approx(np.exp(-0.5 * 0.5 / 16))  # centre between pixels 7 and 8
    np.testing.assert_allclose(w[0, 0], np.exp(-0.5 * 2 * 7.5**2 / 16), rtol=1e-6)
    np.testing.assert_array_equal(w, w[::-1])
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(centre_weights(16, 0.0), np.ones((16, 16), np.float32))
    with pytest.raises(AvaderError, match="centre_weight: must be 0"):
        centre_weights(16, -0.1)
    x = _images(8)
    model = build_vade(TINY, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.set_mode("vae", latent_weight=0.5)
    _, kl, _, l2 = _numpy_terms(model, x)
    reconstruction = _np(model.decode(model.encode(x)[0]))
    weighted = (w[None, :, :, None] * (x - reconstruction) ** 2).sum(axis=(1, 2, 3))
    assert weighted.mean() < 0.9 * ((x - reconstruction) ** 2).sum(axis=(1, 2, 3)).mean()  # the weight matters here
    model.centre_weight = 0.25
    model.compile(optimizer=keras.optimizers.Adam(1e-3))  # read when the step is traced
    model.set_mode("vae", latent_weight=0.5)
    result = model.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)
    np.testing.assert_allclose(result["reconstruction_loss"], weighted.mean(), rtol=1e-5)
    np.testing.assert_allclose(result["loss"], weighted.mean() + 0.5 * kl.mean() + l2, rtol=1e-5)


def test_fit_gives_named_finite_metrics_and_freezes_the_mixture_outside_vade():
    x = _images(16)
    model = build_vade(TINY, seed=0)
    model.prior.set_mixture(*_random_mixture(TINY, 6))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.prior.get_mixture()
    for mode in ("ae", "vae"):
        model.set_mode(mode, latent_weight=1.0)
        history = model.fit(x, batch_size=8, epochs=1, verbose=0, validation_data=(x,)).history
        assert set(history) == METRIC_NAMES | {f"val_{name}" for name in METRIC_NAMES}
        assert all(np.isfinite(values[0]) for values in history.values())
        for key, value in model.prior.get_mixture().items():
            np.testing.assert_array_equal(value, before[key])
    assert history["kl_loss"][0] > 0
    model.set_mode("vade", latent_weight=0.3)
    history = model.fit(x, batch_size=8, epochs=1, verbose=0).history
    assert set(history) == METRIC_NAMES and np.isfinite(history["loss"][0])
    assert history["latent_weight"] == [pytest.approx(0.3)]
    assert not np.allclose(model.prior.get_mixture()["means"], before["means"])


def test_training_call_samples_and_inference_is_deterministic():
    x = _images(4)
    model = build_vade(TINY, seed=0)
    model.set_mode("vae")
    a, b = _np(model(x, training=True)), _np(model(x, training=True))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(_np(model(x)), _np(model.decode(model.encode(x)[0])))
    model.set_mode("ae")
    np.testing.assert_allclose(_np(model(x, training=True)), _np(model(x)), rtol=1e-6)


def test_save_load_round_trip(tmp_path):
    x = _images(5)
    model = build_vade(TINY, seed=0)
    model.prior.set_mixture(*_random_mixture(TINY, 7))
    model.set_mode("vade", latent_weight=0.45)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, batch_size=5, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert type(loaded) is type(model) and loaded.model_config == TINY
    assert loaded.mode == "vade" and float(_np(loaded.latent_weight)) == pytest.approx(0.45)
    mean, log_var = model.encode(x)
    mean2, log_var2 = loaded.encode(x)
    np.testing.assert_array_equal(_np(mean), _np(mean2))
    np.testing.assert_array_equal(_np(log_var), _np(log_var2))
    np.testing.assert_array_equal(_np(model.decode(mean)), _np(loaded.decode(mean)))
    for key, value in model.prior.get_mixture().items():
        np.testing.assert_array_equal(loaded.prior.get_mixture()[key], value)
    assert (loaded.evaluate(x, batch_size=5, verbose=0, return_dict=True)
            == model.evaluate(x, batch_size=5, verbose=0, return_dict=True))


def test_dense_architecture_builds_and_trains():
    config = ModelConfig(architecture="dense", image_size=8, dense_units=(16, 16, 32), latent_dim=2,
                         n_components=3, output_activation="sigmoid", l2=0.0)
    model = build_vade(config, seed=0)
    assert [layer.name for layer in model.encoder.layers if layer.weights] == [
        "Dense1", "Dense2", "Dense3", "latentmean", "latentlog_var"]
    assert model.encoder.count_params() == 64 * 16 + 16 + 16 * 16 + 16 + 16 * 32 + 32 + 2 * (32 * 2 + 2)
    assert not model.losses
    model.compile(optimizer="adam")
    model.set_mode("vade", latent_weight=1.0)
    history = model.fit(_images(8, size=8), batch_size=4, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_mixed_bfloat16_policy():
    x = _images(8)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_vade(TINY, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.set_mode("vade", latent_weight=0.3)
        history = model.fit(x, batch_size=4, epochs=1, verbose=0).history
        assert all(np.isfinite(values[0]) for values in history.values())
        assert {v.dtype for v in model.weights} == {"float32"}
        assert model.encoder.get_layer("Conv1").compute_dtype == "bfloat16"
        assert model.prior.compute_dtype == "float32"
        assert model.encode(x)[0].dtype == "float32"
        assert model.responsibilities(x).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


_DISTRIBUTED_SCRIPT = textwrap.dedent("""
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from avader.model import ModelConfig, build_vade
    config = ModelConfig(image_size=16, filters=(4, 4, 2), kernel_sizes=(3, 3, 3), decoder_kernel_size=3,
                         latent_dim=3, n_components=4)
    x = np.random.default_rng(0).random((8, 16, 16, 1)).astype("float32")
    single = build_vade(config, seed=1)
    initial = single.get_weights()
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        mirrored = build_vade(config, seed=2)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.01))
    mirrored.set_weights(initial)
    single.compile(optimizer=keras.optimizers.SGD(0.01))
    for model in (single, mirrored):
        model.set_mode("ae")
        loss = model.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False).history["loss"][0]
        print("LOSS", loss)
    diff = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), mirrored.get_weights()))
    step = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), initial))
    print("DIFF", diff, "STEP", step)
""")


@pytest.mark.slow
def test_mirrored_strategy_step_matches_single_device():
    env = {**os.environ, "PYTHONPATH": str(avader.paths.package_dir.parent), "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", _DISTRIBUTED_SCRIPT], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    losses = [float(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("LOSS")]
    fields = next(line for line in out.stdout.splitlines() if line.startswith("DIFF")).split()
    diff, step = float(fields[1]), float(fields[3])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert step > 0.01 and diff < 1e-4 * step  # a missing 1/replicas scaling would double the step
