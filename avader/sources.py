"""Real survey data into GalaxySets: GZ2 (Zenodo + Hart16), Kaggle Galaxy Zoo, Galaxy10 and image folders.

Each ``prepare_*`` function joins a source's images to its catalogue, checks the catalogue
(stopping with one line naming the file and the problem), then decodes and preprocesses the
images in parallel over all cores, in order, streaming to the output so memory stays flat in the
number of images, with a progress bar (rate and ETA). Outputs appear only when complete.

Bad images: ``on_error="fail"`` (default) stops at the first one, naming the file and the
reason; ``on_error="skip"`` leaves them out and lists them (``file,reason``) in
``<out>.skipped.csv`` next to the output.

The catalogue of each set has column ``id`` plus:

``gz2``       ``asset_id``, ``file``, Hart et al. (2016) columns: ``ra``, ``dec``, ``sample``,
              ``gz2_class``, ``total_classifications``, ``total_votes`` and, per answer, the vote
              ``*_count``, the ``*_debiased`` fraction and the ``*_flag`` (``columns="all"`` keeps
              every column); ``id`` is the SDSS DR7 objid
``kaggle``    ``file`` and the 37 vote-fraction columns ``Class1.1`` .. ``Class11.6``; ``id`` is GalaxyID
``galaxy10``  ``label`` (0-9) and ``label_name``; ``id`` is the row of the HDF5 file
``images``    ``file`` and the joined catalogue's columns; ``id`` is the file stem
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import inspect
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .data import GalaxySetWriter, write_atomic
from .errors import AvaderError
from .preprocess import IMAGE_SUFFIXES, FileReader, HDF5Reader, Recipe, get_recipe, preprocess_many

__all__ = [
    "prepare",
    "prepare_gz2",
    "prepare_kaggle",
    "prepare_galaxy10",
    "prepare_images",
    "SOURCES",
    "GALAXY10_LABELS",
    "read_table",
    "paper_split_file",
    "skip_report_path",
]

log = logging.getLogger(__name__)

GALAXY10_LABELS = (
    "Disk, Face-on, No Spiral",
    "Smooth, Completely round",
    "Smooth, in-between round",
    "Smooth, Cigar shaped",
    "Disk, Edge-on, Rounded Bulge",
    "Disk, Edge-on, Boxy Bulge",
    "Disk, Edge-on, No Bulge",
    "Disk, Face-on, Tight Spiral",
    "Disk, Face-on, Medium Spiral",
    "Disk, Face-on, Loose Spiral",
)
_JPEG_SCALE = "GZ2 424px JPEG field, not the paper's 0.02 R90/px cutouts"
_CHUNK = 4096  # rows per copy from the scratch file into an output


# ---------------------------------------------------------------- the one writer of every source
def skip_report_path(out) -> Path:
    """``<out>.skipped.csv``: the skipped images (columns ``file``, ``reason``) of a skip run."""
    out = Path(out)
    return out.with_name(out.name + ".skipped.csv")


def _write_skip_report(path: Path, rows) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", "reason"])
            writer.writerows(rows)

    write_atomic(path, write, overwrite=True)


def _build(reader, catalog, outputs, recipe: Recipe, meta: dict, on_error: str, workers, progress: bool,
           overwrite: bool, desc: str, report_for=None) -> list[Path]:
    """Decode ``reader`` and write one GalaxySet per ``(path, rows, extra_meta)`` of ``outputs``.

    ``rows`` index the items (and ``catalog`` rows). All outputs appear together or not at all.
    The skip report goes next to ``report_for`` (default: the first output).
    """
    if on_error not in ("fail", "skip"):
        raise AvaderError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    outputs = [(Path(path).resolve(), np.asarray(rows, dtype=np.int64), dict(extra)) for path, rows, extra in outputs]
    for path, _, _ in outputs:
        if path.exists() and not overwrite:
            raise AvaderError(f"{path}: exists; pass overwrite=True (--overwrite) to replace it")
    n = len(reader)
    shape = (recipe.size, recipe.size)
    header = {**meta, **recipe.header(), "NINPUT": n}
    single = len(outputs) == 1 and np.array_equal(outputs[0][1], np.arange(n))
    if single and on_error == "fail":
        path, _, extra = outputs[0]
        with GalaxySetWriter(path, n, shape, recipe.dtype, {**header, **extra, "NSKIPPED": 0},
                             overwrite=overwrite) as writer:
            preprocess_many(reader, recipe, writer.write, on_error, workers, progress, desc)
            writer.set_catalog(catalog)
        return [path]
    parent = outputs[0][0].parent
    parent.mkdir(parents=True, exist_ok=True)
    scratch_dir = Path(tempfile.mkdtemp(prefix=".avader-prepare-", dir=parent))
    try:
        scratch = np.lib.format.open_memmap(scratch_dir / "images.npy", mode="w+", dtype=recipe.dtype, shape=(n, *shape))

        def sink(start, block):
            scratch[start : start + len(block)] = block

        failures = preprocess_many(reader, recipe, sink, on_error, workers, progress, desc)
        good = np.ones(n, dtype=bool)
        good[[index for index, _ in failures]] = False
        if on_error == "skip":
            report = skip_report_path(report_for if report_for is not None else outputs[0][0])
            _write_skip_report(report, [(reader.name(i), reason) for i, reason in failures])
            if failures:
                log.warning("%d bad image(s) skipped; listed in %s", len(failures), report)
        return _write_outputs(scratch, good, catalog, outputs, header, recipe, overwrite)
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)


def _write_outputs(scratch, good, catalog, outputs, header, recipe: Recipe, overwrite: bool) -> list[Path]:
    plans = []
    for path, rows, extra in outputs:
        keep = rows[good[rows]]
        if len(keep) == 0:
            if len(outputs) == 1:
                raise AvaderError(f"{path}: all {len(rows)} images were bad; nothing written (see the skip report)")
            log.warning("%s: no good images for this split; not written", path)
            continue
        plans.append((path, keep, {**header, **extra, "NSKIPPED": int(len(rows) - len(keep))}))
    if not plans:
        raise AvaderError(f"{outputs[0][0]}: no images to write in any split")
    before = {path: _identity(path) for path, _, _ in plans}
    try:
        with contextlib.ExitStack() as stack:
            for path, keep, meta in plans:
                writer = stack.enter_context(GalaxySetWriter(path, len(keep), scratch.shape[1:], recipe.dtype, meta,
                                                             overwrite=overwrite))
                for start in range(0, len(keep), _CHUNK):
                    writer.write(start, scratch[keep[start : start + _CHUNK]])
                writer.set_catalog(catalog[keep])
    except BaseException:
        for path, identity in before.items():  # an output renamed before a later one failed
            if _identity(path) not in (None, identity):
                path.unlink()
        raise
    for path, keep, _ in plans:
        log.info("%s: %d images of %dx%d", path, len(keep), *scratch.shape[1:])
    return [path for path, _, _ in plans]


def _identity(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


# ---------------------------------------------------------------- catalogue helpers
def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_text(path: Path):
    if _is_gzip(path):
        return io.TextIOWrapper(gzip.open(path), newline="")
    return open(path, newline="")


def _csv_header(path: Path) -> list[str]:
    try:
        with _open_text(path) as fh:
            header = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise AvaderError(f"{path}: not a readable CSV file ({err})") from None
    if not header:
        raise AvaderError(f"{path}: empty CSV file (no header line)")
    return [name.strip() for name in header]


def _columns_text(names) -> str:
    names = list(names)
    text = ", ".join(names[:8])
    return text + (f", ... ({len(names)} columns)" if len(names) > 8 else "")


def read_table(path, required=(), include=None):
    """Read a CSV (or gzipped CSV) catalogue, checking its required columns.

    Parameters
    ----------
    path : path-like
    required : sequence of str
        Columns that must be present.
    include : callable, optional
        ``include(name) -> bool`` selects the columns to read (required ones are always read).

    Returns
    -------
    astropy.table.Table

    Raises
    ------
    AvaderError
        Missing file, unreadable CSV, missing required column, no rows.
    """
    from astropy.io import ascii

    path = Path(path)
    if not path.is_file():
        raise AvaderError(f"{path}: no such file")
    header = _csv_header(path)
    for name in required:
        if name not in header:
            raise AvaderError(f"{path}: no {name!r} column (columns: {_columns_text(header)})")
    names = [name for name in header if include is None or name in required or include(name)]
    try:
        if _is_gzip(path):  # astropy's fast reader cannot take a gzip file name with guess=False
            with _open_text(path) as fh:
                table = ascii.read(fh.read(), format="csv", include_names=names, guess=False)
        else:
            table = ascii.read(str(path), format="csv", include_names=names, guess=False)
    except Exception as err:  # astropy raises a wide range of types for bad tables
        raise AvaderError(f"{path}: not a readable CSV table ({' '.join(str(err).split())[:200]})") from None
    if len(table) == 0:
        raise AvaderError(f"{path}: holds no rows")
    return table


def _int_ids(table, column: str, path: Path) -> np.ndarray:
    values = np.asarray(table[column])
    if hasattr(table[column], "mask") and np.any(table[column].mask):
        raise AvaderError(f"{path}: column {column!r} has empty values")
    if values.dtype.kind not in "iu":
        raise AvaderError(f"{path}: column {column!r} must hold integers, found {values.dtype}")
    return values.astype(np.int64)


def _check_unique(ids: np.ndarray, column: str, path: Path) -> None:
    values, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        first = values[counts > 1][0]
        raise AvaderError(f"{path}: duplicate {column} {first.item()!r} ({int(counts.max())} rows)")


def _index_folder(folder, suffixes) -> dict[str, Path]:
    """Map file stem -> path for the files of ``folder`` with one of ``suffixes`` (top level)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AvaderError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            lower = entry.name.lower()
            suffix = next((s for s in suffixes if lower.endswith(s)), None)
            if suffix is None or not entry.is_file():
                continue
            stem = entry.name[: -len(suffix)]
            if stem in found:
                raise AvaderError(f"{folder}: duplicate id {stem!r} ({found[stem].name} and {entry.name})")
            found[stem] = Path(entry.path)
    if not found:
        raise AvaderError(f"{folder}: no image files ({', '.join(suffixes)})")
    return found


