"""Encoder, decoder, Gaussian-mixture prior and the VaDE ``keras.Model`` of AstroVaDEr.

Keras 3 on the TensorFlow backend. Images are float32 ``(n, height, width, channels)`` in
[0, 1]; latents are ``(n, latent_dim)``; the mixture has ``n_components`` (K) diagonal
Gaussians in the latent space.

How training code uses it::

    model = build_vade(ModelConfig(...), seed=0)       # weights exist after this
    model.compile(optimizer=keras.optimizers.Adam(3e-4))
    model.set_mode("vae", latent_weight=1.0)          # phase 1: VAE warm-up ("ae": deterministic)
    model.fit(dataset, epochs=...)
    mean, log_var = model.encode(images)              # phase 2: fit a diagonal GMM to the means
    model.prior.set_mixture(gmm.weights_, gmm.means_, gmm.covariances_)
    model.set_mode("vade", latent_weight=0.3)         # phase 3; a callback anneals the weight with
    model.latent_weight.assign(0.45)                  # no recompilation
    gamma = model.responsibilities(images)            # (n, K), rows sum to 1

Modes (``model.mode``, stored in a non-trainable variable so that one traced ``train_step``
serves all of them and ``set_mode`` works after ``compile``; the latent term is blended
arithmetically with 0/1 indicators, so nothing is retraced):

``"ae"``    z = latent mean, no latent term (``kl_loss`` reports 0);
``"vae"``   z sampled, latent term = KL(q(z|x) || N(0, I));
``"vade"``  z sampled, latent term = the VaDE term of PAPER.md, gamma computed from that same z.

In ``"ae"`` and ``"vae"`` the mixture receives exactly zero gradient, so it stays frozen (as long
as the optimizer holds no momentum for it from an earlier ``"vade"`` phase).
Per batch (float32, also under ``mixed_bfloat16``)::

    loss = reconstruction_loss + latent_weight * kl_loss + sum(model.losses)    # L2 penalties
           [+ balance_weight * KL(mean_batch gamma || theta), "vade" only, off by default]

with ``reconstruction_loss`` the batch mean of the per-image sum of squared errors (each pixel's
weighted by :func:`centre_weights` when ``model.centre_weight`` is set, a Python float read when
the step is traced; 0, uniform, reproduces the published loss) and
``kl_loss`` the batch mean of the mode's latent term. The VaDE term keeps upstream's constant:
it equals KL(q(z, c | x) || p(z, c)) + latent_dim / 2 * log(2 pi). Training samples z (except
``"ae"``); ``test_step`` and ``call(training=False)`` use the latent mean, so evaluation is
deterministic. The optional balance term (``model.balance_weight``, a Python float set before
``compile``; 0 reproduces the published loss) asks the batch's aggregate posterior over components
to match the mixture weights theta (held constant in that term), as the generative model implies
(E_x q(c | x) = p(c)): it resists one component absorbing the others (per replica under
``tf.distribute``). Under ``tf.distribute`` each replica's mean loss is divided by the number of
replicas before the gradients are summed, as Keras does for compiled losses.

The original authors' weights: ``load_published_model(h5_path)``, i.e. :func:`build_vade` with
:func:`published_model_config` (TF1-style bilinear upsampling) and :func:`load_published_weights`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras
import numpy as np
from keras import ops

from .config import ModelConfig
from .errors import AvaderError

__all__ = [
    "MODES",
    "ModelConfig",
    "GaussianMixturePrior",
    "LegacyBilinearUpSampling2D",
    "VaDE",
    "build_encoder",
    "build_decoder",
    "build_vade",
    "centre_weights",
    "published_model_config",
    "load_published_weights",
    "load_published_model",
]

logger = logging.getLogger(__name__)

LOG_2PI = math.log(2.0 * math.pi)
MODES = ("ae", "vae", "vade")


def published_model_config() -> ModelConfig:
    """The configuration of the published weights: defaults with TF1-style bilinear upsampling.

    Keras 2.3.1 upsampled with ``tf.image.resize_bilinear`` (no half-pixel centres); decoding
    the published weights with it reproduces the network the authors trained.
    """
    return ModelConfig(upsampling="bilinear_legacy")


@keras.saving.register_keras_serializable(package="avader")
class LegacyBilinearUpSampling2D(keras.layers.Layer):
    """Factor-2 bilinear upsampling of TF1 ``resize_bilinear`` (``align_corners=False``,
    ``half_pixel_centers=False``): ``out[2i] = in[i]``, ``out[2i+1] = (in[i] + in[min(i+1, n-1)]) / 2``.

    Input ``(b, h, w, c)``, output ``(b, 2h, 2w, c)``, channels last.
    """

    def call(self, x):
        return self._double(self._double(x, axis=1), axis=2)

    @staticmethod
    def _double(x, axis):
        if axis == 1:
            following = ops.concatenate([x[:, 1:], x[:, -1:]], axis=1)
        else:
            following = ops.concatenate([x[:, :, 1:], x[:, :, -1:]], axis=2)
        out = ops.stack([x, 0.5 * (x + following)], axis=axis + 1)
        shape = [-1, *x.shape[1:]]
        shape[axis] = 2 * shape[axis]
        return ops.reshape(out, shape)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


@keras.saving.register_keras_serializable(package="avader")
class GaussianMixturePrior(keras.layers.Layer):
    """Diagonal Gaussian mixture p(z) = sum_c theta_c N(z | u_c, lambda_c), always float32.

    Weights: ``theta_logits`` (K,) with theta = softmax(theta_logits); ``means`` (D, K) (upstream
    ``u_p`` layout); ``log_variances`` (D, K) with lambda = exp(log_variances) > 0.
    Calling the layer on z ``(b, D)`` returns the exact responsibilities ``(b, K)``.
    """

    def __init__(self, latent_dim, n_components, seed=None, name="latentGMM_Layer", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(name=name, **kwargs)
        self.latent_dim = int(latent_dim)
        self.n_components = int(n_components)
        self.seed = seed
        self.theta_logits = self.add_weight(shape=(self.n_components,), initializer="zeros", name="theta_logits")
        self.means = self.add_weight(shape=(self.latent_dim, self.n_components),
                                     initializer=keras.initializers.RandomNormal(stddev=1.0, seed=seed),
                                     name="means")
        self.log_variances = self.add_weight(shape=(self.latent_dim, self.n_components), initializer="zeros",
                                             name="log_variances")
        self.built = True

    def call(self, z):
        return self.responsibilities(z)

    def log_prob_components(self, z):
        """log p(c) + log N(z | u_c, lambda_c) for latents ``z`` (b, D); returns (b, K) float32."""
        z = ops.cast(z, "float32")
        diff = ops.expand_dims(z, -1) - ops.expand_dims(self.means, 0)
        log_pdf = -0.5 * ops.sum(LOG_2PI + self.log_variances + ops.square(diff) * ops.exp(-self.log_variances),
                                 axis=1)
        return ops.expand_dims(ops.log_softmax(self.theta_logits), 0) + log_pdf

    def log_prob(self, z):
        """Mixture log density log p(z) for ``z`` (b, D); returns (b,) float32."""
        return ops.logsumexp(self.log_prob_components(z), axis=-1)

    def responsibilities(self, z):
        """Exact p(c | z) by log-sum-exp for ``z`` (b, D); returns (b, K) float32, rows summing to 1."""
        return ops.softmax(self.log_prob_components(z), axis=-1)

    def set_mixture(self, weights, means, variances) -> None:
        """Set the mixture from arrays in scikit-learn's layout.

        Parameters
        ----------
        weights : array_like, shape (K,)
            Mixture weights, positive (normalised here).
        means : array_like, shape (K, D)
            Component means (``GaussianMixture.means_``).
        variances : array_like, shape (K, D)
            Diagonal variances, positive (``GaussianMixture.covariances_`` with ``covariance_type="diag"``).
        """
        k, d = self.n_components, self.latent_dim
        weights = np.asarray(weights, dtype=np.float64)
        means = np.asarray(means, dtype=np.float64)
        variances = np.asarray(variances, dtype=np.float64)
        for key, value, shape in (("weights", weights, (k,)), ("means", means, (k, d)),
                                  ("variances", variances, (k, d))):
            if value.shape != shape:
                raise AvaderError(f"set_mixture {key}: expected shape {shape} (components, latent dims), "
                                  f"got {value.shape}")
            if not np.all(np.isfinite(value)):
                raise AvaderError(f"set_mixture {key}: values must be finite")
        if np.any(weights <= 0) or np.any(variances <= 0):
            raise AvaderError("set_mixture: weights and variances must be positive")
        self.theta_logits.assign(np.log(weights / weights.sum()).astype(np.float32))
        self.means.assign(means.T.astype(np.float32))
        self.log_variances.assign(np.log(variances.T).astype(np.float32))

    def get_mixture(self) -> dict:
        """``{"weights": (K,), "means": (K, D), "variances": (K, D)}`` as float32 numpy arrays."""
        logits = keras.ops.convert_to_numpy(self.theta_logits).astype(np.float64)
        weights = np.exp(logits - logits.max())
        return {
            "weights": (weights / weights.sum()).astype(np.float32),
            "means": keras.ops.convert_to_numpy(self.means).T.copy(),
            "variances": np.exp(keras.ops.convert_to_numpy(self.log_variances)).T.copy(),
        }

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update(latent_dim=self.latent_dim, n_components=self.n_components, seed=self.seed)
        return config


def _seeds(seed, stream):
    """Deterministic distinct integer seeds for the initialisers of one network."""
    rng = np.random.default_rng([int(seed), stream])
    while True:
        yield int(rng.integers(0, 2**31 - 1))


def _layer_kwargs(config, seeds):
    reg = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
    return dict(kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                kernel_regularizer=reg, bias_regularizer=reg)


def _conv(x, filters, kernel, name, config, seeds, activation=None):
    x = keras.layers.Conv2D(filters, kernel, padding="same", activation=activation, name=name,
                            **_layer_kwargs(config, seeds))(x)
    return x if activation else keras.layers.LeakyReLU(config.leaky_relu_slope, name=f"{name}_act")(x)


def _dense(x, units, name, config, seeds, activation=None):
    x = keras.layers.Dense(units, activation=activation, name=name, **_layer_kwargs(config, seeds))(x)
    return x if activation else keras.layers.LeakyReLU(config.leaky_relu_slope, name=f"{name}_act")(x)


def build_encoder(config: ModelConfig, seed: int = 0) -> keras.Model:
    """Functional encoder: images ``(b, s, s, channels)`` -> ``[mean, log_var]``, each ``(b, latent_dim)``.

    ``conv``: per block two convolutions (``Conv1``, ``Conv2``, ...) and a 2x2 max-pool
    (``Pool1``, ...), then ``Flat``; ``dense``: ``Flat`` then ``Dense1``... Both end in the
    linear layers ``latentmean`` and ``latentlog_var``.
    """
    seeds = _seeds(seed, 0)
    s = config.image_size
    inputs = keras.Input((s, s, config.channels), name="encoder_input")
    x = inputs
    if config.architecture == "conv":
        n = 0
        for block, (filters, kernel) in enumerate(zip(config.filters, config.kernel_sizes, strict=True), start=1):
            for _ in range(2):
                n += 1
                x = _conv(x, filters, kernel, f"Conv{n}", config, seeds)
            x = keras.layers.MaxPooling2D(2, name=f"Pool{block}")(x)
        x = keras.layers.Flatten(name="Flat")(x)
    else:
        x = keras.layers.Flatten(name="Flat")(x)
        for i, units in enumerate(config.dense_units, start=1):
            x = _dense(x, units, f"Dense{i}", config, seeds)
    mean = keras.layers.Dense(config.latent_dim, name="latentmean", **_layer_kwargs(config, seeds))(x)
    log_var = keras.layers.Dense(config.latent_dim, name="latentlog_var", **_layer_kwargs(config, seeds))(x)
    return keras.Model(inputs, [mean, log_var], name="encoder")


def _upsample(x, config, name):
    if config.upsampling == "bilinear_legacy":
        return LegacyBilinearUpSampling2D(name=name)(x)
    return keras.layers.UpSampling2D(2, interpolation=config.upsampling, name=name)(x)


def build_decoder(config: ModelConfig, seed: int = 0) -> keras.Model:
    """Functional decoder: latents ``(b, latent_dim)`` -> images ``(b, s, s, channels)``.

    ``conv``: ``FC3`` (dense to s/2**n x s/2**n x filters[-1]), ``reshape``, then per block
    (filters reversed) two convolutions of ``decoder_kernel_size`` and a x2 upsampling
    (``Up1``, ...), and the ``Output`` convolution; ``dense``: mirrored dense layers and a dense
    ``Output`` reshaped to an image.
    """
    seeds = _seeds(seed, 1)
    s, c = config.image_size, config.channels
    z = keras.Input((config.latent_dim,), name="decoder_input")
    if config.architecture == "conv":
        n_blocks = len(config.filters)
        s0 = s // 2**n_blocks
        x = _dense(z, s0 * s0 * config.filters[-1], "FC3", config, seeds)
        x = keras.layers.Reshape((s0, s0, config.filters[-1]), name="reshape")(x)
        n = 2 * n_blocks
        for block, filters in enumerate(reversed(config.filters), start=1):
            for _ in range(2):
                n += 1
                x = _conv(x, filters, config.decoder_kernel_size, f"Conv{n}", config, seeds)
            x = _upsample(x, config, f"Up{block}")
        out = _conv(x, c, config.output_kernel_size, "Output", config, seeds, activation=config.output_activation)
    else:
        x = z
        n_hidden = len(config.dense_units)
        for i, units in enumerate(reversed(config.dense_units), start=n_hidden + 1):
            x = _dense(x, units, f"Dense{i}", config, seeds)
        x = _dense(x, s * s * c, "Output", config, seeds, activation=config.output_activation)
        out = keras.layers.Reshape((s, s, c), name="reshape")(x)
    return keras.Model(z, out, name="decoder")


def centre_weights(size: int, width: float) -> np.ndarray:
    """Pixel weights (size, size) float32 of the reconstruction term: a Gaussian of standard deviation
    ``width * size`` pixels about the stamp's centre, 1 there; ``width`` 0 gives uniform weights.

    The simulated and survey stamps are centred on the galaxy being classified; companions and
    field sources lie towards the edges. Weighting the squared errors towards the centre makes the
    latents describe the central galaxy rather than its neighbours (``training.centre_weight``).
    """
    if width < 0 or not math.isfinite(width):
        raise AvaderError(f"centre_weight: must be 0 (uniform) or a positive width, got {width}")
    if width == 0:
        return np.ones((size, size), np.float32)
    offset = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    r2 = offset[:, None] ** 2 + offset[None, :] ** 2
    return np.exp(-0.5 * r2 / (width * size) ** 2).astype(np.float32)


def _s3vdc_log_gamma(log_p):
    """Upstream (s3VDC) responsibilities: min-max rescale of -log p over the whole batch, x -50, softmax."""
    neg = -log_p
    low, high = ops.min(neg), ops.max(neg)
    return ops.log_softmax((neg - low) / (high - low + 1e-12) * -50.0, axis=-1)


def _scale_for_replicas(loss):
    """Divide a per-replica mean loss by the replica count (gradients are summed across replicas)."""
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


@keras.saving.register_keras_serializable(package="avader")
class VaDE(keras.Model):
    """Variational deep embedding: encoder, decoder and Gaussian-mixture prior (see the module docstring).

    Parameters
    ----------
    model_config : ModelConfig or dict
        Network settings (validated).
    seed : int
        Seeds the initialisers and the :class:`keras.random.SeedGenerator` of the z sampling.

    Attributes
    ----------
    encoder, decoder : keras.Model
        From :func:`build_encoder` and :func:`build_decoder`.
    prior : GaussianMixturePrior
        The mixture (layer name ``latentGMM_Layer``).
    latent_weight : keras.Variable, float32 scalar, non-trainable
        Multiplies the latent term; assign to anneal it during training.
    mode_variable : keras.Variable, float32 scalar, non-trainable
        Index into ``MODES``; use :meth:`set_mode` and :attr:`mode`.
    """

    def __init__(self, model_config=None, seed=0, name="vade", **kwargs):
        super().__init__(name=name, **kwargs)
        if model_config is None:
            model_config = ModelConfig()
        elif isinstance(model_config, dict):
            model_config = ModelConfig(**model_config)
        model_config.validate()
        self.model_config = model_config
        self.seed = int(seed)
        self.encoder = build_encoder(model_config, seed=self.seed)
        self.decoder = build_decoder(model_config, seed=self.seed)
        self.prior = GaussianMixturePrior(model_config.latent_dim, model_config.n_components, seed=self.seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        constant = keras.initializers.Constant
        self.mode_variable = self.add_weight(shape=(), dtype="float32", initializer=constant(float(MODES.index("vae"))),
                                             trainable=False, name="mode")
        self.latent_weight = self.add_weight(shape=(), dtype="float32", initializer=constant(1.0),
                                             trainable=False, name="latent_weight")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.latent_weight_tracker = keras.metrics.Mean(name="latent_weight")
        self.balance_weight = 0.0  # Python float, read when train_step is traced: set it before compile
        self.centre_weight = 0.0  # likewise: width of the squared errors' Gaussian pixel weight (0 = uniform)
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker, self.latent_weight_tracker]

    @property
    def mode(self) -> str:
        """Current mode: ``"ae"``, ``"vae"`` or ``"vade"``."""
        return MODES[int(round(float(ops.convert_to_numpy(self.mode_variable))))]

    def set_mode(self, mode: str, latent_weight: float | None = None) -> None:
        """Switch the loss to ``mode`` (works after ``compile``); optionally set ``latent_weight``."""
        if mode not in MODES:
            raise AvaderError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode_variable.assign(float(MODES.index(mode)))
        if latent_weight is not None:
            self.latent_weight.assign(float(latent_weight))

    @staticmethod
    def _as_images(x):
        x = ops.convert_to_tensor(x)
        return ops.expand_dims(x, -1) if len(x.shape) == 3 else x

    def encode(self, images, training=False):
        """Latent posterior of ``images`` (n, s, s, channels) or (n, s, s): ``(mean, log_var)``, (n, D) float32."""
        mean, log_var = self.encoder(self._as_images(images), training=training)
        return ops.cast(mean, "float32"), ops.cast(log_var, "float32")

    def decode(self, z, training=False):
        """Images (n, s, s, channels) decoded from latents ``z`` (n, D), in the compute dtype."""
        return self.decoder(ops.convert_to_tensor(z), training=training)

    def _sample(self, mean, log_var, training):
        if not training:
            return mean
        eps = keras.random.normal(ops.shape(mean), dtype="float32", seed=self.seed_generator)
        stochastic = ops.not_equal(self.mode_variable, float(MODES.index("ae")))
        return ops.where(stochastic, mean + ops.exp(0.5 * log_var) * eps, mean)

    def call(self, inputs, training=False):
        """Reconstruction of ``inputs`` (b, s, s, channels): from a sampled z in training, else from the mean."""
        mean, log_var = self.encode(inputs, training=training)
        return self.decode(self._sample(mean, log_var, bool(training)), training=training)

    def _log_gamma(self, z):
        log_p = self.prior.log_prob_components(z)
        if self.model_config.gamma_mode == "s3vdc":
            return _s3vdc_log_gamma(log_p)
        return log_p - ops.logsumexp(log_p, axis=-1, keepdims=True)

    def responsibilities(self, x):
        """gamma = q(c | x), (n, K) float32, for images (n, s, s[, channels]) or latent means (n, D).

        ``gamma_mode="exact"``: p(c | z = mean) by log-sum-exp. ``"s3vdc"``: upstream's batch
        min-max softmax, which depends on the whole batch passed in.
        """
        x = ops.convert_to_tensor(x)
        mean = x if len(x.shape) == 2 else self.encode(x)[0]
        return ops.exp(self._log_gamma(ops.cast(mean, "float32")))

    def vade_latent_term(self, mean, log_var, z, log_gamma=None):
        """Per-sample VaDE latent term of PAPER.md, (b,) float32; gamma from ``z`` (b, D), or the
        given ``log_gamma`` (b, K) when the caller already has it."""
        prior = self.prior
        log_gamma = self._log_gamma(z) if log_gamma is None else log_gamma
        gamma = ops.exp(log_gamma)
        log_theta = ops.expand_dims(ops.log_softmax(prior.theta_logits), 0)
        diff2 = ops.square(ops.expand_dims(mean, -1) - ops.expand_dims(prior.means, 0))
        quad = (diff2 + ops.expand_dims(ops.exp(log_var), -1)) * ops.exp(-prior.log_variances)
        per_component = ops.sum(LOG_2PI + prior.log_variances + quad, axis=1)
        return (-0.5 * ops.sum(1.0 + log_var, axis=-1) - ops.sum(gamma * log_theta, axis=-1)
                + ops.sum(gamma * log_gamma, axis=-1) + 0.5 * ops.sum(gamma * per_component, axis=-1))

    def per_sample_losses(self, images, training=False):
        """``{"reconstruction": (b,), "latent": (b,)}`` float32 for the current mode (latent unweighted)."""
        x = ops.cast(self._as_images(images), "float32")
        mean, log_var = self.encode(x, training=training)
        z = self._sample(mean, log_var, bool(training))
        reconstruction = ops.cast(self.decode(z, training=training), "float32")
        n_pixels = math.prod(x.shape[1:])
        if self.centre_weight:
            weights = ops.convert_to_tensor(centre_weights(x.shape[1], self.centre_weight)[None, :, :, None])
            sse = ops.sum(weights * ops.square(x - reconstruction), axis=(1, 2, 3))
        else:
            sse = ops.mean(ops.square(x - reconstruction), axis=(1, 2, 3)) * float(n_pixels)
        kl_normal = -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)
        is_vae = ops.cast(ops.equal(self.mode_variable, float(MODES.index("vae"))), "float32")
        is_vade = ops.cast(ops.equal(self.mode_variable, float(MODES.index("vade"))), "float32")
        log_gamma = self._log_gamma(z)
        latent = is_vae * kl_normal + is_vade * self.vade_latent_term(mean, log_var, z, log_gamma)
        return {"reconstruction": sse, "latent": latent, "log_gamma": log_gamma}

    def balance_term(self, log_gamma):
        """KL(mean over the batch of gamma || theta), a scalar: 0 when the batch's occupation of the
        components equals the mixture weights (held constant here). ``log_gamma`` (b, K)."""
        occupation = ops.mean(ops.exp(log_gamma), axis=0)
        log_theta = ops.stop_gradient(ops.log_softmax(self.prior.theta_logits))
        return ops.sum(occupation * (ops.log(occupation + 1e-12) - log_theta))

    def _batch_loss(self, data, training):
        x = keras.utils.unpack_x_y_sample_weight(data)[0]
        terms = self.per_sample_losses(x, training=training)
        reconstruction = ops.mean(terms["reconstruction"])
        latent = ops.mean(terms["latent"])
        loss = reconstruction + self.latent_weight * latent
        if self.balance_weight:
            is_vade = ops.cast(ops.equal(self.mode_variable, float(MODES.index("vade"))), "float32")
            loss = loss + float(self.balance_weight) * is_vade * self.balance_term(terms["log_gamma"])
        if self.losses:
            loss = loss + ops.sum(ops.stack([ops.cast(term, "float32") for term in self.losses]))
        return x, loss, reconstruction, latent

    def _update_metrics(self, x, loss, reconstruction, latent):
        batch = ops.cast(ops.shape(x)[0], "float32")
        self.loss_tracker.update_state(loss, sample_weight=batch)
        self.reconstruction_tracker.update_state(reconstruction, sample_weight=batch)
        self.kl_tracker.update_state(latent, sample_weight=batch)
        self.latent_weight_tracker.update_state(self.latent_weight, sample_weight=batch)
        if _multi_worker(self.distribute_strategy):
            # Keras reduces multi-worker logs with strategy.reduce(MEAN, axis=0), which needs a batch
            # axis: give every log a length-1 axis there (the progress bar and callbacks average it).
            return {m.name: ops.reshape(m.result(), (1,)) for m in self.metrics}
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            x, loss, reconstruction, latent = self._batch_loss(data, training=True)
            scaled = self.optimizer.scale_loss(_scale_for_replicas(loss))
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
        return self._update_metrics(x, loss, reconstruction, latent)

    def test_step(self, data):
        x, loss, reconstruction, latent = self._batch_loss(data, training=False)
        return self._update_metrics(x, loss, reconstruction, latent)

    def get_config(self):
        return {"name": self.name, "model_config": self.model_config.to_dict(), "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def build_vade(config: ModelConfig | None = None, seed: int = 0) -> VaDE:
    """A built :class:`VaDE` (weights created and initialised from ``seed``), mode ``"vae"``."""
    return VaDE(config if config is not None else ModelConfig(), seed=seed)


def _read_keras2_weights(f, path):
    """``{layer: {weight name: array}}`` from a Keras 2 HDF5 weights file (layers without weights skipped)."""
    group = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in group.attrs:
        raise AvaderError(f"{path}: not a Keras 2 HDF5 weights file (no layer_names attribute)")
    stored = {}
    for raw in group.attrs["layer_names"]:
        layer = raw.decode() if isinstance(raw, bytes) else str(raw)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group[layer].attrs.get("weight_names", [])]
        if names:
            stored[layer] = {name.split("/")[-1]: np.asarray(group[layer][name]) for name in names}
    return stored


def _published_targets(model):
    """``[(layer name, {stored weight name: (variable, transform)})]`` in model order."""
    targets = []
    for network in (model.encoder, model.decoder):
        for layer in network.layers:
            if layer.weights:
                targets.append((layer.name, {f"{v.name}:0": (v, None) for v in layer.weights}))
    prior = model.prior
    targets.append((prior.name, {
        "theta_p:0": (prior.theta_logits, lambda theta: np.log(theta / theta.sum())),
        "u_p:0": (prior.means, None),
        "lambda_p:0": (prior.log_variances, np.log),
    }))
    return targets


def load_published_weights(model: VaDE, h5_path) -> list[str]:
    """Copy the original AstroVaDEr weights (Keras 2.3.1 HDF5) into ``model``; returns the layers loaded.

    Every stored weight must fit a model weight of the same layer name and shape and every model
    weight must be stored, else :class:`AvaderError` names the file and the first layer that does
    not fit (in model order), or the first stored layer without a counterpart. Nothing is assigned
    unless everything fits. ``theta_p`` is normalised (logits = log(theta / sum theta)) and
    ``lambda_p`` stored as log variances. Use with :func:`published_model_config`.
    """
    import h5py

    path = Path(h5_path)
    if not path.is_file():
        raise AvaderError(f"{path}: weights file not found")
    try:
        with h5py.File(path, "r") as f:
            stored = _read_keras2_weights(f, path)
    except OSError as err:
        raise AvaderError(f"{path}: cannot read as HDF5 ({err})") from None
    assignments = []
    for layer, weights in _published_targets(model):
        if layer not in stored:
            raise AvaderError(f"{path}: layer {layer!r} is missing from the file")
        if set(stored[layer]) != set(weights):
            raise AvaderError(f"{path}: layer {layer!r} stores {sorted(stored[layer])}, "
                              f"the model expects {sorted(weights)}")
        for name, (variable, transform) in weights.items():
            value = stored[layer][name].astype(np.float64)
            if value.shape != tuple(variable.shape):
                raise AvaderError(f"{path}: layer {layer!r} weight {name} has shape {value.shape} in the file, "
                                  f"{tuple(variable.shape)} in the model")
            if transform is not None:
                if np.any(value <= 0):
                    raise AvaderError(f"{path}: layer {layer!r} weight {name} must be positive")
                value = transform(value)
            if not np.all(np.isfinite(value)):
                raise AvaderError(f"{path}: layer {layer!r} weight {name} has non-finite values")
            assignments.append((variable, value))
    expected = {layer for layer, _ in _published_targets(model)}
    extra = [layer for layer in stored if layer not in expected]
    if extra:
        raise AvaderError(f"{path}: layer {extra[0]!r} in the file has no counterpart in the model")
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    if model.model_config.upsampling != "bilinear_legacy":
        logger.warning("%s: the published decoder used TF1 bilinear upsampling; decoding with %r shifts images "
                       "by about 3 pixels (use published_model_config())", path, model.model_config.upsampling)
    logger.info("loaded %d weight arrays of %d layers from %s", len(assignments), len(stored), path)
    return list(stored)


def load_published_model(h5_path, seed: int = 0) -> VaDE:
    """:func:`build_vade` with :func:`published_model_config`, the weights of ``h5_path`` loaded,
    mode ``"vade"`` and latent weight 0.3 (AstroVaDEr's scale)."""
    model = build_vade(published_model_config(), seed=seed)
    load_published_weights(model, h5_path)
    model.set_mode("vade", latent_weight=0.3)
    return model
