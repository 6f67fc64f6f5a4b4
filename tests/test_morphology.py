"""Tests of avader.morphology on analytic GalSim profiles and hand-made images."""

import logging

import numpy as np
import pytest
from scipy.special import gammaincinv

from avader import morphology as morph
from avader.errors import AvaderError

galsim = pytest.importorskip("galsim")


def sersic(n, r_half, q=1.0, beta=0.0, size=128, offset=None, psf_fwhm=None):
    """Noise-free Sersic stamp, pixel scale 1 (r_half in pixels), unit flux, centred."""
    profile = galsim.Sersic(n=n, half_light_radius=r_half, flux=1.0)
    if q != 1.0:
        profile = profile.shear(q=q, beta=beta * galsim.degrees)
    if psf_fwhm:
        profile = galsim.Convolve(profile, galsim.Gaussian(fwhm=psf_fwhm))
    return profile.drawImage(nx=size, ny=size, scale=1.0, offset=offset).array.astype(np.float64)


def sersic_concentration(n):
    """Analytic 5 log10(R80/R20) of an untruncated Sersic profile."""
    return 5.0 * n * np.log10(gammaincinv(2 * n, 0.8) / gammaincinv(2 * n, 0.2))


def angle_difference(a, b):
    """Smallest difference between two orientations in degrees (period 180)."""
    d = (a - b) % 180.0
    return min(d, 180.0 - d)


def test_centroid_follows_offset():
    # GalSim centres an even stamp of 64 at 0-based pixel coordinate 31.5, then applies the offset.
    image = sersic(1, 4.0, size=64, offset=(3.25, -1.5))
    x, y = morph.centroid(image)
    assert x == pytest.approx(31.5 + 3.25, abs=0.02)
    assert y == pytest.approx(31.5 - 1.5, abs=0.02)
    assert all(np.isnan(morph.centroid(np.zeros((5, 5)))))


def test_position_angle_convention_by_hand():
    diagonal = np.eye(9) + 0.2 * (np.eye(9, k=1) + np.eye(9, k=-1))  # along +x and +y together
    assert morph.second_moments(diagonal)["position_angle"] == pytest.approx(45.0)
    anti = np.fliplr(diagonal)  # row grows while column falls
    assert morph.second_moments(anti)["position_angle"] == pytest.approx(135.0)
    row = np.zeros((9, 9))
    row[4, 1:8] = 1.0
    row[3:6, 4] = 0.2
    horizontal = morph.second_moments(row)
    assert horizontal["position_angle"] == pytest.approx(0.0)
    assert horizontal["e1"] > 0 and horizontal["e2"] == pytest.approx(0.0)
    vertical = morph.second_moments(row.T)
    assert vertical["position_angle"] == pytest.approx(90.0)
    assert vertical["e1"] < 0


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("q", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("beta", [0.0, 30.0, 120.0])
def test_axis_ratio_and_position_angle_of_sheared_exponential(q, beta, weighted):
    image = sersic(1, 8.0, q=q, beta=beta)
    moments = morph.second_moments(image, weighted=weighted)
    assert moments["axis_ratio"] == pytest.approx(q, abs=0.05)
    assert angle_difference(moments["position_angle"], beta) < 3.0
    assert 0.0 <= moments["position_angle"] < 180.0
    e = moments["ellipticity"]
    assert e == pytest.approx(np.hypot(moments["e1"], moments["e2"]))
    qm = moments["axis_ratio"]
    assert e == pytest.approx((1 - qm**2) / (1 + qm**2))


def test_adaptive_moments_match_galsim_hsm():
    image = sersic(2, 6.0, q=0.5, beta=60.0, size=96, psf_fwhm=2.0)
    ours = morph.second_moments(image, weighted=True)
    hsm = galsim.Image(image, scale=1.0).FindAdaptiveMom()
    sigma = (ours["mxx"] * ours["myy"] - ours["mxy"] ** 2) ** 0.25
    assert sigma == pytest.approx(hsm.moments_sigma, rel=1e-3)
    shape = hsm.observed_shape
    assert ours["axis_ratio"] == pytest.approx(np.sqrt((1 - shape.e) / (1 + shape.e)), abs=1e-3)
    assert angle_difference(ours["position_angle"], shape.beta.deg) < 0.05
    assert ours["x"] == pytest.approx(hsm.moments_centroid.x - 1, abs=1e-3)  # GalSim is 1-based


def test_adaptive_moments_resist_noise():
    image = sersic(1, 5.0, q=0.5, beta=30.0, size=96)
    plain_errors, adaptive_errors = [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        noisy = image / image.max() + 0.01 * rng.standard_normal(image.shape)
        plain_errors.append(abs(morph.second_moments(noisy)["axis_ratio"] - 0.5))
        adaptive_errors.append(abs(morph.second_moments(noisy, weighted=True)["axis_ratio"] - 0.5))
    assert max(adaptive_errors) < 0.02
    assert max(plain_errors) > 0.05  # unweighted moments pick up the noise of the whole stamp


def test_moments_undefined_give_nan():
    assert np.isnan(morph.second_moments(np.zeros((8, 8)))["axis_ratio"])
    line = np.zeros((8, 8))
    line[3, :] = 1.0  # zero width across: b = 0
    assert np.isnan(morph.second_moments(line)["axis_ratio"])


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0])
def test_half_light_radius_of_circular_sersic(n):
    r_half = 8.0
    for offset in [None, (0.5, 0.5), (0.3, -0.2)]:
        image = sersic(n, r_half, offset=offset)
        assert morph.half_light_radius(image) == pytest.approx(r_half, rel=0.05)


