"""Training: AstroVaDEr's three phases, schedules, checkpoints, resume, devices and precision.

Phase 1 (``warmup``)  a VAE with a standard-normal prior (or a deterministic autoencoder),
                      mixture frozen.
Phase 2 (``init``)    latent means of a subsample -> k-means -> diagonal Gaussian mixture seeded
                      by the k-means centres (best of ``init_restarts`` by log-likelihood),
                      copied into the prior.
Phase 3 (``vade``)    ``vade_periods`` x (``anneal_epochs`` + ``static_epochs``) epochs of the
                      VaDE loss; the latent weight rises as ``w (1 + (t / anneal)^3)`` to ``2 w``
                      within each period, then stays there (s3VDC, Cao et al. 2020).
Phase 4 (``decoder``) optional (``decoder_epochs``, 0 as published): the decoder alone on the
                      latent means (autoencoder mode), encoder and mixture frozen, so latents and
                      clusters stay those of phase 3 while the decoded galaxies sharpen (the
                      decoder of phase 3 learns from sampled z and renders them rounder and less
                      concentrated than the inputs).

The learning rate decays smoothly, ``lr0 * decay ** (epoch / decay_epochs)`` down to a floor,
over the whole run; gradients are clipped by value after the warm-up.

Everything a run writes goes into its run directory: ``config.yaml``, ``manifest.json``,
``history.csv`` (one row per epoch), ``split.csv`` (train/valid/test rows),
``checkpoints/`` (weights, optimiser state and position, at phase ends and every
``checkpoint_every`` epochs) and ``model.keras`` at the end. ``resume=True`` continues from the
last checkpoint with the same configuration; the data stream of every epoch is a pure function
of (seed, epoch), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from .config import Config, load_config
from .data import GalaxySet, make_dataset, write_atomic
from .errors import AvaderError
from .runs import RunDir, has_bf16, seed_everything

__all__ = [
    "train",
    "get_strategy",
    "resolve_precision",
    "learning_rate",
    "latent_weight_schedule",
    "split_rows",
    "fit_mixture",
    "size_entropy",
    "load_run_model",
    "encode_dataset",
    "TrainingState",
    "import_published_run",
    "pretrain",
    "train_vade",
    "read_history",
    "load_checkpoint_model",
    "warmup_checkpoint",
]

log = logging.getLogger(__name__)

HISTORY_FIELDS = ["epoch", "phase", "learning_rate", "latent_weight", "loss", "reconstruction_loss", "kl_loss",
                  "val_loss", "val_reconstruction_loss", "val_kl_loss", "seconds"]


# ---------------------------------------------------------------- schedules
def learning_rate(epoch: float, config) -> float:
    """Smooth exponential decay of PAPER.md: ``max(lr0 * decay ** (epoch / decay_epochs), floor)``."""
    lr = config.learning_rate * config.lr_decay ** (epoch / config.lr_decay_epochs)
    return float(max(lr, config.lr_floor))


def latent_weight_schedule(vade_epoch: int, config) -> float:
    """Latent-term weight at phase-3 epoch ``vade_epoch`` (0-based) of the s3VDC schedule."""
    period = config.anneal_epochs + config.static_epochs
    t = vade_epoch % period if period else 0
    if t < config.anneal_epochs:
        return float(config.latent_weight * (1.0 + (t / config.anneal_epochs) ** 3))
    return float(2.0 * config.latent_weight)


# ---------------------------------------------------------------- devices and precision
def get_strategy():
    """``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names a cluster, ``MirroredStrategy``
    across several GPUs, else the default strategy (one GPU or the CPU)."""
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
        if sum(len(v) for v in cluster.values()) > 1:
            log.info("TF_CONFIG names %d tasks: MultiWorkerMirroredStrategy", sum(len(v) for v in cluster.values()))
            return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        log.info("%d GPUs: MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _strategy_name(strategy) -> str:
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "default"


def resolve_precision(precision: str) -> str:
    """``auto`` becomes ``mixed_bfloat16`` on hardware with bf16 matrix units, else ``float32``."""
    if precision != "auto":
        return precision
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        major = (details.get("compute_capability") or (0, 0))[0]
        return "mixed_bfloat16" if major >= 8 else "mixed_float16" if major >= 7 else "float32"
    return "mixed_bfloat16" if has_bf16() else "float32"


# ---------------------------------------------------------------- data split
def split_rows(n: int, validation_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Seeded disjoint train / valid / test row indices (sorted)."""
    order = np.random.default_rng([seed, 1729]).permutation(n)
    n_valid = int(round(validation_fraction * n))
    n_test = int(round(test_fraction * n))
    if n - n_valid - n_test < 1:
        raise AvaderError(f"{n} galaxies leave no training rows after the validation and test splits")
    return {"valid": np.sort(order[:n_valid]), "test": np.sort(order[n_valid:n_valid + n_test]),
            "train": np.sort(order[n_valid + n_test:])}


