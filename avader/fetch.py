"""Downloads of the public data sets and weights: resumable, verified, atomic; safe zip extraction.

``fetch(name)`` knows the files of each data set (:data:`DATASETS`):

``galaxy10``           Galaxy10 SDSS, ``Galaxy10.h5`` (sha256 pinned)
``gz2-images``         Zenodo record 3565489: ``images_gz2.zip`` (extracted to ``images/``) and
                       ``gz2_filename_mapping.csv`` (no published checksum)
``gz2-labels``         Hart et al. (2016) debiased GZ2 table, ``gz2_hart16.csv.gz``
``published-weights``  the AstroVaDEr authors' trained weights (sha256 pinned; two branch URLs)

How a download behaves:

- it streams to ``<file>.part`` next to the target and resumes an interrupted ``.part`` with an
  HTTP Range request (and retries a cut connection a few times by itself);
- the sha256 is verified before the file takes its final name; a mismatch deletes the download
  and names both digests; with no pinned digest the computed one is written to a
  ``<file>.sha256`` sidecar (written for every file, so re-runs can check it);
- a re-run with the file in place checks it and downloads nothing (idempotent);
- offline, refused connections, timeouts and HTTP errors stop with one line naming the URL.

Only the standard library's ``urllib`` is used.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import shutil
import socket
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .data import sha256sum
from .errors import AvaderError

__all__ = [
    "Remote",
    "DATASETS",
    "fetch",
    "download",
    "extract_zip",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20  # bytes per read
_BACKOFF = 1.0  # seconds before the first retry of a cut download; doubles each time
_ZENODO = "https://zenodo.org/records/3565489/files/{}?download=1"
_WEIGHTS = "https://github.com/AshleySpindler/AstroVaDEr-Public/raw/{}/data/saved_weights.h5"


@dataclass(frozen=True)
class Remote:
    """One downloadable file.

    Parameters
    ----------
    filename : str
        Name of the file under the destination folder.
    urls : tuple of str
        Tried in order; the next one is tried only after an HTTP 404.
    sha256 : str, optional
        Pinned hex digest; None records the computed digest in ``<filename>.sha256``.
    extract : bool
        A zip archive to extract into the destination folder after download.
    max_bytes : int
        Extraction limit on the total uncompressed size, bytes.
    """

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    extract: bool = False
    max_bytes: int = 16 * 2**30


DATASETS: dict[str, tuple[Remote, ...]] = {
    "galaxy10": (
        Remote("Galaxy10.h5", ("https://www.astro.utoronto.ca/~bovy/Galaxy10/Galaxy10.h5",),
               sha256="969a6b1cefcc36e09fffa86febd2f699a4aa19b837ba0427f01b0bc6ded458af"),
    ),
    "gz2-images": (
        Remote("images_gz2.zip", (_ZENODO.format("images_gz2.zip"),), extract=True),
        Remote("gz2_filename_mapping.csv", (_ZENODO.format("gz2_filename_mapping.csv"),)),
    ),
    "gz2-labels": (
        Remote("gz2_hart16.csv.gz", ("https://gz2hart.s3.amazonaws.com/gz2_hart16.csv.gz",)),
    ),
    "published-weights": (
        Remote("astrovader_saved_weights.h5", (_WEIGHTS.format("master"), _WEIGHTS.format("main")),
               sha256="1588fe575601177969385a529506bef0e51f7295012bade1f7332f7d669c9300"),
    ),
}


def fetch(name: str, dest=None, url: str | None = None, sha256: str | None = None, progress: bool = True) -> Path:
    """Download (and, for zips, extract) one named data set; a no-op when already complete.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`: ``galaxy10``, ``gz2-images``, ``gz2-labels``, ``published-weights``.
    dest : path-like, optional
        Destination folder; default ``avader.paths.raw_dir() / name``.
    url : str, optional
        Replace the download URL (data sets of one file only), e.g. a mirror.
    sha256 : str, optional
        Expected hex digest, replacing the pinned one (data sets of one file only).
    progress : bool
        Show a progress bar (bytes, rate, ETA) on stderr.

    Returns
    -------
    Path
        The downloaded file for single-file data sets, else the destination folder
        (``gz2-images``: holds ``images/`` and ``gz2_filename_mapping.csv``).

    Raises
    ------
    AvaderError
        Unknown name, network or HTTP failure, checksum mismatch, unsafe or oversized zip.
    """
    from . import paths

    if name not in DATASETS:
        raise AvaderError(f"fetch {name!r}: unknown data set; choose one of {', '.join(DATASETS)}")
    remotes = DATASETS[name]
    if (url is not None or sha256 is not None) and len(remotes) != 1:
        raise AvaderError(f"fetch {name}: --url and --sha256 apply to data sets of one file; {name} has {len(remotes)}")
    if sha256 is not None:
        sha256 = _check_hex(sha256)
    dest = Path(dest) if dest is not None else paths.raw_dir() / name
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for remote in remotes:
        urls = (url,) if url is not None else remote.urls
        digest = sha256 if sha256 is not None else remote.sha256
        target = download(urls, dest / remote.filename, sha256=digest, progress=progress)
        if remote.extract:
            _extract_once(target, dest, remote.max_bytes)
        files.append(target)
    return files[0] if len(files) == 1 else dest


def download(urls, path, sha256: str | None = None, progress: bool = True, retries: int = 3,
             timeout: float = 60.0) -> Path:
    """Download one file with resume, verification and an atomic final rename.

    Parameters
    ----------
    urls : str or sequence of str
        Source URL(s), tried in order; the next is tried only after an HTTP 404.
    path : path-like
        Final file name. The data streams to ``<path>.part`` first.
    sha256 : str, optional
        Expected hex digest, checked before the rename. Without it the computed digest is
        recorded in ``<path>.sha256``.
    progress : bool
        tqdm progress bar (bytes, rate, ETA).
    retries : int
        Extra attempts after a connection cut mid-transfer, each resuming where the last stopped.
    timeout : float
        Socket timeout, seconds.

    Returns
    -------
    Path
        ``path``, complete and verified.
    """
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    path = Path(path)
    expected = _check_hex(sha256) if sha256 else None
    if path.exists():
        _check_existing(path, expected)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    last_error = None
    for url in urls:
        try:
            _transfer(url, part, progress, retries, timeout)
            break
        except _NotFound as err:
            last_error = err
            log.info("%s", err)
    else:
        tried = ", ".join(urls)
        raise AvaderError(f"{last_error}" if len(urls) == 1 else f"{path.name}: not found at any of {tried}")
    digest = sha256sum(part)
    if expected is not None and digest != expected:
        part.unlink(missing_ok=True)
        raise AvaderError(f"{path.name}: sha256 mismatch (expected {expected}, got {digest}); the download was deleted")
    os.replace(part, path)
    _write_sidecar(path, digest)
    log.info("%s: downloaded, sha256 %s", path, digest)
    return path


class _NotFound(AvaderError):
    """HTTP 404: the caller may try the next URL."""


def _check_hex(value: str) -> str:
    value = value.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise AvaderError(f"sha256 {value!r}: expected 64 hexadecimal digits")
    return value


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_sidecar(path: Path, digest: str) -> None:
    sidecar = _sidecar(path)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(tmp, sidecar)


def _check_existing(path: Path, expected: str | None) -> None:
    sidecar = _sidecar(path)
    recorded = sidecar.read_text().split()[0] if sidecar.is_file() and sidecar.read_text().strip() else None
    want = expected or recorded
    digest = sha256sum(path)
    if want is not None and digest != want:
        raise AvaderError(f"{path}: exists but its sha256 {digest} differs from the expected {want}; "
                          "delete it to download again")
    if recorded != digest:
        _write_sidecar(path, digest)
    log.info("%s: already present, sha256 %s", path, digest)


def _transfer(url: str, part: Path, progress: bool, retries: int, timeout: float) -> None:
    for attempt in range(retries + 1):
        try:
            _transfer_once(url, part, progress, timeout)
            return
        except _Cut as err:
            if attempt == retries:
                raise AvaderError(f"{url}: {err}; run again to resume from {part.stat().st_size} bytes") from None
            log.info("%s: %s; resuming (attempt %d of %d)", url, err, attempt + 2, retries + 1)
            time.sleep(min(_BACKOFF * 2.0**attempt, 30.0))


class _Cut(Exception):
    """The connection ended before the announced length: resumable."""


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "avader", "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only, checked below)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return _range_end(err.headers.get("Content-Range"))
        if err.code == 404:
            raise _NotFound(f"{url}: HTTP 404 {err.reason}") from None
        raise AvaderError(f"{url}: HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise AvaderError(f"{url}: {_network_reason(err.reason)}") from None
    except TimeoutError:
        raise AvaderError(f"{url}: no answer within {timeout:g} s (offline or server down?)") from None
    except (http.client.HTTPException, ConnectionError) as err:
        raise AvaderError(f"{url}: connection failed ({err.__class__.__name__}: {err})") from None


def _network_reason(reason) -> str:
    if isinstance(reason, ConnectionRefusedError) or getattr(reason, "errno", None) == errno.ECONNREFUSED:
        return "connection refused (is the server up? is the address right?)"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name ({reason.strerror}); are you offline?"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out (offline or server down?)"
    if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"network unreachable ({reason.strerror}); are you offline?"
    return f"cannot connect ({reason})"


def _transfer_once(url: str, part: Path, progress: bool, timeout: float) -> None:
    from tqdm.auto import tqdm

    if not url.lower().startswith(("http://", "https://")):
        raise AvaderError(f"{url}: only http:// and https:// URLs are supported")
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, offset, timeout)
    if isinstance(response, int) or response is None:  # 416: nothing past ``offset``
        if response == offset:
            log.info("%s: the partial file already holds all %d bytes", url, offset)
            return
        log.info("%s: the partial file (%d bytes) does not fit the server's file; starting again", url, offset)
        part.unlink()
        offset = 0
        response = _open(url, offset, timeout)
    with response:
        status = getattr(response, "status", 200)
        if offset and status != 206:
            log.info("%s: server ignored the Range request; starting again from byte 0", url)
            offset = 0
        if status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                raise AvaderError(f"{url}: server resumed at byte {start}, asked for {offset}")
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        if total is not None:
            _check_space(part.parent, total - offset, url)
        mode = "ab" if offset else "wb"
        received = offset
        with open(part, mode) as fh, tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=part.name[:-5], disable=not progress, leave=False) as bar:
            while True:
                try:
                    block = response.read(_CHUNK)
                except http.client.IncompleteRead as err:
                    fh.write(err.partial)
                    received += len(err.partial)
                    raise _Cut(f"connection cut after {received} of {total} bytes") from None
                except (TimeoutError, ConnectionError, OSError) as err:
                    raise _Cut(f"connection lost after {received} bytes ({err.__class__.__name__})") from None
                if not block:
                    break
                fh.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received < total:
        raise _Cut(f"connection cut after {received} of {total} bytes")


def _range_end(value: str | None) -> int | None:
    """Total size from a 416 answer's ``Content-Range: bytes */N``."""
    try:
        return int(value.split("/")[1])
    except (AttributeError, IndexError, ValueError):
        return None


def _content_range_start(value: str | None) -> int:
    try:
        return int(value.split()[1].split("-")[0])
    except (AttributeError, IndexError, ValueError):
        return -1


def _check_space(folder: Path, needed: int, url: str) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise AvaderError(f"{url}: needs {needed / 2**30:.2f} GiB but {folder} has {free / 2**30:.2f} GiB free")


def _extract_once(archive: Path, dest: Path, max_bytes: int) -> None:
    marker = archive.with_name(archive.name + ".extracted")
    digest = _sidecar(archive).read_text().split()[0]  # verified by download() just before
    if marker.is_file() and marker.read_text().strip() == digest:
        log.info("%s: already extracted", archive)
        return
    extract_zip(archive, dest, max_bytes=max_bytes)
    marker.write_text(digest + "\n")


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "is not a regular file or folder"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "has a '..' component"
    if not name.strip("/"):
        return "has an empty name"
    return None


def extract_zip(archive, dest, max_bytes: int = 16 * 2**30, max_files: int = 2_000_000) -> list[Path]:
    """Extract a zip archive safely into ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    symbolic links and other special files are refused, and the declared total size must stay
    within ``max_bytes`` (the bytes actually written are counted too). Extraction happens in a
    temporary folder inside ``dest`` whose top-level entries are moved into place only when
    everything succeeded, so a refused or failed archive leaves nothing behind.

    Parameters
    ----------
    archive : path-like
        The zip file.
    dest : path-like
        Destination folder (created if needed).
    max_bytes : int
        Limit on the total uncompressed size, bytes.
    max_files : int
        Limit on the number of members.

    Returns
    -------
    list of Path
        The top-level entries created in ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise AvaderError(f"{archive}: not a readable zip archive ({err})") from None
    with zf:
        members = zf.infolist()
        if len(members) > max_files:
            raise AvaderError(f"{archive}: {len(members)} members exceed the limit of {max_files}")
        declared = 0
        for info in members:
            problem = _member_problem(info)
            if problem:
                raise AvaderError(f"{archive}: member {info.filename!r} {problem}; refusing to extract")
            declared += info.file_size
        if declared > max_bytes:
            raise AvaderError(f"{archive}: uncompressed size {declared} bytes exceeds the limit of {max_bytes} bytes")
        dest.mkdir(parents=True, exist_ok=True)
        tops = sorted({PurePosixPath(info.filename.replace("\\", "/")).parts[0] for info in members})
        clashes = [top for top in tops if (dest / top).exists()]
        if clashes:
            raise AvaderError(f"{archive}: {dest / clashes[0]} already exists; remove it to extract again")
        for stale in dest.glob(f".{archive.name}.*"):  # left by an extraction that was killed
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", dir=dest))
        try:
            _check_space(dest, declared, str(archive))
            written = 0
            for info in members:
                target = tmp.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while True:
                        block = src.read(_CHUNK)
                        if not block:
                            break
                        written += len(block)
                        if written > max_bytes:
                            raise AvaderError(f"{archive}: extraction passed the limit of {max_bytes} bytes; stopped")
                        out.write(block)
            created = []
            for top in tops:
                os.replace(tmp / top, dest / top)
                created.append(dest / top)
        except zipfile.BadZipFile as err:
            raise AvaderError(f"{archive}: corrupt zip archive ({err})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s: extracted %d members (%d bytes) into %s", archive, len(members), declared, dest)
    return created