def paper_split_file() -> Path:
    """The paper's split (``dr7objid,split``: 159,666 train, 41,167 test, 5,000 valid), shipped with avader."""
    from importlib import resources

    return Path(str(resources.files("avader") / "reference" / "astrovader_split_ids.csv.gz"))


def _split_out(out: Path, split: str) -> Path:
    suffix = "".join(out.suffixes[-2:]) if out.name.endswith(".fits.gz") else out.suffix
    stem = out.name[: len(out.name) - len(suffix)] if suffix else out.name
    return out.with_name(f"{stem}_{split}{suffix}")


def _check_out(out) -> Path:
    out = Path(out)
    if out.is_dir():
        raise AvaderError(f"{out}: is a folder; --out needs a file name such as {out / 'set.fits'}")
    return out


# ---------------------------------------------------------------- sources
def _keep_hart_column(name: str) -> bool:
    return name in ("ra", "dec", "sample", "gz2_class", "total_classifications", "total_votes") or \
        name.endswith(("_count", "_debiased", "_flag"))


def prepare_gz2(images, mapping, catalog, out, split=None, columns: str = "paper", recipe="astrovader",
                size: int = 128, crop_fraction: float | None = None, on_error: str = "fail", workers=None,
                progress: bool = True, overwrite: bool = False) -> list[Path]:
    """GZ2 Zenodo images joined to the Hart et al. (2016) table on the SDSS DR7 objid.

    Parameters
    ----------
    images : path-like
        Folder of ``<asset_id>.jpg`` (Zenodo record 3565489, ``images_gz2.zip``).
    mapping : path-like
        ``gz2_filename_mapping.csv`` (columns ``objid``, ``asset_id``).
    catalog : path-like
        ``gz2_hart16.csv`` or ``.csv.gz`` (column ``dr7objid`` and the vote columns).
    out : path-like
        Output GalaxySet; with ``split``, one file per split named ``<stem>_<split><suffix>``.
    split : path-like or "paper", optional
        CSV ``dr7objid,split``; ``"paper"`` is the paper's split shipped with avader. Galaxies
        outside the split file are left out; empty splits are not written.
    columns : {"paper", "all"}
        ``paper``: coordinates, class, totals and per answer the count, debiased fraction and flag
        (everything the paper's vote cuts need); ``all``: every Hart16 column.
    recipe, size, crop_fraction
        Preprocessing (see :mod:`avader.preprocess`); the JPEGs' scale differs from the paper's.
    on_error : {"fail", "skip"}
    workers : int, optional
        Processes (default: all cores).
    progress, overwrite : bool

    Returns
    -------
    list of Path
        The written GalaxySets.
    """
    images, mapping_path, catalog_path, out = Path(images), Path(mapping), Path(catalog), _check_out(out)
    if columns not in ("paper", "all"):
        raise AvaderError(f"columns must be 'paper' or 'all', got {columns!r}")
    recipe = get_recipe(recipe, size=size, crop_fraction=crop_fraction)
    files = _index_folder(images, (".jpg", ".jpeg", ".png"))
    table = read_table(mapping_path, required=("objid", "asset_id"), include=lambda name: False)
    objids = _int_ids(table, "objid", mapping_path)
    assets = [str(a) for a in np.asarray(table["asset_id"])]
    with_image = np.array([a in files for a in assets], dtype=bool)
    if not with_image.any():
        raise AvaderError(f"{mapping_path}: none of its {len(assets)} asset_ids has an image in {images}")
    hart = read_table(catalog_path, required=("dr7objid",), include=None if columns == "all" else _keep_hart_column)
    hart_ids = _int_ids(hart, "dr7objid", catalog_path)
    _check_unique(hart_ids, "dr7objid", catalog_path)
    row_of = {int(objid): row for row, objid in enumerate(hart_ids)}
    pairs = sorted((int(objids[i]), assets[i]) for i in np.flatnonzero(with_image) if int(objids[i]) in row_of)
    if not pairs:
        raise AvaderError(f"{catalog_path}: none of its {len(hart_ids)} dr7objids matches an image in {images} "
                          f"through {mapping_path.name}")
    ids = np.array([objid for objid, _ in pairs], dtype=np.int64)
    if np.any(ids[1:] == ids[:-1]):
        dup = int(ids[1:][ids[1:] == ids[:-1]][0])
        names = [files[a].name for objid, a in pairs if objid == dup]
        raise AvaderError(f"{mapping_path}: duplicate objid {dup} maps to several images ({', '.join(names)})")
    log.info("gz2: %d images joined to %s (%d images without a mapping or catalogue row left out)",
             len(pairs), catalog_path.name, len(files) - len(pairs))
    rows = np.array([row_of[objid] for objid in ids], dtype=np.int64)
    table_out = hart[rows]
    table_out.remove_column("dr7objid")
    table_out.add_column(ids, name="id", index=0)
    asset_ids = [a for _, a in pairs]
    numeric = all(a.isdigit() for a in asset_ids)
    table_out.add_column(np.array([int(a) for a in asset_ids], dtype=np.int64) if numeric else np.array(asset_ids),
                         name="asset_id", index=1)
    table_out.add_column([files[a].name for _, a in pairs], name="file", index=2)
    meta = {"SOURCE": "gz2", "LABELS": catalog_path.name, "SCALE": _JPEG_SCALE}
    outputs, keep = [(out, np.arange(len(ids)), {})], np.arange(len(ids))
    if split is not None:
        outputs, keep = _split_outputs(split, ids, out)
        table_out = table_out[keep]
    reader = FileReader([files[pairs[i][1]] for i in keep])
    return _build(reader, table_out, outputs, recipe, meta, on_error, workers, progress, overwrite, "prepare gz2",
                  report_for=out)


