"""A learned detector of galaxy centres in blends, trained on simulated blends with ground truth.

Peak finding on a smoothed image (:func:`avader.deblending.detect`) splits clumpy galaxies and the
ends of edge-on disks into several sources and merges faint companions that sit on a brighter
galaxy's wing (no saddle, no peak). A small convolutional network that has seen many simulated
blends learns both: it maps a blend to a heat map of galaxy centres (CenterNet, Zhou et al. 2019),
and the centres are the heat map's local maxima.

The network: a U-Net of ``filters`` (two 3x3 convolutions per level, max-pooling down, bilinear
up-sampling and skip connections), two input channels (the blend above the sky divided by its
peak, and its asinh stretch at three noise sigma, so that faint wings and bright cores both show)
and one output channel of logits. Targets are Gaussians of ``target_sigma`` pixels at the true
centres, 1 at the nearest pixel; the loss is CenterNet's penalty-reduced focal loss. Training
blends are rendered by :func:`avader.simulate.render_blend` with ids from :data:`TRAIN_ID_START`
of the run's seed, so they never coincide with a benchmark set (ids 0 .. n - 1) of any seed,
and are augmented by the eight flips and quarter turns.

:func:`train_detector` writes ``detector.keras`` and ``detector.json`` (settings, timings, the
validation detection scores) into a run directory; :class:`Detector` finds centres;
:func:`avader.deblending.deblend` takes one as ``detector=``.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .errors import AvaderError

__all__ = [
    "DETECTOR_FILE",
    "TRAIN_ID_START",
    "Detector",
    "build_detector",
    "detector_inputs",
    "heatmap_targets",
    "find_peaks",
    "focal_loss",
    "train_detector",
    "load_detector",
    "ensure_detector",
    "resolve_detector",
]

log = logging.getLogger(__name__)

DETECTOR_FILE = "detector.keras"
TRAIN_ID_START = 1_000_000  # first blend id of the detector's training set (benchmark sets use ids 0 .. n - 1)
_SOFTENING = 3.0  # asinh softening of the second input channel, units of the noise sigma
_THRESHOLDS = tuple(round(0.15 + 0.05 * k, 2) for k in range(12))  # peak probabilities tried on the validation blends


def detector_inputs(images, background=None, noise_sigma=None) -> np.ndarray:
    """The network's two input channels of each image.

    Parameters
    ----------
    images : array_like, shape (n, height, width) or (height, width)
        Blends in stored units (linear in flux).
    background, noise_sigma : float or array_like, shape (n,), optional
        Sky level and pixel noise (stored units); default from the image border
        (:func:`avader.deblending.estimate_noise`).

    Returns
    -------
    ndarray, shape (n, height, width, 2), float32
        Channel 0: light above the sky over its peak; channel 1: ``asinh(light / (3 sigma))`` over
        its value at the peak.
    """
    from .deblending import estimate_noise

    images = np.asarray(images, np.float64)
    images = images[None] if images.ndim == 2 else images
    if images.ndim != 3:
        raise AvaderError(f"images: expected (n, height, width), got shape {images.shape}")
    n = len(images)
    border_sky, border_sigma = estimate_noise(images)
    sky = border_sky if background is None else np.broadcast_to(np.asarray(background, np.float64), (n,))
    sigma = border_sigma if noise_sigma is None else np.broadcast_to(np.asarray(noise_sigma, np.float64), (n,))
    light = images - sky[:, None, None]
    peak = np.maximum(light.max(axis=(1, 2)), 10.0 * sigma)[:, None, None]
    soft = np.maximum(_SOFTENING * sigma, 1e-9)[:, None, None]
    linear = light / peak
    stretched = np.arcsinh(light / soft) / np.arcsinh(peak / soft)
    return np.stack([linear, stretched], axis=-1).astype(np.float32)


def heatmap_targets(centres_list, size: int, sigma: float = 1.5) -> np.ndarray:
    """Target heat maps: the maximum of unit Gaussians at the centres, exactly 1 at each nearest pixel.

    Parameters
    ----------
    centres_list : sequence of array_like, shape (m, 2)
        (x, y) pixel centres per image (NaN rows and centres outside the image ignored).
    size : int
        Image side, pixels.
    sigma : float
        Gaussian width, pixels.

    Returns
    -------
    ndarray, shape (n, size, size), float32
    """
    rows, cols = np.indices((size, size), dtype=np.float64)
    out = np.zeros((len(centres_list), size, size), np.float32)
    for i, centres in enumerate(centres_list):
        centres = np.asarray(centres, np.float64).reshape(-1, 2)
        for x, y in centres[np.all(np.isfinite(centres), axis=1)]:
            ix, iy = int(round(x)), int(round(y))
            if not (0 <= ix < size and 0 <= iy < size):
                continue
            blob = np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2.0 * sigma**2))
            np.maximum(out[i], blob, out=out[i])
            out[i, iy, ix] = 1.0
    return out


def focal_loss(target, logits):
    """CenterNet's penalty-reduced focal loss per image, normalised by its number of centres.

    Parameters
    ----------
    target : tensor, shape (n, h, w)
        Heat maps of :func:`heatmap_targets` (1 at centres).
    logits : tensor, shape (n, h, w)

    Returns
    -------
    tensor, shape (n,)
    """
    from keras import ops

    target = ops.cast(target, "float32")
    logits = ops.cast(logits, "float32")
    p = ops.sigmoid(logits)
    positive = ops.cast(target >= 0.999, "float32")
    pos = -ops.square(1.0 - p) * ops.log_sigmoid(logits) * positive
    neg = -ops.power(1.0 - target, 4.0) * ops.square(p) * ops.log_sigmoid(-logits) * (1.0 - positive)
    n_pos = ops.maximum(ops.sum(positive, axis=(1, 2)), 1.0)
    return (ops.sum(pos, axis=(1, 2)) + ops.sum(neg, axis=(1, 2))) / n_pos


def _policy(precision: str) -> str:
    if precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
        raise AvaderError(f"precision: must be float32, mixed_bfloat16 or mixed_float16, got {precision!r}")
    return precision


def build_detector(image_size: int, filters=(16, 32, 64), dtype: str = "float32"):
    """The U-Net of the module notes; input (size, size, 2), output float32 logits (size, size).

    ``dtype`` is the Keras dtype policy of the hidden layers (``"mixed_bfloat16"``: bfloat16
    arithmetic with float32 weights)."""
    import keras
    from keras import layers

    filters = tuple(int(f) for f in filters)
    if len(filters) < 2 or image_size % 2 ** (len(filters) - 1):
        raise AvaderError(f"detector filters: need at least two levels and an image size divisible by "
                          f"{2 ** (len(filters) - 1)}, got {filters} at {image_size} pixels")

    def block(x, width, name):
        for j in range(2):
            x = layers.Conv2D(width, 3, padding="same", dtype=dtype, name=f"{name}_conv{j}")(x)
            x = layers.LeakyReLU(0.1, dtype=dtype, name=f"{name}_act{j}")(x)
        return x

    inputs = keras.Input((image_size, image_size, 2), name="blend")
    x, skips = inputs, []
    for level, width in enumerate(filters[:-1]):
        x = block(x, width, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, dtype=dtype, name=f"pool{level}")(x)
    x = block(x, filters[-1], "bottom")
    for level in reversed(range(len(filters) - 1)):
        x = layers.UpSampling2D(2, interpolation="bilinear", dtype=dtype, name=f"up{level}")(x)
        x = layers.Concatenate(dtype=dtype, name=f"skip{level}")([x, skips[level]])
        x = block(x, filters[level], f"upconv{level}")
    logits = layers.Conv2D(1, 1, bias_initializer=keras.initializers.Constant(-4.6), dtype="float32",
                           name="logits")(x)  # p ~ 0.01 at the start
    logits = layers.Reshape((image_size, image_size), dtype="float32", name="heatmap")(logits)
    return keras.Model(inputs, logits, name="detector")


def find_peaks(heatmap, threshold: float = 0.3, max_sources: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centres of one probability map: local maxima (3x3) above ``threshold``, refined to sub-pixel.

    Parameters
    ----------
    heatmap : array_like, shape (h, w)
        Probabilities in [0, 1].
    threshold : float
    max_sources : int, optional
        Keep the highest this many.

    Returns
    -------
    centres : ndarray, shape (m, 2), float64
        (x, y) pixels, highest score first: the probability-weighted mean of the 3x3 window.
    scores : ndarray, shape (m,)
    """
    from scipy.ndimage import maximum_filter

    prob = np.asarray(heatmap, np.float64)
    peaks = (prob == maximum_filter(prob, size=3, mode="constant", cval=-1.0)) & (prob > threshold)
    iy, ix = np.nonzero(peaks)
    order = np.argsort(-prob[iy, ix], kind="stable")[:max_sources]
    padded = np.pad(prob, 1)
    offsets = np.arange(-1, 2)
    centres = []
    for y, x in zip(iy[order], ix[order]):
        window = padded[y:y + 3, x:x + 3]
        total = window.sum()
        centres.append((x + window.sum(axis=0) @ offsets / total, y + window.sum(axis=1) @ offsets / total))
    return np.asarray(centres, np.float64).reshape(-1, 2), prob[iy[order], ix[order]]