def _write_split(path: Path, ids, split: dict) -> None:
    labels = np.empty(len(ids), dtype=object)
    for name, rows in split.items():
        labels[rows] = name
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "id", "split"])
    for row, (gid, label) in enumerate(zip(ids, labels)):
        writer.writerow([row, gid, label])
    write_atomic(path, lambda tmp: Path(tmp).write_text(buffer.getvalue()), overwrite=True)


# ---------------------------------------------------------------- phase 2
def encode_dataset(model, galaxyset: GalaxySet, rows=None, batch_size: int = 256, progress: bool = False):
    """Latent means and log-variances of ``galaxyset`` rows, in batches (memory flat in N).

    Returns
    -------
    mean, log_var : ndarray, shape (m, latent_dim), float32
    """
    rows = np.arange(len(galaxyset)) if rows is None else np.asarray(rows)
    means, log_vars = [], []
    for start in _progress_range(0, len(rows), batch_size, progress, "encode"):
        batch = galaxyset.get_images(np.sort(rows[start:start + batch_size]))[..., None]
        mean, log_var = model.encode(batch)
        means.append(np.asarray(mean, dtype=np.float32))
        log_vars.append(np.asarray(log_var, dtype=np.float32))
    return np.concatenate(means), np.concatenate(log_vars)


def _progress_range(start, stop, step, progress, desc):
    steps = range(start, stop, step)
    if not progress:
        return steps
    from tqdm.auto import tqdm

    return tqdm(steps, desc=desc, unit="batch", leave=False)


def size_entropy(assignments, n_components: int) -> float:
    """Entropy (nats) of the cluster-size distribution of hard ``assignments`` (n,); log K when even."""
    sizes = np.bincount(np.asarray(assignments, dtype=np.int64), minlength=n_components) / max(len(assignments), 1)
    sizes = sizes[sizes > 0]
    return float(-np.sum(sizes * np.log(sizes)))


INIT_SELECTIONS = ("likelihood", "balance")