def _split_outputs(split, ids: np.ndarray, out: Path):
    split_path = paper_split_file() if str(split) == "paper" else Path(split)
    table = read_table(split_path, required=("dr7objid", "split"))
    split_ids = _int_ids(table, "dr7objid", split_path)
    _check_unique(split_ids, "dr7objid", split_path)
    names = np.asarray(table["split"]).astype(str)
    split_of = dict(zip(split_ids.tolist(), names.tolist(), strict=True))
    keep = np.array([i for i, objid in enumerate(ids.tolist()) if objid in split_of], dtype=np.int64)
    if len(keep) == 0:
        raise AvaderError(f"{split_path}: none of its {len(split_ids)} dr7objids matches a prepared galaxy")
    if len(keep) < len(ids):
        log.info("%s: %d of %d galaxies are not in the split file; left out", split_path.name, len(ids) - len(keep), len(ids))
    kept_splits = np.array([split_of[int(ids[i])] for i in keep])
    order = list(dict.fromkeys(names.tolist()))
    outputs = []
    for name in order:
        rows = np.flatnonzero(kept_splits == name)
        wanted = int(np.count_nonzero(names == name))
        log.info("split %s: %d of %d galaxies have images", name, len(rows), wanted)
        outputs.append((_split_out(out, name), rows, {"SPLIT": name, "SPLITFIL": split_path.name}))
    return outputs, keep