class Detector:
    """A trained detector network and its peak threshold.

    Parameters
    ----------
    network : keras.Model
        From :func:`build_detector` (trained).
    threshold : float
        Probability a heat-map peak needs to count as a source.
    """

    def __init__(self, network, threshold: float = 0.3):
        self.network = network
        self.threshold = float(threshold)
        self.image_size = int(network.input_shape[1])

    def __repr__(self) -> str:
        return f"Detector({self.image_size}x{self.image_size} pixels, threshold {self.threshold:.2f})"

    def heatmaps(self, images, background=None, noise_sigma=None, batch_size: int = 64) -> np.ndarray:
        """Probability maps (n, h, w) float32 of the images (stored units)."""
        inputs = detector_inputs(images, background, noise_sigma)
        if inputs.shape[1:3] != (self.image_size, self.image_size):
            raise AvaderError(f"images: the detector was trained at {self.image_size}x{self.image_size} pixels, "
                              f"got {inputs.shape[1]}x{inputs.shape[2]}")
        logits = self.network.predict(inputs, batch_size=batch_size, verbose=0)
        return (1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))).astype(np.float32)

    def __call__(self, images, background=None, noise_sigma=None, max_sources: int | None = None) -> list[dict]:
        """Per image a dict with ``centres`` (m, 2) (x, y) pixels and ``scores`` (m,), highest first."""
        return [dict(zip(("centres", "scores"), find_peaks(h, self.threshold, max_sources), strict=True))
                for h in self.heatmaps(images, background, noise_sigma)]


