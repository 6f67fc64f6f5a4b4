"""Shared tiny fixtures. Tests never touch the user's data/ or figures/: AVADER_DATA and
AVADER_FIGURES point into a per-session temporary folder."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(autouse=True, scope="session")
def _isolated_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("avader_home")
    old = {k: os.environ.get(k) for k in ("AVADER_DATA", "AVADER_FIGURES")}
    os.environ["AVADER_DATA"] = str(root / "data")
    os.environ["AVADER_FIGURES"] = str(root / "figures")
    yield root
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def tiny_images():
    """Eight 16x16 float32 images in [0, 1]: Gaussian blobs of different widths."""
    y, x = np.mgrid[:16, :16] - 7.5
    widths = np.linspace(1.5, 5.0, 8)
    images = np.exp(-(x**2 + y**2)[None] / (2 * widths[:, None, None] ** 2)).astype(np.float32)
    return images


@pytest.fixture
def reference_dir():
    """The original authors' artefacts (../shared/reference), or skip when absent."""
    if not (REFERENCE / "astrovader_saved_weights.h5").is_file():
        pytest.skip(f"reference weights not found in {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def load_benchmark():
    """A function importing ``benchmarks/<name>.py`` (the scripts are not a package) as a module."""
    import importlib.util

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