def prepare_kaggle(images, labels, out, recipe="astrovader", size: int = 128, crop_fraction: float | None = None,
                   on_error: str = "fail", workers=None, progress: bool = True, overwrite: bool = False) -> list[Path]:
    """Kaggle Galaxy Zoo challenge images with their 37 vote fractions.

    Parameters
    ----------
    images : path-like
        Folder of ``<GalaxyID>.jpg`` (``images_training_rev1``).
    labels : path-like
        ``training_solutions_rev1.csv``: ``GalaxyID`` and ``Class1.1`` .. ``Class11.6``, kept with
        the CSV's names. GalaxyIDs are not SDSS objids.
    out : path-like
    recipe, size, crop_fraction, on_error, workers, progress, overwrite
        As :func:`prepare_gz2`.
    """
    images, labels_path, out = Path(images), Path(labels), _check_out(out)
    recipe = get_recipe(recipe, size=size, crop_fraction=crop_fraction)
    files = _index_folder(images, (".jpg", ".jpeg", ".png"))
    table = read_table(labels_path, required=("GalaxyID",))
    ids = _int_ids(table, "GalaxyID", labels_path)
    _check_unique(ids, "GalaxyID", labels_path)
    rows = np.array([i for i in np.argsort(ids, kind="stable") if str(ids[i]) in files], dtype=np.int64)
    if len(rows) == 0:
        raise AvaderError(f"{labels_path}: none of its {len(ids)} GalaxyIDs has an image <GalaxyID>.jpg in {images}")
    log.info("kaggle: %d of %d labelled galaxies have images", len(rows), len(ids))
    table_out = table[rows]
    table_out.remove_column("GalaxyID")
    table_out.add_column(ids[rows], name="id", index=0)
    table_out.add_column([files[str(i)].name for i in ids[rows]], name="file", index=1)
    reader = FileReader([files[str(i)] for i in ids[rows]])
    meta = {"SOURCE": "kaggle", "LABELS": labels_path.name, "SCALE": _JPEG_SCALE}
    return _build(reader, table_out, [(out, np.arange(len(rows)), {})], recipe, meta, on_error, workers, progress,
                  overwrite, "prepare kaggle")


