"""Configuration: frozen dataclasses mirrored one to one by commented YAML profiles.

A profile (``avader/profiles/<name>.yaml``) has a top-level ``seed`` and one mapping per
section: ``data``, ``simulation``, ``model``, ``training``, ``analysis``. Every key is a
constructor argument of that section's dataclass; an unknown key or a value of the wrong
type is an error naming the key and the file. Any value can be overridden with
``section.key=value`` strings (the CLI's ``--set``) or a mapping (papermill parameters).

Profiles shipped: ``smoke`` (CI, seconds), ``quick`` (default of ``make reproduce``,
about 20 minutes of training on 2 CPU cores), ``paper`` (the published configuration,
needs a GPU) and ``published`` (the original authors' weights, no training).

The simulation section is defined beside the code that uses it
(:class:`avader.simulate.SimulationConfig`, cheap to import).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .errors import AvaderError

__all__ = [
    "DataConfig",
    "ModelConfig",
    "TrainingConfig",
    "AnalysisConfig",
    "Config",
    "load_config",
    "available_profiles",
    "parse_overrides",
    "env_profile",
    "notebook_config",
]


@dataclass(frozen=True)
class DataConfig:
    """Which images to use and how to split them."""

    path: str = ""                   # GalaxySet file; "" = the embedded simulated default of the profile
    n_galaxies: int = 3000           # size of the simulated default (images)
    image_size: int = 64             # pixels per side of the simulated default
    validation_fraction: float = 0.05  # fraction of rows held out for validation losses
    test_fraction: float = 0.0       # fraction held out from training entirely (analysed in notebook 04)

    def validate(self) -> None:
        for key in ("validation_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value < 0.5:
                raise AvaderError(f"{key}: must be in [0, 0.5), got {value}")
        if self.n_galaxies < 1:
            raise AvaderError(f"n_galaxies: must be at least 1, got {self.n_galaxies}")


@dataclass(frozen=True)
class ModelConfig:
    """Network and mixture settings; the YAML ``model:`` section mirrors the fields one to one.

    The defaults are the published AstroVaDEr network (870,889 parameters plus a 12-component
    mixture in 20 dimensions). Lists are accepted for tuple fields and stored as tuples.
    """

    architecture: str = "conv"            # "conv" (AstroVaDEr) or "dense" (the VaDE paper's MLP)
    image_size: int = 128                 # pixels per side; conv: a multiple of 2 ** len(filters)
    channels: int = 1                     # image bands (1: grey)
    filters: tuple[int, ...] = (64, 64, 16)   # conv: filters per encoder block of two convolutions
    kernel_sizes: tuple[int, ...] = (3, 5, 5)  # conv: kernel side per encoder block (pixels)
    decoder_kernel_size: int = 5          # conv: kernel side of every decoder block convolution (pixels)
    output_kernel_size: int = 3           # conv: kernel side of the output convolution (pixels)
    dense_units: tuple[int, ...] = (500, 500, 2000)  # dense: hidden units of the encoder; decoder mirrors
    latent_dim: int = 20                  # dimensions of z
    n_components: int = 12                # Gaussian-mixture components (clusters)
    leaky_relu_slope: float = 0.1         # negative slope of every hidden activation (0: ReLU)
    l2: float = 0.01                      # L2 penalty factor on kernels and biases (0: none)
    output_activation: str = "relu"       # "relu" (paper), "sigmoid" or "linear"
    upsampling: str = "bilinear"          # "bilinear" (half-pixel), "bilinear_legacy" (TF1, published), "nearest"
    gamma_mode: str = "exact"             # "exact" (log-sum-exp) or "s3vdc" (upstream batch min-max softmax)

    def __post_init__(self):
        for key in ("filters", "kernel_sizes", "dense_units"):
            value = getattr(self, key)
            if isinstance(value, list):
                object.__setattr__(self, key, tuple(value))

    def validate(self) -> None:
        """Raise :class:`AvaderError` (``"<key>: <problem>"``) on the first bad value."""
        choices = {
            "architecture": ("conv", "dense"),
            "output_activation": ("relu", "sigmoid", "linear"),
            "upsampling": ("bilinear", "bilinear_legacy", "nearest"),
            "gamma_mode": ("exact", "s3vdc"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise AvaderError(f"{key}: must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        for key in ("image_size", "channels", "decoder_kernel_size", "output_kernel_size",
                    "latent_dim", "n_components"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AvaderError(f"{key}: must be a positive integer, got {value!r}")
        for key in ("filters", "kernel_sizes", "dense_units"):
            value = getattr(self, key)
            if (not isinstance(value, tuple) or not value
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
                raise AvaderError(f"{key}: must be a non-empty list of positive integers, got {value!r}")
        if len(self.kernel_sizes) != len(self.filters):
            raise AvaderError(f"kernel_sizes: needs one entry per encoder block ({len(self.filters)}), "
                              f"got {len(self.kernel_sizes)}")
        factor = 2 ** len(self.filters)
        if self.architecture == "conv" and self.image_size % factor:
            raise AvaderError(f"image_size: must be a multiple of {factor} (2 ** number of encoder blocks), "
                              f"got {self.image_size}")
        for key in ("leaky_relu_slope", "l2"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < math.inf:
                raise AvaderError(f"{key}: must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict:
        """Plain dict (tuples as lists), JSON/YAML friendly."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class TrainingConfig:
    """The three phases of AstroVaDEr training (s3VDC schedule, Cao et al. 2020)."""

    batch_size: int = 190            # images per step (summed over replicas)
    learning_rate: float = 3e-4      # Adam initial learning rate
    lr_decay: float = 0.95229        # multiplicative decay per lr_decay_epochs
    lr_decay_epochs: float = 3.0     # epochs per decay step (smooth: lr = lr0 * decay ** (epoch / lr_decay_epochs))
    lr_floor: float = 1e-6           # lower bound of the learning rate
    clip_value: float = 1.0          # gradient clip value after the warm-up (0 = off)
    warmup_epochs: int = 100         # phase 1 epochs
    warmup_mode: str = "vae"         # "vae" (standard-normal prior, as upstream) or "ae" (deterministic pretraining)
    warmup_kl_weight: float = 1.0    # KL weight of the phase-1 VAE
    init_samples: int = 38000        # phase 2: latent means used for the mixture fit (upstream: 200 batches of 190)
    init_restarts: int = 1           # phase 2: mixture fits from different seeds
    init_select: str = "likelihood"  # phase 2: the winning fit: "likelihood" (highest) or "balance" (most even cluster sizes)
    init_seed: int = -1              # phase 2: first seed of the mixture fits (-1 = the run's seed; fits use init_seed .. init_seed + init_restarts - 1, so independent restarts need seeds that far apart)
    init_copy: str = "full"          # "full" copies the fit into the prior; "discard" reproduces upstream's zeroed copy
    vade_periods: int = 5            # phase 3: number of anneal + static periods
    anneal_epochs: int = 25          # phase 3: epochs in which the latent weight rises each period
    static_epochs: int = 25          # phase 3: epochs at the top weight each period
    latent_weight: float = 0.3       # base weight of the VaDE latent term; rises to 2x within a period
    prior_weights: str = "learned"   # phase 3: mixture weights "learned" (as published) or "fixed" at the phase-2 fit
    prior_variances: str = "learned"  # phase 3: component variances "learned" (as published) or "fixed" at the phase-2 fit
    balance_weight: float = 0.0      # phase 3: weight of KL(batch occupation || mixture weights) (0 = as published)
    centre_weight: float = 0.0       # sigma of a Gaussian weight on the reconstruction's squared errors, in units of the image side (0 = uniform, as published)
    decoder_epochs: int = 0          # phase 4: the decoder alone on the latent means, encoder and mixture frozen (0 = as published)
    flips: bool = True               # random horizontal and vertical flips (the paper's only augmentation)
    steps_per_epoch: int = 0         # 0 = one pass over the training rows per epoch
    checkpoint_every: int = 10       # epochs between periodic checkpoints (phase ends always checkpoint)
    precision: str = "float32"       # "float32", "mixed_bfloat16", "mixed_float16" or "auto" (bf16 where the CPU/GPU has it)
    deterministic: bool = False      # TensorFlow deterministic ops (slower; bit-reproducible on one machine)
    baseline_vae: bool = False       # also train a plain VAE of the same architecture and budget (generation baseline)
    baseline_kl_weight: float = -1.0  # the baseline's KL weight after the shared warm-up (-1 = the warm-up's)

    def validate(self) -> None:
        if self.batch_size < 1:
            raise AvaderError(f"batch_size: must be at least 1, got {self.batch_size}")
        choices = {
            "warmup_mode": ("vae", "ae"),
            "init_copy": ("full", "discard"),
            "init_select": ("likelihood", "balance"),
            "prior_weights": ("learned", "fixed"),
            "prior_variances": ("learned", "fixed"),
            "precision": ("float32", "mixed_bfloat16", "mixed_float16", "auto"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise AvaderError(f"{key}: must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        for key in ("warmup_epochs", "vade_periods", "anneal_epochs", "static_epochs", "init_restarts", "steps_per_epoch",
                    "decoder_epochs"):
            if getattr(self, key) < 0:
                raise AvaderError(f"{key}: must not be negative, got {getattr(self, key)}")
        if self.init_seed < -1:
            raise AvaderError(f"init_seed: must be -1 (the run's seed) or a seed >= 0, got {self.init_seed}")
        if not (self.baseline_kl_weight == -1 or self.baseline_kl_weight >= 0):
            raise AvaderError(f"baseline_kl_weight: must be -1 (the warm-up's) or >= 0, got {self.baseline_kl_weight}")
        if self.balance_weight < 0:
            raise AvaderError(f"balance_weight: must not be negative, got {self.balance_weight}")
        if not 0 <= self.centre_weight < math.inf:
            raise AvaderError(f"centre_weight: must be 0 (uniform) or a positive width, got {self.centre_weight}")
        if self.learning_rate <= 0:
            raise AvaderError(f"learning_rate: must be positive, got {self.learning_rate}")

    @property
    def vade_epochs(self) -> int:
        """Total phase-3 epochs."""
        return self.vade_periods * (self.anneal_epochs + self.static_epochs)


@dataclass(frozen=True)
class AnalysisConfig:
    """Clustering, generation and deblending analysis settings."""

    batch_size: int = 256            # images per inference batch
    silhouette_sample: int = 5000    # galaxies in the seeded subsample for silhouette scores
    examples_per_component: int = 8  # images per component in example figures
    generate_per_component: int = 45  # generated galaxies per component (paper: 45)
    generation_scale: float = 0.5    # sample z ~ N(u_c, scale * lambda_c) (paper: 1/2)
    heldout_galaxies: int = 2000     # simulated galaxies never trained on, the realism report's real sample (0: none)
    reduced_exclude: tuple = ()      # components to re-assign in the reduced scheme (empty = from truth)
    n_blends: int = 200              # blends in the deblending benchmark
    deblend_steps: int = 150         # optimiser steps per latent-space deblend
    deblend_prior_weight: float = 1.0  # weight of the mixture log prior against chi^2 / 2 in the deblender's fit
    deblend_augment: int = 1         # fits per blend, averaged: 1, 2 (and mirrored) or 4 (and three mirrorings)
    detector_blends: int = 8000      # simulated blends that train the learned detector (0: peak detection only)
    detector_epochs: int = 20        # epochs of the learned detector
    axis_ratio_bins: tuple = (0.0, 0.4, 0.7, 1.0)       # bins of b/a for factor NMI
    orientation_bins: tuple = (0.0, 45.0, 90.0, 135.0, 180.0)  # degrees, for factor NMI

    def validate(self) -> None:
        if self.batch_size < 1:
            raise AvaderError(f"batch_size: must be at least 1, got {self.batch_size}")
        if self.heldout_galaxies < 0:
            raise AvaderError(f"heldout_galaxies: must be >= 0, got {self.heldout_galaxies}")
        if self.generation_scale <= 0:
            raise AvaderError(f"generation_scale: must be positive, got {self.generation_scale}")
        if not self.deblend_prior_weight >= 0:
            raise AvaderError(f"deblend_prior_weight: must be >= 0, got {self.deblend_prior_weight}")
        if self.deblend_augment not in (1, 2, 4):
            raise AvaderError(f"deblend_augment: must be 1, 2 or 4 (fits per blend), got {self.deblend_augment}")
        if self.detector_blends < 0 or self.detector_epochs < 1:
            raise AvaderError(f"detector_blends, detector_epochs: need >= 0 blends and >= 1 epoch, got "
                              f"{self.detector_blends} and {self.detector_epochs}")


def _section_classes() -> dict[str, type]:
    from .simulate import SimulationConfig

    return {
        "data": DataConfig,
        "simulation": SimulationConfig,
        "model": ModelConfig,
        "training": TrainingConfig,
        "analysis": AnalysisConfig,
    }


@dataclass(frozen=True)
class Config:
    """A resolved configuration: profile name, seed and the five sections."""

    profile: str = "custom"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    simulation: typing.Any = None
    model: typing.Any = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (tuples as lists), as written to ``config.yaml``."""
        out = {"profile": self.profile, "seed": self.seed}
        for name in _section_classes():
            section = getattr(self, name)
            out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(section).items()}
        return out

    def to_yaml(self) -> str:
        """YAML text of :meth:`to_dict`."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def fingerprint(self, exclude=("analysis",)) -> str:
        """SHA-256 of the settings that change a training run (the analysis section excluded)."""
        data = {k: v for k, v in self.to_dict().items() if k not in exclude and k != "profile"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def replace(self, overrides) -> Config:
        """A copy with ``overrides`` (see :func:`parse_overrides`) applied and validated."""
        merged = _merge(self.to_dict(), parse_overrides(overrides, where="override"))
        return _build(merged, where="override")

    def dataset_path(self) -> Path:
        """The GalaxySet to train on: ``data.path`` or the embedded simulated default."""
        return Path(self.data.path) if self.data.path else paths.default_dataset(self.profile, self.seed)


def available_profiles() -> list[str]:
    """Names of the profiles shipped with the package."""
    return sorted(p.stem for p in paths.profiles_dir.glob("*.yaml"))


def env_profile(default: str = "quick") -> str:
    """The profile named by ``$AVADER_PROFILE``, else ``default`` (used by notebooks)."""
    return os.environ.get("AVADER_PROFILE") or default


def notebook_config(profile: str | None = None, seed: int | None = None, overrides=None) -> Config:
    """The configuration a notebook runs with.

    Parameters
    ----------
    profile : str, optional
        Profile name or file; empty or None means ``$AVADER_PROFILE``, else ``quick``.
    seed : int, optional
        Overrides the profile's seed.
    overrides : list of str or mapping, optional
        ``section.key=value`` overrides (papermill passes them as a list).
    """
    merged = dict(parse_overrides(overrides))
    if seed is not None:
        merged["seed"] = int(seed)
    return load_config(profile or env_profile(), merged or None)


def _coerce(value, annotation, where: str):
    """Check ``value`` against a dataclass field annotation, converting lists to tuples."""
    origin = typing.get_origin(annotation)
    if annotation is typing.Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
        if value is None:
            return ""
    elif annotation is tuple or origin is tuple:
        if isinstance(value, (list, tuple)):
            args = typing.get_args(annotation)
            if args and args[-1] is not Ellipsis:
                raise AvaderError(f"{where}: fixed-length tuple annotations are not supported")
            item = args[0] if args else typing.Any
            return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    elif annotation is dict or origin is dict:
        if isinstance(value, dict):
            args = typing.get_args(annotation)
            item = args[1] if args else typing.Any
            return {str(k): _coerce(v, item, f"{k}") for k, v in value.items()}
    else:
        return value
    name = getattr(annotation, "__name__", str(annotation))
    raise AvaderError(f"{where}: expected {name}, got {type(value).__name__} {value!r}")


def _build_section(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise AvaderError(f"{where}: expected a mapping of keys, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise AvaderError(f"{where}.{key}: unknown key (known: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    section = cls(**kwargs)
    try:
        section.validate()
    except AvaderError as err:
        field_name = str(err).split(":", 1)[0]
        raise AvaderError(f"{where}.{err}" if field_name in names else f"{where}: {err}") from None
    return section


def _build(values: dict, where: str) -> Config:
    classes = _section_classes()
    unknown = set(values) - set(classes) - {"profile", "seed"}
    if unknown:
        raise AvaderError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: profile, seed, {', '.join(classes)})")
    seed = values.get("seed", 0)
    seed = _coerce(seed, int, f"{where}: seed")
    profile = _coerce(values.get("profile", "custom"), str, f"{where}: profile")
    sections = {name: _build_section(cls, values.get(name) or {}, f"{where}: {name}") for name, cls in classes.items()}
    return Config(profile=profile, seed=seed, **sections)


def _merge(base: dict, overrides: dict, depth: int = 0) -> dict:
    """Sections merge key by key; a mapping-valued setting inside a section (e.g.
    ``simulation.family_fractions``) is replaced whole, so that ``{"late": 1.0}`` means only late types."""
    out = dict(base)
    for key, value in overrides.items():
        if depth == 0 and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, depth + 1)
        else:
            out[key] = value
    return out


def parse_overrides(overrides, where: str = "override") -> dict:
    """Turn overrides into a nested mapping.

    Parameters
    ----------
    overrides : None, mapping or list of str
        ``["training.batch_size=32", "seed=3"]`` (values parsed as YAML), or
        ``{"training.batch_size": 32}``, or ``{"training": {"batch_size": 32}}``.
    """
    import yaml

    if not overrides:
        return {}
    if isinstance(overrides, str):
        overrides = [overrides]
    items = []
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        for text in overrides:
            if "=" not in text:
                raise AvaderError(f"{where} {text!r}: expected section.key=value")
            key, raw = text.split("=", 1)
            try:
                items.append((key.strip(), yaml.safe_load(raw)))
            except yaml.YAMLError:
                raise AvaderError(f"{where} {text!r}: value is not valid YAML") from None
    nested: dict = {}
    for key, value in items:
        parts = str(key).split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise AvaderError(f"{where} {key!r}: {part} is not a section")
        node[parts[-1]] = value
    return nested


def load_config(profile: str | os.PathLike = "quick", overrides=None) -> Config:
    """Read a profile and apply overrides.

    Parameters
    ----------
    profile : str or path
        A shipped profile name (``smoke``, ``quick``, ``paper``, ``published``) or a YAML file.
    overrides : None, mapping or list of str
        See :func:`parse_overrides`.

    Returns
    -------
    Config
        The resolved configuration: what runs and what gets recorded.
    """
    import yaml

    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml"):
        path = candidate
    else:
        path = paths.profiles_dir / f"{profile}.yaml"
        if not path.is_file():
            raise AvaderError(f"profile {profile!r}: unknown (available: {', '.join(available_profiles())})")
    if not path.is_file():
        raise AvaderError(f"{path}: no such profile file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise AvaderError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise AvaderError(f"{path}: a profile must be a mapping of sections")
    values.setdefault("profile", path.stem)
    config = _build(values, where=str(path))
    if overrides:
        config = config.replace(overrides)
    return config