def test_half_light_radius_with_r_max_and_bad_fractions():
    image = sersic(1, 8.0)
    # Limiting the total to the half-light aperture halves the radius roughly (exponential profile).
    assert morph.half_light_radius(image, r_max=8.0) < 0.6 * morph.half_light_radius(image)
    with pytest.raises(AvaderError, match="fractions"):
        morph.light_radii(image, fractions=(0.0, 0.5))
    radii = morph.light_radii(image, fractions=(0.2, 0.5, 0.8))
    assert radii.shape == (3,) and np.all(np.diff(radii) > 0)


def test_concentration_of_exponential_and_de_vaucouleurs():
    c1, ratio1 = morph.concentration(sersic(1, 8.0))
    assert sersic_concentration(1) == pytest.approx(2.80, abs=0.01)
    assert c1 == pytest.approx(sersic_concentration(1), abs=0.2)
    assert c1 == pytest.approx(5 * np.log10(ratio1))
    c4, _ = morph.concentration(sersic(4, 8.0))
    assert c4 > c1 + 1.0


def test_gini_limits():
    assert morph.gini(np.full((10, 10), 0.3)) == pytest.approx(0.0)
    point = np.zeros((10, 10))
    point[4, 6] = 1.0
    assert morph.gini(point) == pytest.approx(1.0)
    # Two values, hand computed: |X| sorted (1, 3), n = 2: (-1*1 + 1*3) / (4 * 1) = 0.5.
    assert morph.gini(np.array([[3.0, 1.0]])) == pytest.approx(0.5)
    mask = np.zeros((10, 10), dtype=bool)
    mask[:2, :2] = True
    assert morph.gini(point + 0.1, mask=mask) == pytest.approx(0.0)
    assert np.isnan(morph.gini(np.zeros((4, 4))))
    with pytest.raises(AvaderError, match="mask"):
        morph.gini(point, mask=np.ones((3, 3), dtype=bool))


def test_m20_more_negative_when_concentrated():
    values = [morph.m20(sersic(n, 8.0)) for n in (0.5, 1.0, 4.0)]
    assert values[0] > values[1] > values[2]
    assert all(-4.0 < v < 0.0 for v in values)


def test_asymmetry_symmetric_and_lopsided():
    for offset in [None, (0.5, 0.5)]:
        assert morph.asymmetry(sersic(1, 6.0, q=0.6, beta=25.0, offset=offset)) < 0.01
    galaxy = sersic(1, 6.0, size=96)
    companion = sersic(1, 3.0, size=96, offset=(20.0, 10.0))
    assert morph.asymmetry(galaxy + 0.5 * companion) > 0.3
    blob = sersic(1, 2.0, size=96, offset=(25.0, 0.0))
    assert morph.asymmetry(blob) < 0.01  # about its own centroid it is symmetric
    assert morph.asymmetry(blob, center=(47.5, 47.5)) == pytest.approx(2.0, abs=0.01)


def test_segmentation_drops_companion_and_noise():
    rng = np.random.default_rng(0)
    galaxy = sersic(1, 5.0, q=0.5, beta=30.0, size=96)
    companion = sersic(1, 3.0, size=96, offset=(32.0, -30.0))
    image = (galaxy + companion) / galaxy.max() + 0.02 + 0.01 * rng.standard_normal(galaxy.shape)
    mask, background, noise = morph.segment_main_source(image)
    assert background == pytest.approx(0.02, abs=0.005)
    assert noise == pytest.approx(0.01, rel=0.2)
    assert mask[48, 48] and not mask[48 - 30, 48 + 32]
    result = morph.measure(image, statistics=("axis_ratio", "position_angle", "asymmetry", "x", "y"))
    assert result["axis_ratio"][0] == pytest.approx(0.5, abs=0.05)
    assert angle_difference(result["position_angle"][0], 30.0) < 3.0
    assert result["asymmetry"][0] < 0.3
    assert result["x"][0] == pytest.approx(47.5, abs=0.5)