def prepare_galaxy10(input, out, label_names=None, recipe="astrovader", size: int = 128,
                     crop_fraction: float | None = None, on_error: str = "fail", workers=None, progress: bool = True,
                     overwrite: bool = False) -> list[Path]:
    """Galaxy10 (astroNN) HDF5: ``images`` (n, h, w, 3) uint8 and ``ans`` (n,) labels.

    Parameters
    ----------
    input : path-like
        ``Galaxy10.h5``.
    out : path-like
    label_names : sequence of str, optional
        Names of labels 0, 1, ...; default the Galaxy10 SDSS classes (:data:`GALAXY10_LABELS`).
    recipe, size, crop_fraction, on_error, workers, progress, overwrite
        As :func:`prepare_gz2`. Galaxy10 SDSS images are 69 x 69: size 128 upsamples them.
    """
    import h5py

    path, out = Path(input), _check_out(out)
    recipe = get_recipe(recipe, size=size, crop_fraction=crop_fraction)
    names = tuple(label_names) if label_names is not None else GALAXY10_LABELS
    if not path.is_file():
        raise AvaderError(f"{path}: no such file")
    try:
        fh = h5py.File(path, "r")
    except OSError as err:
        raise AvaderError(f"{path}: not a readable HDF5 file ({err})") from None
    with fh:
        for key in ("images", "ans"):
            if key not in fh:
                raise AvaderError(f"{path}: no {key!r} dataset (has: {', '.join(fh.keys()) or 'nothing'})")
        shape = fh["images"].shape
        labels = np.asarray(fh["ans"]).reshape(-1)
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)) or shape[0] == 0:
        raise AvaderError(f"{path}: 'images' has shape {shape}; expected (n, height, width, 3)")
    if len(labels) != shape[0]:
        raise AvaderError(f"{path}: 'ans' has {len(labels)} labels for {shape[0]} images")
    if labels.dtype.kind not in "iuf" or np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() >= len(names):
        raise AvaderError(f"{path}: 'ans' labels must be integers 0..{len(names) - 1}, found {labels.min()}..{labels.max()}")
    if label_names is None and tuple(shape[1:3]) != (69, 69):
        log.warning("%s: images are %dx%d, not Galaxy10 SDSS's 69x69; label names assume the SDSS classes",
                    path, shape[1], shape[2])
    labels = labels.astype(np.int64)
    catalog = {"id": np.arange(shape[0], dtype=np.int64), "label": labels,
               "label_name": np.array([names[i] for i in labels])}
    from astropy.table import Table

    meta = {"SOURCE": "galaxy10", "INPUT": path.name}
    return _build(HDF5Reader(path, "images", shape[0]), Table(catalog), [(out, np.arange(shape[0]), {})], recipe, meta,
                  on_error, workers, progress, overwrite, "prepare galaxy10")


