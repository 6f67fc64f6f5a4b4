"""The paper notebooks: committed clean, thin, and run end to end at the smoke profile."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from avader.reproduce import NOTEBOOKS, list_notebooks, reproduce

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_clean_and_thin(name):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "notebook committed with outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    params = tagged[0].source
    for key in ("profile", "data", "run_dir", "seed"):
        assert f"{key} =" in params
    assert nb.cells[0].cell_type == "markdown" and "fig" in nb.cells[0].source
    assert any("import avader as av" in c.source for c in code)
    assert not any(line.lstrip().startswith(("def ", "class ")) for c in code for line in c.source.splitlines())


def test_only_selects_and_missing_is_named(tmp_path, monkeypatch):
    assert [p.stem for p in list_notebooks(["04", 6])] == ["04_clustering", "06_deblending"]
    monkeypatch.setenv("AVADER_HOME", str(tmp_path))
    with pytest.raises(Exception, match="01_data.ipynb: notebook missing"):
        list_notebooks()


@pytest.fixture(scope="module")
def smoke_reproduction(tmp_path_factory):
    """All six notebooks through papermill at the smoke profile, figures in a temporary folder."""
    figures = tmp_path_factory.mktemp("figures")
    old = os.environ.get("AVADER_FIGURES")
    os.environ["AVADER_FIGURES"] = str(figures)
    try:
        report = reproduce("smoke", run=str(tmp_path_factory.mktemp("runs") / "smoke"), progress=False)
    finally:
        if old is None:
            os.environ.pop("AVADER_FIGURES", None)
        else:
            os.environ["AVADER_FIGURES"] = old
    return report, figures


def test_reproduce_smoke_runs_every_notebook_and_writes_every_figure(smoke_reproduction):
    report, figures = smoke_reproduction
    assert list(report["notebooks"]) == list(NOTEBOOKS)
    expected = set()
    for name in NOTEBOOKS:
        first = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4).cells[0].source
        expected |= set(re.findall(r"`(fig\d\d_\w+)`", first))
    optional = {"fig16_published_generation", "fig22_user_image"}
    made = {p.stem for p in figures.glob("*.png")}
    assert expected - optional <= made
    assert {p.stem for p in figures.glob("*.pdf")} == made
    for name, item in report["notebooks"].items():
        executed = nbformat.read(item["executed"], as_version=4)
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{name}: {errors[:1]}"
    run = Path(report["run_dir"])
    for name in ("model.keras", "clusters.fits", "metrics.json", "deblend_benchmark.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"clustering", "generation"} <= set(metrics)


def test_failure_names_notebook_and_cell(tmp_path, monkeypatch):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = ""\ndata = ""\nrun_dir = ""\nseed = None\noverrides = []')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("raise ValueError('broken on purpose')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "01_data.ipynb")
    monkeypatch.setenv("AVADER_HOME", str(tmp_path))
    # cell 3 of the executed copy: papermill inserts the injected-parameters cell after cell 1
    with pytest.raises(Exception, match=r"01_data\.ipynb: cell 3 failed: ValueError: broken on purpose"):
        reproduce("smoke", only="01", run=str(tmp_path / "run"), progress=False)


def test_nbval_lax_passes_at_smoke_profile(tmp_path):
    env = dict(os.environ, AVADER_PROFILE="smoke", AVADER_DATA=str(tmp_path / "data"),
               AVADER_FIGURES=str(tmp_path / "figures"))
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
                             "-o", "addopts=", str(NB_DIR)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_notebook_01_through_a_real_jupyter_server(tmp_path):
    """Start jupyter server on loopback, open a kernel and run notebook 01's cells through it."""
    import websocket  # noqa: F401  (jupyter's own dependency tree brings websocket-client)

    port, token = _free_port(), "avader-test-token"
    env = dict(os.environ, AVADER_PROFILE="smoke", AVADER_DATA=str(tmp_path / "data"),
               AVADER_FIGURES=str(tmp_path / "figures"))
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "server", "--no-browser", f"--port={port}",
                               "--ip=127.0.0.1", "--allow-root", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base, token)
        kernel = _request(base, token, "POST", "/api/kernels", {"name": "python3"})
        nb = nbformat.read(NB_DIR / "01_data.ipynb", as_version=4)
        outputs = _execute(base, token, kernel["id"], [c.source for c in nb.cells if c.cell_type == "code"])
        assert not [o for o in outputs if o["msg_type"] == "error"], outputs
        assert (tmp_path / "figures" / "fig01_example_inputs.png").is_file()
    finally:
        server.terminate()
        server.wait(timeout=30)


def _request(base, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def _wait_for(base, token, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            _request(base, token, "GET", "/api/status")
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("jupyter server did not start")


def _execute(base, token, kernel_id, sources, timeout=600):
    import uuid

    import websocket

    ws = websocket.create_connection(base.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels?token={token}",
                                     timeout=timeout)
    messages = []
    try:
        for source in sources:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                                           "session": uuid.uuid4().hex, "version": "5.3"},
                                "parent_header": {}, "metadata": {}, "channel": "shell",
                                "content": {"code": source, "silent": False, "store_history": True,
                                            "user_expressions": {}, "allow_stdin": False}}))
            while True:
                reply = json.loads(ws.recv())
                if reply.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if reply["msg_type"] == "error":
                    messages.append({"msg_type": "error", "content": reply["content"]})
                if reply["msg_type"] == "execute_reply":
                    messages.append({"msg_type": "reply", "status": reply["content"]["status"]})
                    if reply["content"]["status"] != "ok":
                        messages.append({"msg_type": "error", "content": reply["content"]})
                    break
    finally:
        ws.close()
    return messages
