"""Tests of avader.deblending: the resampler, detection, the latent-space fit, baselines and metrics.

The model here is analytic (no training): a dense VaDE whose decoder maps z linearly onto a
Gaussian galaxy with size and ellipticity modes (``relu(B0 + sum_d z_d B_d)``), whose encoder
returns z = 0, and whose mixture has three known components.
"""

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from avader.errors import AvaderError

SIZE = 32
LATENT = 3


def _gaussian_basis(size, sigma=2.5):
    y, x = np.indices((size, size)) - (size - 1) / 2.0
    g = 0.8 * np.exp(-0.5 * (x**2 + y**2) / sigma**2)
    r2 = (x**2 + y**2) / sigma**2
    return g, [0.3 * g * (r2 - 1.0), 0.3 * g * (x**2 - y**2) / sigma**2, 0.3 * g * 2 * x * y / sigma**2]


@pytest.fixture(scope="module")
def analytic_model():
    from avader.model import ModelConfig, build_vade

    config = ModelConfig(architecture="dense", image_size=SIZE, dense_units=(2 * LATENT,), latent_dim=LATENT,
                         n_components=3, l2=0.0, leaky_relu_slope=0.1, output_activation="relu")
    model = build_vade(config, seed=0)
    for layer in model.encoder.layers:
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    hidden, output = [layer for layer in model.decoder.layers if layer.get_weights()]
    hidden.set_weights([np.hstack([np.eye(LATENT), -np.eye(LATENT)]).astype(np.float32),
                        np.zeros(2 * LATENT, np.float32)])
    b0, modes = _gaussian_basis(SIZE)
    kernel = np.vstack([m.ravel() for m in modes] + [-m.ravel() for m in modes]) / 1.1  # leaky(z) - leaky(-z) = 1.1 z
    output.set_weights([kernel.astype(np.float32), b0.ravel().astype(np.float32)])
    model.prior.set_mixture([0.4, 0.3, 0.3], [[0, 0, 0], [2.5, 2.5, 0], [-2.5, 0, 2.5]], np.ones((3, LATENT)))
    return model


def _render(model, z, xy, zoom, flux):
    """Sources as the blend model draws them: decoded, pedestal-free, warped, unit flux times flux."""
    from avader.deblending import _BlendFit, warp

    templates = _BlendFit(model, (SIZE, SIZE), 1.0).templates(np.asarray(z, np.float32)).numpy()
    xy = np.asarray(xy, np.float32)
    shapes = warp(templates, xy[:, 0], xy[:, 1], np.asarray(zoom, np.float32)).numpy()
    return shapes / shapes.sum(axis=(1, 2), keepdims=True) * np.asarray(flux)[:, None, None]


def _blobs(centres, fluxes, sigma=1.8, size=SIZE):
    y, x = np.indices((size, size))
    out = []
    for (cx, cy), f in zip(centres, fluxes):
        g = np.exp(-0.5 * ((x - cx) ** 2 + (y - cy) ** 2) / sigma**2)
        out.append(f * g / g.sum())
    return np.array(out)


# ------------------------------------------------------------------ resampler
@pytest.mark.parametrize("dx, dy", [(0.3, -1.7), (2.0, 0.0), (-3.25, 4.5)])
def test_warp_shift_matches_scipy(dx, dy):
    from avader.deblending import warp

    image = ndimage.gaussian_filter(np.random.default_rng(0).random((SIZE, SIZE)), 2).astype(np.float32)
    c = (SIZE - 1) / 2.0
    out = warp(image[None], [c + dx], [c + dy], [1.0]).numpy()[0]
    expected = ndimage.shift(image, (dy, dx), order=1, mode="grid-constant", cval=0.0)
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("zoom", [1.5, 2.0])
def test_warp_zoom_matches_scipy(zoom):
    from avader.deblending import warp

    image = ndimage.gaussian_filter(np.random.default_rng(1).random((SIZE, SIZE)), 2).astype(np.float32)
    c = (SIZE - 1) / 2.0
    x0, y0 = c + 1.2, c - 0.7
    out = warp(image[None], [x0], [y0], [zoom]).numpy()[0]
    yy, xx = np.indices(image.shape)
    expected = ndimage.map_coordinates(image, [c + (yy - y0) / zoom, c + (xx - x0) / zoom], order=1,
                                       mode="grid-constant", cval=0.0)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_warp_shrinking_averages_and_keeps_the_centre():
    from avader.deblending import warp

    image = _blobs([(15.5, 15.5)], [1.0], sigma=4.0)[0].astype(np.float32)
    out = warp(image[None], [10.0], [20.0], [0.5]).numpy()[0]
    assert out.sum() == pytest.approx(0.25 * image.sum(), rel=1e-3)  # values kept, area quartered
    from avader.morphology import centroid

    assert centroid(out) == pytest.approx((10.0, 20.0), abs=0.05)


