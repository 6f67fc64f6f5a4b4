"""GalaxySet: FITS round trip, memory mapping, validation errors, atomic writes, tf.data."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from avader.data import GalaxySet, GalaxySetWriter, make_dataset, sha256sum, write_atomic
from avader.errors import AvaderError


def _set(n=8, size=16, dtype=np.uint8):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size)).astype(np.uint8)
    if dtype == np.float32:
        images = (images / 255.0).astype(np.float32)
    catalog = Table({"id": np.arange(100, 100 + n), "axis_ratio": rng.uniform(0, 1, n), "family": ["disk"] * n})
    return GalaxySet(images, catalog, meta={"SOURCE": "test", "PIXSCALE": 0.396})


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_round_trip_exact_and_memory_mapped(tmp_path, dtype):
    original = _set(dtype=dtype)
    path = original.write(tmp_path / "set.fits")
    back = GalaxySet.read(path)
    assert back.memory_mapped and not original.memory_mapped
    np.testing.assert_array_equal(np.asarray(back.images), original.images)
    np.testing.assert_array_equal(back.ids, original.ids)
    np.testing.assert_allclose(back.catalog["axis_ratio"], original.catalog["axis_ratio"])
    assert list(back.catalog["family"]) == ["disk"] * 8
    assert back.meta["SOURCE"] == "test" and back.meta["PIXSCALE"] == 0.396
    assert "AVADERV" in back.meta


def test_values_mapped_to_unit_interval(tmp_path):
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    gs = GalaxySet.from_arrays(images)
    np.testing.assert_allclose(gs.get_images(0), [[0, 1], [0.2, 0.4]], atol=1e-7)
    assert gs.get_images(slice(None)).dtype == np.float32


def test_checksums_written_and_valid(tmp_path):
    path = _set().write(tmp_path / "set.fits")
    with fits.open(path, checksum=True) as hdul:
        for hdu in hdul:
            assert "CHECKSUM" in hdu.header and "DATASUM" in hdu.header
            assert hdu._checksum_valid and hdu._datasum_valid
        assert [h.name for h in hdul] == ["PRIMARY", "IMAGES", "CATALOG"]
        assert hdul["IMAGES"].data.shape == (8, 16, 16)


def test_extra_hdu_round_trip(tmp_path):
    components = np.random.default_rng(1).random((4, 2, 16, 16)).astype(np.float32)
    gs = GalaxySet.from_arrays(components.sum(1) / 2, extra={"COMPONENTS": components})
    back = GalaxySet.read(gs.write(tmp_path / "blends.fits"))
    np.testing.assert_array_equal(back.extra["COMPONENTS"], components)


def test_refuses_overwrite_and_keeps_existing(tmp_path):
    path = _set().write(tmp_path / "set.fits")
    before = sha256sum(path)
    with pytest.raises(AvaderError, match="exists"):
        _set(n=3).write(path)
    assert sha256sum(path) == before
    _set(n=3).write(path, overwrite=True)
    assert len(GalaxySet.read(path)) == 3


def test_exception_during_write_leaves_nothing(tmp_path):
    path = tmp_path / "set.fits"
    with pytest.raises(RuntimeError):
        with GalaxySetWriter(path, n=4, image_shape=(8, 8)) as writer:
            writer.write(0, np.zeros((2, 8, 8)))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_exception_during_write_keeps_existing_file(tmp_path):
    path = _set().write(tmp_path / "set.fits")
    before = sha256sum(path)
    with pytest.raises(RuntimeError):
        with GalaxySetWriter(path, n=4, image_shape=(8, 8), overwrite=True) as writer:
            writer.write(0, np.zeros((4, 8, 8)))
            raise RuntimeError("interrupted")
    assert sha256sum(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.fits"]


def test_writer_streams_blocks_in_any_order(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.random((10, 8, 8)).astype(np.float32)
    with GalaxySetWriter(tmp_path / "s.fits", n=10, image_shape=(8, 8), dtype="float32", meta={"SOURCE": "x"}) as w:
        w.write(5, images[5:])
        w.write(0, images[:5])
        w.set_catalog({"id": np.arange(10)})
    np.testing.assert_array_equal(GalaxySet.read(w.path).get_images(slice(None)), images)


def test_writer_requires_every_row_and_catalog(tmp_path):
    with pytest.raises(AvaderError, match="image 2 was never written"):
        with GalaxySetWriter(tmp_path / "s.fits", n=3, image_shape=(4, 4)) as w:
            w.write(0, np.zeros((2, 4, 4)))
            w.set_catalog({"id": [1, 2, 3]})
    with pytest.raises(AvaderError, match="no catalogue"):
        with GalaxySetWriter(tmp_path / "s.fits", n=1, image_shape=(4, 4)) as w:
            w.write(0, np.zeros((1, 4, 4)))
    assert not (tmp_path / "s.fits").exists()


def test_write_atomic_cleans_up(tmp_path):
    def broken(tmp):
        tmp.write_text("half")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        write_atomic(tmp_path / "x.txt", broken)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- validation errors, one line each
def _write_raw(path, hdus):
    fits.HDUList([fits.PrimaryHDU(), *hdus]).writeto(path)
    return path


def _catalog_hdu(ids):
    hdu = fits.table_to_hdu(Table({"id": np.asarray(ids)}))
    hdu.name = "CATALOG"
    return hdu


def test_error_count_mismatch(tmp_path):
    path = _write_raw(tmp_path / "a.fits", [fits.ImageHDU(np.zeros((3, 4, 4), np.uint8), name="IMAGES"), _catalog_hdu([1, 2])])
    with pytest.raises(AvaderError, match=r"a\.fits: 3 images but 2 catalogue rows"):
        GalaxySet.read(path)


def test_error_duplicate_ids(tmp_path):
    path = _write_raw(tmp_path / "a.fits", [fits.ImageHDU(np.zeros((3, 4, 4), np.uint8), name="IMAGES"), _catalog_hdu([1, 2, 2])])
    with pytest.raises(AvaderError, match="duplicate id 2"):
        GalaxySet.read(path)


def test_error_nan_pixels(tmp_path):
    images = np.zeros((3, 4, 4), np.float32)
    images[1, 2, 2] = np.nan
    path = _write_raw(tmp_path / "a.fits", [fits.ImageHDU(images, name="IMAGES"), _catalog_hdu([7, 8, 9])])
    with pytest.raises(AvaderError, match=r"image 1 \(id 8\) has NaN"):
        GalaxySet.read(path)


def test_error_wrong_dimensionality(tmp_path):
    path = _write_raw(tmp_path / "a.fits", [fits.ImageHDU(np.zeros((3, 16), np.uint8), name="IMAGES"), _catalog_hdu([1, 2, 3])])
    with pytest.raises(AvaderError, match=r"must be \(n, height, width\)"):
        GalaxySet.read(path)


def test_error_missing_hdu(tmp_path):
    path = _write_raw(tmp_path / "a.fits", [fits.ImageHDU(np.zeros((3, 4, 4), np.uint8), name="IMAGES")])
    with pytest.raises(AvaderError, match="missing the CATALOG HDU"):
        GalaxySet.read(path)


def test_error_not_fits(tmp_path):
    path = tmp_path / "a.fits"
    path.write_text("this is not a FITS file\n")
    with pytest.raises(AvaderError, match=r"a\.fits: not a readable FITS file"):
        GalaxySet.read(path)
    with pytest.raises(AvaderError, match="no such file"):
        GalaxySet.read(tmp_path / "missing.fits")


def test_error_messages_are_one_line(tmp_path):
    path = tmp_path / "a.fits"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(AvaderError) as info:
        GalaxySet.read(path)
    assert "\n" not in str(info.value)


def test_subset_keeps_rows(tmp_path):
    gs = _set()
    sub = gs.subset(np.array([6, 1]))
    assert list(sub.ids) == [106, 101]
    np.testing.assert_array_equal(sub.images[0], gs.images[6])


# ---------------------------------------------------------------- tf.data pipeline
def test_dataset_reads_memmap_in_batches_and_covers_each_row_once(tmp_path):
    gs = GalaxySet.read(_set(n=10).write(tmp_path / "s.fits"))
    batches = list(make_dataset(gs, batch_size=4, shuffle=True, seed=3, flips=False, with_index=True))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    rows = np.concatenate([b[1].numpy() for b in batches])
    assert sorted(rows) == list(range(10))
    for images, order in batches:
        np.testing.assert_allclose(images.numpy()[..., 0], gs.get_images(order.numpy()))


def test_dataset_flips_preserve_pixels_and_are_seeded(tmp_path):
    gs = _set(n=16)
    a = np.concatenate([b.numpy() for b in make_dataset(gs, 16, shuffle=False, seed=5, flips=True)])
    b = np.concatenate([b.numpy() for b in make_dataset(gs, 16, shuffle=False, seed=5, flips=True)])
    np.testing.assert_array_equal(a, b)
    originals = gs.get_images(slice(None))
    flipped = 0
    for img, orig in zip(a[..., 0], originals):
        candidates = [orig, orig[:, ::-1], orig[::-1], orig[::-1, ::-1]]
        assert any(np.array_equal(img, c) for c in candidates)
        flipped += not np.array_equal(img, orig)
    assert flipped > 0


def test_epoch_stream_is_resumable():
    gs = _set(n=10)
    full = [b.numpy() for b in make_dataset(gs, 4, seed=1, epochs=3)]
    resumed = [b.numpy() for b in make_dataset(gs, 4, seed=1, epochs=3, initial_epoch=2)]
    assert len(full) == 9 and len(resumed) == 3
    for a, b in zip(full[6:], resumed):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(full[:3], full[3:6]))


def test_ensure_dataset_resimulates_when_the_simulation_settings_change(tmp_path, monkeypatch):
    from avader.config import load_config
    from avader.data import ensure_dataset

    monkeypatch.setenv("AVADER_DATA", str(tmp_path))
    config = load_config("smoke", ["data.n_galaxies=20"])
    path = ensure_dataset(config, progress=False, workers=1)
    first = GalaxySet.read(path)
    stamp = path.stat().st_mtime_ns
    assert ensure_dataset(config, progress=False, workers=1) == path and path.stat().st_mtime_ns == stamp
    changed = load_config("smoke", ["data.n_galaxies=20", "simulation.sky_clip=false"])
    assert ensure_dataset(changed, progress=False, workers=1) == path
    second = GalaxySet.read(path)
    assert second.meta["SIMCFG"] != first.meta["SIMCFG"] and not second.meta["SKYCLIP"] and first.meta["SKYCLIP"]
    assert np.asarray(second.catalog["zero_level"]).min() > 0 == np.asarray(first.catalog["zero_level"]).max()


def test_a_seed_check_simulates_its_own_default_files_and_leaves_seed_0s_alone(tmp_path, monkeypatch):
    from avader.config import load_config
    from avader.data import ensure_blends, ensure_dataset

    monkeypatch.setenv("AVADER_DATA", str(tmp_path))
    base = load_config("smoke", ["data.n_galaxies=12"])
    seed0 = ensure_dataset(base, progress=False, workers=1)
    blends0 = ensure_blends(base, n=4, progress=False, workers=1)
    stamps = {p: p.stat().st_mtime_ns for p in (seed0, blends0)}
    other = base.replace(["seed=1"])
    seed1 = ensure_dataset(other, progress=False, workers=1)
    blends1 = ensure_blends(other, n=4, progress=False, workers=1)
    assert (seed0.name, seed1.name) == ("simulated_smoke.fits", "simulated_smoke_seed1.fits")
    assert (blends0.name, blends1.name) == ("blends_smoke.fits", "blends_smoke_seed1.fits")
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # seed 0's files untouched
    assert GalaxySet.read(seed0).meta["SEED"] == 0 and GalaxySet.read(seed1).meta["SEED"] == 1
    assert GalaxySet.read(blends1).meta["SEED"] == 1
    assert not np.array_equal(GalaxySet.read(seed0).get_images([0]), GalaxySet.read(seed1).get_images([0]))


def test_ensure_heldout_draws_new_galaxies_of_the_same_population(tmp_path, monkeypatch):
    from avader.config import load_config
    from avader.data import ensure_dataset, ensure_heldout
    from avader.simulate import HELDOUT_ID_START

    monkeypatch.setenv("AVADER_DATA", str(tmp_path))
    config = load_config("smoke", ["data.n_galaxies=12"])
    training = GalaxySet.read(ensure_dataset(config, progress=False, workers=1))
    path = ensure_heldout(config, n=8, progress=False, workers=1)
    heldout = GalaxySet.read(path)
    assert path.name == "simulated_smoke_heldout.fits" and len(heldout) == 8
    assert heldout.ids.tolist() == list(range(HELDOUT_ID_START, HELDOUT_ID_START + 8))
    assert not set(heldout.ids.tolist()) & set(training.ids.tolist())
    assert heldout.meta["SIMCFG"] == training.meta["SIMCFG"] and heldout.meta["SEED"] == training.meta["SEED"]
    assert not any(np.array_equal(a, b) for a in heldout.images for b in training.images)
    stamp = path.stat().st_mtime_ns
    assert ensure_heldout(config, n=8, progress=False, workers=1) == path and path.stat().st_mtime_ns == stamp
    assert len(GalaxySet.read(ensure_heldout(config, n=5, progress=False, workers=1))) == 5
    assert ensure_heldout(config, n=0) is None
    resolved = load_config("smoke", [f"data.path={training.path}"])  # as a run's config.yaml names it
    assert ensure_heldout(resolved, n=8, progress=False, workers=1) == path
    other = load_config("smoke", [f"data.path={training.path}", "seed=3"])
    assert ensure_heldout(other, n=8) is None
    real = GalaxySet(training.images, {"id": training.ids}, {"SOURCE": "images"})
    real.write(tmp_path / "real.fits")
    assert ensure_heldout(load_config("smoke", [f"data.path={tmp_path / 'real.fits'}"]), n=8) is None