def fit_mixture(latents: np.ndarray, n_components: int, seed: int, restarts: int = 1, select: str = "likelihood"):
    """k-means then a diagonal Gaussian mixture seeded by its centres; best of ``restarts``.

    Parameters
    ----------
    latents : ndarray, shape (m, latent_dim)
    n_components : int
    seed : int
    restarts : int
        Independent fits (seeds ``seed .. seed + restarts - 1``).
    select : {"likelihood", "balance"}
        How the winner is chosen, without labels: the highest mean log-likelihood, or the most
        even cluster sizes (highest :func:`size_entropy` of the fit's hard assignments of
        ``latents``). On scikit-learn's digits the likelihood prefers fits that merge classes
        (Spearman about -0.8 between log-likelihood and accuracy over restarts) and ``balance``
        raises VaDE's accuracy from 0.85 to 0.88 (``benchmarks/bench_digits.py``).

    Returns
    -------
    dict
        ``weights`` (K,), ``means`` (K, d), ``variances`` (K, d), ``log_likelihood`` (mean per
        point), ``size_entropy`` (nats) and ``restart`` (the winner's index).
    """
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    if select not in INIT_SELECTIONS:
        raise AvaderError(f"init_select: must be one of {', '.join(INIT_SELECTIONS)}, got {select!r}")
    best, best_key = None, None
    for restart in range(max(1, restarts)):
        rs = seed + restart
        kmeans = KMeans(n_clusters=n_components, n_init=5, random_state=rs).fit(latents)
        gmm = GaussianMixture(n_components=n_components, covariance_type="diag", means_init=kmeans.cluster_centers_,
                              random_state=rs, reg_covar=1e-4, max_iter=300).fit(latents)
        score = float(gmm.score(latents))
        entropy = size_entropy(gmm.predict(latents), n_components)
        log.info("mixture fit %d: mean log-likelihood %.4f, size entropy %.4f", restart, score, entropy)
        key = score if select == "likelihood" else entropy
        if best is None or key > best_key:
            best_key = key
            best = {"weights": gmm.weights_, "means": gmm.means_, "variances": gmm.covariances_,
                    "log_likelihood": score, "size_entropy": entropy, "restart": restart}
    return best


# ---------------------------------------------------------------- checkpoints
class TrainingState:
    """Where a run stands: the next epoch to run (global, 0-based) and the files of the last checkpoint."""

    def __init__(self, run: RunDir):
        self.run = run
        self.path = run.checkpoints / "state.json"

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        return json.loads(self.path.read_text())

    def save(self, model, epoch: int, phase: str, mixture_initialised: bool) -> None:
        """Write weights and optimiser state, then the state file that points at them."""
        ckpt = self.run.checkpoints
        ckpt.mkdir(parents=True, exist_ok=True)
        tag = f"epoch{epoch:04d}_{phase}"
        weights = ckpt / f"{tag}.weights.h5"
        tmp = ckpt / f".{tag}.partial.weights.h5"
        model.save_weights(tmp)
        os.replace(tmp, weights)
        optimizer_state = ckpt / f"{tag}.optimizer.npz"
        opt_vars = {f"v{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)}
        opt_vars["seed_state"] = np.asarray(model.seed_generator.state)
        write_atomic(optimizer_state, lambda p: np.savez(open(p, "wb"), **opt_vars), overwrite=True)
        state = {"next_epoch": epoch, "phase": phase, "weights": weights.name, "optimizer": optimizer_state.name,
                 "mixture_initialised": mixture_initialised}
        write_atomic(self.path, lambda p: Path(p).write_text(json.dumps(state, indent=2)), overwrite=True)

    def restore_weights(self, model, state: dict) -> None:
        """Load the checkpoint's network and mixture weights and the z-sampling generator state."""
        model.load_weights(self.run.checkpoints / state["weights"])
        stored = np.load(self.run.checkpoints / state["optimizer"])
        model.seed_generator.state.assign(stored["seed_state"])

    def restore_optimizer(self, model, state: dict) -> None:
        """Load the checkpoint's optimiser state (moments, iteration count) into a compiled model."""
        stored = np.load(self.run.checkpoints / state["optimizer"])
        variables = model.optimizer.variables
        if len(stored.files) - 1 != len(variables):
            raise AvaderError(f"{self.run.path}: checkpoint optimiser state does not match the model")
        for i, var in enumerate(variables):
            var.assign(stored[f"v{i}"])


# ---------------------------------------------------------------- callbacks
def _callbacks(run: RunDir, state: TrainingState, phase: str, tc, first_vade_epoch: int, mixture_ready: bool,
               history_rows: list):
    import keras

    class Schedule(keras.callbacks.Callback):
        """Sets learning rate and latent weight, records history, checkpoints, stops on NaN."""

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.time()
            self.current_epoch = epoch
            self.model.optimizer.learning_rate.assign(learning_rate(epoch, tc))
            if phase == "vade":
                self.model.latent_weight.assign(latent_weight_schedule(epoch - first_vade_epoch, tc))

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(np.asarray(loss)).all():
                self.model.stop_training = True
                self.model._avader_nan = (self.current_epoch, batch)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"epoch": epoch, "phase": phase,
                   "learning_rate": float(np.asarray(self.model.optimizer.learning_rate)),
                   "latent_weight": float(np.asarray(self.model.latent_weight)),
                   "seconds": round(time.time() - self.started, 3)}
            for key in HISTORY_FIELDS[4:-1]:
                if key in logs:
                    row[key] = float(np.mean(logs[key]))
            if getattr(self.model, "_avader_nan", None):
                return
            if not all(math.isfinite(row.get(k, 0.0)) for k in ("loss", "val_loss")):
                self.model.stop_training = True
                self.model._avader_nan = (epoch, -1)
                return
            history_rows.append(row)
            _write_history(run, history_rows)
            if tc.checkpoint_every and (epoch + 1) % tc.checkpoint_every == 0:
                state.save(self.model, epoch + 1, phase, mixture_ready)

    return [Schedule()]


