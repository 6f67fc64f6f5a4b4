"""GalaxySet: avader's one data format, its FITS file and its ``tf.data`` pipeline.

A GalaxySet is a FITS file that any astronomer's tools open (astropy, TOPCAT, DS9):

``PRIMARY``   empty, header with provenance keys (``SOURCE``, ``RECIPE``, ``AVADERV``, ...)
``IMAGES``    (N, H, W) grey images, uint8 (0..255) or float32 (0..1)
``CATALOG``   binary table, one row per image, column ``id`` plus whatever the source has
extra image HDUs, for example ``COMPONENTS`` (N, K, H, W) for the isolated sources of a blend set.

Every HDU carries astropy checksums. Files are read memory-mapped, so a catalogue larger
than RAM streams, and written to a temporary file that is renamed into place only when
complete, so an interrupted write never leaves a half file under the real name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from .errors import AvaderError

__all__ = [
    "GalaxySet",
    "GalaxySetWriter",
    "write_atomic",
    "sha256sum",
    "make_dataset",
    "ensure_dataset",
    "ensure_blends",
    "ensure_heldout",
]

log = logging.getLogger(__name__)

_IMAGE_DTYPES = {"uint8": np.uint8, "float32": np.float32}
_RESERVED_HDUS = ("PRIMARY", "IMAGES", "CATALOG")


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in chunks (memory flat in file size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise AvaderError(f"{path}: exists; pass overwrite=True (--overwrite) to replace it")
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)


def write_atomic(path: str | os.PathLike, writer_fn: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Write a file through a temporary sibling, renamed into place only on success.

    Parameters
    ----------
    path : path-like
        Final file name.
    writer_fn : callable
        Called with the temporary path; must create the complete file there.
    overwrite : bool
        Replace an existing ``path``. Without it an existing file is an error.

    Returns
    -------
    Path
        The final path. On any exception the temporary file is removed and an existing
        ``path`` is left untouched.
    """
    path = Path(path).resolve()
    _check_target(path, overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer_fn(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _as_table(catalog, n: int, where: str):
    from astropy.table import Table

    table = catalog if isinstance(catalog, Table) else Table(dict(catalog))
    if "id" not in table.colnames:
        raise AvaderError(f"{where}: catalogue has no 'id' column")
    if len(table) != n:
        raise AvaderError(f"{where}: {n} images but {len(table)} catalogue rows")
    return table


def _header_meta(meta: Mapping) -> list[tuple[str, object]]:
    cards = []
    for key, value in meta.items():
        key = str(key).upper()
        if len(key) > 8:
            raise AvaderError(f"meta key {key!r}: FITS header keys have at most 8 characters")
        if isinstance(value, (np.integer, np.floating, np.bool_)):
            value = value.item()
        if value is not None and not isinstance(value, (str, int, float, bool)):
            value = str(value)
        cards.append((key, value))
    return cards


def _primary_header(meta: Mapping, n: int):
    from astropy.io import fits

    from . import __version__

    header = fits.Header()
    header["AVADERV"] = (__version__, "avader version that wrote the file")
    header["NIMAGES"] = (n, "number of images")
    for key, value in _header_meta(meta):
        header[key] = value
    return header


class GalaxySet:
    """Grey galaxy images with one catalogue row each.

    Parameters
    ----------
    images : ndarray, shape (n, height, width), uint8 or float32
        Stored pixel values: uint8 in 0..255 or float32 in [0, 1]. May be a read-only memmap.
    catalog : astropy.table.Table or mapping of columns
        One row per image with a unique ``id`` column.
    meta : mapping, optional
        Provenance header keys (at most 8 characters), e.g. ``SOURCE``, ``RECIPE``, ``PIXSCALE``.
    extra : mapping of str to ndarray, optional
        Additional image arrays whose first axis is n, stored as HDUs of that name.
    path : Path, optional
        The file the set was read from, if any.
    """

    def __init__(self, images, catalog, meta=None, extra=None, path=None, validate=True):
        self.images = images
        self.path = Path(path) if path is not None else None
        where = str(self.path) if self.path else "GalaxySet"
        self.catalog = _as_table(catalog, len(images), where)
        self.meta = dict(meta or {})
        self.extra = dict(extra or {})
        if validate:
            self.validate()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        name = self.path.name if self.path else "in memory"
        return f"GalaxySet({name}: {len(self)} images of {self.shape[1]}x{self.shape[2]}, {self.images.dtype})"

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n, height, width) of the image cube."""
        return tuple(int(s) for s in self.images.shape)

    @property
    def memory_mapped(self) -> bool:
        """True when the images are read from the file on demand (not held in memory)."""
        import mmap

        base = self.images
        while base is not None:
            if isinstance(base, (np.memmap, mmap.mmap)):
                return True
            base = getattr(base, "base", None)
        return False

    @property
    def ids(self) -> np.ndarray:
        """The ``id`` column as a NumPy array."""
        return np.asarray(self.catalog["id"])

    def validate(self, chunk: int = 4096) -> None:
        """Check shapes, dtypes, ids and pixel values; raise AvaderError naming the problem."""
        where = str(self.path) if self.path else "GalaxySet"
        if self.images.ndim != 3:
            raise AvaderError(f"{where}: IMAGES must be (n, height, width), got {self.images.ndim} dimensions")
        if len(self) < 1:
            raise AvaderError(f"{where}: holds no images")
        kind = np.dtype(self.images.dtype)
        if kind.kind not in "uf" or (kind.kind == "u" and kind.itemsize != 1):
            raise AvaderError(f"{where}: IMAGES dtype {kind} is not uint8 or float32")
        ids = self.ids
        if len(np.unique(ids)) != len(ids):
            values, counts = np.unique(ids, return_counts=True)
            raise AvaderError(f"{where}: duplicate id {values[counts > 1][0].item()!r} in the catalogue")
        for name, array in self.extra.items():
            if array.shape[0] != len(self):
                raise AvaderError(f"{where}: HDU {name} has {array.shape[0]} rows for {len(self)} images")
        if kind.kind == "f":
            for start in range(0, len(self), chunk):
                block = np.asarray(self.images[start : start + chunk])
                if not np.isfinite(block).all():
                    bad = start + int(np.argwhere(~np.isfinite(block).reshape(len(block), -1).all(1))[0][0])
                    raise AvaderError(f"{where}: image {bad} (id {ids[bad].item()!r}) has NaN or infinite pixels")

    def get_images(self, index) -> np.ndarray:
        """Images as float32 in [0, 1].

        Parameters
        ----------
        index : int, slice or array of int
            Which images; sorted integer arrays read fastest from a memory-mapped file.

        Returns
        -------
        ndarray, shape (m, height, width) float32 (or (height, width) for an int)
        """
        block = self.images[index]
        if block.dtype == np.uint8:
            return block.astype(np.float32) * np.float32(1.0 / 255.0)
        return np.asarray(block, dtype=np.float32)

    def subset(self, index) -> GalaxySet:
        """A new in-memory GalaxySet with the selected rows (index: slice or array of int)."""
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        extra = {name: np.asarray(arr[index]) for name, arr in self.extra.items()}
        return GalaxySet(np.asarray(self.images[index]), self.catalog[index], self.meta, extra, validate=False)

    @classmethod
    def from_arrays(cls, images, catalog=None, meta=None, extra=None) -> GalaxySet:
        """Build a set from float images in [0, 1] or uint8; ``id`` defaults to 0..n-1."""
        images = np.asarray(images)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.dtype not in (np.uint8, np.float32):
            images = images.astype(np.float32)
        catalog = {"id": np.arange(len(images), dtype=np.int64)} if catalog is None else catalog
        return cls(images, catalog, meta, extra)

    @classmethod
    def read(cls, path: str | os.PathLike, memmap: bool = True, validate: bool = True) -> GalaxySet:
        """Open a GalaxySet file, memory-mapped by default.

        Raises
        ------
        AvaderError
            Missing file, not a FITS file, missing ``IMAGES`` or ``CATALOG`` HDU, image/row count
            mismatch, duplicate ids, NaN pixels or wrong dimensionality, each named in one line.
        """
        from astropy.io import fits

        path = Path(path)
        if not path.is_file():
            raise AvaderError(f"{path}: no such file")
        try:
            hdul = fits.open(path, memmap=memmap, mode="readonly", lazy_load_hdus=False)
        except (OSError, ValueError, TypeError) as err:
            raise AvaderError(f"{path}: not a readable FITS file ({err})") from None
        names = [hdu.name.upper() for hdu in hdul]
        for required in ("IMAGES", "CATALOG"):
            if required not in names:
                hdul.close()
                raise AvaderError(f"{path}: missing the {required} HDU (has {', '.join(names)})")
        images = hdul["IMAGES"].data
        if images is None:
            raise AvaderError(f"{path}: the IMAGES HDU holds no data")
        if images.dtype.byteorder not in ("=", "|") and images.dtype.kind == "f" and not memmap:
            images = images.astype(np.float32)
        try:
            from astropy.table import Table

            catalog = Table.read(hdul["CATALOG"])
        except (ValueError, TypeError) as err:
            raise AvaderError(f"{path}: CATALOG HDU is not a readable table ({err})") from None
        structural = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "CHECKSUM", "DATASUM", "COMMENT", "HISTORY", ""}
        meta = {key: value for key, value in hdul[0].header.items() if key not in structural}
        extra = {hdu.name: hdu.data for hdu in hdul if hdu.name.upper() not in _RESERVED_HDUS and hdu.data is not None}
        return cls(images, catalog, meta, extra, path=path, validate=validate)

    def write(self, path: str | os.PathLike, overwrite: bool = False, chunk: int = 4096) -> Path:
        """Write to ``path`` atomically (temporary file, then rename), with checksums."""
        extra_shapes = {name: (arr.shape[1:], str(np.dtype(arr.dtype).newbyteorder("="))) for name, arr in self.extra.items()}
        with GalaxySetWriter(path, len(self), self.shape[1:], str(np.dtype(self.images.dtype).newbyteorder("=")),
                             self.meta, overwrite=overwrite, extra_shapes=extra_shapes) as writer:
            for start in range(0, len(self), chunk):
                stop = min(start + chunk, len(self))
                extra = {name: np.asarray(arr[start:stop]) for name, arr in self.extra.items()}
                writer.write(start, np.asarray(self.images[start:stop]), extra=extra)
            writer.set_catalog(self.catalog)
        return writer.path


class GalaxySetWriter:
    """Stream images into a GalaxySet file with memory flat in the number of images.

    Use as a context manager. Blocks may be written in any order; every image slot must be
    written before the block ends. The file appears under its real name only when the
    block exits without an exception.

    Parameters
    ----------
    path : path-like
        Final file name.
    n : int
        Number of images.
    image_shape : (int, int)
        (height, width) in pixels.
    dtype : {"uint8", "float32"}
        Stored pixel type. Float blocks written to a uint8 file are converted with round(x * 255).
    meta : mapping, optional
        Provenance header keys for the primary HDU.
    overwrite : bool
        Replace an existing file.
    extra_shapes : mapping, optional
        ``name -> (per-image shape, dtype)`` of additional image HDUs, e.g.
        ``{"COMPONENTS": ((3, 64, 64), "float32")}``.

    Examples
    --------
    >>> with GalaxySetWriter("sims.fits", n=1000, image_shape=(64, 64)) as w:  # doctest: +SKIP
    ...     for start in range(0, 1000, 100):
    ...         w.write(start, render(start, start + 100))
    ...     w.set_catalog({"id": np.arange(1000)})
    """

    def __init__(self, path, n: int, image_shape, dtype: str = "uint8", meta=None, overwrite: bool = False, extra_shapes=None):
        if n < 1:
            raise AvaderError(f"{path}: a GalaxySet needs at least one image, got n={n}")
        if dtype not in _IMAGE_DTYPES:
            raise AvaderError(f"{path}: image dtype must be uint8 or float32, got {dtype}")
        self.path = Path(path).resolve()
        _check_target(self.path, overwrite)
        self.n = int(n)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.dtype = np.dtype(_IMAGE_DTYPES[dtype])
        self.meta = dict(meta or {})
        self.extra_shapes = {name.upper(): (tuple(shape), np.dtype(dt)) for name, (shape, dt) in (extra_shapes or {}).items()}
        self.catalog = None
        self._written = None
        self._arrays = {}
        self._tmpdir = None

    def __enter__(self) -> GalaxySetWriter:
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self._arrays["IMAGES"] = np.lib.format.open_memmap(
            self._tmpdir / "images.npy", mode="w+", dtype=self.dtype, shape=(self.n, *self.image_shape))
        for name, (shape, dt) in self.extra_shapes.items():
            self._arrays[name] = np.lib.format.open_memmap(self._tmpdir / f"{name}.npy", mode="w+", dtype=dt, shape=(self.n, *shape))
        self._written = np.zeros(self.n, dtype=bool)
        return self

    def write(self, start: int, images, extra=None) -> None:
        """Store ``images`` (m, height, width) at rows ``start .. start + m``."""
        images = np.asarray(images)
        stop = start + len(images)
        if start < 0 or stop > self.n:
            raise AvaderError(f"{self.path}: rows {start}..{stop} outside 0..{self.n}")
        if images.shape[1:] != self.image_shape:
            raise AvaderError(f"{self.path}: image block shape {images.shape[1:]} != {self.image_shape}")
        if not np.isfinite(images).all():
            raise AvaderError(f"{self.path}: images {start}..{stop} contain NaN or infinite pixels")
        self._arrays["IMAGES"][start:stop] = _convert(images, self.dtype)
        for name, block in (extra or {}).items():
            self._arrays[name.upper()][start:stop] = block
        self._written[start:stop] = True

    def set_catalog(self, catalog) -> None:
        """The catalogue (astropy Table or mapping of columns) with n rows and an ``id`` column."""
        self.catalog = _as_table(catalog, self.n, str(self.path))

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                if self.catalog is None:
                    raise AvaderError(f"{self.path}: no catalogue was set before closing")
                if not self._written.all():
                    raise AvaderError(f"{self.path}: image {int(np.argmin(self._written))} was never written")
                write_atomic(self.path, self._assemble, overwrite=True)
        finally:
            self._arrays.clear()
            if self._tmpdir is not None:
                for item in self._tmpdir.iterdir():
                    item.unlink()
                self._tmpdir.rmdir()
        return False

    def _assemble(self, target: Path) -> None:
        from astropy.io import fits

        images = self._arrays["IMAGES"]
        dup = GalaxySet(images, self.catalog, self.meta, {k: v for k, v in self._arrays.items() if k != "IMAGES"})
        hdus = [fits.PrimaryHDU(header=_primary_header(self.meta, self.n))]
        images_hdu = fits.ImageHDU(data=images, name="IMAGES")
        images_hdu.header["BUNIT"] = ("uint8 0..255" if self.dtype == np.uint8 else "float 0..1", "stored pixel scale")
        hdus.append(images_hdu)
        hdus.append(fits.table_to_hdu(dup.catalog))
        hdus[-1].name = "CATALOG"
        for name, array in self._arrays.items():
            if name != "IMAGES":
                hdus.append(fits.ImageHDU(data=array, name=name))
        fits.HDUList(hdus).writeto(target, overwrite=True, checksum=True)


def _convert(images: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8 and images.dtype != np.uint8:
        return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    if dtype == np.float32 and images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images.astype(dtype, copy=False)


def make_dataset(galaxyset: GalaxySet, batch_size: int, shuffle: bool = True, seed: int = 0, flips: bool = True,
                 epochs: int | None = None, initial_epoch: int = 0, indices=None, drop_remainder: bool = False,
                 with_index: bool = False):
    """A ``tf.data`` pipeline of float32 batches read from a (memory-mapped) GalaxySet.

    Batches are formed from row indices, sorted within the batch for locality and read with
    one fancy-index of the memory map, so no full copy of the catalogue is ever made. The
    order and the flips of epoch ``e`` are a pure function of ``(seed, e)`` (stateless random
    ops), so a run resumed at epoch ``e`` sees exactly the batches an uninterrupted run sees.

    Parameters
    ----------
    galaxyset : GalaxySet
    batch_size : int
    shuffle : bool
        A new seeded permutation of the rows every epoch.
    seed : int
        Seed of the permutations and of the flips.
    flips : bool
        Random horizontal and vertical flips (the paper's only augmentation).
    epochs : int, optional
        Yield epochs ``initial_epoch .. epochs - 1`` back to back (for ``Model.fit`` with
        ``steps_per_epoch``); None yields the single epoch ``initial_epoch``.
    initial_epoch : int
        First epoch of the stream.
    indices : array of int, optional
        Restrict to these rows (e.g. a training or validation split).
    drop_remainder : bool
        Drop the last incomplete batch of each epoch.
    with_index : bool
        Yield ``(images, rows)`` instead of ``images``.

    Returns
    -------
    tf.data.Dataset
        Elements of shape (batch, height, width, 1), float32 in [0, 1].
    """
    import tensorflow as tf

    rows = np.arange(len(galaxyset), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(rows) == 0:
        raise AvaderError(f"{galaxyset!r}: no rows selected for the dataset")
    height, width = galaxyset.shape[1:]
    all_rows = tf.constant(rows)

    def load(batch_rows):
        order = np.sort(batch_rows)
        return galaxyset.get_images(order)[..., None], order

    def fetch(epoch, step, batch_rows):
        images, order = tf.numpy_function(load, [batch_rows], (tf.float32, tf.int64), stateful=False)
        images = tf.ensure_shape(images, (None, height, width, 1))
        order = tf.ensure_shape(order, (None,))
        if flips:
            key = tf.stack([tf.cast(seed, tf.int64) * 7919 + epoch, step])
            draws = tf.random.stateless_uniform(tf.stack([tf.shape(images)[0], 2]), seed=key) < 0.5
            images = tf.where(draws[:, 0, None, None, None], tf.reverse(images, axis=[2]), images)
            images = tf.where(draws[:, 1, None, None, None], tf.reverse(images, axis=[1]), images)
        return (images, order) if with_index else images

    def one_epoch(epoch):
        ordered = all_rows
        if shuffle:
            keys = tf.random.stateless_uniform(tf.shape(all_rows), seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
            ordered = tf.gather(all_rows, tf.argsort(keys))
        batches = tf.data.Dataset.from_tensor_slices(ordered).batch(batch_size, drop_remainder=drop_remainder)
        return batches.enumerate().map(lambda step, batch_rows: fetch(epoch, step, batch_rows),
                                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    last = initial_epoch + 1 if epochs is None else epochs
    ds = tf.data.Dataset.range(initial_epoch, last).flat_map(one_epoch)
    return ds.prefetch(tf.data.AUTOTUNE)


def _simulation_current(path: Path, shape: tuple, config, first_id: int = 0) -> bool:
    """Whether ``path`` holds the simulation ``config`` asks for: same shape, seed, settings and first id."""
    if not path.is_file():
        return False
    from .simulate import config_digest

    existing = GalaxySet.read(path, validate=False)
    found = (existing.shape, existing.meta.get("SEED", config.seed), existing.meta.get("SIMCFG"),
             existing.meta.get("IDSTART", 0))
    wanted = (tuple(shape), config.seed, config_digest(config.simulation), int(first_id))
    if found == wanted:
        return True
    log.info("%s holds %s images (seed %s, settings %s, first id %s); the profile asks for %s (seed %s, "
             "settings %s, first id %s): "
             "simulating afresh", path, *found, *wanted)
    return False


def ensure_dataset(config, data=None, progress: bool = True, workers: int | None = None) -> Path:
    """The GalaxySet a configuration trains on, building the embedded simulated default if missing.

    Parameters
    ----------
    config : avader.config.Config
    data : path, optional
        An explicit GalaxySet; it must exist. Default: ``config.data.path``, else the profile's
        simulated default ``data/processed/simulated_<profile>.fits`` (``data.n_galaxies`` galaxies
        of ``data.image_size`` pixels, seeded by the run's seed; for a seed S other than 0
        ``simulated_<profile>_seed<S>.fits``), simulated on first use.
    progress : bool
        Progress bar while simulating.
    workers : int, optional
        Simulation processes (default: all cores).

    Returns
    -------
    Path
    """
    if data:
        path = Path(data)
        if not path.is_file():
            raise AvaderError(f"{path}: no such GalaxySet file")
        return path
    path = config.dataset_path()
    if config.data.path:
        if not path.is_file():
            raise AvaderError(f"{path}: data.path names no file")
        return path
    if _simulation_current(path, (config.data.n_galaxies, config.data.image_size, config.data.image_size), config):
        return path
    from .simulate import simulate

    log.info("simulating the embedded default: %d galaxies of %dx%d pixels -> %s", config.data.n_galaxies,
             config.data.image_size, config.data.image_size, path)
    return simulate(config.data.n_galaxies, image_size=config.data.image_size, seed=config.seed,
                    config=config.simulation, out=path, workers=workers, overwrite=True, progress=progress)


def ensure_blends(config, n: int | None = None, progress: bool = True, workers: int | None = None) -> Path:
    """The simulated blend set of a profile (``data/processed/blends_<profile>.fits``; for a seed S other
    than 0 ``blends_<profile>_seed<S>.fits``), built on first use.

    ``n`` blends (default ``analysis.n_blends``) of ``data.image_size`` pixels, seeded by the run's
    seed, with their isolated components in the ``COMPONENTS`` HDU.
    """
    from . import paths

    n = n or config.analysis.n_blends
    path = paths.default_blends(config.profile, config.seed)
    if _simulation_current(path, (n, config.data.image_size, config.data.image_size), config):
        return path
    from .simulate import simulate

    log.info("simulating %d blends of %dx%d pixels -> %s", n, config.data.image_size, config.data.image_size, path)
    return simulate(n, image_size=config.data.image_size, seed=config.seed, config=config.simulation, out=path,
                    workers=workers, blends=True, overwrite=True, progress=progress)


def ensure_heldout(config, n: int | None = None, progress: bool = True, workers: int | None = None) -> Path | None:
    """A held-out comparison set for a simulated training set, built on first use.

    ``n`` galaxies (default ``analysis.heldout_galaxies``) drawn from the same population as the
    configuration's training set (its seed, image size and simulation settings) but with ids from
    :data:`avader.simulate.HELDOUT_ID_START`, so that none of them was trained on or fitted:
    ``data/processed/<training file stem>_heldout.fits``. The realism of generated galaxies is
    measured against it (:func:`avader.generation.realism_report`).

    Returns
    -------
    Path or None
        None when the training set is not a simulation of ``config.simulation`` with the run's seed
        (a real catalogue has no second draw: the report then holds out part of the training set),
        or when ``n`` is 0.
    """
    from . import paths
    from .simulate import HELDOUT_ID_START, config_digest, simulate

    n = config.analysis.heldout_galaxies if n is None else int(n)
    training = config.dataset_path()
    if n <= 0 or not training.is_file():
        return None
    existing = GalaxySet.read(training, validate=False)
    meta = existing.meta
    if (meta.get("SOURCE") != "simulation" or meta.get("BLENDS")
            or meta.get("SEED") != config.seed or meta.get("SIMCFG") != config_digest(config.simulation)):
        log.info("%s: not a simulation of this configuration; no held-out set", training)
        return None
    size = existing.shape[1:]
    path = paths.processed_dir() / f"{training.stem}_heldout.fits"
    if _simulation_current(path, (n, *size), config, first_id=HELDOUT_ID_START):
        return path
    log.info("simulating %d held-out galaxies (ids from %d) of %dx%d pixels -> %s", n, HELDOUT_ID_START, *size, path)
    return simulate(n, image_size=size[0], seed=config.seed, config=config.simulation, out=path, workers=workers,
                    overwrite=True, progress=progress, first_id=HELDOUT_ID_START)
