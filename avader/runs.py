"""Run directories, manifests, machine description and the one seeding helper.

A run directory ``data/runs/<name>/`` holds everything a training or analysis run made:

``config.yaml``    the resolved configuration (what ran)
``manifest.json``  avader version, git commit, package versions, platform, CPU/GPU, seed,
                   input files with sha256, start/end times and phase timings
``model.keras``    the trained model; ``checkpoints/``, ``history.csv``,
``clusters.fits``, ``metrics.json``, ``notebooks/`` (executed copies)

Nothing in a non-empty run directory is overwritten unless ``overwrite=True`` (or
``resume=True`` where a run continues).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from . import paths
from .errors import AvaderError

__all__ = [
    "machine_info",
    "seed_everything",
    "RunDir",
    "resolve_run_dir",
    "git_commit",
    "write_json_atomic",
    "read_json",
]

log = logging.getLogger(__name__)

_PACKAGES = ("numpy", "scipy", "astropy", "tensorflow", "keras", "scikit-learn", "galsim", "photutils", "matplotlib", "papermill")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_bf16() -> bool:
    """Whether this CPU has native bfloat16 matrix support (AVX512-BF16 or AMX)."""
    flags = _cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def _memory_gib() -> float:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return float("nan")


def package_versions(names=_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages avader's results depend on."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    try:
        out["avader"] = metadata.version("avader")
    except metadata.PackageNotFoundError:
        from . import __version__

        out["avader"] = __version__
    return out


def machine_info(with_devices: bool = True) -> dict:
    """Describe this machine: CPU model and cores, memory, GPUs, platform and versions.

    Parameters
    ----------
    with_devices : bool
        Ask TensorFlow for its devices (imports TensorFlow).
    """
    info = {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_bf16": has_bf16(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "versions": package_versions(),
    }
    if with_devices:
        import tensorflow as tf

        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
        info["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
        info["tf_inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    return info


def git_commit() -> str | None:
    """The git commit of the checkout holding the package (with ``+dirty``), or None."""
    try:
        root = paths.home()
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and Keras/TensorFlow; optionally enable deterministic TF ops.

    Parameters
    ----------
    seed : int
        The one seed of a run; every stochastic function also takes explicit seeds derived from it.
    deterministic : bool
        Turn on ``tf.config.experimental.enable_op_determinism`` (bit-reproducible on one machine,
        slower on GPU).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def write_json_atomic(path: str | os.PathLike, data, overwrite: bool = True) -> Path:
    """Write JSON through a temporary file and a rename."""
    from .data import write_atomic

    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n"
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text), overwrite=overwrite)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON file, with a one-line error naming it when broken."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise AvaderError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise AvaderError(f"{path}: not valid JSON ({err})") from None


def resolve_run_dir(run: str | os.PathLike) -> Path:
    """A run name (``quick``) becomes ``data/runs/quick``; a path stays a path."""
    run = Path(run)
    if run.is_absolute() or len(run.parts) > 1:
        return run.resolve()
    return paths.runs_dir() / run


class RunDir:
    """One run directory and its bookkeeping files.

    Parameters
    ----------
    path : str or Path
        A run name (resolved under ``data/runs``) or a folder.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = resolve_run_dir(path)

    def __repr__(self) -> str:
        return f"RunDir({self.path})"

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def exists(self) -> bool:
        """True when the folder holds a run (a ``config.yaml``)."""
        return self.config_path.is_file()

    def create(self, config, overwrite: bool = False, resume: bool = False, inputs=()) -> RunDir:
        """Create the folder and write ``config.yaml`` and a fresh ``manifest.json``.

        Parameters
        ----------
        config : avader.config.Config
            The resolved configuration.
        overwrite : bool
            Allow a non-empty folder; files are replaced as the run writes them.
        resume : bool
            Continue an existing run: its configuration must be identical (fingerprint), and each
            of ``inputs`` that the manifest recorded must still have the recorded sha256 (a data
            file rewritten since, e.g. re-simulated with another seed, is refused).
        inputs : sequence of path
            Input files to record with their sha256.
        """
        non_empty = self.path.is_dir() and any(self.path.iterdir())
        if resume:
            if not self.exists():
                raise AvaderError(f"{self.path}: nothing to resume (no config.yaml)")
            recorded = self.load_config()
            if recorded.fingerprint() != config.fingerprint():
                diff = _first_difference(recorded.to_dict(), config.to_dict())
                raise AvaderError(f"{self.path}: configuration differs from the run being resumed ({diff}); "
                                  "start a new run or pass the same settings")
            recorded_inputs = self.manifest().get("inputs", {})
            for p in inputs:
                recorded_sha = recorded_inputs.get(str(Path(p).resolve()))
                now = _sha_or_none(p) if recorded_sha else None
                if recorded_sha and now != recorded_sha:
                    raise AvaderError(f"{p}: changed since {self.path} was started (sha256 {recorded_sha[:12]} "
                                      f"recorded, {(now or 'missing')[:12]} now); resuming would mix two "
                                      "data sets: restore the file or start a new run")
            return self
        if non_empty and not overwrite:
            raise AvaderError(f"{self.path}: run directory is not empty; pass --overwrite or --resume, or choose another --run")
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)
        self.write_config(config)
        manifest = {
            "avader_version": package_versions().get("avader"),
            "git_commit": git_commit(),
            "profile": config.profile,
            "seed": config.seed,
            "machine": machine_info(with_devices=False),
            "argv": sys.argv,
            "inputs": {str(Path(p).resolve()): _sha_or_none(p) for p in inputs},
            "created": _now(),
            "phases": {},
        }
        write_json_atomic(self.manifest_path, manifest)
        return self

    def write_config(self, config) -> Path:
        """(Re)write ``config.yaml`` with ``config`` (atomically); the manifest is left as it is."""
        from .data import write_atomic

        write_atomic(self.config_path, lambda tmp: Path(tmp).write_text(_config_header(config) + config.to_yaml()),
                     overwrite=True)
        return self.config_path

    def load_config(self):
        """The resolved configuration stored in ``config.yaml``."""
        from .config import load_config

        if not self.config_path.is_file():
            raise AvaderError(f"{self.path}: not a run directory (no config.yaml)")
        return load_config(self.config_path)

    def manifest(self) -> dict:
        """The manifest as a dict (empty when absent)."""
        return read_json(self.manifest_path) if self.manifest_path.is_file() else {}

    def update_manifest(self, **entries) -> dict:
        """Merge ``entries`` into the manifest (dicts are merged one level deep) and rewrite it."""
        manifest = self.manifest()
        for key, value in entries.items():
            if isinstance(value, dict) and isinstance(manifest.get(key), dict):
                manifest[key].update(value)
            else:
                manifest[key] = value
        write_json_atomic(self.manifest_path, manifest)
        return manifest

    def record_phase(self, name: str, started: float, **details) -> None:
        """Store a phase's start, end and duration (seconds) in the manifest."""
        end = time.time()
        self.update_manifest(phases={name: {"start": _iso(started), "end": _iso(end),
                                            "seconds": round(end - started, 2), **details}})


def _config_header(config) -> str:
    return (f"# avader resolved configuration (profile {config.profile}), written {_now()}\n"
            "# This is exactly what ran; re-run with: avader train --profile <this file>\n")


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            found = _first_difference(a[key], b[key], f"{prefix}{key}.")
            if found:
                return found
        elif a.get(key) != b.get(key) and key != "profile":
            return f"{prefix}{key}: {a.get(key)!r} -> {b.get(key)!r}"
    return ""


def _sha_or_none(path) -> str | None:
    from .data import sha256sum

    return sha256sum(path) if Path(path).is_file() else None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="seconds")


def _now() -> str:
    return _iso(time.time())
