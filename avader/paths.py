"""Where things live: one place for every path avader uses.

All paths are absolute and computed from the package location or from environment
variables, never from the current working directory:

``AVADER_HOME``     project root (default: the checkout that holds the package)
``AVADER_DATA``     data root (default: ``<home>/data``)
``AVADER_FIGURES``  figure output folder (default: ``<home>/figures``)
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "package_dir",
    "profiles_dir",
    "home",
    "data_dir",
    "raw_dir",
    "processed_dir",
    "runs_dir",
    "figures_dir",
    "notebooks_dir",
    "default_dataset",
    "default_blends",
    "published_weights",
]

package_dir = Path(__file__).resolve().parent
profiles_dir = package_dir / "profiles"


def home() -> Path:
    """Project root: ``$AVADER_HOME`` or the folder above the package."""
    return Path(os.environ.get("AVADER_HOME", package_dir.parent)).resolve()


def data_dir() -> Path:
    """Data root: ``$AVADER_DATA`` or ``<home>/data``."""
    env = os.environ.get("AVADER_DATA")
    return Path(env).resolve() if env else home() / "data"


def raw_dir() -> Path:
    """Downloaded, untouched source files."""
    return data_dir() / "raw"


def processed_dir() -> Path:
    """GalaxySet files built from the sources or by simulation."""
    return data_dir() / "processed"


def runs_dir() -> Path:
    """One folder per training or analysis run."""
    return data_dir() / "runs"


def figures_dir() -> Path:
    """Rebuilt paper figures: ``$AVADER_FIGURES`` or ``<home>/figures``."""
    env = os.environ.get("AVADER_FIGURES")
    return Path(env).resolve() if env else home() / "figures"


def notebooks_dir() -> Path:
    """The ordered paper notebooks 01-06."""
    return home() / "notebooks"


def _seeded(stem: str, seed: int) -> str:
    return stem if int(seed) == 0 else f"{stem}_seed{int(seed)}"


def default_dataset(profile: str, seed: int = 0) -> Path:
    """Path of the embedded simulated GalaxySet for ``profile`` and ``seed``:
    ``simulated_<profile>.fits`` for the profiles' seed 0, ``simulated_<profile>_seed<S>.fits`` for
    another, so that a seed check (``--set seed=1``) never overwrites the catalogue another run was trained on."""
    return processed_dir() / f"{_seeded(f'simulated_{profile}', seed)}.fits"


def default_blends(profile: str, seed: int = 0) -> Path:
    """Path of the simulated blend set for ``profile`` and ``seed`` (named as :func:`default_dataset`)."""
    return processed_dir() / f"{_seeded(f'blends_{profile}', seed)}.fits"


PUBLISHED_WEIGHTS_NAME = "astrovader_saved_weights.h5"


def published_weights() -> Path | None:
    """The original authors' weights file, if present: ``$AVADER_WEIGHTS``, then
    ``data/raw/published-weights/astrovader_saved_weights.h5`` (``avader fetch published-weights``), then a
    ``shared/reference`` folder beside the checkout (the developers' reference copy)."""
    candidates = [os.environ.get("AVADER_WEIGHTS"), raw_dir() / "published-weights" / PUBLISHED_WEIGHTS_NAME,
                  home().parent / "shared" / "reference" / PUBLISHED_WEIGHTS_NAME]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None