def test_measure_batch_shapes_and_values():
    rng = np.random.default_rng(1)
    stack = np.stack([sersic(n, 5.0, q=0.6, beta=45.0, size=64) for n in (1.0, 4.0)])
    stack = stack / stack.max(axis=(1, 2), keepdims=True) + 0.005 * rng.standard_normal(stack.shape)
    result = morph.measure(stack)
    assert list(result) == list(morph.DEFAULT_STATISTICS)
    for values in result.values():
        assert values.shape == (2,) and values.dtype == np.float64 and np.all(np.isfinite(values))
    assert result["concentration"][1] > result["concentration"][0]
    assert result["m20"][1] < result["m20"][0]
    assert np.all((result["gini"] > 0.3) & (result["gini"] < 1.0))
    weighted = morph.measure(stack, statistics=("axis_ratio",), weighted=True)
    assert np.allclose(weighted["axis_ratio"], 0.6, atol=0.08)
    table = morph.measure(stack, statistics=("r_half", "n_pixels"), as_table=True)
    assert table.colnames == ["r_half", "n_pixels"] and len(table) == 2


def test_measure_is_scale_free_for_uint8():
    image = sersic(1, 6.0, q=0.7, beta=10.0, size=64)
    as_uint8 = np.round(255 * image / image.max()).astype(np.uint8)
    from_int = morph.measure(as_uint8[None])
    from_float = morph.measure((as_uint8 / 255.0)[None])
    for name in morph.DEFAULT_STATISTICS:
        assert from_int[name] == pytest.approx(from_float[name], rel=1e-9, nan_ok=True)


def test_measure_empty_image_gives_nan_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="avader.morphology"):
        result = morph.measure(np.zeros((2, 32, 32)), statistics=("gini", "n_pixels"))
    assert np.all(np.isnan(result["gini"]))
    assert np.all(result["n_pixels"] == 0)
    assert "2 of 2" in caplog.text


def test_measure_rejects_bad_input():
    with pytest.raises(AvaderError, match="statistics"):
        morph.measure(np.zeros((1, 16, 16)), statistics=("sersic_index",))
    with pytest.raises(AvaderError, match="images"):
        morph.measure(np.zeros((1, 2, 16, 16)))
    with pytest.raises(AvaderError, match="image"):
        morph.gini(np.zeros(5))
    with pytest.raises(AvaderError, match="NaN"):
        morph.centroid(np.full((4, 4), np.nan))
    with pytest.raises(AvaderError, match="border"):
        morph.segment_main_source(np.zeros((6, 6)), border=3)


def test_shape_agrees_with_statmorph():
    statmorph = pytest.importorskip("statmorph")
    rng = np.random.default_rng(2)
    image = sersic(1, 6.0, q=0.5, beta=30.0, size=96, psf_fwhm=2.0)
    image = image / image.max() + 0.01 * rng.standard_normal(image.shape)
    mask, background, _ = morph.segment_main_source(image)
    theirs = statmorph.source_morphology(image - background, mask.astype(int), gain=1e4)[0]
    ours = morph.second_moments(np.where(mask, image - background, 0.0))
    assert ours["axis_ratio"] == pytest.approx(1.0 - theirs.ellipticity_centroid, abs=1e-3)
    assert angle_difference(ours["position_angle"], np.degrees(theirs.orientation_centroid)) < 0.1


def test_sky_noise_on_plain_and_clipped_gaussian_sky():
    rng = np.random.default_rng(4)
    sky = 0.2 + 0.03 * rng.standard_normal((3, 4000))
    level, sigma = morph.sky_noise(sky)
    assert level.shape == sigma.shape == (3,)
    np.testing.assert_allclose(level, 0.2, atol=0.003)
    np.testing.assert_allclose(sigma, 0.03, rtol=0.06)
    # clipped at the sky like an SDSS JPEG's black point: the MAD would be about 0
    clipped = np.maximum(sky - 0.2, 0.0)
    assert 1.4826 * np.median(np.abs(clipped - np.median(clipped, axis=1, keepdims=True))) < 0.01
    level, sigma = morph.sky_noise(clipped)
    np.testing.assert_array_equal(level, 0.0)
    np.testing.assert_allclose(sigma, 0.03, rtol=0.06)
    # a few tied minimum values (quantised noise) do not count as clipping
    quantised = np.round(sky * 255) / 255
    np.testing.assert_allclose(morph.sky_noise(quantised)[0], 0.2, atol=0.004)