def prepare_images(input, out, catalog=None, id_column: str = "id", recipe="astrovader", size: int = 128,
                   crop_fraction: float | None = None, on_error: str = "fail", workers=None, progress: bool = True,
                   overwrite: bool = False) -> list[Path]:
    """Any folder of JPEG, PNG or FITS cutouts, optionally joined to a catalogue on the file stem.

    Parameters
    ----------
    input : path-like
        Folder; its top-level ``.jpg``, ``.jpeg``, ``.png``, ``.fits`` (``.fit``, ``.fts``,
        ``.fits.gz``, ``.fz``) files are the images. The stem is the id (int64 when every stem
        is an integer, else a string).
    out : path-like
    catalog : path-like, optional
        CSV whose ``id_column`` holds the stems; only images with a catalogue row are kept.
    id_column : str
        Catalogue column holding the ids.
    recipe, size, crop_fraction, on_error, workers, progress, overwrite
        As :func:`prepare_gz2`; FITS cutouts usually want ``recipe="asinh"``.
    """
    from astropy.table import Table

    folder, out = Path(input), _check_out(out)
    recipe = get_recipe(recipe, size=size, crop_fraction=crop_fraction)
    files = _index_folder(folder, IMAGE_SUFFIXES)
    stems = sorted(files)
    numeric = all(s.isdigit() and str(int(s)) == s and int(s) < 2**63 for s in stems)
    if numeric:
        stems.sort(key=int)
    if catalog is None:
        table = Table()
        table["id"] = np.array([int(s) for s in stems], dtype=np.int64) if numeric else np.array(stems)
    else:
        catalog_path = Path(catalog)
        source = read_table(catalog_path, required=(id_column,))
        keys = [str(v) for v in np.asarray(source[id_column])]
        _check_unique(np.array(keys), id_column, catalog_path)
        row_of = {key: row for row, key in enumerate(keys)}
        matched = [s for s in stems if s in row_of]
        if not matched:
            raise AvaderError(f"{catalog_path}: none of its {len(keys)} {id_column} values matches an image file "
                              f"stem in {folder}")
        if len(matched) < len(stems):
            log.warning("%s: %d of %d images have no catalogue row; left out", folder, len(stems) - len(matched), len(stems))
        stems = matched
        table = source[[row_of[s] for s in stems]]
        table.remove_column(id_column)
        ids = np.array([int(s) for s in stems], dtype=np.int64) if numeric else np.array(stems)
        if "id" in table.colnames:
            table.rename_column("id", "id_catalog")
        table.add_column(ids, name="id", index=0)
    if "file" not in table.colnames:
        table.add_column([files[s].name for s in stems], name="file", index=1)
    meta = {"SOURCE": "images", "INPUT": folder.name}
    return _build(FileReader([files[s] for s in stems]), table, [(out, np.arange(len(stems)), {})], recipe, meta,
                  on_error, workers, progress, overwrite, "prepare images")


