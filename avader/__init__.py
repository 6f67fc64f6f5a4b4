"""avader: AstroVaDEr, a convolutional VAE with a Gaussian-mixture prior for galaxy images.

A tested, reproducible re-implementation of Spindler, Geach & Smith (2021, MNRAS 502, 985).
Notebooks use ``import avader as av``; the public names below are loaded on first use, so
importing the package stays cheap (TensorFlow is imported only by the modules that need it).

How the code fits together (one direction of flow)::

    sources -> data / simulate -> GalaxySet (FITS) -> training -> run directory
    run directory -> clustering / generation / deblending -> plotting -> figures/
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "AvaderError": "errors",
    "paths": None,
    "GalaxySet": "data",
    "GalaxySetWriter": "data",
    "make_dataset": "data",
    "sha256sum": "data",
    "Config": "config",
    "load_config": "config",
    "env_profile": "config",
    "ensure_dataset": "data",
    "ensure_blends": "data",
    "ensure_heldout": "data",
    "notebook_config": "config",
    "save_figure": "plotting",
    "train": "training",
    "pretrain": "training",
    "train_vade": "training",
    "load_run_model": "training",
    "load_checkpoint_model": "training",
    "read_history": "training",
    "import_published_run": "training",
    "cluster_run": "clustering",
    "ensure_detector": "detector",
    "figures": None,
    "plotting": None,
    "RunDir": "runs",
    "machine_info": "runs",
    "seed_everything": "runs",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = _EXPORTS[name]
        if module is None:
            return importlib.import_module(f".{name}", __name__)
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'avader' has no attribute {name!r}") from None


def __dir__():
    return sorted(set(globals()) | set(__all__))