def _write_history(run: RunDir, rows: list) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(run / "history.csv", lambda p: Path(p).write_text(buffer.getvalue()), overwrite=True)


def _read_history(run: RunDir) -> list:
    path = run / "history.csv"
    if not path.is_file():
        return []
    rows = []
    for row in csv.DictReader(path.read_text().splitlines()):
        rows.append({k: (v if k == "phase" else int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""})
    return rows


# ---------------------------------------------------------------- the run
def _compile(model, tc, clip: bool):
    import keras

    optimizer = keras.optimizers.Adam(learning_rate=tc.learning_rate, clipvalue=tc.clip_value if clip and tc.clip_value else None)
    model.compile(optimizer=optimizer)
    optimizer.build(model.trainable_variables)


def train(config: Config | str = "quick", data=None, run_dir=None, resume: bool = False, overwrite: bool = False,
          precision: str | None = None, progress: bool = True, overrides=None, stop_after_epoch: int | None = None):
    """Train AstroVaDEr: warm-up, mixture initialisation, annealed VaDE (and the optional decoder phase).

    Parameters
    ----------
    config : Config or str
        A resolved configuration or a profile name/file.
    data : path, optional
        GalaxySet to train on; default ``config.dataset_path()``.
    run_dir : str or path, optional
        Run name or folder; default ``data/runs/<profile>``.
    resume : bool
        Continue the run in ``run_dir`` from its last checkpoint (same configuration required).
    overwrite : bool
        Allow reusing a non-empty run directory from scratch.
    precision : str, optional
        Override ``training.precision`` (``float32``, ``mixed_bfloat16``, ``mixed_float16``, ``auto``).
    progress : bool
        Keras progress bars (one line per epoch when output is not a terminal).
    overrides : mapping or list of str, optional
        Configuration overrides.
    stop_after_epoch : int, optional
        Stop (as if interrupted) once this many epochs are done; used to test resuming.

    Returns
    -------
    RunDir
        The run directory, holding ``model.keras`` when training finished.
    """
    import keras

    if isinstance(config, str | os.PathLike):
        config = load_config(config, overrides)
    elif overrides:
        config = config.replace(overrides)
    if precision:
        config = config.replace({"training.precision": precision})
    data_path = Path(data) if data else config.dataset_path()
    if data:
        config = config.replace({"data.path": str(data_path)})
    run = RunDir(run_dir or config.profile)
    galaxies = GalaxySet.read(data_path)
    if galaxies.shape[1] != config.model.image_size or galaxies.shape[2] != config.model.image_size:
        raise AvaderError(f"{data_path}: images are {galaxies.shape[1]}x{galaxies.shape[2]} but model.image_size is "
                          f"{config.model.image_size}")
    run.create(config, overwrite=overwrite, resume=resume, inputs=[data_path])
    tc = config.training
    policy = resolve_precision(tc.precision)
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        return _train(config, galaxies, run, tc, policy, resume, progress, stop_after_epoch)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config, galaxies, run, tc, policy, resume, progress, stop_after_epoch):
    from .model import build_vade

    seed_everything(config.seed, deterministic=tc.deterministic)
    split = split_rows(len(galaxies), config.data.validation_fraction, config.data.test_fraction, config.seed)
    _write_split(run / "split.csv", galaxies.ids, split)
    strategy = get_strategy()
    started = time.time()
    run.update_manifest(precision=policy, strategy=_strategy_name(strategy), replicas=strategy.num_replicas_in_sync,
                        n_train=int(len(split["train"])), n_valid=int(len(split["valid"])))
    with strategy.scope():
        model = build_vade(config.model, seed=config.seed)
    state = TrainingState(run)
    saved = state.load() if resume else None
    next_epoch = saved["next_epoch"] if saved else 0
    mixture_ready = bool(saved and saved["mixture_initialised"])
    history = [row for row in _read_history(run) if row["epoch"] < next_epoch] if saved else []
    if saved:
        state.restore_weights(model, saved)
        log.info("resuming %s at epoch %d (%s)", run.path, next_epoch, saved["phase"])
    warmup_end = tc.warmup_epochs
    total = tc.warmup_epochs + tc.vade_epochs
    verbose = 0 if not progress else (1 if sys.stdout.isatty() else 2)
    # Several replicas: equal, complete batches everywhere (collectives need matching shapes).
    drop = strategy.num_replicas_in_sync > 1
    steps = tc.steps_per_epoch or (len(split["train"]) // tc.batch_size if drop else
                                   math.ceil(len(split["train"]) / tc.batch_size))
    if steps < 1:
        raise AvaderError(f"{len(split['train'])} training galaxies make no complete batch of {tc.batch_size}")

    def compile_for(phase, restore):
        # "fixed": the phase-2 mixture weights (variances) are kept: no draining into one component (no broadening)
        model.prior.theta_logits.trainable = phase != "vade" or tc.prior_weights == "learned"
        model.prior.log_variances.trainable = phase != "vade" or tc.prior_variances == "learned"
        model.balance_weight = float(tc.balance_weight)  # read when train_step is traced (after compile)
        model.centre_weight = float(tc.centre_weight)
        _decoder_only(model, phase == "decoder")
        with strategy.scope():
            _compile(model, tc, clip=phase != "warmup")
        mode, weight = {"warmup": (tc.warmup_mode, tc.warmup_kl_weight), "vade": ("vade", tc.latent_weight),
                        "decoder": ("ae", 0.0)}[phase]
        model.set_mode(mode, latent_weight=weight)
        if restore:
            state.restore_optimizer(model, saved)

    def fit_phase(phase, first, last):
        """Epochs first..last-1; False when stopped early (stop_after_epoch)."""
        stop = min(last, stop_after_epoch) if stop_after_epoch is not None else last
        if stop > first:
            train_ds = make_dataset(galaxies, tc.batch_size, shuffle=True, seed=config.seed, flips=tc.flips,
                                    epochs=stop, initial_epoch=first, indices=split["train"],
                                    drop_remainder=drop).repeat()
            valid_ds = (make_dataset(galaxies, tc.batch_size, shuffle=False, flips=False, indices=split["valid"],
                                     drop_remainder=drop)
                        if len(split["valid"]) >= (tc.batch_size if drop else 1) else None)
            model._avader_nan = None
            phase_started = time.time()
            valid_steps = (len(split["valid"]) // tc.batch_size if drop else math.ceil(len(split["valid"]) / tc.batch_size))
            model.fit(train_ds, epochs=stop, initial_epoch=first, steps_per_epoch=steps, validation_data=valid_ds,
                      validation_steps=valid_steps if valid_ds is not None else None, shuffle=False,
                      verbose=verbose, callbacks=_callbacks(run, state, phase, tc, warmup_end, mixture_ready, history))
            if model._avader_nan:
                epoch, batch = model._avader_nan
                last_good = state.load()
                where = f"checkpoint at epoch {last_good['next_epoch']}" if last_good else "no checkpoint yet"
                raise AvaderError(f"{run.path}: loss became NaN or infinite in epoch {epoch} (batch {batch}) of "
                                  f"phase {phase}; training stopped, last good {where} kept")
            run.record_phase(phase, phase_started, epochs=[first, stop])
            state.save(model, stop, phase, mixture_ready)
        return stop == last

    if next_epoch < warmup_end:
        compile_for("warmup", restore=bool(saved) and saved["phase"] == "warmup")
        if not fit_phase("warmup", next_epoch, warmup_end):
            return _interrupted(run, stop_after_epoch)
    if tc.vade_epochs:
        if not mixture_ready:
            _initialise_mixture(model, galaxies, split, config, run, progress)
            mixture_ready = True
            compile_for("vade", restore=False)
            state.save(model, warmup_end, "init", mixture_ready)
        else:
            compile_for("vade", restore=saved["phase"] in ("init", "vade"))
        if not fit_phase("vade", max(next_epoch, warmup_end), total):
            return _interrupted(run, stop_after_epoch)
        if tc.decoder_epochs:
            compile_for("decoder", restore=bool(saved) and saved["phase"] == "decoder")
            finished = fit_phase("decoder", max(next_epoch, total), total + tc.decoder_epochs)
            _decoder_only(model, False)
            if not finished:
                return _interrupted(run, stop_after_epoch)
    _save_model(model, run)
    run.update_manifest(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), train_seconds=round(time.time() - started, 1))
    if tc.baseline_vae and tc.vade_epochs:
        _train_baseline_vae(config, galaxies, split, run, strategy, verbose, steps, drop)
    return run


