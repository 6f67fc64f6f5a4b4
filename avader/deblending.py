"""Deblending with the generative model, and a blend benchmark against classical deblenders.

The blend model (one blend, ``N`` sources, pixel coordinates ``x`` = column, ``y`` = row)::

    blend(x, y) = b + sum_k a_k * S_k(x, y) + noise,     noise ~ N(0, sigma^2 + (e * L(x, y))^2)
    S_k = G_k * warp(t_k; x_k, y_k, s_k), normalised to unit sum
    t_k = decode(z_k) - pedestal, clipped at 0

``t_k`` is the decoded galaxy, centred in the stamp at the model's scale (each training galaxy
spans 3.84 R90); :func:`warp` zooms it by ``s_k`` about the stamp centre and moves its centre to
``(x_k, y_k)`` with an antialiased bilinear resampler written as two matrix products (exact
gradients in the positions, zooms and latents); ``G_k`` is a Gaussian blur that restores the
blend's PSF in shrunk templates (``s_k < 1`` shrinks the template's PSF too; only with
``psf_fwhm``). ``a_k`` is the source's flux inside the stamp (stored units), ``b`` the sky, known
or fitted. ``e`` (``model_error``, default 0.3) is the templates' fractional error and ``L`` the
blend's light above the sky: with pixel noise alone a galaxy observed at high S/N is fitted to its
core, where the decoder is least exact, and a template that misses the core shrinks to fit it and
hands its wings to the neighbours; the error term weighs the core's pixels down to the templates'
accuracy. For given shapes the fluxes (and the sky) are the linear least-squares solution
(solved in every step and differentiated through, so the optimiser only moves shapes); the
latents, centres and log zooms minimise, by Adam with a cosine-decayed step and a tolerance on
the relative loss change,

    loss = chi^2 / 2 - prior_weight * sum_k log p_mixture(z_k) + sum_k (log s_k - log s0_k)^2 / (2 w_k^2)

with ``p_mixture`` the model's learned Gaussian mixture and a log-normal prior on each zoom
(the brightest source near 1, because the field is scaled to the main galaxy as in training).
Centres come from a learned detector (``detector``, :mod:`avader.detector`: a network trained on
simulated blends) or from peak detection (:func:`detect`, photutils segmentation + deblending)
unless given; the latents start from the encoding of a cutout around each centre (other segments
masked, zoomed to the model scale), the zooms from the segment sizes relative to the brightest
source. With peak detection, sources significant in the residual (against the noise and the error
of the light already modelled) are then added and the blend refitted (``refine``, ``refine_gain``:
pairs closer than detection separates); where the residual is clean, light that breaks the
brightest galaxy's 180-degree symmetry is searched too (``symmetry``: companions that the decoder
draws into the galaxy's template); detected sources fainter than ``min_flux_ratio`` of the brightest are folded into their host.
Fluxes are by default the shares of the blend's light above the sky (``photometry="data"``,
flux-conserving): each pixel is shared in proportion to the fitted models, each capped by the
source's own light (the blend less the other sources' models) at the pixel's mirror point about
its centre (``shares="symmetric"``, the SDSS deblender's symmetric templates as a bound on the
decoder's), so a template that spills into a neighbour does not take its light. Source images
are the fitted models scaled to those fluxes. With ``augment`` (2 or 4) each blend is also fitted
mirrored (the decoder is not symmetric under flips, so the template errors of the fits differ)
and each source's image, flux and centre are averaged over the fits.

:func:`remove_companion` is the simple operation of the paper: encode a galaxy with a companion
and decode it from the nearest companion-free mixture component. :func:`benchmark` measures the
deblender and the photutils and sep baselines on simulated blend sets with ground truth.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path

import numpy as np

from .errors import AvaderError

__all__ = [
    "SEPARATION_BINS",
    "FLUX_RATIO_BINS",
    "warp",
    "estimate_noise",
    "detect",
    "deblend",
    "remove_companion",
    "companion_components",
    "deblend_run",
    "load_image",
    "photutils_deblend",  # noqa: F822 (re-exported from deblend_benchmark by __getattr__)
    "sep_deblend",  # noqa: F822 (re-exported from deblend_benchmark by __getattr__)
    "source_metrics",  # noqa: F822 (re-exported from deblend_benchmark by __getattr__)
    "match_sources",  # noqa: F822 (re-exported from deblend_benchmark by __getattr__)
    "benchmark",  # noqa: F822 (re-exported from deblend_benchmark by __getattr__)
    "benchmark_run",  # noqa: F822 (re-exported from deblend_benchmark by __getattr__)
]

log = logging.getLogger(__name__)

SEPARATION_BINS = (0.0, 1.0, 2.0, 3.0, math.inf)  # units of the brighter galaxy's half-light radius
FLUX_RATIO_BINS = (0.0, 0.3, 0.6, 1.0 + 1e-9)     # faint / bright flux
_BORDER = 4  # pixels of the image frame used for background and noise estimates
_SHARE_FLOOR = 0.01  # data photometry ignores pixels where all models are below this many sigma
_CAP_FLOOR = 0.01  # symmetric shares keep at least this fraction of each model's weight
DEFAULT_MODEL_ERROR = 0.3  # fractional template error added to the pixel noise (deblend's model_error)
DEFAULT_SHARES = "symmetric"  # how data photometry shares a pixel among sources (deblend's shares)
DEFAULT_SYMMETRY = 8.0  # sigma of the refine pass's search for light breaking the main galaxy's symmetry
AUGMENTATIONS = {1: ("",), 2: ("", "x"), 4: ("", "x", "y", "xy")}  # deblend(augment=): the mirrored fits
_AUGMENT_MATCH = 3.0  # pixels: a mirrored fit's source pairs with the first fit's within this distance


# --------------------------------------------------------------------------- geometry
def _corner_size(size: int) -> int:
    """Side of the corner patches that define a decoded stamp's sky pedestal, pixels."""
    return max(2, size // 16)


def _resample_matrix(centre, zoom, n: int):
    """(m, n, n) matrices R with ``out[i] = sum_j R[i, j] in[j]`` sampling at ``centre + (i - c) / zoom``.

    Triangle kernel of width ``max(1, 1 / zoom)`` (bilinear when enlarging, area averaging when
    shrinking), zero outside the input. ``centre``, ``zoom``: (m,) tensors, input pixel units.
    """
    import tensorflow as tf

    c = (n - 1) / 2.0
    grid = tf.range(n, dtype=tf.float32)
    where = centre[:, None] + (grid[None, :] - c) / zoom[:, None]          # (m, n) input coordinates
    k = tf.minimum(zoom, 1.0)[:, None, None]
    distance = tf.abs(where[:, :, None] - grid[None, None, :])
    return k * tf.nn.relu(1.0 - k * distance)


def warp(images, x, y, zoom):
    """Zoom stamps about their centre by ``zoom`` and move the centre to ``(x, y)``.

    Output pixel ``(X, Y)`` takes the input at ``(c + (X - x) / zoom, c + (Y - y) / zoom)``,
    ``c = (size - 1) / 2``, by bilinear interpolation (``zoom >= 1``) or area-averaging triangle
    weights (``zoom < 1``); outside the input counts as zero. Differentiable in every argument.

    Parameters
    ----------
    images : array_like or tf.Tensor, shape (m, height, width), float32
    x, y : array_like, shape (m,)
        Output position of the stamp centre, pixels (x: column, y: row).
    zoom : array_like, shape (m,)
        Scale factor (> 0): 0.5 halves the galaxy's size.

    Returns
    -------
    tf.Tensor, shape (m, height, width), float32
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    x, y, zoom = (tf.reshape(tf.convert_to_tensor(v, tf.float32), [-1]) for v in (x, y, zoom))
    h, w = int(images.shape[1]), int(images.shape[2])
    ry = _resample_matrix((h - 1) / 2.0 - (y - (h - 1) / 2.0) / zoom, zoom, h)
    rx = _resample_matrix((w - 1) / 2.0 - (x - (w - 1) / 2.0) / zoom, zoom, w)
    return tf.matmul(tf.matmul(ry, images), rx, transpose_b=True)


def _gaussian_matrix(sigma, n: int):
    """(m, n, n) row-normalised Gaussian blur matrices of widths ``sigma`` (m,) pixels (tf)."""
    import tensorflow as tf

    grid = tf.range(n, dtype=tf.float32)
    d2 = tf.square(grid[:, None] - grid[None, :])
    kernel = tf.exp(-d2[None] / (2.0 * tf.square(tf.maximum(sigma, 0.05))[:, None, None]))
    return kernel / tf.reduce_sum(kernel, axis=2, keepdims=True)


def _cutout(images, x, y, zoom):
    """The inverse of :func:`warp`: stamps in the model frame of sources at (x, y) of size ``zoom``."""
    zoom = np.asarray(zoom, dtype=np.float32)
    h, w = images.shape[1:]
    c_y, c_x = (h - 1) / 2.0, (w - 1) / 2.0
    return warp(images, c_x - (np.asarray(x) - c_x) / zoom, c_y - (np.asarray(y) - c_y) / zoom, 1.0 / zoom)


# --------------------------------------------------------------------------- noise and detection
def estimate_noise(images) -> tuple[np.ndarray, np.ndarray]:
    """Background and noise sigma of each image's outer frame (:func:`avader.morphology.sky_noise`).

    Parameters
    ----------
    images : array_like, shape (n, height, width) or (height, width)

    Returns
    -------
    background, sigma : ndarray, shape (n,), float64 (stored units)
    """
    images = np.asarray(images, dtype=np.float64)
    images = images[None] if images.ndim == 2 else images
    frame = np.ones(images.shape[1:], bool)
    frame[_BORDER:-_BORDER, _BORDER:-_BORDER] = False
    from .morphology import sky_noise

    background, sigma = sky_noise(images[:, frame])
    return background, np.maximum(sigma, 1e-6)


def detect(image, noise_sigma: float | None = None, background: float | None = None, nsigma: float = 3.0,
           npixels: int = 5,
           smooth_fwhm: float = 2.0, contrast: float = 0.05, min_snr: float = 5.0,
           max_sources: int | None = None) -> dict:
    """Find sources in one image: photutils segmentation of the smoothed image, then deblending.

    Parameters
    ----------
    image : array_like, shape (height, width)
    noise_sigma : float, optional
        Pixel noise (stored units); default from the border (:func:`estimate_noise`).
    background : float, optional
        Sky level (stored units); default the border median.
    nsigma : float
        Detection threshold in units of the smoothed image's noise.
    npixels : int
        Minimum connected pixels of a source.
    smooth_fwhm : float
        FWHM of the Gaussian smoothing kernel, pixels.
    contrast : float
        photutils ``deblend_sources`` contrast (SExtractor's DEBLEND_MINCONT). The default 0.05
        (photutils: 0.001) stops star-forming knots of one galaxy becoming sources of their own.
    min_snr : float
        Drop segments whose S/N, flux / (sigma sqrt(area)), is below this (noise peaks, far knots).
    max_sources : int, optional
        Keep the brightest this many.

    Returns
    -------
    dict
        ``centres`` (m, 2) float64 (x, y) flux-weighted centroids, brightest first; ``fluxes`` (m,)
        segment fluxes above the background; ``sizes`` (m,) sqrt(Mxx + Myy) of the segment light,
        pixels; ``segmentation`` (height, width) int32, 0 = sky, k + 1 = source k; ``background``
        and ``noise_sigma`` (floats).
    """
    from photutils.segmentation import deblend_sources, detect_sources, make_2dgaussian_kernel
    from photutils.utils.exceptions import NoDetectionsWarning
    from scipy.ndimage import convolve

    image = np.asarray(image, dtype=np.float64)
    border_sky, sigma = (float(v[0]) for v in estimate_noise(image))
    sigma = float(noise_sigma) if noise_sigma is not None else sigma
    background = float(background) if background is not None else border_sky
    data = image - background
    kernel = make_2dgaussian_kernel(smooth_fwhm, size=2 * int(math.ceil(1.5 * smooth_fwhm)) + 1).array
    smoothed = convolve(data, kernel, mode="constant")
    threshold = nsigma * sigma * float(np.sqrt(np.sum(kernel**2)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segm = detect_sources(smoothed, threshold, n_pixels=npixels)
    labels = np.zeros(image.shape, np.int32)
    if segm is not None:
        if segm.n_labels > 0:
            segm = deblend_sources(smoothed, segm, n_pixels=npixels, contrast=contrast, progress_bar=False)
        labels = np.asarray(segm.data, np.int32)
    rows, cols = np.indices(image.shape)
    found = []
    for label in np.unique(labels[labels > 0]):
        sel = labels == label
        weights = np.clip(data[sel], 0.0, None)
        flux = float(weights.sum())
        if flux <= 0 or data[sel].sum() < min_snr * sigma * math.sqrt(sel.sum()):
            continue
        x = float(weights @ cols[sel] / flux)
        y = float(weights @ rows[sel] / flux)
        size = math.sqrt(float(weights @ ((cols[sel] - x) ** 2 + (rows[sel] - y) ** 2)) / flux)
        found.append((float(data[sel].sum()), x, y, max(size, 0.5), label))
    found.sort(key=lambda f: -f[0])
    found = found[:max_sources] if max_sources else found
    relabelled = np.zeros_like(labels)
    for k, (*_, label) in enumerate(found):
        relabelled[labels == label] = k + 1
    return {"centres": np.array([[f[1], f[2]] for f in found]).reshape(-1, 2),
            "fluxes": np.array([f[0] for f in found]), "sizes": np.array([f[3] for f in found]),
            "segmentation": relabelled, "background": background, "noise_sigma": sigma}


# --------------------------------------------------------------------------- the latent-space fit
def _regions(data: np.ndarray, segmentation: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Pixel ownership (h, w) int: k for source k, -1 unowned.

    A segment belongs to the centres that fall inside it (shared segments are split between
    them by nearest centre); segments without a centre and sky are unowned.
    """
    h, w = data.shape
    owner = np.full((h, w), -1, np.int32)
    if not len(centres):
        return owner
    rows, cols = np.indices((h, w))
    ix = np.clip(np.rint(centres[:, 0]).astype(int), 0, w - 1)
    iy = np.clip(np.rint(centres[:, 1]).astype(int), 0, h - 1)
    labels = segmentation[iy, ix]
    for label in np.unique(labels[labels > 0]):
        members = np.flatnonzero(labels == label)
        sel = segmentation == label
        d2 = [(cols[sel] - centres[k, 0]) ** 2 + (rows[sel] - centres[k, 1]) ** 2 for k in members]
        owner[sel] = members[np.argmin(np.stack(d2), axis=0)]
    return owner


def _initial_state(model, blends, centres_list, background, detections):
    """Packed starting values of every source: latents (S, D), centres (S, 2), zooms (S,), blend and slot (S,)
    and whether the source is its blend's brightest (S,), which sets the field's scale (zoom 1)."""
    n_blends, h, w = blends.shape
    rows, cols = np.indices((h, w))
    xy, zoom, blend, slot, cutouts, main = [], [], [], [], [], []
    for b in range(n_blends):
        centres = centres_list[b]
        if not len(centres):
            continue
        data = blends[b] - background[b]
        owner = _regions(data, detections[b]["segmentation"], centres)
        sizes, fluxes = [], []
        for k, (x, y) in enumerate(centres):
            light = np.clip(data, 0.0, None) * (owner == k)
            flux = light.sum()
            sizes.append(math.sqrt(float((light * ((cols - x) ** 2 + (rows - y) ** 2)).sum()) / flux)
                         if flux > 0 else math.nan)
            fluxes.append(flux)
            cutouts.append(data * ((owner == k) | (owner < 0)))
        sizes, fluxes = np.array(sizes), np.array(fluxes)
        ref = int(np.argmax(fluxes))
        ratio = sizes / sizes[ref] if np.isfinite(sizes[ref]) and sizes[ref] > 0 else np.full(len(centres), np.nan)
        fallback = np.sqrt(np.clip(fluxes / fluxes[ref], 0.01, 1.0)) if fluxes[ref] > 0 else np.ones(len(centres))
        zoom.extend(np.clip(np.where(np.isfinite(ratio), ratio, fallback), 0.15, 1.5))
        xy.extend(centres)
        blend.extend([b] * len(centres))
        slot.extend(range(len(centres)))
        main.extend(np.arange(len(centres)) == ref)
    xy = np.asarray(xy, np.float32).reshape(-1, 2)
    zoom = np.asarray(zoom, np.float32)
    latent_dim = int(model.model_config.latent_dim)
    z0 = np.zeros((len(xy), latent_dim), np.float32)
    for start in range(0, len(xy), 256):
        part = slice(start, start + 256)
        stamps = np.asarray(_cutout(np.asarray(cutouts[part], np.float32), xy[part, 0], xy[part, 1], zoom[part]))
        low = stamps.min(axis=(1, 2), keepdims=True)
        span = np.maximum(stamps.max(axis=(1, 2), keepdims=True) - low, 1e-12)
        z0[part] = np.asarray(model.encode((stamps - low) / span)[0])
    return z0, xy, zoom, np.asarray(blend, np.int32), np.asarray(slot, np.int32), np.asarray(main, bool)


class _BlendFit:
    """The differentiable model of a batch of blends; sources are packed (S of them over B blends)."""

    def __init__(self, model, shape, prior_weight: float, allowed_components=None, model_error: float = 0.0):
        import tensorflow as tf

        self.tf = tf
        self.decoder = model.decoder
        self.prior = model.prior
        self.h, self.w = shape
        self.prior_weight = float(prior_weight)
        self.model_error = float(model_error)
        k = model.prior.n_components
        mask = np.zeros(k, np.float32) if allowed_components is None else np.full(k, -1e9, np.float32)
        if allowed_components is not None:
            mask[list(allowed_components)] = 0.0
        self.component_mask = tf.constant(mask)
        d = int(model.model_config.latent_dim)
        spec = tf.TensorSpec
        f32, i32 = tf.float32, tf.int32
        params = [spec([None, d], f32), spec([None, 2], f32), spec([None], f32)]
        self.step = tf.function(self._step, input_signature=[
            params, [params, params], spec([None, self.h, self.w], f32), spec([None], f32), spec([None], f32),
            spec([None], f32), spec([None], i32), spec([None], i32), spec([None, 3], f32),
            spec([], f32), spec([], f32), spec([3], f32)])

    def templates(self, z):
        """Decoded stamps minus their sky pedestal, clipped at zero: (S, h, w).

        The pedestal (the sky level of the min-max stretched training images, which the decoder
        reproduces) is the faintest of the four corner patches' means: the corners of a training
        stamp (2.7 R90 from the galaxy) hold almost no galaxy light, and the smallest of four
        ignores a companion in one corner.
        """
        tf = self.tf
        stamps = tf.cast(self.decoder(z, training=False), tf.float32)[..., 0]
        c = _corner_size(self.h)
        corners = tf.stack([tf.reduce_mean(stamps[:, :c, :c], axis=(1, 2)), tf.reduce_mean(stamps[:, :c, -c:], axis=(1, 2)),
                            tf.reduce_mean(stamps[:, -c:, :c], axis=(1, 2)), tf.reduce_mean(stamps[:, -c:, -c:], axis=(1, 2))],
                           axis=1)
        return tf.nn.relu(stamps - tf.reduce_min(corners, axis=1)[:, None, None])

    def pixel_weights(self, flat, sigma, sky):
        """sigma^2 / (sigma^2 + (model_error * light)^2) per pixel, light = the blend above the sky."""
        tf = self.tf
        if not self.model_error:
            return tf.ones_like(flat)
        light = self.model_error * tf.nn.relu(flat - sky[:, None])
        return tf.square(sigma)[:, None] / (tf.square(sigma)[:, None] + tf.square(light))

    def evaluate(self, z, xy, log_zoom, data, sigma, sky, fit_sky, blend, slot, source_info):
        """Per-blend loss (B,) and its parts: unit-flux shapes (S, P), fluxes (S,), background, chi2 (B,).

        ``sky`` (B,) is the background where ``fit_sky`` (B,) is 0, the starting point where it is 1
        (then a constant is fitted with the fluxes). ``source_info`` (S, 3): centre and width of a
        Gaussian prior on each log zoom, and the PSF sigma (pixels) of the source's blend: a
        template shrunk by s has its PSF shrunk too, so it is blurred by a Gaussian of
        ``psf * sqrt(1 - s^2)`` to restore the blend's PSF (no correction when s >= 1).
        """
        tf = self.tf
        n_blends = tf.shape(data)[0]
        n_slots = tf.reduce_max(slot) + 1
        n_pix = self.h * self.w
        warped = warp(self.templates(z), xy[:, 0], xy[:, 1], tf.exp(log_zoom))
        blur = source_info[:, 2] * tf.sqrt(tf.nn.relu(1.0 - tf.exp(2.0 * log_zoom)) + 1e-4)
        gy, gx = _gaussian_matrix(blur, self.h), _gaussian_matrix(blur, self.w)
        shapes = tf.reshape(tf.matmul(tf.matmul(gy, warped), gx, transpose_b=True), [-1, n_pix])
        shapes = shapes / (tf.reduce_sum(shapes, axis=-1, keepdims=True) + 1e-12)
        where = tf.stack([blend, slot], axis=1)
        dense = tf.scatter_nd(where, shapes, tf.stack([n_blends, n_slots, n_pix]))
        active = tf.scatter_nd(where, tf.ones_like(log_zoom), tf.stack([n_blends, n_slots]))
        flat_sky = tf.ones([n_blends, 1, n_pix]) * fit_sky[:, None, None]
        columns = tf.concat([dense, flat_sky], axis=1)                                    # (B, N + 1, P)
        flat = tf.reshape(data, [n_blends, n_pix])
        weight = self.pixel_weights(flat, sigma, sky)                                  # (B, P), 1 at model_error 0
        norms = tf.sqrt(tf.reduce_sum(tf.square(columns) * weight[:, None], axis=-1)) + 1e-12
        unit = columns / norms[..., None]
        inactive = tf.concat([1.0 - active, 1.0 - fit_sky[:, None]], axis=1)
        gram = tf.matmul(unit * weight[:, None], unit, transpose_b=True) + tf.linalg.diag(inactive + 1e-6)
        rhs = tf.matmul(unit * weight[:, None], (flat - sky[:, None])[..., None])
        solution = tf.linalg.solve(gram, rhs)[..., 0] / norms
        flux = tf.nn.relu(solution[:, :-1]) * active
        background = sky + solution[:, -1] * fit_sky
        model = tf.einsum("bn,bnp->bp", flux, dense) + background[:, None]
        chi2 = tf.reduce_sum(weight * tf.square(model - flat), axis=-1) / tf.square(sigma)
        log_p = self.prior.log_prob_components(z) + self.component_mask
        log_prior = tf.math.unsorted_segment_sum(tf.reduce_logsumexp(log_p, axis=-1), blend, n_blends)
        zoom_term = tf.math.unsorted_segment_sum(
            0.5 * tf.square((log_zoom - source_info[:, 0]) / source_info[:, 1]), blend, n_blends)
        loss = 0.5 * chi2 - self.prior_weight * log_prior + zoom_term
        return loss, {"shapes": shapes, "flux": tf.gather_nd(flux, where), "background": background, "chi2": chi2,
                      "log_p": log_p}

    def _step(self, params, moments, data, sigma, sky, fit_sky, blend, slot, source_info, t, scale, rates):
        tf = self.tf
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss, _ = self.evaluate(*params, data, sigma, sky, fit_sky, blend, slot, source_info)
            total = tf.reduce_sum(loss)
        grads = tape.gradient(total, params)
        new_params, new_m, new_v = [], [], []
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = tf.where(tf.math.is_finite(g), g, tf.zeros_like(g))
            m = 0.9 * moments[0][i] + 0.1 * g
            v = 0.999 * moments[1][i] + 0.001 * tf.square(g)
            update = rates[i] * scale * (m / (1.0 - 0.9**t)) / (tf.sqrt(v / (1.0 - 0.999**t)) + 1e-8)
            new_params.append(p - update)
            new_m.append(m)
            new_v.append(v)
        return new_params, [new_m, new_v], loss


def _optimise(fit: _BlendFit, params, data, sigma, sky, fit_sky, blend, slot, source_info, steps: int, tol: float,
              patience: int, rates, frozen=None):
    """Adam on (z, centres, log zooms) with a cosine-decayed step; per-blend tolerance stopping.

    Only the blends still being fitted are computed: whenever some stop (or are ``frozen`` from
    the start, as in a refine pass that refits a few blends), the rest are packed into a smaller
    batch. Each blend's loss depends only on its own parameters, so packing changes no result
    beyond floating-point rounding, and a pass costs in proportion to the blends it still fits.
    Returns the final parameters and the steps each blend used (B,).
    """
    tf = fit.tf
    full = [np.array(p, np.float32) for p in params]
    moments = [[np.zeros_like(p) for p in full], [np.zeros_like(p) for p in full]]
    data, sigma, sky, fit_sky = (np.asarray(v, np.float32) for v in (data, sigma, sky, fit_sky))
    blend, slot, source_info = np.asarray(blend, np.int32), np.asarray(slot, np.int32), np.asarray(source_info, np.float32)
    rates = tf.constant([rates["latent"], rates["position"], rates["zoom"]], tf.float32)
    n_blends = len(data)
    previous = np.full(n_blends, np.nan)
    calm = np.zeros(n_blends, np.int32)
    used = np.full(n_blends, steps, np.int64)
    frozen = np.zeros(n_blends, bool) if frozen is None else np.asarray(frozen) > 0
    frozen |= np.bincount(blend, minlength=n_blends) == 0                   # no sources: nothing to fit
    used[frozen] = 0
    done = 0
    while done < steps and not frozen.all():
        fitting = np.flatnonzero(~frozen)                                   # the blends of this packed batch
        sources = np.flatnonzero(~frozen[blend])
        renumber = np.full(n_blends, -1, np.int32)
        renumber[fitting] = np.arange(len(fitting), dtype=np.int32)
        packed = [tf.constant(v) for v in (data[fitting], sigma[fitting], sky[fitting], fit_sky[fitting],
                                           renumber[blend[sources]], slot[sources], source_info[sources])]
        state = [tf.constant(p[sources]) for p in full]
        moment_state = [[tf.constant(m[sources]) for m in ms] for ms in moments]
        while done < steps:
            done += 1
            scale = 0.1 + 0.45 * (1.0 + math.cos(math.pi * (done - 1) / max(steps, 1)))
            state, moment_state, loss = fit.step(state, moment_state, *packed, tf.constant(float(done)),
                                                 tf.constant(scale, tf.float32), rates)
            loss = loss.numpy().astype(np.float64)
            change = np.abs(loss - previous[fitting]) / (np.abs(loss) + 1.0)
            calm[fitting] = np.where(change < tol, calm[fitting] + 1, 0)      # NaN (first step) compares False
            previous[fitting] = loss
            newly = fitting[calm[fitting] >= patience]
            if len(newly):
                used[newly] = done
                frozen[newly] = True
                break
        for target, values in zip(full + moments[0] + moments[1], state + moment_state[0] + moment_state[1],
                                  strict=True):
            target[sources] = values.numpy()
    return full, used


def _as_centres(centres, n_blends: int):
    """List of (m_i, 2) arrays from None, a list of arrays or an (n, m, 2) array (NaN rows dropped)."""
    if centres is None:
        return None
    out = []
    if len(centres) != n_blends:
        raise AvaderError(f"centres: need one entry per blend ({n_blends}), got {len(centres)}")
    for item in centres:
        item = np.asarray(item, dtype=np.float64).reshape(-1, 2)
        out.append(item[np.all(np.isfinite(item), axis=1)])
    return out


def _residual_sources(residual, sigma, centres, nsigma, min_distance: float = 3.0):
    """Detections in a fit's residual at least ``min_distance`` pixels from every fitted centre."""
    found = detect(residual, sigma, nsigma=nsigma)
    keep = [k for k, c in enumerate(found["centres"])
            if not len(centres) or np.min(np.hypot(*(np.asarray(centres) - c).T)) > min_distance]
    return found["centres"][keep], np.isin(found["segmentation"], np.asarray(keep) + 1) * found["segmentation"]


def _asymmetric_sources(light, centre, sigma, model_error: float, centres, nsigma: float, min_distance: float = 3.0):
    """Sources in the light that breaks the 180-degree symmetry of a galaxy about ``centre``.

    A companion on a galaxy's wing raises no peak of its own (detection merges it) and a decoder
    trained on fields with companions draws it into the galaxy's template (the residual is
    clean), but it is not matched by the light at its mirror point: ``light - rotated`` (the
    SDSS deblender's symmetric-template idea), whitened by the noise of the difference and the
    template error of the mirrored light, is searched like the residual. Pixels whose mirror
    falls outside the stamp are left out.
    """
    from scipy.ndimage import map_coordinates

    h, w = light.shape
    rows, cols = np.indices((h, w), dtype=np.float64)
    my, mx = 2.0 * centre[1] - rows, 2.0 * centre[0] - cols
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    rotated = map_coordinates(light, [my, mx], order=1, mode="nearest")
    noise = math.sqrt(2.0) * sigma
    excess = np.where(inside, light - rotated, 0.0)
    whitened = excess * noise / np.sqrt(noise**2 + (model_error * np.clip(rotated, 0.0, None)) ** 2)
    return _residual_sources(whitened, noise, centres, nsigma, min_distance)


def _symmetric_caps(light, models, centres, blend, shape):
    """Each source's light as far as its 180-degree symmetry allows: (S, P), clipped at zero.

    ``light`` (B, P) is each blend above the sky, ``models`` (S, P) the sources' models. The
    blend less the other sources' models is a source's own light (with the neighbours' template
    errors); at each pixel the source can hold no more of it than at the pixel's mirror point
    about its centre (the SDSS deblender's symmetric template, taken after the neighbours are
    subtracted). Mirror points outside the stamp count as empty.
    """
    from scipy.ndimage import map_coordinates

    h, w = shape
    rows, cols = np.indices((h, w), dtype=np.float64)
    total = np.zeros_like(light)
    np.add.at(total, blend, models)
    caps = np.zeros_like(models)
    for k in range(len(models)):
        own = (light[blend[k]] - total[blend[k]] + models[k]).reshape(h, w)
        x, y = centres[k]
        mirrored = map_coordinates(own, [2.0 * y - rows, 2.0 * x - cols], order=1, mode="constant", cval=0.0)
        caps[k] = np.clip(np.minimum(own, mirrored), 0.0, None).ravel()
    return caps


def _data_shares(data, sky, shapes, flux, blend, sigma, centres=None):
    """Each source's share of the blend's light above the sky: (S, P).

    In proportion to the models, or with ``centres`` (S, 2) to the models (scaled to those plain
    shares' fluxes, which add up to the blend's light) capped by :func:`_symmetric_caps` and kept
    at least ``_CAP_FLOOR`` of the model, so that no pixel a model covers is left without an
    owner: where a template spills into a neighbour, the symmetry of the source's own light about
    its centre bounds what it takes there. A lone source keeps all its light either way (its caps
    are not computed). Pixels where all models together are below ``_SHARE_FLOOR`` sigma are left out.
    """
    n = len(data)
    light = data.reshape(n, -1) - sky[:, None]                               # (B, P)
    models = shapes * flux[:, None]                                          # (S, P)
    total = np.zeros_like(light)
    np.add.at(total, blend, models)
    covered = total[blend] > _SHARE_FLOOR * sigma[blend, None]
    shares = np.where(covered, models / np.maximum(total[blend], 1e-30), 0.0) * light[blend]
    several = np.flatnonzero(np.bincount(blend, minlength=n)[blend] > 1)
    if centres is None or not len(several):
        return shares
    weights = shapes * shares.sum(axis=1)[:, None]
    caps = _symmetric_caps(light, weights[several], np.asarray(centres)[several], blend[several], data.shape[1:])
    weights[several] = np.maximum(np.minimum(weights[several], caps), _CAP_FLOOR * weights[several])
    weight_total = np.zeros_like(light)
    np.add.at(weight_total, blend, weights)
    return np.where(covered, weights / np.maximum(weight_total[blend], 1e-30), 0.0) * light[blend]


def deblend(model, blends, centres=None, noise_sigma=None, background=None, psf_fwhm=None, steps: int = 150,
            tol: float = 1e-4,
            patience: int = 10, prior_weight: float = 1.0, zoom_widths=(0.1, 0.5), refine: int | None = None,
            refine_gain: float = 0.0,
            photometry: str = "data", images: str = "model", min_flux_ratio: float = 0.05,
            batch_size: int = 32, max_sources: int = 4, allowed_components=None, learning_rates=None,
            detection=None, model_error: float = DEFAULT_MODEL_ERROR, symmetry: float = DEFAULT_SYMMETRY,
            detector=None, shares: str = DEFAULT_SHARES, augment: int = 1, progress: bool = False) -> dict:
    """Separate blended galaxies by fitting decoded galaxies to each blend (see the module notes).

    Parameters
    ----------
    model : avader.model.VaDE
        A trained model; its decoder sets the galaxy shapes and its mixture the prior.
    blends : array_like, shape (n, size, size) or (size, size), float32
        Blend images in stored units (linear in flux), at the model's image size.
    centres : sequence, optional
        Per blend, an (m, 2) array of approximate (x, y) source centres in pixels (NaN rows
        ignored); default: :func:`detect`.
    noise_sigma : float or array_like, shape (n,), optional
        Pixel noise in stored units; default from the image border (1.4826 MAD).
    background : float or array_like, shape (n,), optional
        Known sky level (stored units); default: a constant fitted with the fluxes.
    psf_fwhm : float or array_like, shape (n,), optional
        PSF FWHM of the blends, pixels. Sources shrunk below the model's scale are blurred to
        keep this PSF (a shrunk template carries a shrunk PSF); default: no correction.
    steps : int
        Optimiser step budget per pass (``AnalysisConfig.deblend_steps``).
    tol : float
        A blend stops once its relative loss change stays below ``tol`` for ``patience`` steps.
    patience : int
    prior_weight : float
        Weight of the mixture log prior against chi^2 / 2 (1: the posterior mode under the fit's noise
        model). Runs take it from ``analysis.deblend_prior_weight`` (quick profile: 10, chosen on blends
        no benchmark uses): the sharper the decoder, the more its fit needs the prior to stay on the
        galaxies it draws well (``benchmarks/experiments/README.md``, session 9).
    zoom_widths : (float, float)
        Widths of the Gaussian priors on log zoom of the brightest source (centred on 1: the
        field is scaled to the main galaxy, as in training) and of the others (centred on their
        size relative to it).
    refine : int, optional
        Passes that look for sources in the residual (closer than detection separates, e.g. pairs
        within one half-light radius), add them and refit that blend; 0 = detection only. Default 1
        with peak detection, 0 with a ``detector`` (whose centres the pass only makes worse on the
        quick profile's blends: ``benchmarks/experiments/README.md``, session 8).
    refine_gain : float
        Keep a refine pass's added sources in a blend only if they lower its chi^2 by at least this
        fraction (0: always keep); otherwise the blend returns to its fit before the pass. With
        pixel noise alone (``model_error=0``) most residual sources of the quick profile's decoder
        are template mismatches (knots, disk ends), and 0.5 kept the pairs that detection merged
        without the wide blends' loss; with ``model_error`` the residual is judged against the
        template error too, so those mismatches are rarely significant and every added source is
        kept (default 0; with ``model_error=0`` pass 0.5 for the behaviour before session 6; see
        ``benchmarks/experiments/README.md``, session 6).
    photometry : {"data", "model"}
        ``"data"``: each source's flux is its model-weighted share of the blend's light above the
        sky (conserves the blend's flux, robust to template errors); ``"model"``: the least-squares
        template amplitudes.
    images : {"model", "data"}
        ``"model"``: source images are the fitted models scaled to the fluxes (noise-free, the
        decoder's shapes); ``"data"``: each source's model-weighted share of the blend's light
        (the data's shapes and noise, no hard segment edges; with ``photometry="data"`` their sums
        are the fluxes).
    shares : {"symmetric", "model"}
        How ``"data"`` photometry and images share each pixel among the sources of a blend:
        ``"model"`` in proportion to the fitted models; ``"symmetric"`` to the models capped,
        pixel by pixel, by each source's own light (the blend less the other sources' models)
        at the pixel's mirror point about the source's centre, as the SDSS deblender's symmetric
        templates, so a template that spills into a neighbour does not take its light. Lone
        sources are unaffected. Brighter galaxy's median |dF/F| of equal-flux pairs on the quick
        profile's tuning blends: 0.050 against 0.061 with the learned detector, 0.051 against
        0.062 with the true centres (``benchmarks/experiments/README.md``, session 11).
    min_flux_ratio : float
        Detected sources fainter than this fraction of their blend's brightest are folded into the
        source whose model dominates where they sit (knots and template mismatches, not galaxies);
        0 keeps every source. Sources at given ``centres`` are always kept.
    batch_size : int
        Blends fitted together (vectorised).
    max_sources : int
        Most sources per blend (the brightest detections are kept).
    allowed_components : sequence of int, optional
        Restrict the prior to these mixture components (e.g. exclude companion components).
    learning_rates : dict, optional
        Adam steps ``{"latent": 0.05, "position": 0.05, "zoom": 0.02}`` (latent units, pixels, log zoom).
    detection : dict, optional
        Further :func:`detect` arguments (``smooth_fwhm``, ``contrast``, ``nsigma``, ...) for the
        detection of centres (when ``centres`` are not given); the refine pass's residual
        detection uses :func:`detect`'s defaults at 3 sigma.
    model_error : float
        Fractional error of the decoded templates, added to the pixel noise: a pixel holding light
        ``L`` above the sky has variance ``sigma^2 + (model_error L)^2`` in the fit (fluxes, chi^2),
        and the refine pass looks for residual sources against ``sigma^2 + (model_error M)^2``
        with ``M`` the fitted model (light not yet modelled keeps its full significance).
        0: pixel noise alone.
    symmetry : float
        Where a refine pass finds nothing in a blend's residual, it also looks for sources in the
        light that breaks the 180-degree symmetry of the brightest source about its fitted centre
        (the blend minus the other sources' models, minus its rotation), at this many sigma
        against the noise of the difference and ``model_error`` times the rotated light. A faint
        companion on a galaxy's wing raises no peak (detection merges it), and a decoder trained
        on fields with companions draws it into the galaxy's template, so the residual is clean;
        the asymmetry still shows it. 0: off. The default 8 was chosen on the quick profile's
        blends (12, and 5 before the other sources' models were subtracted, did worse;
        ``benchmarks/experiments/README.md``, session 7).
    detector : avader.detector.Detector, optional
        A learned detector (:func:`avader.detector.train_detector`, :func:`avader.detector.load_detector`):
        when ``centres`` are not given the centres are its heat-map peaks instead of :func:`detect`'s
        (whose segmentation still shares the light among them for the starting latents and zooms).
    augment : {1, 2, 4}
        Fit each blend this many times, as observed and mirrored (1: once; 2: also flipped left to
        right; 4: also flipped top to bottom and turned by half a turn), and average each source's
        image, flux and centre over the fits (:func:`_augmented`). The decoder is not symmetric
        under these flips, so the fits' template errors differ and partly average out. The centres
        of the first fit (detection and refine passes included) start the others, which need no
        detection. Costs ``augment`` fits.
    progress : bool
        Show a tqdm bar over batches.

    Returns
    -------
    dict
        ``sources`` (n, K, size, size) float32 separated source images (K = most sources in any
        blend, empty slots zero); ``model`` and ``residual`` (n, size, size); ``flux`` (n, K) in-stamp
        fluxes; ``centres`` (n, K, 2) (x, y) pixels; ``zoom`` (n, K); ``latents`` (n, K, D);
        ``component`` (n, K) int, argmax responsibility of each latent (-1 for empty slots);
        ``n_sources`` (n,); ``background``, ``noise_sigma``, ``chi2`` (reduced), ``loss`` (n,);
        ``steps`` (n,) steps used in all passes; ``seconds`` and ``cpu_seconds`` (floats, wall and
        process CPU time of the whole call).
    """
    if augment not in AUGMENTATIONS:
        raise AvaderError(f"augment: must be one of {sorted(AUGMENTATIONS)} (fits per blend), got {augment!r}")
    if augment > 1:  # here the locals are the parameters alone: the other ones go to every fit
        options = {k: v for k, v in locals().items() if k not in ("model", "blends", "centres", "augment")}
        return _augmented(model, blends, centres, augment, options)
    from tqdm.auto import tqdm

    for key, value in (("photometry", photometry), ("images", images)):
        if value not in ("data", "model"):
            raise AvaderError(f"{key}: must be 'data' or 'model', got {value!r}")
    if shares not in ("symmetric", "model"):
        raise AvaderError(f"shares: must be 'symmetric' or 'model', got {shares!r}")
    started, cpu_started = time.perf_counter(), time.process_time()
    blends = np.asarray(blends, dtype=np.float32)
    blends = blends[None] if blends.ndim == 2 else blends
    size = int(model.model_config.image_size)
    if blends.ndim != 3 or blends.shape[1:] != (size, size):
        raise AvaderError(f"blends: expected (n, {size}, {size}) images at the model's size, got {blends.shape}")
    n = len(blends)
    border_sky, border_sigma = estimate_noise(blends)
    sigma = border_sigma if noise_sigma is None else np.broadcast_to(np.asarray(noise_sigma, np.float64), (n,))
    sky = border_sky if background is None else np.broadcast_to(np.asarray(background, np.float64), (n,))
    fit_sky = np.full(n, 1.0 if background is None else 0.0, np.float32)
    psf_sigma = np.zeros(n) if psf_fwhm is None else np.broadcast_to(np.asarray(psf_fwhm, np.float64), (n,)) / 2.3548
    given = _as_centres(centres, n)
    detection = dict(detection or {})
    detections = [detect(blends[b], sigma[b], sky[b], max_sources=max_sources, **detection) for b in range(n)]
    if refine is None:
        refine = 0 if given is None and detector is not None else 1
    if given is None and detector is not None:
        given_or_found = [found["centres"] for found in detector(blends, sky, sigma, max_sources=max_sources)]
    else:
        given_or_found = given if given is not None else [d["centres"] for d in detections]
    centres_list = [c[:max_sources] for c in given_or_found]
    rates = {"latent": 0.05, "position": 0.05, "zoom": 0.02, **(learning_rates or {})}
    if not (isinstance(model_error, (int, float, np.number)) and np.isfinite(model_error) and model_error >= 0):
        raise AvaderError(f"model_error: must be a number >= 0, got {model_error!r}")
    if not (isinstance(symmetry, (int, float, np.number)) and np.isfinite(symmetry) and symmetry >= 0):
        raise AvaderError(f"symmetry: must be a number >= 0 (sigma; 0 = off), got {symmetry!r}")
    fit = _BlendFit(model, (size, size), prior_weight, allowed_components, model_error)
    results = []
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="deblend", unit="batch"):
        rows = np.arange(start, min(start + batch_size, n))
        results.append(_fit_batch(fit, model, blends[rows], sigma[rows], sky[rows], fit_sky[rows],
                                  [centres_list[r] for r in rows], [detections[r] for r in rows],
                                  steps, tol, patience, rates, refine, max_sources, photometry, images,
                                  zoom_widths, min_flux_ratio, psf_sigma[rows], given is not None, refine_gain,
                                  symmetry, shares)
                       + (rows,))
    n_slots = max([1] + [int(r[0]["slot"].max()) + 1 for r in results if len(r[0]["slot"])])
    out = {"sources": np.zeros((n, n_slots, size, size), np.float32), "flux": np.zeros((n, n_slots)),
           "centres": np.full((n, n_slots, 2), np.nan), "zoom": np.full((n, n_slots), np.nan),
           "latents": np.zeros((n, n_slots, int(model.model_config.latent_dim)), np.float32),
           "component": np.full((n, n_slots), -1, np.int64), "n_sources": np.zeros(n, np.int64),
           "noise_sigma": np.asarray(sigma, np.float64)}
    for key in ("background", "chi2", "loss", "steps"):
        out[key] = np.zeros(n)
    out["model"] = np.zeros((n, size, size), np.float32)
    for packed, per_blend, rows in results:
        b, k = rows[packed["blend"]], packed["slot"]
        for key in ("sources", "flux", "centres", "zoom", "latents", "component"):
            out[key][b, k] = packed[key]
        np.add.at(out["n_sources"], b, 1)
        for key, value in per_blend.items():
            out[key][rows] = value
    out["steps"] = out["steps"].astype(np.int64)
    out["residual"] = blends - out["model"]
    out["seconds"] = time.perf_counter() - started
    out["cpu_seconds"] = time.process_time() - cpu_started
    log.info("deblended %d blends in %.1f s (%.2f s per blend)", n, out["seconds"], out["seconds"] / n)
    return out


def _flip(images, centres, flip: str, size: int):
    """Mirror images (..., h, w) and (x, y) centres (..., 2) of a ``size`` stamp (either may be
    None): ``flip`` holds ``"x"`` (left to right) and/or ``"y"`` (top to bottom). Its own inverse."""
    if images is not None:
        images = np.asarray(images)
        images = images[..., ::-1] if "x" in flip else images
        images = np.ascontiguousarray(images[..., ::-1, :] if "y" in flip else images)
    if centres is not None:
        centres = np.array(centres, np.float64)
        for axis, name in enumerate("xy"):
            if name in flip:
                centres[..., axis] = size - 1 - centres[..., axis]
    return images, centres


def _augmented(model, blends, centres, augment: int, options: dict) -> dict:
    """:func:`deblend` averaged over ``augment`` mirrored fits (its ``augment`` parameter).

    The first fit is the plain one; each mirrored fit (the same step budget: two thirds of it
    lost the gain on the notebook's blends) starts from its sources' centres mirrored (given
    centres: no refine pass or merging of faint sources), and its sources are
    paired with the first fit's by the Hungarian assignment of their fitted centres (within
    ``_AUGMENT_MATCH`` pixels). A source's image, flux and centre are the means over the fits it
    is paired in (its own fit always); ``model`` is the mean of the fits' models, ``residual``
    the blend minus it. ``latents``, ``component``, ``zoom``, ``chi2``, ``loss``, ``steps`` and
    ``background`` are the first fit's; ``seconds`` and ``cpu_seconds`` cover all fits.
    """
    from scipy.optimize import linear_sum_assignment

    started, cpu_started = time.perf_counter(), time.process_time()
    first = deblend(model, blends, centres=centres, augment=1, **options)
    blends = np.asarray(blends, np.float32)
    blends = blends[None] if blends.ndim == 2 else blends
    n, k_slots, size = first["sources"].shape[:3]
    n_src = first["n_sources"]
    sums = {"sources": first["sources"].astype(np.float64), "flux": first["flux"].astype(np.float64),
            "centres": np.nan_to_num(first["centres"]), "model": first["model"].astype(np.float64)}
    counts = (np.arange(k_slots)[None, :] < n_src[:, None]).astype(np.float64)
    repeat = {**options, "refine": 0, "min_flux_ratio": 0.0, "detector": None, "progress": False}
    for flip in AUGMENTATIONS[augment][1:]:
        mirrored, start = _flip(blends, first["centres"], flip, size)
        fit = deblend(model, mirrored, centres=[start[b, :n_src[b]] for b in range(n)], augment=1, **repeat)
        sources, found = _flip(fit["sources"], fit["centres"], flip, size)
        sums["model"] += _flip(fit["model"], None, flip, size)[0]
        for b in range(n):
            m, mf = int(n_src[b]), int(fit["n_sources"][b])
            if not m or not mf:
                continue
            distance = np.linalg.norm(first["centres"][b, :m, None] - found[b, None, :mf], axis=-1)
            for i, j in zip(*linear_sum_assignment(distance), strict=True):
                if distance[i, j] <= _AUGMENT_MATCH:
                    sums["sources"][b, i] += sources[b, j]
                    sums["flux"][b, i] += fit["flux"][b, j]
                    sums["centres"][b, i] += found[b, j]
                    counts[b, i] += 1
    out = dict(first)
    filled = counts > 0
    weight = np.where(filled, 1.0 / np.maximum(counts, 1.0), 0.0)
    out["sources"] = (sums["sources"] * weight[..., None, None]).astype(np.float32)
    out["flux"] = sums["flux"] * weight
    out["centres"] = np.where(filled[..., None], sums["centres"] * weight[..., None], np.nan)
    out["model"] = (sums["model"] / len(AUGMENTATIONS[augment])).astype(np.float32)
    out["residual"] = blends - out["model"]
    out["seconds"] = time.perf_counter() - started
    out["cpu_seconds"] = time.process_time() - cpu_started
    return out


def _merge_faint(sources, flux, shapes, xy, blend, min_flux_ratio: float, size: int, protected):
    """Fold unprotected sources fainter than ``min_flux_ratio`` of their blend's brightest into the
    source whose model is brightest at their centre (in place); returns the kept mask and slots
    re-ordered by flux."""
    keep = np.ones(len(flux), bool)
    slot = np.zeros(len(flux), np.int32)
    ix = np.clip(np.rint(xy[:, 0]).astype(int), 0, size - 1)
    iy = np.clip(np.rint(xy[:, 1]).astype(int), 0, size - 1)
    for b in np.unique(blend):
        members = np.flatnonzero(blend == b)
        bright = (flux[members] >= min_flux_ratio * flux[members].max()) | protected[members]
        hosts = members[bright]
        for j in members[~bright]:
            host = hosts[np.argmax(shapes[hosts, iy[j] * size + ix[j]] * flux[hosts])]
            sources[host] += sources[j]
            flux[host] += flux[j]
            keep[j] = False
        order = hosts[np.argsort(-flux[hosts], kind="stable")]
        slot[order] = np.arange(len(order))
    return keep, slot


def _revert(params, blend, slot, source_info, before, revert):
    """Undo a refine pass for the blends flagged in ``revert`` (B,): their sources get back the values
    of ``before`` and the sources the pass added to them are dropped."""
    old_params, old_blend = before[0], before[1]
    n_old = len(old_blend)
    params = [np.asarray(p).copy() for p in params]
    restore = revert[old_blend]
    for p, q in zip(params, old_params, strict=True):
        p[:n_old][restore] = q[restore]
    keep = np.concatenate([np.ones(n_old, bool), ~revert[blend[n_old:]]])
    return [p[keep] for p in params], blend[keep], slot[keep], source_info[keep]


def _fit_batch(fit, model, blends, sigma, sky, fit_sky, centres_list, detections, steps, tol, patience, rates,
               refine, max_sources, photometry, images, zoom_widths, min_flux_ratio, psf_sigma, given, refine_gain=0.0,
               symmetry=0.0, shares="model"):
    """Fit one batch: detect-initialise, optimise, then ``refine`` residual passes (each kept for a
    blend only where it lowers chi^2 by ``refine_gain``)."""
    tf = fit.tf
    n, size = len(blends), blends.shape[1]
    z, xy, zoom, blend, slot, main = _initial_state(model, blends - sky[:, None, None], centres_list, np.zeros(n),
                                                    detections)
    params = [z, xy, np.log(zoom)]
    n_given = len(z)
    source_info = np.column_stack([np.log(zoom), np.where(main, zoom_widths[0], zoom_widths[1]), psf_sigma[blend]])
    used = np.zeros(n)
    args = lambda: (blends, sigma.astype(np.float32), sky.astype(np.float32), fit_sky, blend, slot,  # noqa: E731
                    source_info.astype(np.float32))
    if not len(blend):
        empty = {"blend": blend, "slot": slot, "sources": np.zeros((0, size, size)), "flux": np.zeros(0),
                 "centres": np.zeros((0, 2)), "zoom": np.zeros(0), "latents": z, "component": np.zeros(0, np.int64)}
        return empty, {"background": sky, "model": np.broadcast_to(sky[:, None, None], blends.shape),
                       "chi2": np.sum((blends - sky[:, None, None]) ** 2, axis=(1, 2)) / sigma**2 / size**2,
                       "loss": np.zeros(n), "steps": used}
    todo = np.ones(n, np.float32)
    before = None  # (params, blend, slot, source_info, chi2) before the last refine pass
    for attempt in range(refine + 1):
        params, steps_used = _optimise(fit, params, blends, sigma, sky, fit_sky, blend, slot, source_info, steps, tol,
                                       patience, rates, frozen=1.0 - todo) if steps > 0 else (params, 0)
        used += np.where(todo > 0, steps_used, 0)
        loss, parts = fit.evaluate(*(tf.constant(p, tf.float32) for p in params), *args())
        if before is not None and refine_gain > 0:
            chi2 = parts["chi2"].numpy()
            revert = (todo > 0) & (chi2 > (1.0 - refine_gain) * before[4])
            if revert.any():
                params, blend, slot, source_info = _revert(params, blend, slot, source_info, before, revert)
                todo[revert] = 0.0
                loss, parts = fit.evaluate(*(tf.constant(p, tf.float32) for p in params), *args())
        if attempt == refine:
            break
        before = ([np.asarray(p).copy() for p in params], blend.copy(), slot.copy(), source_info.copy(),
                  parts["chi2"].numpy())
        source_models, fitted_flux = parts["shapes"].numpy() * parts["flux"].numpy()[:, None], parts["flux"].numpy()
        fitted_sky = parts["background"].numpy()
        model_images = np.zeros((n, size * size))
        np.add.at(model_images, blend, source_models)
        residual = blends - model_images.reshape(n, size, size) - fitted_sky[:, None, None]
        if fit.model_error:  # significance against the noise and the error of the light already modelled
            error = fit.model_error * model_images.reshape(n, size, size)
            residual = residual * (sigma[:, None, None] / np.sqrt(sigma[:, None, None] ** 2 + error**2))
        todo[:] = 0.0
        new_centres, segmentations = list(centres_list), [d["segmentation"].copy() for d in detections]
        for b in range(n):
            have = np.asarray(params[1])[blend == b]
            room = max_sources - len(have)
            if room <= 0:
                continue
            extra, extra_seg = _residual_sources(residual[b], sigma[b], have, nsigma=3.0)
            if symmetry and not len(extra) and len(have):
                mine = np.flatnonzero(blend == b)
                main = mine[np.argmax(fitted_flux[mine])]
                others = (model_images[b] - source_models[main]).reshape(size, size)  # the other sources' models
                light = blends[b] - fitted_sky[b] - others
                extra, extra_seg = _asymmetric_sources(light, np.asarray(params[1])[main], sigma[b],
                                                       fit.model_error, have, nsigma=symmetry)
            if len(extra):
                extra = extra[:room]
                new_centres[b] = np.vstack([have, extra])
                segmentations[b] = np.where(extra_seg > 0, extra_seg + segmentations[b].max(), segmentations[b])
                todo[b] = 1.0
        if not todo.any():
            break
        changed = np.flatnonzero(todo)
        z_new, xy_new, zoom_new, b_new, s_new, _ = _initial_state(
            model, blends[changed] - sky[changed, None, None], [new_centres[b] for b in changed],
            np.zeros(len(changed)), [{"segmentation": segmentations[b]} for b in changed])
        added = s_new >= np.array([np.sum(blend == changed[i]) for i in b_new])
        params = [np.concatenate([np.asarray(params[0]), z_new[added]]),
                  np.concatenate([np.asarray(params[1]), xy_new[added]]),
                  np.concatenate([np.asarray(params[2]), np.log(zoom_new[added])])]
        blend = np.concatenate([blend, changed[b_new[added]]]).astype(np.int32)
        slot = np.concatenate([slot, s_new[added]]).astype(np.int32)
        source_info = np.vstack([source_info, np.column_stack([np.log(zoom_new[added]), np.full(added.sum(), zoom_widths[1]),
                                                               psf_sigma[changed[b_new[added]]]])])
        centres_list = new_centres
    # every exit of the loop comes right after an evaluation of the final parameters: loss, parts hold it
    shapes, flux = parts["shapes"].numpy(), parts["flux"].numpy()
    background = parts["background"].numpy().astype(np.float64)
    z, xy, log_zoom = (np.asarray(p) for p in params)
    data_shares = _data_shares(blends, background, shapes, flux, blend, sigma,
                               centres=xy if shares == "symmetric" else None)
    fitted = np.zeros((n, size * size))
    np.add.at(fitted, blend, shapes * flux[:, None])
    if photometry == "data":
        flux = data_shares.sum(axis=1)
    sources = data_shares if images == "data" else shapes * flux[:, None]
    protected = np.arange(len(flux)) < n_given if given else np.zeros(len(flux), bool)
    keep, slot = _merge_faint(sources, flux, shapes, xy, blend, min_flux_ratio, size, protected)
    packed = {"blend": blend[keep], "slot": slot[keep], "sources": sources[keep].reshape(-1, size, size),
              "flux": flux[keep], "centres": xy[keep], "zoom": np.exp(log_zoom[keep]), "latents": z[keep],
              "component": np.argmax(parts["log_p"].numpy(), axis=-1)[keep]}
    return packed, {"background": background, "model": fitted.reshape(n, size, size) + background[:, None, None],
                    "chi2": parts["chi2"].numpy() / size**2, "loss": loss.numpy(),
                    "steps": used}


# --------------------------------------------------------------------------- the paper's simple operation
def companion_components(assignments, has_companion, min_fraction: float = 0.5) -> list[int]:
    """Mixture components whose members mostly have a companion.

    Parameters
    ----------
    assignments : array_like, shape (n,), int
        Component of each galaxy (argmax responsibility).
    has_companion : array_like, shape (n,), bool
        Ground truth or a visual flag (e.g. simulated ``n_companions > 0``).
    min_fraction : float
        Fraction of members with a companion above which a component counts as a companion one.

    Returns
    -------
    list of int, sorted
    """
    assignments = np.asarray(assignments).ravel()
    has_companion = np.asarray(has_companion, bool).ravel()
    if assignments.shape != has_companion.shape:
        raise AvaderError(f"has_companion: need one flag per galaxy ({len(assignments)}), got {len(has_companion)}")
    return sorted(int(c) for c in np.unique(assignments) if has_companion[assignments == c].mean() > min_fraction)


def remove_companion(model, images, companion_components, min_responsibility: float = 0.5,
                     n_grid: int = 33) -> dict:
    """Decode galaxies from the nearest companion-free mixture component (the paper's operation).

    Each image is encoded to its latent mean z. If its most responsible component c is a
    companion component, z moves along the straight line towards the mean of the nearest
    allowed component a (highest ``log p(a) + log N(z | u_a, lambda_a)``) just far enough that
    a is the most responsible component with responsibility at least ``min_responsibility``
    (searched on ``n_grid`` points of the segment, the mean itself at worst), keeping as much of
    the galaxy's own latent as possible; then it is decoded.

    Parameters
    ----------
    model : avader.model.VaDE
    images : array_like, shape (n, size, size) or (n, size, size, 1), float32 in [0, 1]
    companion_components : sequence of int
        Components that hold galaxies with companions (see :func:`companion_components`).
    min_responsibility : float
    n_grid : int

    Returns
    -------
    dict
        ``images`` (n, size, size) float32 decoded without the companion; ``latents`` (n, D) the
        moved latents; ``original_latents`` (n, D); ``component`` (n,) new argmax component (never a
        companion component); ``original_component`` (n,); ``moved`` (n,) bool; ``fraction`` (n,) how
        far along the segment each latent moved (0: unchanged, 1: the component mean).
    """
    prior = model.prior
    k = prior.n_components
    banned = sorted({int(c) for c in companion_components})
    if any(c < 0 or c >= k for c in banned):
        raise AvaderError(f"companion_components: components are 0..{k - 1}, got {banned}")
    if len(banned) >= k:
        raise AvaderError("companion_components: every component is a companion one; nothing to move to")
    allowed = np.array([c for c in range(k) if c not in banned])
    z = np.asarray(model.encode(np.asarray(images, np.float32))[0], np.float64)
    means = prior.get_mixture()["means"].astype(np.float64)

    def log_probs(latents):
        return np.asarray(prior.log_prob_components(latents.astype(np.float32)), np.float64)

    lp = log_probs(z)
    original = lp.argmax(1)
    new_z = z.copy()
    fraction = np.zeros(len(z))
    moved = np.isin(original, banned)
    ts = np.linspace(0.0, 1.0, n_grid)
    for i in np.flatnonzero(moved):
        for target in allowed[np.argsort(-lp[i, allowed])]:
            path = z[i] + ts[:, None] * (means[target] - z[i])
            lp_path = log_probs(path)
            gamma = np.exp(lp_path - lp_path.max(1, keepdims=True))
            gamma /= gamma.sum(1, keepdims=True)
            ok = (lp_path.argmax(1) == target) & (gamma[:, target] >= min_responsibility)
            if ok.any():
                first = int(np.argmax(ok))
                new_z[i], fraction[i] = path[first], ts[first]
                break
        else:
            # No point of any segment makes an allowed component dominant (overlapping mixtures):
            # decode the mean of the most probable allowed component.
            target = allowed[np.argmax(lp[i, allowed])]
            new_z[i], fraction[i] = means[target], 1.0
            log.warning("remove_companion: image %d: no companion-free component dominates on the way; "
                           "decoded the mean of component %d", i, target)
    decoded = np.asarray(model.decode(new_z.astype(np.float32)), np.float32)[..., 0]
    return {"images": decoded, "latents": new_z.astype(np.float32), "original_latents": z.astype(np.float32),
            "component": np.where(moved, allowed[np.argmax(log_probs(new_z)[:, allowed], 1)], original),
            "original_component": original, "moved": moved,
            "fraction": fraction}


# --------------------------------------------------------------------------- files
def deblend_run(run_dir, blends_file, out, steps: int | None = None, tol: float = 1e-4,
                prior_weight: float | None = None,
                use_catalog_centres: bool = False, max_sources: int = 4, batch_size: int = 32, chunk: int = 256,
                model_error: float = DEFAULT_MODEL_ERROR, symmetry: float = DEFAULT_SYMMETRY, detector="auto",
                shares: str = DEFAULT_SHARES, augment: int | None = None, overwrite: bool = False,
                progress: bool = True) -> Path:
    """Deblend every image of a GalaxySet with a run's model and write the separated sources.

    The output GalaxySet (float32) holds ``IMAGES``: the input blends; ``SOURCES`` (n, max_sources,
    h, w): the fitted sources, brightest detection first, empty slots zero; ``RESIDUAL`` (n, h, w):
    blend minus model (background included); and a catalogue with ``id``, ``n_fit``, per slot k
    ``flux_k`` (in-stamp flux, stored units), ``x_k``, ``y_k`` (pixels), ``zoom_k``,
    ``component_k`` (-1 when empty), and ``background``, ``noise_sigma``, ``chi2`` (reduced), ``steps``.

    Parameters
    ----------
    run_dir : str or path
        Run directory holding ``model.keras``.
    blends_file : path
        GalaxySet of blends at the model's image size, linear stretch (e.g. ``avader simulate --blends``).
        Catalogue columns ``noise_sigma``, ``zero_level`` (sky) and ``psf_fwhm_pix`` are used when
        present; otherwise noise and sky come from the image border and there is no PSF correction.
    out : path
        File to write.
    steps : int, optional
        Default: the run's ``analysis.deblend_steps``.
    prior_weight : float, optional
        Weight of the mixture prior in the fit (:func:`deblend`); default the run's
        ``analysis.deblend_prior_weight``. Header ``PRIORW``.
    use_catalog_centres : bool
        Start from the catalogue's ``x_k``, ``y_k`` instead of detecting sources.
    model_error : float
        Fractional template error of the fit (:func:`deblend`); stored in the header (``MODELERR``).
    symmetry : float
        Sigma of the asymmetry search of the refine pass (:func:`deblend`); header ``SYMMSIG``.
    shares : {"symmetric", "model"}
        How the fluxes share each pixel among a blend's sources (:func:`deblend`); header ``SHARES``.
    augment : {1, 2, 4}, optional
        Mirrored fits averaged per blend (:func:`deblend`); default the run's
        ``analysis.deblend_augment``. Header ``AUGMENT``.
    detector : {"auto", "learned", "peaks"} or Detector
        Where the centres come from (:func:`avader.detector.resolve_detector`): ``"auto"`` the run's
        learned detector (``detector.keras``) when it has one, else peak detection; header ``DETECTOR``.
    chunk : int
        Blends per processing chunk (memory flat in n).

    Returns
    -------
    Path
    """
    from .config import AnalysisConfig
    from .data import GalaxySet, GalaxySetWriter
    from .detector import resolve_detector
    from .runs import RunDir
    from .training import load_run_model

    run = RunDir(run_dir)
    model = load_run_model(run.path)
    detector = None if use_catalog_centres else resolve_detector(run.path, detector)
    analysis = run.load_config().analysis if run.exists() else AnalysisConfig()  # model.keras alone: defaults
    steps = analysis.deblend_steps if steps is None else steps
    prior_weight = analysis.deblend_prior_weight if prior_weight is None else prior_weight
    augment = analysis.deblend_augment if augment is None else augment
    blendset = GalaxySet.read(blends_file)
    n, h, w = blendset.shape
    size = model.model_config.image_size
    if (h, w) != (size, size):
        raise AvaderError(f"{blends_file}: images are {h}x{w}, the model of {run.path} needs {size}x{size}")
    cat = blendset.catalog
    if use_catalog_centres and "x_0" not in cat.colnames:
        raise AvaderError(f"{blends_file}: no x_0/y_0 columns for use_catalog_centres")
    meta = {"SOURCE": "deblend", "RECIPE": "avader.deblending", "RUN": str(run.path), "BLENDS": Path(blends_file).name,
            "STEPS": int(steps), "PRIORW": float(prior_weight), "NSRCMAX": int(max_sources),
            "MODELERR": float(model_error), "SYMMSIG": float(symmetry), "SHARES": str(shares), "AUGMENT": int(augment),
            "DETECTOR": "catalogue" if use_catalog_centres else "learned" if detector is not None else "peaks"}
    columns = {"id": np.asarray(cat["id"]), "n_fit": np.zeros(n, np.int64)}
    for k in range(max_sources):
        columns.update({f"flux_{k}": np.zeros(n), f"x_{k}": np.full(n, np.nan), f"y_{k}": np.full(n, np.nan),
                        f"zoom_{k}": np.full(n, np.nan), f"component_{k}": np.full(n, -1, np.int64)})
    for key in ("background", "noise_sigma", "chi2"):
        columns[key] = np.zeros(n)
    columns["steps"] = np.zeros(n, np.int64)
    shapes = {"SOURCES": ((max_sources, h, w), "float32"), "RESIDUAL": ((h, w), "float32")}
    with GalaxySetWriter(out, n, (h, w), "float32", meta, overwrite=overwrite, extra_shapes=shapes) as writer:
        for start in range(0, n, chunk):
            rows = np.arange(start, min(start + chunk, n))
            blends = blendset.get_images(rows)
            known = {key: np.asarray(cat[column], np.float64)[rows] for key, column in
                     (("noise_sigma", "noise_sigma"), ("background", "zero_level"), ("psf_fwhm", "psf_fwhm_pix"))
                     if column in cat.colnames}
            centres = None
            if use_catalog_centres:
                centres = [np.array([[cat[f"x_{k}"][r], cat[f"y_{k}"][r]] for k in range(3) if f"x_{k}" in cat.colnames])
                           for r in rows]
            result = deblend(model, blends, centres=centres, steps=steps, tol=tol, **known,
                             prior_weight=prior_weight, batch_size=batch_size, max_sources=max_sources,
                             model_error=model_error, symmetry=symmetry, detector=detector, shares=shares,
                             augment=augment, progress=progress)
            slots = result["sources"].shape[1]
            sources = np.zeros((len(rows), max_sources, h, w), np.float32)
            sources[:, :slots] = result["sources"][:, :max_sources]
            writer.write(start, blends, extra={"SOURCES": sources, "RESIDUAL": result["residual"]})
            columns["n_fit"][rows] = result["n_sources"]
            for k in range(min(slots, max_sources)):
                columns[f"flux_{k}"][rows] = result["flux"][:, k]
                columns[f"x_{k}"][rows], columns[f"y_{k}"][rows] = result["centres"][:, k].T
                columns[f"zoom_{k}"][rows] = result["zoom"][:, k]
                columns[f"component_{k}"][rows] = result["component"][:, k]
            for key in ("background", "noise_sigma", "chi2", "steps"):
                columns[key][rows] = result[key]
        writer.set_catalog(columns)
    return writer.path


def load_image(path, size: int, crop: float = 1.0) -> np.ndarray:
    """A user's image as a model input: grey, square, ``size`` pixels, min-max stretched to [0, 1].

    FITS (the first HDU with 2-D data, or the first plane of a cube), PNG or JPEG. Colour images
    become grey with the paper's weights applied as upstream did to SDSS gri JPEGs (R = i,
    G = r, B = g): 0.0721 R + 0.7154 G + 0.2125 B. The central square (``crop`` of the shorter
    side) is resized with antialiasing. Only linear images (FITS) keep flux ratios exact; JPEG
    and PNG cutouts are usually stretched non-linearly, which biases fitted fluxes.

    Parameters
    ----------
    path : path-like
    size : int
        Output side, pixels (the model's image size).
    crop : float
        Fraction of the shorter side kept about the centre (the paper: 192 / 256 = 0.75).

    Returns
    -------
    ndarray, shape (size, size), float32 in [0, 1]
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise AvaderError(f"{path}: no such file")
    if not 0.0 < crop <= 1.0:
        raise AvaderError(f"crop: must be in (0, 1], got {crop}")
    if path.suffix.lower() in (".fits", ".fit", ".fts", ".gz", ".fz"):
        from astropy.io import fits

        try:
            with fits.open(path) as hdul:
                data = next((np.asarray(h.data, np.float64) for h in hdul if h.data is not None and h.data.ndim >= 2), None)
        except (OSError, ValueError) as err:
            raise AvaderError(f"{path}: not a readable FITS file ({err})") from None
        if data is None:
            raise AvaderError(f"{path}: no image data in any HDU")
        while data.ndim > 2:
            data = data[0]
        grey = np.nan_to_num(data, nan=float(np.nanmedian(data)))
    else:
        try:
            with Image.open(path) as img:
                array = np.asarray(img.convert("RGB") if img.mode not in ("L", "I", "F", "I;16") else img, np.float64)
        except OSError as err:
            raise AvaderError(f"{path}: not a readable image ({err})") from None
        grey = array if array.ndim == 2 else array[..., :3] @ np.array([0.0721, 0.7154, 0.2125])
    h, w = grey.shape
    side = max(1, int(round(crop * min(h, w))))
    top, left = (h - side) // 2, (w - side) // 2
    square = grey[top:top + side, left:left + side].astype(np.float32)
    resized = np.asarray(Image.fromarray(square, mode="F").resize((size, size), Image.Resampling.BILINEAR), np.float64)
    low, high = resized.min(), resized.max()
    return ((resized - low) / (high - low if high > low else 1.0)).astype(np.float32)


# The benchmark and the classical baselines live in avader.deblend_benchmark, which imports the fit
# from this module; they are re-exported here on first use, so either module may be imported first.
_BENCHMARK_NAMES = ("benchmark", "benchmark_run", "match_sources", "photutils_deblend", "sep_deblend",
                    "source_metrics")


def __getattr__(name: str):
    if name in _BENCHMARK_NAMES:
        from . import deblend_benchmark

        return getattr(deblend_benchmark, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