def test_warp_is_differentiable_in_position_and_zoom():
    import tensorflow as tf

    from avader.deblending import warp

    image = tf.constant(_blobs([(15.5, 15.5)], [1.0])[None, 0], tf.float32)
    x, zoom = tf.Variable([14.0]), tf.Variable([0.8])
    with tf.GradientTape() as tape:
        out = warp(image, x, [15.5], zoom)
        value = tf.reduce_sum(out * tf.range(SIZE, dtype=tf.float32)[None, None, :])
    gx, gz = tape.gradient(value, [x, zoom])
    assert np.isfinite(gx.numpy()).all() and gx.numpy()[0] > 0  # moving right raises the first x moment
    assert np.isfinite(gz.numpy()).all()


# ------------------------------------------------------------------ detection and baselines
def test_detect_finds_two_separated_sources():
    from avader.deblending import detect

    truth = [(9.0, 10.0), (22.5, 21.0)]
    rng = np.random.default_rng(2)
    image = _blobs(truth, [30.0, 15.0]).sum(0) + 0.1 + rng.normal(0, 0.01, (SIZE, SIZE))
    found = detect(image)
    assert len(found["centres"]) == 2
    np.testing.assert_allclose(found["centres"], truth, atol=0.3)   # brightest first
    assert found["noise_sigma"] == pytest.approx(0.01, rel=0.3)
    assert found["background"] == pytest.approx(0.1, abs=0.005)
    assert set(np.unique(found["segmentation"])) == {0, 1, 2}


def _elliptical(cx, cy, sx, sy, flux, size=SIZE):
    y, x = np.indices((size, size))
    g = np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))
    return flux * g / g.sum()


def test_asymmetry_finds_a_companion_on_a_wing_that_detection_merges():
    from avader.deblending import _asymmetric_sources, detect

    rng = np.random.default_rng(1)
    galaxy = _elliptical(15.5, 16.0, 4.5, 3.0, 100.0)
    image = galaxy + _elliptical(22.5, 16.0, 1.2, 1.2, 8.0) + rng.normal(0, 0.01, (SIZE, SIZE))
    found = detect(image, 0.01, 0.0)
    assert len(found["centres"]) == 1                       # a shoulder, no peak of its own
    extra, segmentation = _asymmetric_sources(image, found["centres"][0], 0.01, 0.3, found["centres"], nsigma=5.0)
    assert len(extra) == 1
    np.testing.assert_allclose(extra[0], [22.5, 16.0], atol=0.5)
    iy, ix = 16, 22
    assert segmentation[iy, ix] > 0 and segmentation[16, 9] == 0   # the mirror side is not the companion's
    # a lone symmetric galaxy with noise: nothing breaks its symmetry
    lone = galaxy + rng.normal(0, 0.01, (SIZE, SIZE))
    assert len(_asymmetric_sources(lone, (15.5, 16.0), 0.01, 0.3, found["centres"], nsigma=5.0)[0]) == 0


def test_symmetry_search_adds_no_source_to_a_lone_galaxy_and_checks_its_argument(analytic_model):
    from avader.deblending import deblend

    galaxy = _render(analytic_model, [[0.3, 0.4, 0.0]], [[15.7, 16.2]], [1.0], [40.0])[0]
    blend = galaxy + np.random.default_rng(8).normal(0, 0.005, (SIZE, SIZE))
    kwargs = {"noise_sigma": 0.005, "background": 0.0, "steps": 60}
    for symmetry in (8.0, 3.0):
        result = deblend(analytic_model, blend, symmetry=symmetry, **kwargs)
        assert result["n_sources"][0] == 1
        assert result["flux"][0, 0] == pytest.approx(40.0, rel=0.02)
    for bad in (-1.0, float("inf"), "8"):
        with pytest.raises(AvaderError, match="symmetry: must be a number >= 0"):
            deblend(analytic_model, blend, symmetry=bad, **kwargs)