SOURCES = {
    "gz2": prepare_gz2,
    "kaggle": prepare_kaggle,
    "galaxy10": prepare_galaxy10,
    "images": prepare_images,
}


def prepare(source: str, out, size: int = 128, on_error: str = "fail", workers=None, progress: bool = True,
            overwrite: bool = False, **source_args) -> list[Path]:
    """Prepare GalaxySet(s) from a real source: the entry point of ``avader prepare``.

    Parameters
    ----------
    source : {"gz2", "kaggle", "galaxy10", "images"}
    out : path-like
        Output GalaxySet (``gz2`` with a split: one file per split, ``<stem>_<split><suffix>``).
    size : int
        Output side in pixels.
    on_error : {"fail", "skip"}
        Stop at the first bad image, or skip bad images and list them in ``<out>.skipped.csv``.
    workers : int, optional
        Decoding processes; default all cores.
    progress, overwrite : bool
    **source_args
        The source's own arguments: gz2 ``images, mapping, catalog, split, columns``; kaggle
        ``images, labels``; galaxy10 ``input, label_names``; images ``input, catalog, id_column``;
        any source ``recipe`` (name or :class:`~avader.preprocess.Recipe`) and ``crop_fraction``.

    Returns
    -------
    list of Path
    """
    if source not in SOURCES:
        raise AvaderError(f"prepare {source!r}: unknown source; choose one of {', '.join(SOURCES)}")
    fn = SOURCES[source]
    params = inspect.signature(fn).parameters
    for key in source_args:
        if key not in params:
            raise AvaderError(f"prepare {source}: unexpected option {key!r}")
    for key, param in params.items():
        if param.default is inspect.Parameter.empty and key != "out" and source_args.get(key) is None:
            raise AvaderError(f"prepare {source}: missing required option {key!r} (--{key.replace('_', '-')})")
    return fn(out=out, size=size, on_error=on_error, workers=workers, progress=progress, overwrite=overwrite,
              **source_args)
