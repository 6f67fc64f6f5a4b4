"""Tests of avader.generation: sampling, rejection, GalaxySet output, interpolation, realism, baseline,
published weights and the generation figure builders. Morphological statistics themselves are
tested in test_morphology.py."""

import keras
import matplotlib.figure
import numpy as np
import pytest
from astropy.table import Table

import avader
from avader import generation as gen
from avader.config import load_config
from avader.data import GalaxySet
from avader.errors import AvaderError
from avader.model import ModelConfig, build_vade
from avader.plotting import (
    plot_component_distances,
    plot_generated_per_component,
    plot_interpolation,
    plot_realism_histograms,
)
from avader.runs import RunDir, read_json, write_json_atomic

TINY = ModelConfig(image_size=16, filters=(4, 4, 2), kernel_sizes=(3, 3, 3), latent_dim=3, n_components=4)
PUBLISHED_H5 = avader.paths.home().parent / "shared" / "reference" / "astrovader_saved_weights.h5"
WEIGHTS = np.array([0.1, 0.2, 0.3, 0.4])
MEANS = np.array([[0.0, 0.0, 0.0], [3.0, -1.0, 0.5], [-2.0, 2.0, 1.0], [1.0, 1.0, -3.0]])
VARIANCES = np.array([[1.0, 0.5, 2.0], [0.2, 0.3, 0.4], [1.5, 1.0, 0.7], [0.6, 2.5, 0.1]])


@pytest.fixture(scope="module")
def model():
    m = build_vade(TINY, seed=0)
    m.prior.set_mixture(WEIGHTS, MEANS, VARIANCES)
    return m