@pytest.mark.parametrize("method", ["photutils_deblend", "sep_deblend"])
def test_baselines_split_two_blobs(method):
    import avader.deblending as deb

    truth = [(9.0, 10.0), (22.5, 21.0)]
    rng = np.random.default_rng(3)
    image = _blobs(truth, [30.0, 15.0]).sum(0) + rng.normal(0, 0.005, (SIZE, SIZE))
    result = getattr(deb, method)(image, noise_sigma=0.005)
    assert result["sources"].shape == (2, SIZE, SIZE)
    np.testing.assert_allclose(result["centres"], truth, atol=0.3)
    np.testing.assert_allclose(result["flux"], [30.0, 15.0], rtol=0.1)


# ------------------------------------------------------------------ the fit
def test_fit_recovers_a_synthetic_blend_from_nearby_starts(analytic_model):
    from avader.deblending import deblend

    z = [[0.3, -0.2, 0.1], [-0.2, 0.3, -0.1]]
    xy = np.array([[13.3, 14.6], [20.8, 18.2]])
    flux = np.array([40.0, 20.0])
    sources = _render(analytic_model, z, xy, [1.0, 0.8], flux)
    rng = np.random.default_rng(4)
    blend = sources.sum(0) + 0.05 + rng.normal(0, 0.005, (SIZE, SIZE))
    start = xy + [[0.6, -0.5], [-0.5, 0.6]]
    result = deblend(analytic_model, blend, centres=[start], noise_sigma=0.005, steps=200, tol=1e-7)
    assert result["sources"].shape == (1, 2, SIZE, SIZE)
    np.testing.assert_allclose(result["flux"][0], flux, rtol=0.03)
    np.testing.assert_allclose(result["centres"][0], xy, atol=0.3)
    assert result["background"][0] == pytest.approx(0.05, abs=0.002)
    assert result["chi2"][0] < 1.5                                  # reduced chi^2 near 1 at the fit
    np.testing.assert_allclose(result["residual"][0], blend - result["model"][0], atol=1e-6)
    assert set(result["component"][0]) <= {0, 1, 2}


def test_deblend_batches_independent_blends(analytic_model):
    from avader.deblending import deblend

    one = _render(analytic_model, [[0.0, 0.0, 0.0]], [[12.0, 15.0]], [1.0], [30.0]).sum(0)
    two = _render(analytic_model, [[0.0, 0.0, 0.0]] * 2, [[10.0, 10.0], [22.0, 21.0]], [1.0, 0.7], [30.0, 15.0]).sum(0)
    blends = np.stack([one, two]) + np.random.default_rng(5).normal(0, 0.005, (2, SIZE, SIZE))
    result = deblend(analytic_model, blends, noise_sigma=0.005, steps=150, batch_size=4)
    assert list(result["n_sources"]) == [1, 2]
    assert result["sources"].shape == (2, 2, SIZE, SIZE)
    assert np.all(result["sources"][0, 1] == 0) and result["component"][0, 1] == -1
    assert result["flux"][1, 0] > result["flux"][1, 1] > 0
    np.testing.assert_allclose(result["flux"][:, 0], [30.0, 30.0], rtol=0.05)
    # blends stop at different steps and the rest are packed into a smaller batch: each blend's fit
    # is the one it gets alone
    assert result["steps"][0] != result["steps"][1]
    for b in range(2):
        alone = deblend(analytic_model, blends[b], noise_sigma=0.005, steps=150)
        m = result["n_sources"][b]
        assert alone["steps"][0] == result["steps"][b] and alone["n_sources"][0] == m
        np.testing.assert_allclose(alone["flux"][0, :m], result["flux"][b, :m], rtol=1e-4)
        np.testing.assert_allclose(alone["latents"][0, :m], result["latents"][b, :m], atol=1e-4)