def _decoder_only(model, on: bool) -> None:
    """Freeze (``on``) or release the encoder and the mixture: phase 4 trains the decoder alone."""
    model.encoder.trainable = not on
    model.prior.trainable = not on


def warmup_checkpoint(run_dir) -> Path | None:
    """Weights file of the model at the end of the warm-up (phase 1), or None."""
    run = RunDir(run_dir)
    tc = run.load_config().training
    path = run.checkpoints / f"epoch{tc.warmup_epochs:04d}_warmup.weights.h5"
    return path if path.is_file() else None


def _train_baseline_vae(config, galaxies, split, run, strategy, verbose, steps, drop) -> Path:
    """A plain VAE with the same architecture and epoch budget as the VaDE run.

    It shares the warm-up (phase 1 is exactly a plain VAE) and then continues as a VAE with a
    standard-normal prior for the epochs VaDE spent in phase 3, with the same schedule and the KL
    weight ``training.baseline_kl_weight`` (by default the warm-up's), then
    fits its decoder alone for ``decoder_epochs`` as the VaDE run does in phase 4; saved
    as ``baseline_vae.keras`` with its own ``baseline_history.csv``.
    """
    import keras

    from .model import build_vade

    tc = config.training
    target = run / "baseline_vae.keras"
    warm = warmup_checkpoint(run)
    if target.is_file():
        return target
    started = time.time()
    with strategy.scope():
        baseline = build_vade(config.model, seed=config.seed)
        baseline.centre_weight = float(tc.centre_weight)  # the same reconstruction term as the VaDE's
        _compile(baseline, tc, clip=True)
    if warm is not None:
        baseline.load_weights(warm)
    first = tc.warmup_epochs if warm is not None else 0
    kl_weight = tc.warmup_kl_weight if tc.warmup_mode == "vae" else 1.0
    baseline.set_mode("vae", latent_weight=kl_weight if tc.baseline_kl_weight == -1 else tc.baseline_kl_weight)
    rows = []
    phase = ["baseline_vae"]

    class Schedule(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model.optimizer.learning_rate.assign(learning_rate(epoch, tc))

        def on_epoch_end(self, epoch, logs=None):
            rows.append({"epoch": epoch, "phase": phase[0],
                         "learning_rate": float(np.asarray(self.model.optimizer.learning_rate)),
                         **{k: float(np.mean(v)) for k, v in (logs or {}).items()}})

    last = tc.warmup_epochs + tc.vade_epochs
    train_ds = make_dataset(galaxies, tc.batch_size, shuffle=True, seed=config.seed, flips=tc.flips, epochs=last,
                            initial_epoch=first, indices=split["train"], drop_remainder=drop).repeat()
    baseline.fit(train_ds, epochs=last, initial_epoch=first, steps_per_epoch=steps, shuffle=False, verbose=verbose,
                 callbacks=[Schedule()])
    if tc.decoder_epochs:  # the same phase 4 as the VaDE run: its decoder alone on the latent means
        phase[0] = "baseline_decoder"
        _decoder_only(baseline, True)
        with strategy.scope():
            _compile(baseline, tc, clip=True)
        baseline.set_mode("ae", latent_weight=0.0)
        end = last + tc.decoder_epochs
        decoder_ds = make_dataset(galaxies, tc.batch_size, shuffle=True, seed=config.seed, flips=tc.flips, epochs=end,
                                  initial_epoch=last, indices=split["train"], drop_remainder=drop).repeat()
        baseline.fit(decoder_ds, epochs=end, initial_epoch=last, steps_per_epoch=steps, shuffle=False,
                     verbose=verbose, callbacks=[Schedule()])
        _decoder_only(baseline, False)
        last = end
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(run / "baseline_history.csv", lambda p: Path(p).write_text(buffer.getvalue()), overwrite=True)
    tmp = run / ".baseline_vae.partial.keras"
    baseline.save(tmp)
    os.replace(tmp, target)
    run.record_phase("baseline_vae", started, epochs=[first, last], shared_warmup=warm is not None)
    return target


def _interrupted(run: RunDir, epoch: int) -> RunDir:
    log.warning("%s: stopped after epoch %d; continue with --resume", run.path, epoch)
    return run


def _initialise_mixture(model, galaxies, split, config, run, progress):
    tc = config.training
    started = time.time()
    rng = np.random.default_rng([config.seed, 2])
    rows = split["train"]
    if len(rows) > tc.init_samples:
        rows = np.sort(rng.choice(rows, tc.init_samples, replace=False))
    means, _ = encode_dataset(model, galaxies, rows, batch_size=config.analysis.batch_size, progress=progress)
    init_seed = config.seed if tc.init_seed < 0 else tc.init_seed
    fit = fit_mixture(means, config.model.n_components, seed=init_seed, restarts=tc.init_restarts,
                      select=tc.init_select)
    if tc.init_copy == "full":
        model.prior.set_mixture(fit["weights"], fit["means"], fit["variances"])
    else:
        log.warning("init_copy=discard: the mixture fit is not copied into the prior (upstream behaviour)")
    run.record_phase("init", started, samples=int(len(rows)), log_likelihood=fit["log_likelihood"],
                     size_entropy=fit["size_entropy"], restart=fit["restart"], select=tc.init_select, seed=init_seed,
                     copied=tc.init_copy)


def _save_model(model, run: RunDir) -> Path:
    target = run / "model.keras"
    tmp = run / ".model.partial.keras"
    model.save(tmp)
    os.replace(tmp, target)
    return target


def load_run_model(run_dir, compile: bool = False):
    """Load ``model.keras`` of a run directory with Keras safe mode (no code from the file)."""
    import keras

    from . import model as _model  # noqa: F401  (registers the serialisable classes)

    run = RunDir(run_dir)
    path = run / "model.keras"
    if not path.is_file():
        raise AvaderError(f"{run.path}: no model.keras (train first, or avader import-weights)")
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except (ValueError, OSError, TypeError, KeyError) as err:
        raise AvaderError(f"{path}: cannot load the model ({str(err).splitlines()[0]})") from None


def import_published_run(weights_path, run_dir, overwrite: bool = False, config=None) -> RunDir:
    """Turn the original authors' Keras 2.3.1 weights file into a run directory.

    Parameters
    ----------
    weights_path : path
        ``saved_weights.h5`` of AstroVaDEr-Public (see ``../shared/reference``).
    run_dir : str or path
        Run name or folder to create.
    overwrite : bool
        Allow a non-empty run directory.
    config : Config, optional
        Default: the ``published`` profile.

    Returns
    -------
    RunDir
        Holding ``config.yaml``, ``manifest.json`` (with the weights' sha256) and ``model.keras``.
    """
    from .model import load_published_model

    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise AvaderError(f"{weights_path}: no such weights file")
    config = config or load_config("published")
    model = load_published_model(weights_path, seed=config.seed)
    run = RunDir(run_dir).create(config, overwrite=overwrite, inputs=[weights_path])
    _save_model(model, run)
    run.update_manifest(source="published weights (Spindler, Geach & Smith 2021)", weights_file=str(weights_path))
    return run


def _is_published(config) -> bool:
    return config.training.warmup_epochs + config.training.vade_epochs == 0


def pretrain(config: Config, data=None, run_dir=None, progress: bool = True, overwrite: bool = False) -> RunDir:
    """Notebook 02's stage: a run trained to the end of the warm-up (phase 1).

    A run directory that already holds this configuration's warm-up (same settings, checkpoint
    present) is kept as it is, so the notebook re-runs without retraining; ``overwrite=True``
    starts afresh. Under the ``published`` profile (no epochs to train) the original authors'
    weights (:func:`avader.paths.published_weights`) are imported instead.
    """
    from . import paths

    run = RunDir(run_dir or config.profile)
    if _is_published(config):
        weights = paths.published_weights()
        if weights is None:
            raise AvaderError("published weights not found: run 'avader fetch published-weights' "
                              "or set AVADER_WEIGHTS to the saved_weights.h5 file")
        if not overwrite and (run / "model.keras").is_file() and run.exists():
            return run
        return import_published_run(weights, run.path, overwrite=True, config=config)
    if not overwrite and run.exists() and warmup_checkpoint(run) is not None:
        candidate = config.replace({"data.path": str(Path(data))}) if data else config
        if run.load_config().fingerprint() == candidate.fingerprint():
            log.info("%s: warm-up of this configuration already done; keeping it", run.path)
            return run
    return train(config, data=data, run_dir=run.path, overwrite=True, progress=progress,
                 stop_after_epoch=config.training.warmup_epochs)


def train_vade(config: Config, data=None, run_dir=None, progress: bool = True) -> RunDir:
    """Notebook 03's stage: continue the run of :func:`pretrain` through mixture initialisation
    and the annealed VaDE phase (nothing to do when it already finished)."""
    run = RunDir(run_dir or config.profile)
    if _is_published(config) or (run / "model.keras").is_file() and not (run.checkpoints / "state.json").is_file():
        if not (run / "model.keras").is_file():
            raise AvaderError(f"{run.path}: no model; run notebook 02 (pretraining) first")
        return run
    if not (run.checkpoints / "state.json").is_file():
        raise AvaderError(f"{run.path}: no pretraining checkpoint; run notebook 02 (pretraining) first")
    state = TrainingState(run).load()
    tc = config.training
    if state["next_epoch"] >= tc.warmup_epochs + tc.vade_epochs + tc.decoder_epochs and (run / "model.keras").is_file():
        return run
    return train(config, data=data, run_dir=run.path, resume=True, progress=progress)


def read_history(run_dir):
    """``history.csv`` of a run as an astropy Table (one row per epoch)."""
    from astropy.table import Table

    run = RunDir(run_dir)
    path = run / "history.csv"
    if not path.is_file():
        raise AvaderError(f"{run.path}: no history.csv (train first)")
    return Table.read(path, format="ascii.csv")


def load_checkpoint_model(run_dir):
    """The model at the run's last checkpoint (e.g. right after the warm-up), built from its config."""
    from .model import build_vade

    run = RunDir(run_dir)
    state = TrainingState(run).load()
    if state is None:
        return load_run_model(run)
    model = build_vade(run.load_config().model, seed=0)
    TrainingState(run).restore_weights(model, state)
    return model
