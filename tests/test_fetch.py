"""Downloads against a local HTTP server on 127.0.0.1 (never the internet) and safe zip extraction."""

import hashlib
import http.server
import io
import socket
import stat
import threading
import zipfile

import pytest

from avader import fetch as fetch_module
from avader.errors import AvaderError
from avader.fetch import DATASETS, Remote, download, extract_zip, fetch

PAYLOAD = bytes(range(256)) * 4000  # 1,024,000 bytes
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = {}  # url path -> bytes
        self.cut_once = set()  # url paths whose next full answer stops half-way
        self.ignore_range = set()
        self.log = []  # (path, Range header or None)

    def url(self, path):
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.log.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and self.path not in server.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if self.path in server.cut_once:
            server.cut_once.discard(self.path)
            self.wfile.write(chunk[: len(chunk) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(chunk)


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.files["/data.bin"] = PAYLOAD
    yield srv
    srv.shutdown()
    srv.server_close()


def test_download_verifies_and_is_idempotent(server, tmp_path):
    target = tmp_path / "data.bin"
    assert download(server.url("/data.bin"), target, sha256=DIGEST, progress=False) == target
    assert target.read_bytes() == PAYLOAD
    assert (tmp_path / "data.bin.sha256").read_text().split()[0] == DIGEST
    assert not (tmp_path / "data.bin.part").exists()
    requests = len(server.log)
    download(server.url("/data.bin"), target, sha256=DIGEST, progress=False)
    assert len(server.log) == requests  # nothing fetched again


def test_existing_file_with_other_bytes_is_not_trusted(server, tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"something else")
    with pytest.raises(AvaderError, match=f"data.bin: exists but its sha256 [0-9a-f]{{64}} differs from the expected "
                                          f"{DIGEST}; delete it to download again"):
        download(server.url("/data.bin"), target, sha256=DIGEST, progress=False)
    assert target.read_bytes() == b"something else" and server.log == []


def test_download_resumes_after_a_cut(server, tmp_path):
    target = tmp_path / "data.bin"
    server.cut_once.add("/data.bin")
    url = server.url("/data.bin")
    with pytest.raises(AvaderError) as info:
        download(url, target, sha256=DIGEST, progress=False, retries=0)
    half = len(PAYLOAD) // 2
    assert str(info.value) == (f"{url}: connection cut after {half} of {len(PAYLOAD)} bytes; "
                               f"run again to resume from {half} bytes")
    assert not target.exists() and (tmp_path / "data.bin.part").stat().st_size == half
    download(url, target, sha256=DIGEST, progress=False)
    assert server.log[-1] == ("/data.bin", f"bytes={half}-")
    assert target.read_bytes() == PAYLOAD and not (tmp_path / "data.bin.part").exists()


def test_download_retries_a_cut_by_itself(server, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_module, "_BACKOFF", 0.0)
    server.cut_once.add("/data.bin")
    download(server.url("/data.bin"), tmp_path / "data.bin", sha256=DIGEST, progress=False)
    assert [rng for _, rng in server.log] == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_download_restarts_when_range_is_ignored(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(b"stale bytes from elsewhere")
    server.ignore_range.add("/data.bin")
    download(server.url("/data.bin"), tmp_path / "data.bin", sha256=DIGEST, progress=False)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(AvaderError) as info:
        download(server.url("/data.bin"), tmp_path / "data.bin", sha256=wrong, progress=False)
    assert str(info.value) == f"data.bin: sha256 mismatch (expected {wrong}, got {DIGEST}); the download was deleted"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_http_404(server, tmp_path):
    url = server.url("/missing.bin")
    with pytest.raises(AvaderError) as info:
        download(url, tmp_path / "missing.bin", progress=False)
    assert str(info.value) == f"{url}: HTTP 404 Not Found"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_refused_connection(tmp_path, monkeypatch):
    monkeypatch.delenv("http_proxy", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.bin"
    with pytest.raises(AvaderError) as info:
        download(url, tmp_path / "x.bin", progress=False)
    assert str(info.value) == f"{url}: connection refused (is the server up? is the address right?)"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_next_url_after_404(server, tmp_path):
    download([server.url("/master/w.h5"), server.url("/data.bin")], tmp_path / "w.h5", sha256=DIGEST, progress=False)
    assert (tmp_path / "w.h5").read_bytes() == PAYLOAD


def test_fetch_named_dataset(server, tmp_path):
    path = fetch("gz2-labels", dest=tmp_path, url=server.url("/data.bin"), progress=False)
    assert path == tmp_path / "gz2_hart16.csv.gz" and path.read_bytes() == PAYLOAD
    assert (tmp_path / "gz2_hart16.csv.gz.sha256").read_text() == f"{DIGEST}  gz2_hart16.csv.gz\n"
    with pytest.raises(AvaderError) as info:  # galaxy10's pinned digest rejects other bytes
        fetch("galaxy10", dest=tmp_path, url=server.url("/data.bin"), progress=False)
    assert str(info.value) == (f"Galaxy10.h5: sha256 mismatch (expected {DATASETS['galaxy10'][0].sha256}, "
                               f"got {DIGEST}); the download was deleted")
    assert not (tmp_path / "Galaxy10.h5").exists() and not (tmp_path / "Galaxy10.h5.part").exists()
    assert fetch("galaxy10", dest=tmp_path, url=server.url("/data.bin"), sha256=DIGEST, progress=False).is_file()


def test_fetch_option_errors(tmp_path):
    with pytest.raises(AvaderError, match="fetch 'sdss': unknown data set; choose one of galaxy10, gz2-images"):
        fetch("sdss", dest=tmp_path)
    with pytest.raises(AvaderError, match="fetch gz2-images: --url and --sha256 apply to data sets of one file"):
        fetch("gz2-images", dest=tmp_path, url="http://127.0.0.1:9/x")
    with pytest.raises(AvaderError, match="sha256 'abc': expected 64 hexadecimal digits"):
        fetch("galaxy10", dest=tmp_path, sha256="abc")


def _zip(entries) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buffer.getvalue()


def test_fetch_gz2_images_extracts_once(server, tmp_path, monkeypatch):
    archive = _zip([("images/1.jpg", b"one", stat.S_IFREG | 0o644), ("images/2.jpg", b"two", stat.S_IFREG | 0o644)])
    server.files["/images_gz2.zip"] = archive
    server.files["/map.csv"] = b"objid,sample,asset_id\n5,original,1\n"
    monkeypatch.setitem(DATASETS, "gz2-images", (
        Remote("images_gz2.zip", (server.url("/images_gz2.zip"),), extract=True),
        Remote("gz2_filename_mapping.csv", (server.url("/map.csv"),)),
    ))
    dest = fetch("gz2-images", dest=tmp_path / "gz2", progress=False)
    assert (dest / "images" / "2.jpg").read_bytes() == b"two"
    assert (dest / "gz2_filename_mapping.csv").is_file() and (dest / "images_gz2.zip.sha256").is_file()
    requests = len(server.log)
    assert fetch("gz2-images", dest=tmp_path / "gz2", progress=False) == dest  # idempotent: no download, no extraction
    assert len(server.log) == requests


@pytest.mark.parametrize("name, mode, problem", [
    ("/etc/evil", stat.S_IFREG | 0o644, "has an absolute path"),
    ("images/../../evil", stat.S_IFREG | 0o644, "has a '..' component"),
    ("images/link", stat.S_IFLNK | 0o777, "is a symbolic link"),
])
def test_zip_refuses_unsafe_members(tmp_path, name, mode, problem):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip([("images/ok.jpg", b"fine", stat.S_IFREG | 0o644), (name, b"/etc/passwd", mode)]))
    dest = tmp_path / "dest"
    with pytest.raises(AvaderError) as info:
        extract_zip(archive, dest)
    assert str(info.value) == f"{archive}: member {name!r} {problem}; refusing to extract"
    assert not dest.exists() or list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_zip_size_limit(tmp_path):
    archive = tmp_path / "big.zip"
    archive.write_bytes(_zip([("images/zeros.bin", b"\0" * 200_000, stat.S_IFREG | 0o644)]))
    assert archive.stat().st_size < 2_000  # a small archive that expands a lot
    dest = tmp_path / "dest"
    with pytest.raises(AvaderError) as info:
        extract_zip(archive, dest, max_bytes=100_000)
    assert str(info.value) == f"{archive}: uncompressed size 200000 bytes exceeds the limit of 100000 bytes"
    assert not dest.exists() or list(dest.iterdir()) == []
    assert extract_zip(archive, dest, max_bytes=300_000) == [dest / "images"]
    assert (dest / "images" / "zeros.bin").stat().st_size == 200_000

