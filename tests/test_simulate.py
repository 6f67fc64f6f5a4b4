"""avader.simulate: determinism, sharding, workers, files, bad input and the physics of the images."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from avader.data import GalaxySet
from avader.errors import AvaderError
from avader.simulate import FAMILIES, SimulationConfig, render_blend, render_galaxy, simulate

SIZE = 64


# ----------------------------------------------------------------------------- measurement helpers

def _flux(image, row):
    """Stored image back to linear flux above the sky (stored units)."""
    return np.asarray(image, dtype=np.float64) - row["zero_level"]


def _smoothed_noise(sigma, width):
    """Standard deviation of white noise of ``sigma`` after a Gaussian filter of ``width`` pixels."""
    return sigma / (2 * np.sqrt(np.pi) * width)


def _main_segment(flux, row, k=2.0):
    """Pixels of the connected segment above k sigma (smoothed) that holds the galaxy centre."""
    smooth = ndimage.gaussian_filter(flux, 1.0)
    labels, _ = ndimage.label(smooth > k * _smoothed_noise(row["noise_sigma"], 1.0))
    label = labels[int(round(row["y"])), int(round(row["x"]))]
    assert label > 0, "galaxy centre is not above the detection threshold"
    return labels == label


def _shape(flux, mask):
    """(axis ratio, position angle in degrees CCW from +x) of the flux-weighted second moments; array row = y."""
    y, x = np.nonzero(mask)
    w = np.clip(flux[y, x], 0, None)
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    mxx, myy = np.average((x - xm) ** 2, weights=w), np.average((y - ym) ** 2, weights=w)
    mxy = np.average((x - xm) * (y - ym), weights=w)
    small, big = np.linalg.eigvalsh([[mxx, mxy], [mxy, myy]])
    return np.sqrt(small / big), np.degrees(0.5 * np.arctan2(2 * mxy, mxx - myy)) % 180


def _concentration(flux, row):
    """R90 / R50 of the light in circular apertures about the true centre, out to 1.5 R90."""
    yy, xx = np.indices(flux.shape)
    r = np.hypot(xx - row["x"], yy - row["y"])
    radii = np.linspace(0.5, 1.5 * row["r90_pix"], 150)
    enclosed = np.maximum.accumulate([flux[r < radius].sum() for radius in radii])
    return np.interp(0.9 * enclosed[-1], enclosed, radii) / np.interp(0.5 * enclosed[-1], enclosed, radii)


def _peaks(flux, row, k=7.0):
    """Significant local maxima of a difference-of-Gaussians image (sources, not knots of noise)."""
    delta = np.zeros(flux.shape)
    delta[flux.shape[0] // 2, flux.shape[1] // 2] = 1.0
    kernel = ndimage.gaussian_filter(delta, 1.5) - ndimage.gaussian_filter(delta, 4.0)
    dog = ndimage.gaussian_filter(flux, 1.5) - ndimage.gaussian_filter(flux, 4.0)
    threshold = k * np.sqrt((kernel**2).sum()) * row["noise_sigma"]
    return int(((dog == ndimage.maximum_filter(dog, size=5)) & (dog > threshold)).sum())


def _circular_error(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + 90.0) % 180.0 - 90.0)


def _same_catalog(a, b):
    assert a.colnames == b.colnames
    for name in a.colnames:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=name)  # NaN == NaN here
        else:
            assert (x == y).all(), name


@pytest.fixture(scope="module")
def population():
    """300 galaxies at 64x64 (about a second in one process), sky not clipped: the physics tests
    measure light above the sky, which needs the noise of both signs."""
    return simulate(300, SIZE, seed=11, workers=1, progress=False, config=SimulationConfig(sky_clip=False))


# ----------------------------------------------------------------------------- determinism, shards, files

def test_render_galaxy_is_deterministic_and_depends_on_seed_and_index():
    image, truth = render_galaxy(5, 3, 48)
    again, truth_again = render_galaxy(5, 3, 48)
    assert image.dtype == np.float32 and image.shape == (48, 48)
    assert image.min() == 0.0 and image.max() == 1.0
    assert image.tobytes() == again.tobytes()
    assert {k: repr(v) for k, v in truth.items()} == {k: repr(v) for k, v in truth_again.items()}
    assert not np.array_equal(image, render_galaxy(5, 4, 48)[0])
    assert not np.array_equal(image, render_galaxy(6, 3, 48)[0])
    assert truth["id"] == 5 and truth["family"] in FAMILIES
    assert FAMILIES[truth["family_code"]] == truth["family"]
    assert 0 < truth["axis_ratio"] <= 1 and 0 <= truth["position_angle"] < 180
    assert truth["r90_pix"] == pytest.approx(48 / 3.84)
    assert 0 < truth["r_half"] < truth["r90_pix"]


def test_simulate_matches_render_galaxy_and_stores_uint8():
    gs = simulate(6, 32, seed=2, workers=1, progress=False)
    assert isinstance(gs, GalaxySet) and gs.shape == (6, 32, 32) and gs.images.dtype == np.uint8
    np.testing.assert_array_equal(gs.ids, np.arange(6))
    for i in range(6):
        image, truth = render_galaxy(i, 2, 32)
        np.testing.assert_array_equal(gs.images[i], np.rint(image * 255).astype(np.uint8))
        assert gs.catalog["axis_ratio"][i] == truth["axis_ratio"]
    for column in ("id", "family", "family_code", "axis_ratio", "position_angle", "sersic_index", "bulge_to_total",
                   "r_half", "n_companions", "snr", "r90_pix", "psf_fwhm_pix", "companion_type", "companion_sep"):
        assert column in gs.catalog.colnames
    assert gs.meta["SEED"] == 2 and gs.meta["IMSIZE"] == 32


def test_shards_concatenate_to_the_whole():
    whole = simulate(10, 24, seed=7, workers=1, progress=False)
    parts = [simulate(10, 24, seed=7, workers=1, progress=False, shard=(k, 3)) for k in range(3)]
    assert [len(p) for p in parts] == [3, 3, 4]
    np.testing.assert_array_equal(np.concatenate([p.images for p in parts]), whole.images)
    np.testing.assert_array_equal(np.concatenate([p.ids for p in parts]), whole.ids)
    assert simulate(10, 24, seed=7, workers=1, progress=False, shard="2/3").ids.tolist() == [6, 7, 8, 9]
    from astropy.table import vstack

    _same_catalog(vstack([p.catalog for p in parts]), whole.catalog)


def test_first_id_draws_the_same_galaxies_as_the_whole_catalogue():
    whole = simulate(10, 24, seed=7, workers=1, progress=False)
    tail = simulate(4, 24, seed=7, workers=1, progress=False, first_id=6)
    assert tail.ids.tolist() == [6, 7, 8, 9] and tail.meta["IDSTART"] == 6
    np.testing.assert_array_equal(tail.images, whole.images[6:])
    other = simulate(3, 24, seed=7, workers=1, progress=False, first_id=1000)
    assert other.ids.tolist() == [1000, 1001, 1002]
    assert not np.array_equal(other.images, whole.images[:3])
    with pytest.raises(AvaderError, match="first_id"):
        simulate(3, 24, seed=7, workers=1, progress=False, first_id=-1)


def test_stream_to_file_equals_memory_and_refuses_overwrite(tmp_path):
    path = simulate(24, 32, seed=3, workers=1, progress=False, out=tmp_path / "set.fits")
    back = GalaxySet.read(path)
    memory = simulate(24, 32, seed=3, workers=1, progress=False)
    np.testing.assert_array_equal(np.asarray(back.images), memory.images)
    _same_catalog(back.catalog, memory.catalog)
    assert back.meta["SOURCE"] == "simulation" and back.meta["NSIM"] == 24
    with pytest.raises(AvaderError, match="exists"):
        simulate(24, 32, seed=3, workers=1, progress=False, out=path)
    simulate(4, 32, seed=3, workers=1, progress=False, out=path, overwrite=True)
    assert len(GalaxySet.read(path)) == 4


def test_two_workers_equal_one_worker_bit_for_bit(tmp_path):
    """Float32 blends through two spawned processes: pixels, components and catalogue identical."""
    path = simulate(12, 32, seed=9, workers=2, progress=False, blends=True, out=tmp_path / "two.fits")
    two = GalaxySet.read(path)
    one = simulate(12, 32, seed=9, workers=1, progress=False, blends=True)
    assert np.asarray(two.images).astype(np.float32).tobytes() == one.images.tobytes()
    assert np.asarray(two.extra["COMPONENTS"]).astype(np.float32).tobytes() == one.extra["COMPONENTS"].tobytes()
    _same_catalog(two.catalog, one.catalog)
    image, comps, truth = render_blend(3, 9, 32)
    assert image.tobytes() == one.images[3].tobytes() and comps.tobytes() == one.extra["COMPONENTS"][3].tobytes()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n: must be an integer of at least 1"),
        ({"n": 5, "image_size": 8}, "image_size: must be an integer of at least 16, got 8"),
        ({"n": 5, "seed": -1}, "seed"),
        ({"n": 5, "workers": 0}, "workers"),
        ({"n": 5, "shard": (3, 3)}, "shard"),
        ({"n": 5, "shard": "a/b"}, "shard"),
        ({"n": 2, "shard": (0, 3)}, "shard: shard 0/3 of 2 galaxies is empty"),
        ({"n": 5, "config": SimulationConfig(family_fractions={"spheroid": 0.5, "late": 0.4})}, "sum to 0.9"),
        ({"n": 5, "config": SimulationConfig(family_fractions={"spheroid": 0.5, "blob": 0.5})}, "unknown family 'blob'"),
        ({"n": 5, "config": SimulationConfig(snr=(50.0, 10.0))}, "snr"),
        ({"n": 5, "config": SimulationConfig(psf_profile="airy")}, "psf_profile"),
        ({"n": 5, "blends": True, "config": SimulationConfig(stretch="asinh")}, "blends need the linear stretch"),
    ],
)
def test_bad_input_raises_one_line_error(kwargs, match):
    with pytest.raises(AvaderError, match=match) as err:
        simulate(**{"progress": False, "workers": 1, **kwargs})
    assert "\n" not in str(err.value)


def test_config_is_frozen_and_validates():
    cfg = SimulationConfig()
    cfg.validate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.field_r90 = 5.0
    SimulationConfig(family_fractions={"spheroid": 1.0}).validate()
    with pytest.raises(AvaderError, match="companion_fraction"):
        SimulationConfig(companion_fraction=1.5).validate()


def test_family_fractions_are_respected():
    only = simulate(12, 32, seed=1, workers=1, progress=False, config=SimulationConfig(
        family_fractions={"spheroid": 0.0, "late": 1.0}, companion_fraction=0.0))
    assert set(only.catalog["family"]) == {"late"} and (np.asarray(only.catalog["n_companions"]) == 0).all()


def test_population_mix(population):
    cat = population.catalog
    counts = {f: int((np.asarray(cat["family"]) == f).sum()) for f in FAMILIES}
    expected = SimulationConfig().family_fractions
    for family, count in counts.items():
        assert abs(count / len(cat) - expected[family]) < 0.1, counts
    companions = np.asarray(cat["n_companions"]) > 0
    assert 0.2 < companions.mean() < 0.4
    assert set(cat["companion_type"][companions]) == {"galaxy", "star"}
    assert set(cat["companion_type"][~companions]) == {"none"}
    q = np.asarray(cat["axis_ratio"])
    disks = np.isin(np.asarray(cat["family"]), ["late", "early"])
    assert q[disks].min() < 0.3, "no edge-on disks"
    assert np.median(q[np.asarray(cat["family"]) == "spheroid"]) > np.median(q[disks])
    assert np.all(np.asarray(cat["sersic_index"])[np.asarray(cat["family"]) == "spheroid"] >= 3)


# ----------------------------------------------------------------------------- physics of the images

def test_orientation_convention_on_the_array():
    """PA is counter-clockwise from +x with array row = y: light of a PA~45 disk lies along x = y."""
    cfg = SimulationConfig(family_fractions={"late": 1.0}, companion_fraction=0.0, snr=(1000.0, 1000.0), sky_clip=False)
    checked = 0
    for i in range(40):
        image, truth = render_galaxy(i, 0, SIZE, cfg)
        if truth["axis_ratio"] > 0.5:
            continue
        flux = _flux(image, truth)
        y, x = np.indices(flux.shape)
        a = np.radians(truth["position_angle"])
        along = np.abs((x - truth["x"]) * np.cos(a) + (y - truth["y"]) * np.sin(a))
        across = np.abs(-(x - truth["x"]) * np.sin(a) + (y - truth["y"]) * np.cos(a))
        assert (flux * along).sum() > 1.5 * (flux * across).sum()
        assert _circular_error(_shape(flux, _main_segment(flux, truth))[1], truth["position_angle"]) < 5
        checked += 1
    assert checked >= 5


def test_axis_ratio_and_orientation_match_the_images(population):
    cat = population.catalog
    measured = np.array([_shape(_flux(population.get_images(i), cat[i]),
                                _main_segment(_flux(population.get_images(i), cat[i]), cat[i])) for i in range(len(cat))])
    clean = (np.asarray(cat["n_companions"]) == 0) & (np.asarray(cat["snr"]) > 20)
    q = np.asarray(cat["axis_ratio"])
    assert clean.sum() > 100
    assert np.corrcoef(measured[clean, 0], q[clean])[0, 1] > 0.8
    elongated = clean & (q < 0.7)
    assert elongated.sum() > 30
    assert np.median(_circular_error(measured[elongated, 1], np.asarray(cat["position_angle"])[elongated])) < 10


def test_spheroids_are_more_concentrated_than_late_disks(population):
    cat = population.catalog
    family = np.asarray(cat["family"])
    clean = (np.asarray(cat["n_companions"]) == 0) & (np.asarray(cat["snr"]) > 20)
    c = np.array([_concentration(_flux(population.get_images(i), cat[i]), cat[i]) for i in range(len(cat))])
    spheroid, late = c[clean & (family == "spheroid")], c[clean & (family == "late")]
    assert len(spheroid) > 20 and len(late) > 20
    assert np.median(spheroid) > np.median(late) + 0.3
    truth_c = np.asarray(cat["concentration"])
    assert np.median(truth_c[family == "spheroid"]) > 3.0 > 2.5 > np.median(truth_c[family == "late"])


def test_companions_show_a_second_source(population):
    cat = population.catalog
    family = np.asarray(cat["family"])
    peaks = np.array([_peaks(_flux(population.get_images(i), cat[i]), cat[i]) for i in range(len(cat))])
    with_companion = (np.asarray(cat["n_companions"]) > 0) & (np.asarray(cat["companion_flux_ratio"]) >= 0.2)
    smooth_alone = (np.asarray(cat["n_companions"]) == 0) & np.isin(family, ["spheroid", "early"])
    assert with_companion.sum() > 30 and smooth_alone.sum() > 60
    assert (peaks[with_companion] >= 2).mean() > 0.75
    assert (peaks[smooth_alone] >= 2).mean() < 0.1
    # the brightest companion lies where the catalogue says
    sep = np.hypot(np.asarray(cat["companion_x"]) - np.asarray(cat["x"]), np.asarray(cat["companion_y"]) - np.asarray(cat["y"]))
    np.testing.assert_allclose(sep[with_companion], np.asarray(cat["companion_sep"])[with_companion])


# ----------------------------------------------------------------------------- blends

def test_blend_is_sum_of_components_plus_recorded_noise(tmp_path):
    path = simulate(16, 48, seed=5, workers=1, progress=False, blends=True, out=tmp_path / "blends.fits")
    gs = GalaxySet.read(path)
    assert gs.images.dtype.kind == "f" and gs.images.dtype.itemsize == 4
    comps = np.asarray(gs.extra["COMPONENTS"])
    assert comps.shape == (16, 3, 48, 48) and comps.dtype.itemsize == 4
    cat = gs.catalog
    n_src = np.asarray(cat["n_sources"])
    assert set(n_src) <= {2, 3} and (n_src == 2).sum() > (n_src == 3).sum()
    for i in range(len(gs)):
        residual = np.asarray(gs.images[i], dtype=np.float64) - cat["zero_level"][i] - comps[i].sum(0)
        sigma = cat["noise_sigma"][i]
        assert abs(residual.std() / sigma - 1) < 0.1
        assert abs(residual.mean()) < 5 * sigma / 48
        assert not comps[i, n_src[i]:].any(), "unused component slots must be zero"
        fluxes = [cat[f"flux_{k}"][i] for k in range(n_src[i])]
        assert fluxes == sorted(fluxes, reverse=True), "brightest source first"
        assert 0.6 * fluxes[0] < comps[i, 0].sum() <= 1.001 * fluxes[0], "flux_0 is the total in stored units"
        assert cat[f"family_{n_src[i] - 1}"][i] in FAMILIES
    assert np.all((np.asarray(cat["separation_rhalf"]) >= 0.5) & (np.asarray(cat["separation_rhalf"]) <= 4.0))
    assert np.all((np.asarray(cat["flux_ratio"]) >= 0.1) & (np.asarray(cat["flux_ratio"]) <= 1.0))
    sep = np.hypot(np.asarray(cat["x_1"]) - np.asarray(cat["x_0"]), np.asarray(cat["y_1"]) - np.asarray(cat["y_0"]))
    np.testing.assert_allclose(sep, np.asarray(cat["separation"]))
    np.testing.assert_allclose(np.asarray(cat["separation"]) / np.asarray(cat["r_half_0"]), cat["separation_rhalf"])


def test_render_functions_check_their_arguments():
    with pytest.raises(AvaderError, match="family_fractions"):
        render_galaxy(0, 0, 32, SimulationConfig(family_fractions={"late": 0.5}))
    with pytest.raises(AvaderError, match="index"):
        render_blend(-1, 0, 32)
    with pytest.raises(AvaderError, match="image_size"):
        render_galaxy(0, 0, 15)


def test_sky_clip_puts_the_sky_at_black_like_the_sdss_jpegs():
    cfg = SimulationConfig(snr=(30.0, 30.0), companion_fraction=0.0)
    clipped, truth = render_galaxy(3, 0, SIZE, dataclasses.replace(cfg, sky_clip=True))
    signed, truth_signed = render_galaxy(3, 0, SIZE, dataclasses.replace(cfg, sky_clip=False))
    assert truth["zero_level"] == 0.0 and truth_signed["zero_level"] > 0.05
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    border = np.concatenate([clipped[:4].ravel(), clipped[-4:].ravel()])
    assert 0.35 < (border == 0.0).mean() < 0.65, "about half the sky pixels are below the sky"
    # above the sky the two differ only by the stretch's gain
    lit = signed > truth_signed["zero_level"] + 0.02
    gain = (clipped[lit] / (signed[lit] - truth_signed["zero_level"]))
    np.testing.assert_allclose(gain, np.median(gain), rtol=1e-4)


def test_blends_ignore_sky_clip():
    image, comps, truth = render_blend(2, 0, 32, SimulationConfig(sky_clip=True))
    same, _, _ = render_blend(2, 0, 32, SimulationConfig(sky_clip=False))
    np.testing.assert_array_equal(image, same)
    assert truth["zero_level"] > 0


def test_asinh_stretch_keeps_unit_range_and_lifts_faint_light():
    linear, truth = render_galaxy(2, 0, 32)
    asinh, _ = render_galaxy(2, 0, 32, SimulationConfig(stretch="asinh"))
    assert asinh.min() == 0.0 and asinh.max() == 1.0
    r = np.hypot(*(np.indices(linear.shape) - np.array([truth["y"], truth["x"]])[:, None, None]))
    ring = (r > 0.5 * truth["r90_pix"]) & (r < truth["r90_pix"])
    assert (asinh[ring] - asinh.min()).mean() > (linear[ring] - linear.min()).mean()