def test_refinement_adds_a_missed_source_from_the_residual(analytic_model):
    from avader.deblending import deblend

    xy = np.array([[12.0, 13.0], [21.0, 20.0]])
    blend = _render(analytic_model, [[0.2, 0.0, 0.0], [0.0, 0.0, 0.0]], xy, [1.0, 0.8], [40.0, 25.0]).sum(0)
    blend = blend + np.random.default_rng(7).normal(0, 0.005, (SIZE, SIZE))
    # the default, and an error so large that judged against the blend's own light (not the model's)
    # nothing in the residual would be significant: the missed source is light not yet modelled
    for error in (None, 5.0):
        options = {} if error is None else {"model_error": error}
        with_error = deblend(analytic_model, blend, centres=[xy[:1]], noise_sigma=0.005, background=0.0, steps=100,
                             **options)
        assert with_error["n_sources"][0] == 2
        np.testing.assert_allclose(with_error["flux"][0], [40.0, 25.0], rtol=0.05)
    kwargs = {"centres": [xy[:1]], "noise_sigma": 0.005, "background": 0.0, "steps": 100, "model_error": 0.0}
    once = deblend(analytic_model, blend, refine=0, **kwargs)
    assert once["n_sources"][0] == 1 and once["chi2"][0] > 5.0
    refined = deblend(analytic_model, blend, refine=1, **kwargs)
    assert refined["n_sources"][0] == 2
    np.testing.assert_allclose(refined["centres"][0], xy, atol=0.5)
    np.testing.assert_allclose(refined["flux"][0], [40.0, 25.0], rtol=0.05)
    assert refined["chi2"][0] < 1.5
    kept = deblend(analytic_model, np.stack([blend, blend]), refine=1, refine_gain=0.5, **{**kwargs, "centres": [xy[:1]] * 2})
    assert list(kept["n_sources"]) == [2, 2]  # chi^2 fell from > 5 to < 1.5: the real source stays
    np.testing.assert_allclose(kept["flux"][0], refined["flux"][0], rtol=1e-3)
    strict = deblend(analytic_model, blend, refine=1, refine_gain=0.999, **kwargs)
    assert strict["n_sources"][0] == 1  # asked for more than it gained: back to the fit before the pass
    np.testing.assert_allclose(strict["flux"][0, 0], once["flux"][0, 0], rtol=1e-3)
    np.testing.assert_allclose(strict["chi2"][0], once["chi2"][0], rtol=1e-3)


def test_model_and_data_photometry_agree_on_a_clean_blend(analytic_model):
    from avader.deblending import deblend

    xy = np.array([[11.0, 12.0], [21.5, 20.0]])
    blend = _render(analytic_model, [[0.0, 0.0, 0.0], [0.3, 0.0, 0.0]], xy, [1.0, 0.9], [30.0, 20.0]).sum(0) + 0.02
    kwargs = {"centres": [xy], "noise_sigma": 0.002, "background": 0.02, "steps": 60, "refine": 0}
    data = deblend(analytic_model, blend, photometry="data", **kwargs)
    model = deblend(analytic_model, blend, photometry="model", **kwargs)
    np.testing.assert_allclose(data["flux"][0], [30.0, 20.0], rtol=0.03)
    np.testing.assert_allclose(model["flux"][0], [30.0, 20.0], rtol=0.03)
    np.testing.assert_allclose(data["sources"][0].sum(axis=(1, 2)), data["flux"][0], rtol=1e-4)
    with pytest.raises(AvaderError, match="photometry"):
        deblend(analytic_model, blend, photometry="aperture")


def test_flip_mirrors_images_and_centres_and_is_its_own_inverse():
    from avader.deblending import _flip

    image = _blobs([(7.0, 20.0)], [1.0])[0]
    for flip, expected in (("x", (SIZE - 8.0, 20.0)), ("y", (7.0, SIZE - 21.0)), ("xy", (SIZE - 8.0, SIZE - 21.0))):
        mirrored, centre = _flip(image, [[7.0, 20.0]], flip, SIZE)
        np.testing.assert_allclose(centre[0], expected)
        np.testing.assert_allclose(ndimage.center_of_mass(mirrored)[::-1], expected, atol=1e-3)
        back, centre_back = _flip(mirrored, centre, flip, SIZE)
        np.testing.assert_array_equal(back, image)
        np.testing.assert_allclose(centre_back[0], [7.0, 20.0])