def _blobs(n, size=32, seed=0, width=(1.5, 4.0), q=(0.3, 1.0), noise=0.02):
    """Noisy elliptical Gaussian galaxies, min-max stretched to [0, 1] like the real data."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        s, ratio, angle = rng.uniform(*width), rng.uniform(*q), rng.uniform(0, np.pi)
        u = x * np.cos(angle) + y * np.sin(angle)
        v = -x * np.sin(angle) + y * np.cos(angle)
        image = np.exp(-0.5 * (u**2 + (v / ratio) ** 2) / s**2) + noise * rng.standard_normal((size, size))
        out[i] = (image - image.min()) / (image.max() - image.min())
    return out


# ---------------------------------------------------------------- sampling
def test_sample_latents_match_component_mean_and_scaled_variance(model):
    n = 20000
    for scale in (0.5, 1.0):
        for c in range(4):
            z, comp = gen.sample_latents(model, n, component=c, scale=scale, seed=c)
            assert z.shape == (n, 3) and z.dtype == np.float32 and np.all(comp == c)
            expected_var = scale * VARIANCES[c]
            np.testing.assert_allclose(z.mean(0), MEANS[c], atol=5 * np.sqrt(expected_var / n).max())
            np.testing.assert_allclose(z.var(0), expected_var, rtol=0.05)


def test_sample_latents_components_follow_weights_or_equal_counts(model):
    z, comp = gen.sample_latents(model.prior.get_mixture(), 40000, seed=3)
    np.testing.assert_allclose(np.bincount(comp, minlength=4) / 40000, WEIGHTS, atol=0.01)
    z, comp = gen.sample_latents(model, per_component=45, seed=3)
    assert z.shape == (180, 3)
    np.testing.assert_array_equal(comp, np.repeat(np.arange(4), 45))


def test_sample_latents_deterministic_for_a_seed(model):
    a = gen.sample_latents(model, 100, seed=7)
    b = gen.sample_latents(model, 100, seed=7)
    c = gen.sample_latents(model, 100, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 5, "component": 4}, "component: must lie in 0..3"),
    ({"n": 5, "component": [0, 1]}, "component: expected one index or 5"),
    ({"n": 5, "scale": 0.0}, "scale: must be a positive"),
    ({"n": 0}, "n: must be a positive"),
    ({"n": 7, "per_component": 2}, "per_component"),
])
def test_sample_latents_rejects_bad_arguments(model, kwargs, message):
    with pytest.raises(AvaderError, match=message):
        gen.sample_latents(model, **kwargs)


def test_component_responsibilities_match_the_model(model):
    z, _ = gen.sample_latents(model, 50, seed=1)
    gamma = gen.component_responsibilities(model, z)
    np.testing.assert_allclose(gamma, keras.ops.convert_to_numpy(model.prior.responsibilities(z)), atol=1e-5)
    np.testing.assert_allclose(gamma.sum(1), 1.0)


# ---------------------------------------------------------------- ex-post sampler
def _ring_latents(n=3000, seed=0):
    """Component 0: a ring (orientation-like, hollow in the middle); component 1: a blob; 2 empty."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    ring = np.stack([3 * np.cos(angle), 3 * np.sin(angle), 0.1 * rng.standard_normal(n)], 1)
    blob = np.array([8.0, 0.0, 0.0]) + 0.5 * rng.standard_normal((n // 3, 3))
    return np.concatenate([ring, blob]), np.concatenate([np.zeros(n, int), np.ones(n // 3, int)])


def test_fit_expost_follows_the_latent_means_not_one_gaussian():
    latents, components = _ring_latents()
    expost = gen.fit_expost(latents, components, 4, max_sub=8, min_members=50, seed=0)
    np.testing.assert_allclose(expost["weights"], [0.75, 0.25, 0.0, 0.0])
    assert set(expost["parent"].tolist()) == {0, 1}
    assert (expost["parent"] == 0).sum() > 1 and (expost["parent"] == 1).sum() == 1  # BIC: the blob needs one
    z, comp = gen.sample_expost(expost, 4000, component=0, seed=1)
    radius = np.hypot(z[:, 0], z[:, 1])
    # one Gaussian per component would put a quarter of the samples inside radius 1.7; the ring has none
    one = gen.fit_expost(latents, components, 4, max_sub=1)
    radius_one = np.hypot(*gen.sample_expost(one, 4000, component=0, seed=1)[0][:, :2].T)
    assert np.mean(radius_one < 1.7) > 0.15 and np.mean(radius < 1.7) < 0.05
    np.testing.assert_allclose(np.median(radius), 3.0, atol=0.2)
    assert np.all(comp == 0)
    _, drawn = gen.sample_expost(expost, 20000, seed=2)
    np.testing.assert_allclose(np.bincount(drawn, minlength=4) / 20000, expost["weights"], atol=0.01)
    with pytest.raises(AvaderError, match="component 2: has no members"):
        gen.sample_expost(expost, per_component=3)


def test_expost_sampler_is_deterministic_and_checks_its_input(model):
    latents, components = _ring_latents(600)
    a = gen.fit_expost(latents, components, 4, seed=3)
    b = gen.fit_expost(latents, components, 4, seed=3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(gen.sample_expost(a, 50, seed=4)[0], gen.sample_expost(b, 50, seed=4)[0])
    images, catalog = gen.generate(model, 20, seed=4, expost=a)
    np.testing.assert_array_equal(catalog["latent"], gen.sample_expost(a, 20, seed=4)[0])
    assert set(np.asarray(catalog["component"]).tolist()) <= {0, 1}
    with pytest.raises(AvaderError, match="latents .* and components .* do not match"):
        gen.fit_expost(latents[:-1], components, 4)
    with pytest.raises(AvaderError, match="components must lie in 0..3"):
        gen.fit_expost(latents, components + 3, 4)
    with pytest.raises(AvaderError, match="expost: expected a dict"):
        gen.sample_expost({"weights": a["weights"]}, 5)
    wide = dict(a, means=np.zeros((len(a["parent"]), 5)), covariances=np.tile(np.eye(5), (len(a["parent"]), 1, 1)))
    with pytest.raises(AvaderError, match="5 latent dimensions, the model has 3"):
        gen.generate(model, 5, expost=wide)


# ---------------------------------------------------------------- generation
def test_generate_shapes_range_and_determinism(model):
    images, catalog = gen.generate(model, 12, component=2, seed=5)
    assert images.shape == (12, 16, 16) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert catalog.colnames == ["id", "component", "latent", "responsibility"]
    assert catalog["latent"].shape == (12, 3) and np.all(catalog["component"] == 2)
    again, catalog2 = gen.generate(model, 12, component=2, seed=5)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(catalog["latent"], catalog2["latent"])
    decoded = np.clip(keras.ops.convert_to_numpy(model.decode(np.asarray(catalog["latent"])))[..., 0], 0, 1)
    np.testing.assert_allclose(images, decoded, atol=1e-6)
    own = gen.component_responsibilities(model, catalog["latent"])[:, 2]
    np.testing.assert_allclose(catalog["responsibility"], own, rtol=1e-5)


def test_rejection_keeps_only_confident_samples(model):
    _, plain = gen.generate(model, 300, seed=2, scale=2.0)
    assert np.min(plain["responsibility"]) < 0.9  # otherwise the rejection below proves nothing
    _, kept = gen.generate(model, 300, seed=2, scale=2.0, reject_below=0.9)
    assert len(kept) == 300 and np.all(kept["responsibility"] > 0.9)
    gamma = gen.component_responsibilities(model, kept["latent"])
    assert np.all(gamma[np.arange(300), kept["component"]] > 0.9)
    # rejection resamples within the slot's component: proportions are those drawn before rejection
    np.testing.assert_array_equal(kept["component"], plain["component"])


def test_rejection_on_reencoded_images_and_give_up(model):
    images, catalog = gen.generate(model, 10, seed=4, reject_below=0.0, reject_on="image")
    gamma = keras.ops.convert_to_numpy(model.responsibilities(images))
    np.testing.assert_allclose(catalog["responsibility"], gamma[np.arange(10), catalog["component"]], rtol=1e-4)
    with pytest.raises(AvaderError, match=r"reject_below=0.999999: only \d+ of 50 samples kept after 2 tries"):
        gen.generate(model, 50, seed=0, scale=50.0, reject_below=0.999999, max_tries=2)
    with pytest.raises(AvaderError, match="reject_on"):
        gen.generate(model, 5, reject_on="pixels")


def _save_run_model(model, folder):
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    return folder


def test_generate_run_writes_a_galaxyset(model, tmp_path):
    run = _save_run_model(model, tmp_path / "run")
    out = gen.generate_run(run, 10, tmp_path / "generated.fits", component=1, scale=0.5, seed=3)
    gs = GalaxySet.read(out)
    assert gs.shape == (10, 16, 16) and gs.images.dtype.kind == "f" and gs.images.dtype.itemsize == 4
    assert {"id", "component", "latent", "responsibility"} <= set(gs.catalog.colnames)
    assert gs.catalog["latent"].shape == (10, 3) and np.all(gs.catalog["component"] == 1)
    assert gs.meta["SCALE"] == 0.5 and gs.meta["SEED"] == 3 and gs.meta["RUN"] == str(run)
    assert gs.meta["COMPSEL"] == 1
    images, catalog = gen.generate(model, 10, component=1, scale=0.5, seed=3)
    np.testing.assert_allclose(gs.get_images(slice(None)), images, atol=1e-6)
    np.testing.assert_allclose(gs.catalog["latent"], catalog["latent"])
    with pytest.raises(AvaderError, match="generated.fits: exists"):
        gen.generate_run(run, 10, tmp_path / "generated.fits")
    out8 = gen.generate_run(run, None, tmp_path / "g8.fits", per_component=2, dtype="uint8", reject_below=0.5)
    gs8 = GalaxySet.read(out8)
    assert gs8.images.dtype == np.uint8 and len(gs8) == 8 and gs8.meta["REJECT"] == 0.5
    assert np.all(gs8.catalog["responsibility"] > 0.5)


# ---------------------------------------------------------------- interpolation
def test_interpolation_endpoints_are_reconstructions(model):
    images = _blobs(2, size=16, seed=1)
    strip, z = gen.interpolate(model, images[0], images[1], steps=5, return_latents=True)
    assert strip.shape == (5, 16, 16)
    reconstruction = np.clip(keras.ops.convert_to_numpy(model(images[..., None]))[..., 0], 0, 1)
    np.testing.assert_allclose(strip[0], reconstruction[0], atol=1e-5)
    np.testing.assert_allclose(strip[-1], reconstruction[1], atol=1e-5)
    np.testing.assert_allclose(z[2], 0.5 * (z[0] + z[-1]), atol=1e-6)
    strip = gen.interpolate(model, 0, 3, steps=3)
    ends = np.clip(keras.ops.convert_to_numpy(model.decode(MEANS[[0, 3]].astype(np.float32)))[..., 0], 0, 1)
    np.testing.assert_allclose(strip[[0, -1]], ends, atol=1e-5)
    with pytest.raises(AvaderError, match="component must be an integer in 0..3"):
        gen.interpolate(model, 0, 9)
    with pytest.raises(AvaderError, match="steps"):
        gen.interpolate(model, 0, 1, steps=1)


# ---------------------------------------------------------------- realism
def test_realism_zero_against_itself_and_larger_when_shifted():
    real = _blobs(80, seed=0)
    same = gen.realism(real, real)
    assert same["min_threshold"] > 0
    for name in gen.REALISM_STATISTICS:
        assert same["statistics"][name]["wasserstein"] == pytest.approx(0.0, abs=1e-12)
        assert same["statistics"][name]["ks_statistic"] == pytest.approx(0.0, abs=1e-12)
    twin = gen.realism(real, _blobs(80, seed=1))
    broader = gen.realism(real, _blobs(80, seed=1, width=(3.0, 6.0)))
    rounder = gen.realism(real, _blobs(80, seed=1, q=(0.8, 1.0)))
    assert twin["mean_wasserstein"] < 0.4
    assert broader["statistics"]["r_half"]["wasserstein"] > 3 * twin["statistics"]["r_half"]["wasserstein"] + 0.3
    assert rounder["statistics"]["axis_ratio"]["wasserstein"] > twin["statistics"]["axis_ratio"]["wasserstein"] + 0.5
    assert broader["mean_wasserstein"] > twin["mean_wasserstein"]


def test_add_noise_matches_real_noise_levels():
    clean = np.full((400, 32, 32), 0.3, np.float32)
    noisy = gen.add_noise(clean, np.repeat([0.02, 0.05], 200), seed=1)
    assert noisy.dtype == np.float32 and noisy.min() >= 0.0 and noisy.max() <= 1.0
    np.testing.assert_allclose(noisy * 255, np.rint(noisy * 255), atol=1e-4)
    np.testing.assert_array_equal(noisy, gen.add_noise(clean, np.repeat([0.02, 0.05], 200), seed=1))
    levels = gen.noise_levels(gen.add_noise(clean, np.repeat([0.02, 0.05], 200), seed=1, levels=None), sample=None)
    np.testing.assert_allclose(np.median(levels[:200]), 0.02, rtol=0.1)
    np.testing.assert_allclose(np.median(levels[200:]), 0.05, rtol=0.1)
    assert gen.noise_floor(noisy, sample=None) == pytest.approx(2 * np.median(gen.noise_levels(noisy, sample=None)))
    assert np.all(gen.add_noise(np.zeros((2, 8, 8)), 0.1, levels=None) >= 0.0)


def test_observation_model_of_the_realism_report_reproduces_simulated_images():
    """A perfect decoder passes the realism bar: noise-free renders of the simulated galaxies, observed
    with add_noise at the noise levels measured on the noisy renders (as realism_report observes decoded
    images), match the noisy renders; the noise-free renders themselves do not (Gini, asymmetry)."""
    from avader.simulate import render_galaxy

    renders = [render_galaxy(i, seed=3, image_size=64, noise_free=True) for i in range(300)]
    real = np.rint(np.stack([r[0] for r in renders]) * 255.0).astype(np.float32) / 255.0
    clean = np.stack([r[2] for r in renders])
    levels = gen.noise_levels(real, sample=None)
    observed = gen.add_noise(clean, np.random.default_rng(0).choice(levels, len(clean)), seed=1)
    matched = gen.realism(real, observed)["statistics"]
    bare = gen.realism(real, clean)["statistics"]
    for name in ("axis_ratio", "concentration", "r_half"):
        assert matched[name]["wasserstein"] < 0.15, name  # measured: 0.04, 0.08, 0.08
    assert bare["gini"]["wasserstein"] > 3 * matched["gini"]["wasserstein"]  # measured: 0.55 vs 0.14
    with pytest.raises(AvaderError, match="noise_free: needs the linear stretch"):
        from avader.simulate import SimulationConfig
        render_galaxy(0, seed=0, config=SimulationConfig(stretch="asinh"), noise_free=True)


def test_unclip_inverts_the_expected_observed_pixel():
    mu = np.linspace(-0.05, 1.05, 221)[None, None, :].repeat(2, 0)
    sigma = np.array([0.02, 0.05])
    expected = gen.clipped_mean(mu, sigma)
    draws = np.clip(mu + sigma[:, None, None] * np.random.default_rng(0).standard_normal((4000, *mu.shape)), 0, 1)
    np.testing.assert_allclose(expected, draws.mean(0), atol=4 * 0.05 / np.sqrt(4000))
    assert np.all(np.diff(expected, axis=-1) > 0)
    np.testing.assert_allclose(gen.unclip(expected, sigma), mu, atol=2e-5)
    np.testing.assert_array_equal(gen.unclip(expected, [0.0, 0.02])[0], expected[0].astype(np.float32))
    np.testing.assert_array_equal(gen.clipped_mean(mu, 0.0), np.clip(mu, 0, 1))
    with pytest.raises(AvaderError, match="noise levels must be non-negative"):
        gen.unclip(expected, -0.1)


def test_observation_model_for_a_squared_error_decoder():
    """A perfect squared-error decoder predicts the expected observed image E[clip(render + noise)]
    (its sky is the mean of clipped noise, above 0); observe_expected of that matches the noisy renders
    as well as adding noise to the noise-free render does, while adding noise to it directly does not."""
    from avader.simulate import render_galaxy

    renders = [render_galaxy(i, seed=3, image_size=64, noise_free=True) for i in range(300)]
    real = np.rint(np.stack([r[0] for r in renders]) * 255.0).astype(np.float32) / 255.0
    clean = np.stack([r[2] for r in renders])
    levels = np.random.default_rng(0).choice(gen.noise_levels(real, sample=None), len(clean))
    decoded = gen.clipped_mean(clean, levels).astype(np.float32)
    expected = gen.realism(real, gen.observe_expected(decoded, levels, seed=1))
    direct = gen.realism(real, gen.add_noise(decoded, levels, seed=1))
    reference = gen.realism(real, gen.add_noise(clean, levels, seed=1))
    assert expected["mean_wasserstein"] < 1.2 * reference["mean_wasserstein"]  # measured: 0.069 vs 0.073
    assert direct["mean_wasserstein"] > 1.5 * expected["mean_wasserstein"]  # measured: 0.244
    sky = {name: np.median(images[:, :4].mean((1, 2))) for name, images in
           (("expected", gen.observe_expected(decoded, levels, seed=1)), ("direct", gen.add_noise(decoded, levels, seed=1)),
            ("reference", gen.add_noise(clean, levels, seed=1)))}
    assert sky["expected"] == pytest.approx(sky["reference"], rel=0.05)  # measured: 0.0081 vs 0.0080
    assert sky["direct"] > 1.3 * sky["reference"]  # the clipped-noise sky counted twice: 0.0118


def test_noise_from_sky_pairs_each_decoded_galaxy_with_its_own_noise():
    """A perfect squared-error decoder of each galaxy (E[clip(render + its own noise)]): its sky gives
    back that galaxy's noise, and observed so it matches the noisy renders far better than with noise
    levels drawn at random from the real images (the pairing of a galaxy and its noise matters after
    the per-image stretch)."""
    from avader.morphology import measure
    from avader.simulate import render_galaxy

    renders = [render_galaxy(i, seed=3, image_size=64, noise_free=True) for i in range(300)]
    real = np.rint(np.stack([r[0] for r in renders]) * 255.0).astype(np.float32) / 255.0
    clean = np.stack([r[2] for r in renders])
    own = measure(real, statistics=("noise",), border=4)["noise"]
    decoded = gen.clipped_mean(clean, own).astype(np.float32)
    implied = gen.noise_from_sky(decoded)
    assert np.median(implied / own) == pytest.approx(1.0, abs=0.08)  # measured: 1.03
    assert np.percentile(implied / own, 95) < 1.5  # measured: 1.24 (wings reaching every side)
    levels = gen.noise_levels(real, sample=None)
    sky = gen.realism(real, gen.observe_expected(decoded, np.clip(implied, levels.min(), levels.max()), seed=1))
    shuffled = gen.realism(real, gen.observe_expected(decoded, np.random.default_rng(0).choice(levels, 300), seed=1))
    for name in ("axis_ratio", "concentration", "r_half"):
        assert sky["statistics"][name]["wasserstein"] < 0.15, name  # measured: 0.02, 0.03, 0.06
    assert sky["mean_wasserstein"] < 0.7 * shuffled["mean_wasserstein"]  # measured: 0.058 vs 0.123
    flat = np.full((2, 16, 16), 0.04, np.float32)
    np.testing.assert_allclose(gen.noise_from_sky(flat), np.sqrt(2 * np.pi) * 0.04, rtol=1e-6)
    with pytest.raises(AvaderError, match="noise_from_sky"):
        gen.noise_from_sky(flat[:, :6, :6])


def test_report_noise_mode_checks_that_the_real_sky_is_clipped():
    rng = np.random.default_rng(0)
    clipped = np.clip(0.01 * rng.standard_normal((50, 32, 32)), 0, 1).astype(np.float32)
    measured = gen._sampled_noise(clipped, 4, None, 0)[1]
    np.testing.assert_array_equal(measured, gen.noise_levels(clipped, sample=None))
    assert gen._noise_mode("sky", clipped, measured) == "sky"
    pedestal = (clipped + 0.2).astype(np.float32)  # sky not clipped at black: its mean says nothing of the noise
    assert gen._noise_mode("sky", pedestal, gen._sampled_noise(pedestal, 4, None, 0)[1]) == "random"
    assert gen._noise_mode("random", clipped, measured) == "random"
    with pytest.raises(AvaderError, match="noise: expected one of sky, random"):
        gen._noise_mode("own", clipped, measured)


def test_realism_per_component_compares_matching_components():
    small, large = _blobs(40, seed=2, width=(1.5, 2.0)), _blobs(40, seed=3, width=(4.0, 5.0))
    real = np.concatenate([small, large])
    labels = np.repeat([0, 1], 40)
    generated = np.concatenate([_blobs(30, seed=4, width=(1.5, 2.0)), _blobs(30, seed=5, width=(4.0, 5.0))])
    gen_labels = np.repeat([0, 1], 30)
    matched = gen.realism_per_component(real, labels, generated, gen_labels)
    swapped = gen.realism_per_component(real, labels, generated, 1 - gen_labels)
    assert matched["table_components"] == [0, 1]
    assert np.asarray(matched["wasserstein_table"]).shape == (2, len(gen.REALISM_STATISTICS))
    assert matched["components"]["0"]["n_real"] == 40 and matched["components"]["1"]["n_generated"] == 30
    assert swapped["mean_wasserstein"] > matched["mean_wasserstein"] + 1.0
    sparse = gen.realism_per_component(real, labels, generated[:33], np.repeat([0, 1], [30, 3]))
    assert "mean_wasserstein" not in sparse["components"]["1"] and np.all(np.isnan(sparse["wasserstein_table"][1]))
    with pytest.raises(AvaderError, match="generated_components"):
        gen.realism_per_component(real, labels, generated, gen_labels[:5])


def _tiny_run(tmp_path, model, sky_clipped=False):
    config = load_config("smoke", {"model.image_size": 16, "model.filters": [4, 4, 2], "model.kernel_sizes": [3, 3, 3],
                                   "model.latent_dim": 3, "model.n_components": 4, "data.image_size": 16,
                                   "training.batch_size": 16, "training.warmup_epochs": 1, "training.vade_periods": 0})
    images = _blobs(48, size=16, seed=9)
    if sky_clipped:  # the sky at black with its noise clipped, as in the SDSS JPEGs and the simulated default
        images = np.clip(images - np.median(images[:, :3], axis=(1, 2))[:, None, None], 0, 1)
    data = GalaxySet.from_arrays(images).write(tmp_path / "real.fits")
    config = config.replace({"data.path": str(data)})
    run = RunDir(tmp_path / "run").create(config)
    model.save(run / "model.keras")
    return config, run, data


def test_baseline_and_realism_report_merge_into_metrics(model, tmp_path):
    config, run, data = _tiny_run(tmp_path, model)
    with pytest.raises(AvaderError, match="no baseline VAE"):
        gen.load_baseline_vae(run.path)
    untrained = build_vade(config.model, seed=1)  # training it is tests/test_training.py's job
    untrained.set_mode("vae", latent_weight=1.0)
    untrained.save(run / "baseline_vae.keras")
    baseline = gen.load_baseline_vae(run.path)
    a = gen.sample_baseline(baseline, 6, seed=1)
    assert a.shape == (6, 16, 16) and np.array_equal(a, gen.sample_baseline(baseline, 6, seed=1))
    write_json_atomic(run / "metrics.json", {"clustering": {"nmi": 0.5}})
    report, samples = gen.realism_report(run, n=None, seed=0, return_samples=True)
    text = (run / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON: undefined scores are null
    metrics = read_json(run / "metrics.json")
    assert metrics["clustering"] == {"nmi": 0.5}
    assert metrics["generation"]["n_real"] == 48 and metrics["generation"]["scale"] == 0.5
    assert metrics["generation"]["n_generated"] == 48
    assert set(report) >= {"vade", "baseline", "per_component", "vade_closer_than_baseline", "min_threshold",
                           "reconstruction", "match_noise"}
    assert set(samples) >= {"real", "vade", "baseline", "reconstruction"}
    assert set(report["vade"]["statistics"]) == set(gen.REALISM_STATISTICS)
    assert report["baseline"] is not None and samples["baseline"]["r_half"].shape == (48,)
    real = GalaxySet.read(data)
    expected = keras.ops.convert_to_numpy(model.responsibilities(real.get_images(slice(None)))).argmax(1)
    np.testing.assert_array_equal(samples["real_components"], expected)
    # assignments come from clusters.fits when the clustering stage wrote it
    constant = 3 if np.any(expected != 3) else 0
    Table({"id": real.ids, "component": np.full(len(real), constant)}).write(run / "clusters.fits")
    report, samples = gen.realism_report(run.path, n=20, seed=1, baseline=False, write=False, return_samples=True)
    assert report["n_real"] == 20 and report["baseline"] is None and "baseline" not in samples
    assert np.all(samples["real_components"] == constant)
    assert read_json(run / "metrics.json")["generation"]["n_real"] == 48


def test_realism_report_observes_decoded_images_as_expected_observations(model, tmp_path, monkeypatch):
    _, run, _ = _tiny_run(tmp_path, model, sky_clipped=True)
    seen = []
    observe = gen.observe_expected
    sigmas = []

    def spy(images, sigma, *a, **k):
        seen.append(len(images))
        sigmas.append((np.asarray(images), np.asarray(sigma)))
        return observe(images, sigma, *a, **k)

    monkeypatch.setattr(gen, "observe_expected", spy)
    report = gen.realism_report(run, n=20, seed=0, baseline=False, write=False)
    assert seen == [20, 20]  # the generated galaxies and the reconstructions
    real = GalaxySet.read(run.load_config().dataset_path())
    levels = gen.noise_levels(real.get_images(np.sort(np.random.default_rng([0, 8]).choice(len(real), 20, False))))
    assert report["noise"] == "sky"
    for images, sigma in sigmas:  # each decoded image observed with the noise its own sky implies
        np.testing.assert_allclose(sigma, np.clip(gen.noise_from_sky(images), levels.min(), levels.max()))
    sigmas.clear()
    assert gen.realism_report(run, n=20, seed=0, baseline=False, write=False, noise="random")["noise"] == "random"
    for _, sigma in sigmas:  # drawn from the real images' levels
        assert np.isin(sigma, levels).all()
    with pytest.raises(AvaderError, match="noise: expected one of"):
        gen.realism_report(run, n=20, seed=0, baseline=False, write=False, noise="loud")


def test_expost_sampler_of_a_run_in_the_report_and_generate_run(model, tmp_path):
    config, run, data = _tiny_run(tmp_path, model)
    untrained = build_vade(config.model, seed=1)
    untrained.set_mode("vae", latent_weight=1.0)
    untrained.save(run / "baseline_vae.keras")
    with pytest.raises(AvaderError, match="no ex-post sampler"):
        gen.load_expost(run.path)
    report = gen.realism_report(run, n=20, seed=0, sampler="expost")
    assert report["sampler"] == "expost" and report["scale"] == 1.0 and report["baseline"] is not None
    assert report["n_real"] == 20 and report["n_fitted"] == 28  # held out: the other 28 galaxies
    assert gen.realism_report(run, n=None, seed=0, sampler="expost", write=False)["n_fitted"] == 48
    metrics = read_json(run / "metrics.json")
    assert metrics["generation_expost"]["n_fitted"] == 28 and "generation" not in metrics
    assert not (run / gen.EXPOST_FILE).exists()  # the report's held-out sampler is not the run's
    out = gen.generate_run(run, 12, tmp_path / "expost.fits", seed=2, sampler="expost")
    stored = gen.load_expost(run.path)
    real = GalaxySet.read(data).get_images(slice(None))
    means = keras.ops.convert_to_numpy(model.encode(real)[0])
    refit = gen.fit_expost(means, keras.ops.convert_to_numpy(model.responsibilities(real)).argmax(1), 4)
    for key in refit:
        np.testing.assert_allclose(stored[key], refit[key], rtol=1e-5, atol=1e-6)
    gs = GalaxySet.read(out)
    assert gs.meta["SAMPLER"] == "expost" and gs.meta["SCALE"] == 1.0
    np.testing.assert_allclose(gs.catalog["latent"], gen.sample_expost(stored, 12, seed=2)[0], rtol=1e-6)
    with pytest.raises(AvaderError, match="sampler: must be one of mixture, expost"):
        gen.realism_report(run, sampler="prior")
    # a sampler fitted for another model.keras is fitted again, a broken file is named
    build_vade(config.model, seed=5).save(run / "model.keras")
    gen.generate_run(run, 4, tmp_path / "refit.fits", seed=2, sampler="expost")
    assert str(gen.load_expost(run.path)["model_sha256"]) != str(stored["model_sha256"])
    (run / gen.EXPOST_FILE).write_bytes(b"not an npz")
    with pytest.raises(AvaderError, match="expost.npz: cannot read the ex-post sampler"):
        gen.load_expost(run.path)
    np.savez(run / gen.EXPOST_FILE, weights=np.ones(2))
    with pytest.raises(AvaderError, match="expost.npz: expost: expected a dict"):
        gen.load_expost(run.path)


def test_metrics_are_strict_json():
    safe = gen._json_safe({"a": [np.float32(np.nan), 1.0, float("inf")], "b": np.int64(3), "c": (np.float64(0.5),)})
    assert safe == {"a": [None, 1.0, None], "b": 3, "c": [0.5]} and type(safe["b"]) is int


def test_load_baseline_missing_is_an_error(tmp_path):
    with pytest.raises(AvaderError, match="baseline_vae.keras: no baseline VAE"):
        gen.load_baseline_vae(tmp_path)


# ---------------------------------------------------------------- published weights
@pytest.fixture(scope="module")
def published_path():
    if not PUBLISHED_H5.is_file():
        pytest.skip(f"reference weights not found: {PUBLISHED_H5}")
    return PUBLISHED_H5


def test_published_generation_deterministic_and_non_negative(published_path):
    a = gen.published_generation(published_path, per_component=2, seed=0)
    b = gen.published_generation(published_path, per_component=2, seed=0)
    assert a.shape == (12, 2, 128, 128) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0
    # every component decodes to light concentrated in the centre, not to an empty or flat image
    centre, frame = a[..., 48:80, 48:80].mean(axis=(-1, -2)), a[..., :8, :].mean(axis=(-1, -2))
    assert np.all(centre > 2 * frame)


@pytest.mark.slow
def test_published_generation_paper_figure(published_path):
    a = gen.published_generation(published_path, per_component=45, seed=0)
    assert a.shape == (12, 45, 128, 128) and a.min() >= 0.0
    np.testing.assert_array_equal(a, gen.published_generation(published_path, per_component=45, seed=0))


# ---------------------------------------------------------------- figures
def test_figure_builders_return_figures():
    images = np.random.default_rng(0).random((3, 4, 8, 8))
    fig = plot_generated_per_component(images)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 12
    assert len(plot_interpolation(images[0]).axes) == 4
    samples = {"real": {"r_half": np.arange(10.0), "gini": np.ones(10)},
               "VaDE": {"r_half": np.arange(10.0) + 1, "gini": np.ones(10)}}
    fig = plot_realism_histograms(samples, {"VaDE": {"statistics": {"r_half": {"wasserstein": 0.123}}}}, ncols=2)
    assert "VaDE 0.123" in fig.axes[0].get_title()
    table = {"table_components": [0, 1], "table_statistics": ["r_half", "gini"],
             "wasserstein_table": [[0.1, float("nan")], [0.2, 0.3]],
             "components": {"0": {"n_real": 5}, "1": {"n_real": 7}}}
    fig = plot_component_distances(table)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0.10", "-", "0.20", "0.30"]
