"""Preprocessing recipes: one decoded cutout in, one grey square image out; many in parallel.

The default recipe, ``astrovader``, is the paper's (Spindler et al. 2021, section 2):

1. centre crop a square of ``crop_fraction`` of the field (192 of 256 pixels: 0.75);
2. convert to grey with the luminance weights 0.2125, 0.7154, 0.0721. Upstream applied them to
   BGR-ordered arrays (OpenCV), and an SDSS gri colour JPEG stores (R, G, B) = (i, r, g), so the
   weights fall on g, r and i: grey = 0.2125 g + 0.7154 r + 0.0721 i, that is
   0.0721 R + 0.7154 G + 0.2125 B of the JPEG's own channels (``weights`` below, in R, G, B order);
3. resize to ``size`` x ``size`` with an anti-aliased filter (Lanczos by default);
4. stretch each image's own minimum..maximum to 0..255 and store uint8.

Speed: with ``draft=True`` (the default) a JPEG is decoded directly at 1/2, 1/4 or 1/8 scale by
libjpeg's DCT scaling (an anti-aliased reduction) as long as the crop keeps at least ``size``
pixels, and the crop box is then applied at sub-pixel precision in the resize: reduce, then
resize. On 424 x 424 GZ2 JPEGs this halves the CPU time per image; the result differs from the
full-resolution path by less than one grey level on average (``draft=False`` for the latter).
Upstream's skimage recipe (Gaussian anti-aliasing, bilinear) is matched to about 1.5 levels
either way.

Scale caveat: the paper's cutouts were 256 x 256 pixels at 0.02 x PetroR90_r arcsec/pixel, so
every galaxy filled the field by the same factor (5.12 R90 across, 3.84 R90 after the crop).
The 424 x 424 JPEGs of Zenodo record 3565489 and of the Kaggle Galaxy Zoo challenge were made
for the Galaxy Zoo 2 interface and are not those cutouts: a crop fraction of 0.75 of them shows
a different field in units of the galaxy's size, so results on them are not pixel-for-pixel the
paper's. ``crop_fraction`` is a recipe parameter for that reason and is recorded in the header.

The ``asinh`` recipe is for single-band FITS cutouts (linear flux): no crop, background
(median) subtracted, ``asinh(x / (softening * noise))`` with the noise from the median absolute
deviation, then the same per-image min-max stretch, stored float32 in [0, 1].

Every recipe's parameters go into the GalaxySet header through :meth:`Recipe.header`
(keys of at most 8 characters: ``RECIPE``, ``SIZE``, ``CROPFRAC``, ``WEIGHTR`` ...).

:func:`preprocess_many` applies a recipe to many files (:class:`FileReader`) or HDF5 rows
(:class:`HDF5Reader`) over all cores, in order, handing each block of results to a sink so
that memory stays flat in the number of images; :mod:`avader.sources` builds on it.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import sys
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AvaderError

__all__ = [
    "Recipe",
    "RECIPES",
    "get_recipe",
    "read_image",
    "decode",
    "IMAGE_SUFFIXES",
    "FITS_SUFFIXES",
    "ImageProblem",
    "FileReader",
    "HDF5Reader",
    "preprocess_many",
    "default_workers",
]

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fz")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", *FITS_SUFFIXES)

_RESAMPLE = ("lanczos", "box", "bicubic", "bilinear")
_STRETCH = ("minmax", "asinh")


class ImageProblem(ValueError):
    """One image cannot be used (corrupt, empty, blank, NaN pixels); the message is the reason."""


@dataclass(frozen=True)
class Recipe:
    """How one cutout becomes one stored grey image.

    Parameters
    ----------
    name : str
        Recipe name recorded as ``RECIPE`` in the header.
    size : int
        Output side in pixels (the paper: 128).
    crop_fraction : float
        Side of the centred square crop over the shorter side of the input, in (0, 1]
        (the paper: 192 / 256 = 0.75).
    weights : (float, float, float)
        Grey weights of the input's R, G, B channels. Default (0.0721, 0.7154, 0.2125):
        0.2125 g + 0.7154 r + 0.0721 i for SDSS gri JPEGs, as upstream computed it.
        Grey inputs ignore them.
    resample : {"lanczos", "box", "bicubic", "bilinear"}
        Anti-aliased resampling filter of the resize (Pillow's, applied to float32 data).
    stretch : {"minmax", "asinh"}
        Per-image intensity mapping before the min-max stretch to the output range.
    softening : float
        ``asinh`` only: softening of the asinh in units of the image's noise (1.4826 MAD).
    dtype : {"uint8", "float32"}
        Stored pixel type: uint8 in 0..255 or float32 in [0, 1].
    draft : bool
        Decode JPEGs at a reduced scale (1/2, 1/4, 1/8) while the crop keeps at least ``size``
        pixels (reduce, then resize): about twice as fast for GZ2 images.
    """

    name: str = "astrovader"
    size: int = 128
    crop_fraction: float = 0.75
    weights: tuple[float, float, float] = (0.0721, 0.7154, 0.2125)
    resample: str = "lanczos"
    stretch: str = "minmax"
    softening: float = 3.0
    dtype: str = "uint8"
    draft: bool = True

    def __post_init__(self):
        if not (isinstance(self.size, (int, np.integer)) and 2 <= self.size <= 4096):
            raise AvaderError(f"recipe {self.name}: size must be an integer in 2..4096, got {self.size!r}")
        if not 0.0 < float(self.crop_fraction) <= 1.0:
            raise AvaderError(f"recipe {self.name}: crop_fraction must be in (0, 1], got {self.crop_fraction!r}")
        if self.resample not in _RESAMPLE:
            raise AvaderError(f"recipe {self.name}: resample must be one of {', '.join(_RESAMPLE)}, got {self.resample!r}")
        if self.stretch not in _STRETCH:
            raise AvaderError(f"recipe {self.name}: stretch must be one of {', '.join(_STRETCH)}, got {self.stretch!r}")
        if self.dtype not in ("uint8", "float32"):
            raise AvaderError(f"recipe {self.name}: dtype must be uint8 or float32, got {self.dtype!r}")
        if len(self.weights) != 3 or not np.isclose(sum(self.weights), 1.0, atol=1e-3):
            raise AvaderError(f"recipe {self.name}: weights must be three numbers summing to 1, got {self.weights!r}")
        if not self.softening > 0:
            raise AvaderError(f"recipe {self.name}: softening must be positive, got {self.softening!r}")

    def header(self) -> dict[str, object]:
        """The recipe's parameters as GalaxySet header keys (at most 8 characters each)."""
        meta = {
            "RECIPE": self.name,
            "SIZE": int(self.size),
            "CROPFRAC": float(self.crop_fraction),
            "WEIGHTR": float(self.weights[0]),
            "WEIGHTG": float(self.weights[1]),
            "WEIGHTB": float(self.weights[2]),
            "RESAMPLE": self.resample,
            "STRETCH": self.stretch,
            "DRAFT": bool(self.draft),
        }
        if self.stretch == "asinh":
            meta["SOFTEN"] = float(self.softening)
        return meta

    def crop_box(self, height: int, width: int) -> tuple[int, int, int]:
        """(top, left, side) of the centred square crop of an image of ``height`` x ``width``."""
        side = max(1, int(round(min(height, width) * float(self.crop_fraction))))
        return (height - side) // 2, (width - side) // 2, side

    def min_input_side(self) -> int:
        """Smallest input side (pixels) whose crop still has ``size`` pixels: the draft decoding target."""
        return int(np.ceil(self.size / float(self.crop_fraction)))

    def apply(self, image: np.ndarray, full_shape=None) -> np.ndarray:
        """Crop, grey, resize and stretch one image.

        Parameters
        ----------
        image : ndarray, shape (height, width) or (height, width, 3)
            Any real dtype and scale (uint8 JPEG values, float flux, ...).
        full_shape : (int, int), optional
            (height, width) of the image at full resolution when ``image`` was decoded at a
            reduced scale; the crop box is defined on the full image and applied at sub-pixel
            precision.

        Returns
        -------
        ndarray, shape (size, size)
            uint8 in 0..255 or float32 in [0, 1], per ``dtype``.

        Raises
        ------
        ImageProblem
            Non-finite pixels, a wrong number of channels or a blank (constant) image.
        """
        from PIL import Image

        image = np.asarray(image)
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ImageProblem(f"image has shape {image.shape}; expected (height, width) or (height, width, 3)")
        crop, box = self._crop(image, full_shape)
        if crop.ndim == 3:
            grey = crop.astype(np.float32) @ np.asarray(self.weights, dtype=np.float32)
        else:
            grey = np.ascontiguousarray(crop, dtype=np.float32)
        bad = int(np.count_nonzero(~np.isfinite(grey)))
        if bad:
            raise ImageProblem(f"{bad} NaN or infinite pixels in the crop")
        if self.stretch == "asinh":
            grey = _asinh(grey, self.softening)
        if box is not None or grey.shape != (self.size, self.size):
            resample = getattr(Image.Resampling, self.resample.upper())
            grey = np.asarray(Image.fromarray(grey, mode="F").resize((self.size, self.size), resample, box=box))
        lo, hi = float(grey.min()), float(grey.max())
        if not hi - lo > 1e-6 * max(1.0, abs(lo), abs(hi)):  # resampling rounding is not signal
            raise ImageProblem(f"blank image (every pixel of the crop is {lo:.6g})")
        if self.dtype == "uint8":
            out = (grey - np.float32(lo)) * np.float32(255.0 / (hi - lo))
            return np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return np.clip((grey - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0).astype(np.float32)

    def _crop(self, image: np.ndarray, full_shape):
        height, width = image.shape[:2]
        if full_shape is None or tuple(full_shape) == (height, width):
            top, left, side = self.crop_box(height, width)
            return image[top : top + side, left : left + side], None
        top, left, side = self.crop_box(*full_shape)
        sy, sx = full_shape[0] / height, full_shape[1] / width
        y0, x0, y1, x1 = top / sy, left / sx, (top + side) / sy, (left + side) / sx
        margin = 3  # pixels of context for the resampling filter
        iy0, ix0 = max(0, int(np.floor(y0)) - margin), max(0, int(np.floor(x0)) - margin)
        iy1, ix1 = min(height, int(np.ceil(y1)) + margin), min(width, int(np.ceil(x1)) + margin)
        return image[iy0:iy1, ix0:ix1], (x0 - ix0, y0 - iy0, x1 - ix0, y1 - iy0)

    def process_file(self, path: str | os.PathLike) -> np.ndarray:
        """Decode (at a reduced scale with ``draft``) and :meth:`apply`; raises ImageProblem with the reason."""
        image, full_shape = decode(path, self.min_input_side() if self.draft else None)
        return self.apply(image, full_shape)


def _asinh(image: np.ndarray, softening: float) -> np.ndarray:
    background = np.float32(np.median(image))
    noise = float(1.4826 * np.median(np.abs(image - background)))
    if not noise > 0:
        noise = float(np.std(image)) or 1.0
    return np.arcsinh((image - background) / np.float32(softening * noise)).astype(np.float32)


RECIPES: dict[str, Recipe] = {
    "astrovader": Recipe(),
    "asinh": Recipe(name="asinh", crop_fraction=1.0, stretch="asinh", dtype="float32"),
}


def get_recipe(recipe: str | Recipe | None = "astrovader", **params) -> Recipe:
    """A recipe by name (or as given) with some parameters replaced.

    Parameters
    ----------
    recipe : str or Recipe or None
        A name of :data:`RECIPES` (None: ``astrovader``) or a Recipe.
    **params
        Recipe fields to replace, e.g. ``size=64, crop_fraction=0.5``; None values are ignored.

    Examples
    --------
    >>> get_recipe("astrovader", size=64).header()["SIZE"]
    64
    """
    if recipe is None:
        recipe = "astrovader"
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise AvaderError(f"recipe {recipe!r}: unknown; choose one of {', '.join(RECIPES)}")
        recipe = RECIPES[recipe]
    params = {key: value for key, value in params.items() if value is not None}
    fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise AvaderError(f"recipe {recipe.name}: unknown parameter {unknown[0]!r}")
    if "weights" in params:
        params["weights"] = tuple(float(w) for w in params["weights"])
    return dataclasses.replace(recipe, **params)


def _is_fits(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in FITS_SUFFIXES)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one JPEG, PNG (or any Pillow format) or FITS cutout at full resolution.

    See :func:`decode`, which this calls without a reduced scale.
    """
    return decode(path)[0]


def decode(path: str | os.PathLike, min_side: int | None = None):
    """Decode one JPEG, PNG (or any Pillow format) or FITS cutout.

    Modes convert where that is meaningful: grey stays grey; RGBA, LA and palette images drop
    their alpha; CMYK, YCbCr, LAB and HSV become RGB; 16-bit and 32-bit integer and float
    images keep their full precision as float32 (the recipe's stretch removes the scale).
    FITS: the first HDU holding a 2-D image (or a cube with one plane).

    Parameters
    ----------
    path : path-like
    min_side : int, optional
        Allow a JPEG to be decoded at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling) as long as
        both sides stay at least ``min_side`` pixels.

    Returns
    -------
    image : ndarray, shape (height, width) or (height, width, 3)
        uint8 for 8-bit colour or grey images, float32 otherwise.
    full_shape : (int, int)
        (height, width) at full resolution.

    Raises
    ------
    ImageProblem
        Empty file, not an image, truncated or corrupt data, FITS without an image or with
        NaN pixels. The message is the reason alone; callers add the file name.
    """
    path = Path(path)
    try:
        nbytes = path.stat().st_size
    except OSError as err:
        raise ImageProblem(f"cannot read ({err.strerror})") from None
    if nbytes == 0:
        raise ImageProblem("empty file (0 bytes)")
    if _is_fits(path):
        image = _read_fits(path)
        return image, image.shape[:2]
    return _read_pillow(path, min_side)


def _read_pillow(path: Path, min_side: int | None):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            full_shape = (im.size[1], im.size[0])
            if min_side and im.format == "JPEG":
                im.draft(im.mode, (min_side, min_side))
            im.load()
            return _pillow_to_array(im), full_shape
    except UnidentifiedImageError:
        raise ImageProblem("not an image file (Pillow cannot identify its format)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageProblem(f"truncated or corrupt image ({_one_line(err)})") from None


def _pillow_to_array(im) -> np.ndarray:
    mode = im.mode
    if mode in ("RGB", "L"):
        return np.asarray(im)
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel("L"))
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(im.convert("RGB"))
    if mode in ("P", "PA"):
        return np.asarray(im.convert("RGBA").convert("RGB"))
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.float32)
    if mode in ("I", "F"):
        return np.asarray(im, dtype=np.float32)
    return np.asarray(im.convert("RGB"))


def _read_fits(path: Path) -> np.ndarray:
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul:
                if not getattr(hdu, "is_image", False) or hdu.data is None:
                    continue
                data = np.squeeze(np.asarray(hdu.data))
                if data.ndim != 2:
                    raise ImageProblem(f"FITS HDU {hdu.name or 0} holds shape {hdu.data.shape}; expected a 2-D image")
                data = data.astype(np.float32)
                bad = int(np.count_nonzero(~np.isfinite(data)))
                if bad:
                    raise ImageProblem(f"FITS image has {bad} NaN or infinite pixels")
                return data
    except ImageProblem:
        raise
    except (OSError, ValueError, TypeError, IndexError) as err:
        raise ImageProblem(f"not a readable FITS file ({_one_line(err)})") from None
    raise ImageProblem("FITS file holds no image data")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 160 else text[:157] + "..."


# ---------------------------------------------------------------- many images, in parallel
class FileReader:
    """Items of :func:`preprocess_many`: item i is the image file ``files[i]``."""

    def __init__(self, files):
        self.files = [str(f) for f in files]

    def __len__(self):
        return len(self.files)

    def name(self, index: int) -> str:
        return self.files[index]

    def read(self, start: int, stop: int, min_side=None):
        """Yield ``(image, full_shape)`` or an ImageProblem for items ``start .. stop``."""
        for path in self.files[start:stop]:
            try:
                yield decode(path, min_side)
            except ImageProblem as err:
                yield err
            except Exception as err:  # one bad file must not stop a skip run
                yield ImageProblem(f"cannot decode ({err.__class__.__name__}: {err})")


class HDF5Reader:
    """Items of :func:`preprocess_many`: row i of the HDF5 dataset ``key`` (each process opens the file)."""

    def __init__(self, path, key: str, n: int):
        self.path, self.key, self.n = str(path), key, int(n)
        self._file = None

    def __len__(self):
        return self.n

    def __getstate__(self):
        return {"path": self.path, "key": self.key, "n": self.n, "_file": None}

    def name(self, index: int) -> str:
        return f"{self.path}[{self.key}][{index}]"

    def read(self, start: int, stop: int, min_side=None):
        """Yield ``(image, None)`` for rows ``start .. stop`` (one read of the whole block)."""
        import h5py

        if self._file is None:
            self._file = h5py.File(self.path, "r")
        for image in np.asarray(self._file[self.key][start:stop]):
            yield image, None


_WORKER = {}


def _init_worker(reader, recipe) -> None:
    _WORKER["reader"], _WORKER["recipe"] = reader, recipe


def _work(task):
    return _process(_WORKER["reader"], _WORKER["recipe"], *task)


def _process(reader, recipe: Recipe, start: int, stop: int):
    block = np.zeros((stop - start, recipe.size, recipe.size), dtype=recipe.dtype)
    failures = []
    min_side = recipe.min_input_side() if recipe.draft else None
    for offset, item in enumerate(reader.read(start, stop, min_side)):
        try:
            if isinstance(item, ImageProblem):
                raise item
            block[offset] = recipe.apply(*item)
        except ImageProblem as err:
            failures.append((start + offset, str(err)))
    return start, block, failures


def default_workers() -> int:
    """Number of CPU cores this process may run on (the default number of decoding processes)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def preprocess_many(reader, recipe: Recipe, sink, on_error: str = "fail", workers=None, progress: bool = True,
                    desc: str = "prepare"):
    """Decode and preprocess every item of ``reader`` in parallel, in order, streaming the results.

    Parameters
    ----------
    reader : FileReader or HDF5Reader
        The items (files or HDF5 rows); sent once to each worker process.
    recipe : Recipe
    sink : callable
        ``sink(start, block)`` receives each block of results, (m, size, size) of ``recipe.dtype``,
        in order; rows of bad images hold zeros (skip mode).
    on_error : {"fail", "skip"}
        Stop at the first bad image (AvaderError naming it) or collect the failures.
    workers : int, optional
        Processes; default all cores available to this process. 1 decodes in this process.
    progress : bool
        tqdm bar with rate and ETA.
    desc : str
        Label of the progress bar and of errors about the pool.

    Returns
    -------
    list of (int, str)
        The bad items as (index, reason), in order.
    """
    from tqdm.auto import tqdm

    n = len(reader)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise AvaderError(f"workers must be at least 1, got {workers}")
    chunk = int(max(1, min(64, -(-n // (workers * 4)))))
    tasks = [(start, min(start + chunk, n)) for start in range(0, n, chunk)]
    pool = None
    if workers > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        # fork on Linux: no re-import of the caller's __main__ (scripts need no main guard);
        # the workers only use NumPy and Pillow. Elsewhere spawn, the platform default.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context(method),
                                   initializer=_init_worker, initargs=(reader, recipe))
        results = pool.map(_work, tasks)
    else:
        results = (_process(reader, recipe, *task) for task in tasks)
    failures = []
    bar = tqdm(total=n, unit="img", desc=desc, disable=not progress, smoothing=0.05)
    try:
        for start, block, fails in results:
            if fails and on_error == "fail":
                index, reason = fails[0]
                raise AvaderError(f"{reader.name(index)}: {reason} (--on-error skip leaves bad images out)")
            failures.extend(fails)
            sink(start, block)
            bar.update(len(block))
    except BrokenProcessPool as err:
        raise AvaderError(f"{desc}: a decoding process died ({err}); out of memory? try fewer --workers") from None
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    log.info("decoded %d images with %d worker(s), %d bad", n, workers if pool else 1, len(failures))
    return failures