def test_augmented_fit_averages_the_mirrored_fits(analytic_model):
    from avader.deblending import _flip, deblend

    xy = np.array([[11.0, 12.5], [21.5, 19.0]])
    sources = _render(analytic_model, [[0.4, 0.3, -0.5], [0.2, -0.4, 0.6]], xy, [1.0, 0.9], [30.0, 20.0])
    blend = sources.sum(0) + 0.02 + np.random.default_rng(8).normal(0, 0.002, (SIZE, SIZE))
    kwargs = {"noise_sigma": 0.002, "background": 0.02, "steps": 40, "refine": 0}
    plain = deblend(analytic_model, blend, centres=[xy], **kwargs)
    mean = deblend(analytic_model, blend, centres=[xy], augment=4, **kwargs)
    assert mean["n_sources"][0] == plain["n_sources"][0] == 2
    np.testing.assert_array_equal(mean["latents"], plain["latents"])      # the first fit's
    # by hand: each mirrored fit starts from the first fit's centres, mirrored, and comes back mirrored
    fluxes, images = [plain["flux"][0]], [plain["sources"][0]]
    for flip in ("x", "y", "xy"):
        image, start = _flip(blend, plain["centres"][0], flip, SIZE)
        fit = deblend(analytic_model, image, centres=[start], min_flux_ratio=0.0, **kwargs)
        back, centres = _flip(fit["sources"][0], fit["centres"][0], flip, SIZE)
        order = np.linalg.norm(centres[:, None] - plain["centres"][0][None], axis=-1).argmin(axis=0)
        fluxes.append(fit["flux"][0][order])
        images.append(back[order])
    np.testing.assert_allclose(mean["flux"][0], np.mean(fluxes, axis=0), rtol=1e-5)
    np.testing.assert_allclose(mean["sources"][0], np.mean(images, axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mean["flux"][0], [30.0, 20.0], rtol=0.03)
    np.testing.assert_allclose(mean["residual"][0], blend - mean["model"][0], atol=1e-6)
    assert np.all(np.std(fluxes, axis=0) > 0)                            # the mirrored fits differ
    with pytest.raises(AvaderError, match="augment"):
        deblend(analytic_model, blend, augment=3)


def test_model_error_keeps_a_template_mismatch_from_moving_light_between_sources(analytic_model):
    from avader.deblending import deblend

    xy = np.array([[12.0, 13.0], [22.5, 21.0]])
    sources = _render(analytic_model, [[0.3, 0.4, 0.0], [0.0, -0.3, 0.2]], xy, [1.0, 0.8], [40.0, 12.0])
    spike = _blobs([(12.0, 13.0)], [20.0], sigma=0.7)[0]  # a sharp core that no template can draw
    truth = np.array([40.0 + spike.sum(), 12.0])
    blend = sources.sum(0) + spike + np.random.default_rng(3).normal(0, 0.002, (SIZE, SIZE))
    kwargs = {"centres": [xy], "noise_sigma": 0.002, "background": 0.0, "steps": 150, "refine": 0}
    plain = deblend(analytic_model, blend, model_error=0.0, **kwargs)
    # pixel noise alone: the brighter source shrinks to fit the core and its wings go to the companion
    assert plain["flux"][0, 0] < 0.8 * truth[0] and plain["flux"][0, 1] > 1.15 * truth[1]
    robust = deblend(analytic_model, blend, model_error=0.3, **kwargs)
    np.testing.assert_allclose(robust["flux"][0], truth, rtol=0.01)
    assert robust["zoom"][0, 0] == pytest.approx(1.0, abs=0.02)
    for bad in (-0.1, float("nan"), "0.3"):
        with pytest.raises(AvaderError, match="model_error: must be a number >= 0"):
            deblend(analytic_model, blend, model_error=bad, **kwargs)


def test_symmetric_shares_keep_a_spilling_template_from_taking_its_neighbours_light():
    from avader.deblending import _data_shares

    centres = np.array([[11.0, 16.0], [18.0, 16.0]])
    truth = _blobs(centres, [50.0, 50.0], sigma=2.0)            # two equal round galaxies, 3.5 sigma apart
    blend = truth.sum(0)[None] + 0.1
    wide = _blobs(centres[:1], [1.0], sigma=4.0)[0]              # source 0's template twice too broad: it spills
    shapes = np.stack([wide.ravel(), (truth[1] / truth[1].sum()).ravel()])
    flux, blend_of, sky, sigma = np.array([50.0, 50.0]), np.array([0, 0]), np.array([0.1]), np.array([1e-3])
    plain = _data_shares(blend, sky, shapes, flux, blend_of, sigma).sum(axis=1)
    capped = _data_shares(blend, sky, shapes, flux, blend_of, sigma, centres=centres).sum(axis=1)
    assert plain[0] > 1.06 * 50.0 and plain[1] < 0.94 * 50.0     # the broad template takes its neighbour's light
    np.testing.assert_allclose(capped, [50.0, 50.0], rtol=0.025)
    assert abs(capped[0] - 50.0) < 0.3 * abs(plain[0] - 50.0)
    np.testing.assert_allclose(capped.sum(), truth.sum(), rtol=1e-3)  # light is shared out, none lost
    # a lone source keeps every pixel its model covers, capped or not
    lone = _data_shares(blend[:, :, :], sky, shapes[:1], flux[:1], blend_of[:1], sigma, centres=centres[:1])
    np.testing.assert_allclose(lone, _data_shares(blend, sky, shapes[:1], flux[:1], blend_of[:1], sigma))


def test_deblend_checks_its_shares_argument(analytic_model):
    from avader.deblending import deblend

    blend = _blobs([(16.0, 15.0)], [20.0], sigma=2.5)[0]
    with pytest.raises(AvaderError, match="shares: must be 'symmetric' or 'model'"):
        deblend(analytic_model, blend, shares="sym", noise_sigma=0.01, background=0.0, steps=1)


def test_deblend_handles_an_empty_image_and_data_images(analytic_model):
    from avader.deblending import deblend

    noise = np.random.default_rng(8).normal(0, 0.01, (2, SIZE, SIZE))
    blends = noise + np.stack([np.zeros((SIZE, SIZE)), _blobs([(16.0, 15.0)], [20.0], sigma=2.5)[0]])
    result = deblend(analytic_model, blends, noise_sigma=0.01, background=0.0, steps=20, images="data")
    assert list(result["n_sources"]) == [0, 1]
    assert np.all(result["sources"][0] == 0) and result["flux"][0, 0] == 0
    np.testing.assert_allclose(result["sources"][1, 0].sum(), result["flux"][1, 0], rtol=1e-5)
    assert result["flux"][1, 0] == pytest.approx(20.0, rel=0.05)
    np.testing.assert_allclose(result["residual"], blends - result["model"], atol=1e-6)

    blind = deblend(analytic_model, blends, noise_sigma=0.01, background=0.0, steps=5, detection={"nsigma": 1e4})
    assert list(blind["n_sources"]) == [0, 0]  # detection settings reach detect()


def test_deblend_rejects_wrong_image_size(analytic_model):
    from avader.deblending import deblend

    with pytest.raises(AvaderError, match="model's size"):
        deblend(analytic_model, np.zeros((1, 16, 16), np.float32))


# ------------------------------------------------------------------ the paper's operation
def test_remove_companion_leaves_companion_components(analytic_model):
    from avader.deblending import remove_companion

    images = np.random.default_rng(6).random((4, SIZE, SIZE)).astype(np.float32)
    result = remove_companion(analytic_model, images, companion_components=[0])
    assert result["images"].shape == (4, SIZE, SIZE)
    assert np.all(result["original_component"] == 0) and result["moved"].all()
    assert not np.isin(result["component"], [0]).any()
    assert np.all((result["fraction"] > 0) & (result["fraction"] <= 1))
    kept = remove_companion(analytic_model, images, companion_components=[1])
    assert not kept["moved"].any()
    np.testing.assert_allclose(kept["latents"], kept["original_latents"])
    with pytest.raises(AvaderError, match="companion_components"):
        remove_companion(analytic_model, images, companion_components=[0, 1, 2])


def test_companion_components_from_flags():
    from avader.deblending import companion_components

    assert companion_components([0, 0, 1, 1, 2, 2], [1, 1, 0, 1, 0, 0]) == [0]
    assert companion_components([0, 1], [1, 1], min_fraction=0.99) == [0, 1]


# ------------------------------------------------------------------ metrics and matching
def test_source_metrics_hand_cases():
    from avader.deblending import source_metrics

    truth = _blobs([(15.0, 16.0)], [10.0], sigma=2.5)[0]
    same = source_metrics(truth, truth)
    assert same["ssim"] == pytest.approx(1.0) and same["dflux"] == 0.0 and same["mse"] == 0.0
    assert same["psnr"] == math.inf and same["centroid_error"] == 0.0 and same["ellipticity_error"] == 0.0
    brighter = source_metrics(truth, 1.1 * truth)
    assert brighter["dflux"] == pytest.approx(0.1) and brighter["centroid_error"] == pytest.approx(0.0, abs=1e-9)
    moved = source_metrics(truth, np.roll(truth, 2, axis=1))
    assert moved["centroid_error"] == pytest.approx(2.0, abs=1e-6) and moved["ssim"] < 0.9
    empty = source_metrics(truth, np.zeros_like(truth))
    assert empty["dflux"] == -1.0 and math.isnan(empty["centroid_error"])


def test_match_sources():
    from avader.deblending import match_sources

    true = [[10, 10], [20, 20], [30, 5]]
    found = [[20.5, 19.5], [10.2, 9.9], [0, 0]]
    assert sorted(match_sources(true, found, 2.0)) == [(0, 1), (1, 0)]
    assert match_sources(true, np.zeros((0, 2)), 2.0) == []


# ------------------------------------------------------------------ files and the benchmark
@pytest.fixture(scope="module")
def blend_set():
    from avader.simulate import simulate

    return simulate(4, image_size=SIZE, seed=3, blends=True, workers=1, progress=False)


def test_benchmark_structure(analytic_model, blend_set):
    from avader.deblending import benchmark

    result = benchmark(analytic_model, blend_set, methods=("avader", "avader_true_centres", "photutils", "sep"),
                       steps=5)
    json.dumps(result, allow_nan=False)
    assert result["n_blends"] == 4
    n_true = int(np.sum(blend_set.catalog["n_sources"]))
    for summary in result["methods"].values():
        assert summary["detection"]["n_true"] == n_true
        assert 0.0 <= summary["detection"]["recall"] <= 1.0
        assert summary["overall"]["all"]["n"] == n_true
        assert len(summary["bins"]) == 12 and len(summary["by_separation"]) == 4
    assert result["methods"]["avader_true_centres"]["detection"]["recall"] == 1.0
    assert len(result["per_source"]["ssim"]) == 4 * n_true
    assert set(result["bar"]) >= {"ssim_beats_photutils_overall", "abs_dflux_bright_within_5pc", "speed_within_2s"}
    with pytest.raises(AvaderError, match="unknown method"):
        benchmark(analytic_model, blend_set, methods=("scarlet",))


def test_deblend_run_writes_sources(analytic_model, blend_set, tmp_path):
    from avader.data import GalaxySet
    from avader.deblending import deblend_run

    run = tmp_path / "run"
    run.mkdir()
    analytic_model.save(run / "model.keras")
    blends = tmp_path / "blends.fits"
    blend_set.write(blends)
    out = deblend_run(run, blends, tmp_path / "out.fits", steps=3, max_sources=3, progress=False)
    result = GalaxySet.read(out)
    assert result.shape == (4, SIZE, SIZE) and result.extra["SOURCES"].shape == (4, 3, SIZE, SIZE)
    assert result.extra["RESIDUAL"].shape == (4, SIZE, SIZE)
    np.testing.assert_allclose(result.get_images(slice(None)), blend_set.get_images(slice(None)))
    assert {"flux_0", "x_2", "component_1", "n_fit", "chi2"} <= set(result.catalog.colnames)
    with pytest.raises(AvaderError, match="exists"):
        deblend_run(run, blends, out, steps=3, progress=False)
    assert result.meta["MODELERR"] == pytest.approx(0.3)  # the default template error, recorded
    assert result.meta["SYMMSIG"] == pytest.approx(8.0)   # and the default asymmetry search
    assert result.meta["SHARES"] == "symmetric"             # and the default sharing of pixels


def test_deblend_cli_passes_the_model_error_and_symmetry(analytic_model, blend_set, tmp_path):
    from avader.cli import main
    from avader.data import GalaxySet

    run = tmp_path / "run"
    run.mkdir()
    analytic_model.save(run / "model.keras")
    blend_set.write(tmp_path / "blends.fits")
    args = ["deblend", "--run", str(run), "--blends", str(tmp_path / "blends.fits"), "--steps", "3"]
    assert main(args + ["--out", str(tmp_path / "plain.fits"), "--model-error", "0", "--symmetry", "0",
                        "--shares", "model"]) == 0
    meta = GalaxySet.read(tmp_path / "plain.fits").meta
    assert meta["MODELERR"] == 0.0 and meta["SYMMSIG"] == 0.0 and meta["SHARES"] == "model"
    assert main(args + ["--benchmark", "--n", "2", "--out", str(tmp_path / "b.json"), "--model-error", "0.1",
                        "--symmetry", "5", "--shares", "model"]) == 0
    settings = json.loads((tmp_path / "b.json").read_text())["settings"]
    assert settings["model_error"] == 0.1 and settings["symmetry"] == 5.0 and settings["shares"] == "model"


def test_the_prior_weight_and_augment_come_from_the_run_unless_given(analytic_model, blend_set, tmp_path):
    """deblend_run, benchmark_run and the CLI take the fit's prior weight and mirrored fits from
    analysis.deblend_prior_weight and analysis.deblend_augment."""
    from avader.cli import main
    from avader.config import load_config
    from avader.data import GalaxySet
    from avader.deblending import benchmark_run, deblend_run
    from avader.runs import RunDir

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config(load_config("smoke", ["analysis.deblend_prior_weight=2.5", "analysis.deblend_augment=2",
                                           "analysis.detector_blends=0"]))
    analytic_model.save(run.path / "model.keras")
    blends = tmp_path / "blends.fits"
    blend_set.write(blends)
    out = deblend_run(run.path, blends, tmp_path / "a.fits", steps=2, max_sources=2, progress=False)
    assert GalaxySet.read(out).meta["PRIORW"] == 2.5 and GalaxySet.read(out).meta["AUGMENT"] == 2
    out = deblend_run(run.path, blends, tmp_path / "b.fits", steps=2, max_sources=2, prior_weight=0.5, augment=1,
                      progress=False)
    assert GalaxySet.read(out).meta["PRIORW"] == 0.5 and GalaxySet.read(out).meta["AUGMENT"] == 1
    result = benchmark_run(run.path, blends, out=tmp_path / "b.json", n=2, steps=2, progress=False,
                           methods=("avader_true_centres",))
    assert result["settings"]["prior_weight"] == 2.5 and result["settings"]["augment"] == 2
    assert main(["deblend", "--run", str(run.path), "--blends", str(blends), "--steps", "2", "--prior-weight", "4",
                 "--augment", "4", "--out", str(tmp_path / "c.fits")]) == 0
    assert GalaxySet.read(tmp_path / "c.fits").meta["PRIORW"] == 4.0
    assert GalaxySet.read(tmp_path / "c.fits").meta["AUGMENT"] == 4
    with pytest.raises(AvaderError, match="deblend_prior_weight: must be >= 0"):
        load_config("smoke", ["analysis.deblend_prior_weight=-1"])
    with pytest.raises(AvaderError, match="deblend_augment: must be 1, 2 or 4"):
        load_config("smoke", ["analysis.deblend_augment=3"])


def test_load_image_png_and_fits(tmp_path):
    from astropy.io import fits
    from PIL import Image

    from avader.deblending import load_image

    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[15:25, 25:35] = (40, 200, 90)
    Image.fromarray(rgb).save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png", 16)
    assert img.shape == (16, 16) and img.dtype == np.float32
    assert img.min() == 0.0 and img.max() == 1.0 and img[8, 8] == 1.0
    fits.PrimaryHDU(_blobs([(20, 20)], [1.0], size=40)[0]).writeto(tmp_path / "g.fits")
    img = load_image(tmp_path / "g.fits", 20)
    assert img.shape == (20, 20) and np.unravel_index(img.argmax(), img.shape) in [(9, 9), (9, 10), (10, 9), (10, 10)]
    with pytest.raises(AvaderError, match="no such file"):
        load_image(tmp_path / "missing.png", 16)


@pytest.mark.parametrize("first", ["avader.deblend_benchmark", "avader.deblending"])
def test_either_deblending_module_imports_first(first):
    """The benchmark module imports the fit and the fit re-exports the benchmark: no circular import."""
    import subprocess
    import sys

    code = f"import {first}; from avader.deblending import benchmark; print(benchmark.__module__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == "avader.deblend_benchmark"