def load_detector(run_dir, threshold: float | None = None) -> Detector:
    """The detector of a run directory (``detector.keras``; threshold from ``detector.json``)."""
    import keras

    from .runs import RunDir, read_json

    run = RunDir(run_dir)
    path = run / DETECTOR_FILE
    if not path.is_file():
        raise AvaderError(f"{run.path}: no {DETECTOR_FILE} (avader train-detector --run {run.path.name})")
    try:
        network = keras.models.load_model(path, compile=False, safe_mode=True)
    except (ValueError, OSError, TypeError, KeyError) as err:
        raise AvaderError(f"{path}: cannot load the detector ({str(err).splitlines()[0]})") from None
    info_path = run / "detector.json"
    if threshold is None:
        threshold = read_json(info_path).get("threshold", 0.3) if info_path.is_file() else 0.3
    return Detector(network, threshold)


def _training_blends(n: int, seed: int, size: int, config, workers: int | None, progress: bool):
    """Images (n, size, size), true centres, noise and sky of blends ``TRAIN_ID_START ..`` of ``seed``."""
    import os

    from tqdm.auto import tqdm

    from .simulate import _results

    workers = workers or os.cpu_count() or 1
    chunk = max(1, min(64, -(-n // (4 * workers))))
    stop = TRAIN_ID_START + n
    tasks = [(s, min(s + chunk, stop), seed, size, config, True) for s in range(TRAIN_ID_START, stop, chunk)]
    images = np.empty((n, size, size), np.float32)
    centres, noise, sky = [None] * n, np.empty(n), np.empty(n)
    with tqdm(total=n, disable=not progress, unit="blend", desc="detector blends") as bar:
        for first, block, _, cols in _results(tasks, min(workers, len(tasks))):
            rows = np.arange(first - TRAIN_ID_START, first - TRAIN_ID_START + len(block))
            images[rows] = block
            noise[rows], sky[rows] = cols["noise_sigma"], cols["zero_level"]
            for j, r in enumerate(rows):
                m = int(cols["n_sources"][j])
                centres[r] = np.array([[cols[f"x_{k}"][j], cols[f"y_{k}"][j]] for k in range(m)])
            bar.update(len(block))
    return images, centres, noise, sky


def _scores(heatmaps, centres, threshold: float) -> dict:
    """Detection scores at one threshold on heat maps with true centres (matched within 2 pixels):
    precision, recall and ``exact``, the fraction of images whose every source is found once and
    nothing else."""
    from .deblend_benchmark import match_sources

    n_true = n_found = n_matched = n_exact = 0
    for heat, truth in zip(heatmaps, centres, strict=True):
        found = find_peaks(heat, threshold)[0]
        matched = len(match_sources(truth, found, np.full(len(truth), 2.0)))
        n_true, n_found, n_matched = n_true + len(truth), n_found + len(found), n_matched + matched
        n_exact += int(matched == len(truth) == len(found))
    return {"threshold": threshold, "precision": n_matched / n_found if n_found else None,
            "recall": n_matched / n_true if n_true else None, "exact": n_exact / len(centres),
            "n_true": n_true, "n_found": n_found, "n_matched": n_matched}


def train_detector(run_dir, n_blends: int | None = None, epochs: int | None = None, batch_size: int = 32,
                   filters=(16, 32, 64),
                   learning_rate: float = 2e-3, target_sigma: float = 1.5, threshold: float | None = None,
                   validation_fraction: float = 0.1, seed: int | None = None, precision: str | None = None,
                   overwrite: bool = False, workers: int | None = None, progress: bool = True) -> dict:
    """Train a run's detector on simulated blends and write ``detector.keras`` and ``detector.json``.

    Parameters
    ----------
    run_dir : str or path
        Run directory (its ``config.yaml`` gives the image size, the simulation settings and the seed).
    n_blends : int, optional
        Simulated training blends (ids from :data:`TRAIN_ID_START`), ``validation_fraction`` of them
        held out for the scores in ``detector.json``; default the run's ``analysis.detector_blends``.
    epochs : int, optional
        Default the run's ``analysis.detector_epochs``.
    batch_size, learning_rate
        Adam, with the learning rate decayed by cosine to 1% over the epochs.
    filters : sequence of int
        U-Net widths per level (:func:`build_detector`).
    target_sigma : float
        Width of the target Gaussians, pixels.
    threshold : float, optional
        Peak probability of a detection (stored in ``detector.json``); default: of 0.15, 0.2, ..., 0.7
        the one that gets most validation blends exactly right (every galaxy found once, nothing else).
    seed : int, optional
        Default: the run's seed.
    precision : str, optional
        ``float32`` or ``mixed_bfloat16`` (``auto``: as :func:`avader.training.resolve_precision`);
        default the run's ``training.precision``. The heat map's logits are float32 either way.
    overwrite : bool
        Replace an existing detector.
    workers : int, optional
        Processes rendering the blends (default all cores).

    Returns
    -------
    dict
        The contents of ``detector.json``.
    """
    import keras
    import tensorflow as tf

    from .runs import RunDir, seed_everything, write_json_atomic
    from .training import resolve_precision

    run = RunDir(run_dir)
    config = run.load_config()
    target = run / DETECTOR_FILE
    if target.exists() and not overwrite:
        raise AvaderError(f"{target}: exists; pass overwrite=True (--overwrite) to replace it")
    n_blends = int(config.analysis.detector_blends if n_blends is None else n_blends)
    epochs = int(config.analysis.detector_epochs if epochs is None else epochs)
    if n_blends < 10 or epochs < 1:
        raise AvaderError(f"detector training: need at least 10 blends and 1 epoch, got {n_blends} and {epochs}")
    seed = config.seed if seed is None else int(seed)
    size = int(config.model.image_size)
    precision = _policy(resolve_precision(precision or config.training.precision))
    started = time.perf_counter()
    images, centres, noise, sky = _training_blends(n_blends, seed, size, config.simulation, workers, progress)
    simulated = time.perf_counter() - started
    n_valid = max(1, int(round(validation_fraction * n_blends)))
    train_rows = np.arange(n_valid, n_blends)
    inputs = detector_inputs(images[train_rows], sky[train_rows], noise[train_rows])
    targets = heatmap_targets([centres[r] for r in train_rows], size, target_sigma)

    seed_everything(seed)
    network = build_detector(size, filters, dtype=precision)
    batch_size = min(int(batch_size), len(train_rows))
    steps_per_epoch = len(train_rows) // batch_size
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps_per_epoch, alpha=0.01)
    network.compile(optimizer=keras.optimizers.Adam(schedule), loss=focal_loss)

    def augment(index, pair):
        """One of the eight flips and quarter turns, drawn from (seed, position in the stream)."""
        x, y = pair
        both = tf.concat([x, y[..., None]], axis=-1)
        draws = tf.random.stateless_uniform((3,), seed=tf.stack([tf.cast(seed, tf.int64), index]))
        both = tf.where(draws[0] < 0.5, tf.reverse(both, [1]), both)
        both = tf.where(draws[1] < 0.5, tf.reverse(both, [0]), both)
        both = tf.cond(draws[2] < 0.5, lambda: tf.transpose(both, (1, 0, 2)), lambda: both)
        return both[..., :2], both[..., 2]

    # a seeded shuffle per epoch and augmentations that depend only on the position in the stream:
    # the same seed trains the same detector on one machine
    data = (tf.data.Dataset.from_tensor_slices((inputs, targets))
            .shuffle(len(train_rows), seed=seed, reshuffle_each_iteration=True).repeat(epochs).enumerate()
            .map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    fit_started = time.perf_counter()
    history = network.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
                          verbose=2 if progress else 0)
    trained = time.perf_counter() - fit_started
    valid = np.arange(n_valid)
    heat = Detector(network).heatmaps(images[valid], sky[valid], noise[valid])
    truth = [centres[r] for r in valid]
    table = [_scores(heat, truth, t) for t in ([threshold] if threshold is not None else _THRESHOLDS)]
    scores = max(table, key=lambda row: row["exact"])  # the first of equals: the lowest threshold
    tmp = target.with_name(target.name + ".part.keras")
    network.save(tmp)
    tmp.replace(target)
    info = {"file": DETECTOR_FILE, "threshold": scores["threshold"], "n_blends": n_blends, "n_validation": n_valid,
            "first_blend_id": TRAIN_ID_START, "seed": seed, "epochs": epochs, "batch_size": int(batch_size),
            "filters": [int(f) for f in filters], "learning_rate": learning_rate, "target_sigma": target_sigma,
            "image_size": size, "precision": precision, "loss": [float(v) for v in history.history["loss"]],
            "validation": scores, "thresholds": table, "seconds_simulation": simulated,
            "seconds_training": trained}
    write_json_atomic(run / "detector.json", info)
    log.info("detector: %d blends, %d epochs in %.0f s; validation at threshold %.2f: precision %.3f, recall %.3f, "
             "exact %.3f", n_blends, epochs, trained, scores["threshold"], scores["precision"] or 0.0,
             scores["recall"] or 0.0, scores["exact"])
    return info


def ensure_detector(run_dir, config=None, progress: bool = True) -> Detector | None:
    """The run's detector as its configuration asks for it, trained first when missing or stale.

    ``analysis.detector_blends`` of ``config`` (default: the run's ``config.yaml``) blends and
    ``analysis.detector_epochs`` epochs; a ``detector.json`` recording other settings, another seed
    or image size is stale and the detector is retrained. ``detector_blends: 0`` gives None (peak
    detection).
    """
    from .runs import RunDir, read_json

    run = RunDir(run_dir)
    config = config or run.load_config()
    wanted = {"n_blends": int(config.analysis.detector_blends), "epochs": int(config.analysis.detector_epochs),
              "seed": int(config.seed), "image_size": int(config.model.image_size)}
    if not wanted["n_blends"]:
        return None
    info_path = run / "detector.json"
    if (run / DETECTOR_FILE).is_file() and info_path.is_file():
        recorded = read_json(info_path)
        if all(recorded.get(key) == value for key, value in wanted.items()):
            return load_detector(run.path)
        log.info("%s: trained with other settings; training the detector again", info_path)
    train_detector(run.path, n_blends=wanted["n_blends"], epochs=wanted["epochs"], seed=wanted["seed"],
                   overwrite=True, progress=progress)
    return load_detector(run.path)


def resolve_detector(run_dir, detector="auto") -> Detector | None:
    """``"auto"``: the run's trained detector if it has one, else None; ``"learned"``: the run's
    detector (an error without one); ``"peaks"`` or None: None; a :class:`Detector` as it is."""
    from .runs import RunDir

    if detector is None or isinstance(detector, Detector):
        return detector
    if detector not in ("auto", "learned", "peaks"):
        raise AvaderError(f"detector: must be 'auto', 'learned' or 'peaks', got {detector!r}")
    if detector == "peaks" or (detector == "auto" and not (RunDir(run_dir) / DETECTOR_FILE).is_file()):
        return None
    return load_detector(run_dir)
