"""Per-image morphological statistics of galaxy stamps.

Used to check simulations, to measure how realistic generated galaxies are and how well
blends are separated. Every function takes one 2-D image ``(height, width)`` of non-negative,
roughly sky-subtracted light (any scale: all statistics below are invariant to a multiplicative
factor); :func:`measure` loops over a batch ``(n, height, width)`` and adds a simple background
and segmentation step.

Conventions
-----------
* Pixel coordinates: ``x`` is the column index, ``y`` the row index, both in pixels, with the
  centre of pixel ``[row, col]`` at ``(x, y) = (col, row)``. ``y`` grows with the row index, i.e.
  upwards when the array is displayed with ``origin="lower"`` (as GalSim and FITS viewers do).
* Position angle: degrees in ``[0, 180)``, counter-clockwise from ``+x`` towards ``+y``,
  ``PA = 0.5 * atan2(2 Mxy, Mxx - Myy)``. A GalSim profile sheared with ``beta = t degrees``
  and drawn with ``drawImage`` has ``PA = t``.
* Ellipticity: the *distortion* ``e1 = (Mxx - Myy) / (Mxx + Myy)``, ``e2 = 2 Mxy / (Mxx + Myy)``,
  ``|e| = (1 - q**2) / (1 + q**2)`` with ``q = b / a`` the axis ratio.
* Radii: circular apertures about the centroid, from the curve of growth of pixel centres
  (pixels at equal radius grouped into rings, each ring counted half at its own radius,
  then linear interpolation); ``total`` is the
  flux within the image, or within ``r_max`` when given (no Petrosian radius).
* Concentration: ``C = 5 log10(R80 / R20)`` (Bershady et al. 2000, Conselice 2003);
  :func:`concentration` also returns the plain ratio ``R80 / R20``.
  For an untruncated Sersic profile ``C`` is 2.80 at n = 1 and 5.27 at n = 4.
* Gini (Lotz et al. 2004) of the absolute pixel values; M20 (Lotz et al. 2004) about the
  flux-weighted centroid, with each pixel treated as a uniform square (its own moment
  ``f / 6`` px**2 is added) so that a one-pixel source has a finite M20;
  asymmetry ``A = sum |I - I180| / sum |I|`` (Conselice 2000 without the background term),
  ``I180`` the image rotated by 180 degrees about the centroid (bilinear interpolation).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from avader.errors import AvaderError

__all__ = [
    "DEFAULT_STATISTICS",
    "KNOWN_STATISTICS",
    "centroid",
    "second_moments",
    "light_radii",
    "half_light_radius",
    "concentration",
    "gini",
    "m20",
    "asymmetry",
    "sky_noise",
    "segment_main_source",
    "measure",
]

logger = logging.getLogger(__name__)

DEFAULT_STATISTICS = (
    "axis_ratio",
    "position_angle",
    "concentration",
    "r_half",
    "gini",
    "m20",
    "asymmetry",
)

KNOWN_STATISTICS = (
    "x",
    "y",
    "flux",
    "axis_ratio",
    "position_angle",
    "e1",
    "e2",
    "ellipticity",
    "r20",
    "r_half",
    "r80",
    "concentration",
    "r80_r20",
    "gini",
    "m20",
    "asymmetry",
    "n_pixels",
    "background",
    "noise",
)

_MOMENT_KEYS = ("x", "y", "mxx", "myy", "mxy", "axis_ratio", "position_angle", "e1", "e2", "ellipticity")


def _as_image(image, name: str = "image") -> np.ndarray:
    """Return ``image`` as a finite float64 2-D array or raise :class:`AvaderError`."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise AvaderError(f"{name}: expected a 2-D array (height, width), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise AvaderError(f"{name}: contains NaN or infinite pixels")
    return array


def _center(image: np.ndarray, center) -> tuple[float, float]:
    if center is None:
        return centroid(image)
    x, y = center
    return float(x), float(y)


def centroid(image) -> tuple[float, float]:
    """Flux-weighted centre of light.

    Parameters
    ----------
    image : array_like, shape (height, width), float

    Returns
    -------
    x, y : float
        Column and row of the centroid in pixels; ``(nan, nan)`` when the total flux is not positive.
    """
    img = _as_image(image)
    total = img.sum()
    if not total > 0:
        return float("nan"), float("nan")
    x = float(img.sum(axis=0) @ np.arange(img.shape[1]) / total)
    y = float(img.sum(axis=1) @ np.arange(img.shape[0]) / total)
    return x, y


def _shape_from_moments(mxx: float, myy: float, mxy: float) -> dict[str, float]:
    trace = mxx + myy
    half_diff = 0.5 * (mxx - myy)
    root = float(np.hypot(half_diff, mxy))
    lam1, lam2 = 0.5 * trace + root, 0.5 * trace - root
    if not (trace > 0 and lam2 > 0):
        nan = float("nan")
        return {"axis_ratio": nan, "position_angle": nan, "e1": nan, "e2": nan, "ellipticity": nan}
    angle = 0.5 * np.degrees(np.arctan2(2.0 * mxy, mxx - myy)) % 180.0
    if angle >= 180.0:
        angle = 0.0
    return {
        "axis_ratio": float(np.sqrt(lam2 / lam1)),
        "position_angle": float(angle),
        "e1": float((mxx - myy) / trace),
        "e2": float(2.0 * mxy / trace),
        "ellipticity": float(2.0 * root / trace),
    }


def _raw_moments(img: np.ndarray, x0: float, y0: float) -> tuple[float, float, float, float]:
    """Flux, and second moments about ``(x0, y0)``; nan moments when the flux is not positive."""
    total = img.sum()
    if not total > 0:
        return float(total), float("nan"), float("nan"), float("nan")
    dx = np.arange(img.shape[1]) - x0
    dy = np.arange(img.shape[0]) - y0
    mxx = float(img.sum(axis=0) @ dx**2 / total)
    myy = float(img.sum(axis=1) @ dy**2 / total)
    mxy = float(dy @ img @ dx / total)
    return float(total), mxx, myy, mxy


def _adaptive_moments(img, x0, y0, mxx, myy, mxy, max_iter, tol):
    """Iterate elliptical-Gaussian-weighted moments to their fixed point (Bernstein & Jarvis 2002).

    The weight has the shape of the current moment matrix ``M``; for a Gaussian source the
    weighted moments are ``M / 2`` at the fixed point, hence the update ``M <- 2 * weighted``.
    For any profile with elliptical isophotes the fixed point keeps the isophotes' axis ratio
    and orientation. Returns ``None`` when the iteration fails.
    """
    yy, xx = np.indices(img.shape, dtype=np.float64)
    for _ in range(max_iter):
        det = mxx * myy - mxy**2
        if not (det > 0 and mxx > 0):
            return None
        dx, dy = xx - x0, yy - y0
        rho2 = (myy * dx**2 - 2.0 * mxy * dx * dy + mxx * dy**2) / det
        weighted = img * np.exp(-0.5 * rho2)
        total = weighted.sum()
        if not total > 0:
            return None
        x0 = x0 + float((weighted * dx).sum() / total)
        y0 = y0 + float((weighted * dy).sum() / total)
        dx, dy = xx - x0, yy - y0
        new = (
            2.0 * float((weighted * dx**2).sum() / total),
            2.0 * float((weighted * dy**2).sum() / total),
            2.0 * float((weighted * dx * dy).sum() / total),
        )
        change = max(abs(new[0] - mxx), abs(new[1] - myy), abs(new[2] - mxy))
        mxx, myy, mxy = new
        if change <= tol * (mxx + myy):
            return x0, y0, mxx, myy, mxy
    return None


def second_moments(
    image,
    background: float | None = None,
    weighted: bool = False,
    center: tuple[float, float] | None = None,
    max_iter: int = 100,
    tol: float = 1e-7,
) -> dict[str, float]:
    """Shape from the second moments of the light: axis ratio, position angle, ellipticity.

    Parameters
    ----------
    image : array_like, shape (height, width), float
    background : float, optional
        Constant subtracted from every pixel first.
    weighted : bool
        ``False``: plain (unweighted) moments about the centroid, sensitive to noise far from
        the source. ``True``: adaptive moments, i.e. moments under an elliptical Gaussian weight
        matched iteratively to the source (centre included), which are robust to noise;
        ``mxx, myy, mxy`` are then those of the matched Gaussian.
    center : (float, float), optional
        ``(x, y)`` in pixels; default the centroid (the starting point when ``weighted``).
    max_iter, tol : int, float
        Iteration limit and relative convergence tolerance of the adaptive moments.

    Returns
    -------
    dict of str to float
        ``x, y`` (pixels), ``mxx, myy, mxy`` (pixels**2), ``axis_ratio`` b/a in (0, 1],
        ``position_angle`` in degrees in [0, 180) counter-clockwise from +x (see module notes),
        ``e1, e2`` and ``ellipticity`` = sqrt(e1**2 + e2**2) (distortion). All nan when the
        moments are undefined (no positive flux, degenerate moments, no convergence).
    """
    img = _as_image(image)
    if background is not None:
        img = img - float(background)
    x0, y0 = _center(img, center)
    nan = float("nan")
    failed = dict.fromkeys(_MOMENT_KEYS, nan)
    if not (np.isfinite(x0) and np.isfinite(y0)):
        return failed
    _, mxx, myy, mxy = _raw_moments(img, x0, y0)
    if weighted:
        if not (mxx > 0 and myy > 0 and mxx * myy - mxy**2 > 0):
            size = (min(img.shape) / 8.0) ** 2
            mxx, myy, mxy = size, size, 0.0
        result = _adaptive_moments(img, x0, y0, mxx, myy, mxy, max_iter, tol)
        if result is None:
            logger.warning("adaptive moments did not converge; returning nan")
            return failed
        x0, y0, mxx, myy, mxy = result
    out = {"x": float(x0), "y": float(y0), "mxx": mxx, "myy": myy, "mxy": mxy}
    out.update(_shape_from_moments(mxx, myy, mxy))
    return out


def _growth_curve(img: np.ndarray, x0: float, y0: float, r_max: float | None):
    """Distinct pixel radii (ascending), flux enclosed at each (ring counted half) and the total.

    Pixels at the same radius (to 1e-9 px) form one ring, so the result does not depend on
    the order of ties.
    """
    yy, xx = np.indices(img.shape, dtype=np.float64)
    radius = np.hypot(xx - x0, yy - y0).ravel()
    flux = img.ravel()
    if r_max is not None:
        keep = radius <= r_max
        radius, flux = radius[keep], flux[keep]
    radius, inverse = np.unique(np.round(radius, 9), return_inverse=True)
    flux = np.bincount(inverse.ravel(), weights=flux, minlength=radius.size)
    cumulative = np.cumsum(flux)
    total = float(cumulative[-1]) if cumulative.size else 0.0
    return radius, cumulative - 0.5 * flux, total


def _radius_at(radius: np.ndarray, enclosed: np.ndarray, target: float) -> float:
    """First radius where the enclosed flux reaches ``target``, linearly interpolated."""
    above = np.flatnonzero(enclosed >= target)
    if above.size == 0:
        return float("nan")
    i = int(above[0])
    if i == 0:
        return float(radius[0])
    f0, f1 = enclosed[i - 1], enclosed[i]
    t = (target - f0) / (f1 - f0) if f1 > f0 else 1.0
    return float(radius[i - 1] + t * (radius[i] - radius[i - 1]))


def light_radii(
    image,
    fractions: Sequence[float] = (0.5,),
    center: tuple[float, float] | None = None,
    r_max: float | None = None,
) -> np.ndarray:
    """Radii of circular apertures enclosing given fractions of the total flux.

    Parameters
    ----------
    image : array_like, shape (height, width), float
    fractions : sequence of float in (0, 1)
    center : (float, float), optional
        ``(x, y)`` in pixels; default the centroid.
    r_max : float, optional
        The total is the flux within ``r_max`` pixels of the centre; default the whole image.

    Returns
    -------
    ndarray, shape (len(fractions),), float64
        Radii in pixels; nan where undefined (no positive total flux).
    """
    img = _as_image(image)
    fractions = np.asarray(fractions, dtype=np.float64).ravel()
    if np.any((fractions <= 0) | (fractions >= 1)):
        raise AvaderError(f"fractions: must lie strictly between 0 and 1, got {fractions.tolist()}")
    x0, y0 = _center(img, center)
    out = np.full(fractions.shape, np.nan)
    if not (np.isfinite(x0) and np.isfinite(y0)):
        return out
    radius, enclosed, total = _growth_curve(img, x0, y0, r_max)
    if not total > 0:
        return out
    for k, fraction in enumerate(fractions):
        out[k] = _radius_at(radius, enclosed, fraction * total)
    return out


def half_light_radius(image, center: tuple[float, float] | None = None, r_max: float | None = None) -> float:
    """Radius (pixels) of the circular aperture holding half the total flux; see :func:`light_radii`."""
    return float(light_radii(image, (0.5,), center=center, r_max=r_max)[0])


def concentration(image, center: tuple[float, float] | None = None, r_max: float | None = None) -> tuple[float, float]:
    """Concentration index from the curve of growth.

    Returns
    -------
    c : float
        ``5 log10(R80 / R20)``, the usual concentration index (about 2.8 for an exponential
        disc, 5.3 for an untruncated de Vaucouleurs profile; lower when the image truncates it).
    ratio : float
        ``R80 / R20`` itself.
    """
    r20, r80 = light_radii(image, (0.2, 0.8), center=center, r_max=r_max)
    ratio = r80 / r20 if r20 > 0 else float("nan")
    return float(5.0 * np.log10(ratio)), float(ratio)


def gini(image, mask=None) -> float:
    """Gini coefficient of the absolute pixel values (Lotz, Primack & Madau 2004).

    ``G = sum_i (2 i - n - 1) |X_i| / (sum |X| (n - 1))`` with ``|X|`` sorted ascending:
    0 when all pixels are equal, 1 when one pixel holds all the light.

    Parameters
    ----------
    image : array_like, shape (height, width), float
    mask : array_like of bool, shape (height, width), optional
        Pixels to use (for example a segmentation map); default all.

    Returns
    -------
    float
        nan when fewer than two pixels or no light.
    """
    img = _as_image(image)
    values = np.abs(img if mask is None else img[_as_mask(mask, img.shape)])
    values = np.sort(values.ravel())
    n = values.size
    total = values.sum()
    if n < 2 or not total > 0:
        return float("nan")
    weights = 2.0 * np.arange(1, n + 1) - n - 1
    return float(weights @ values / (total * (n - 1)))


def _as_mask(mask, shape) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise AvaderError(f"mask: shape {mask.shape} does not match the image {shape}")
    return mask


def m20(image, mask=None, center: tuple[float, float] | None = None) -> float:
    """Normalised second moment of the brightest 20% of the light (Lotz et al. 2004).

    ``M20 = log10(sum_i M_i / M_tot)`` over the brightest pixels whose flux adds up to 20% of
    the total, with ``M_i = f_i (r_i**2 + 1/6)`` (distance to the centre plus the pixel's own
    moment). Negative pixels are set to zero. More concentrated light gives a more negative M20.

    Parameters
    ----------
    image : array_like, shape (height, width), float
    mask : array_like of bool, shape (height, width), optional
        Pixels to use; default all.
    center : (float, float), optional
        ``(x, y)``; default the centroid of the masked light (which minimises ``M_tot``).

    Returns
    -------
    float
        nan when there is no positive light.
    """
    img = np.clip(_as_image(image), 0.0, None)
    if mask is not None:
        img = np.where(_as_mask(mask, img.shape), img, 0.0)
    x0, y0 = _center(img, center)
    if not (np.isfinite(x0) and np.isfinite(y0)):
        return float("nan")
    yy, xx = np.indices(img.shape, dtype=np.float64)
    flux = img.ravel()
    moment = flux * ((xx.ravel() - x0) ** 2 + (yy.ravel() - y0) ** 2 + 1.0 / 6.0)
    order = np.argsort(flux, kind="stable")[::-1]
    cumulative = np.cumsum(flux[order])
    n_bright = int(np.searchsorted(cumulative, 0.2 * cumulative[-1])) + 1
    return float(np.log10(moment[order[:n_bright]].sum() / moment.sum()))


def asymmetry(image, center: tuple[float, float] | None = None) -> float:
    """Rotational asymmetry ``A = sum |I - I180| / sum |I|`` (Conselice 2000, no background term).

    ``I180`` is the image rotated by 180 degrees about ``center`` with bilinear interpolation
    (exact when ``2 x`` and ``2 y`` are integers); light rotated in from outside the image is 0.
    ``A`` lies in [0, 2]: 0 for a point-symmetric source, 2 when nothing overlaps. Pixel noise
    raises ``A`` (no background asymmetry is subtracted).

    Parameters
    ----------
    image : array_like, shape (height, width), float
    center : (float, float), optional
        ``(x, y)`` in pixels; default the centroid.

    Returns
    -------
    float
        nan when the image has no light.
    """
    img = _as_image(image)
    x0, y0 = _center(img, center)
    denominator = np.abs(img).sum()
    if not (denominator > 0 and np.isfinite(x0) and np.isfinite(y0)):
        return float("nan")
    yy, xx = np.indices(img.shape, dtype=np.float64)
    rotated = ndimage.map_coordinates(img, [2.0 * y0 - yy, 2.0 * x0 - xx], order=1, mode="constant", cval=0.0)
    return float(np.abs(img - rotated).sum() / denominator)


CLIPPED_FRACTION = 0.3  # sky pixels at the minimum beyond which the sky counts as clipped at black
_Q75 = 0.6744897501960817  # upper quartile of the unit normal


def sky_noise(pixels) -> tuple[np.ndarray, np.ndarray]:
    """Sky level and noise sigma from sky pixels, also when the sky was clipped at black.

    Unclipped sky: level = median, sigma = (upper quartile - median) / 0.6745 (the upper half of
    the 1.4826 MAD). Clipped sky (more than :data:`CLIPPED_FRACTION` of the pixels at their
    minimum, as in the SDSS JPEGs and the simulated default): level = the minimum, and sigma =
    (upper quartile - minimum) / 0.6745, because the upper quartile of a normal clipped at its
    mean is still 0.6745 sigma above it.

    Parameters
    ----------
    pixels : array_like, shape (..., m)
        Sky pixels (for example an image's outer frame), last axis the pixels of one image.

    Returns
    -------
    level, sigma : ndarray, shape (...), float64 (same units as ``pixels``)
    """
    x = np.asarray(pixels, dtype=np.float64)
    low = x.min(axis=-1)
    median, upper = np.quantile(x, [0.5, 0.75], axis=-1)
    clipped = (x <= low[..., None]).mean(axis=-1) > CLIPPED_FRACTION
    level = np.where(clipped, low, median)
    return level, (upper - level) / _Q75


def segment_main_source(
    image,
    k_sigma: float = 2.0,
    border: int = 4,
    smooth: float = 1.0,
    min_threshold: float = 0.0,
    central_box: float = 0.25,
) -> tuple[np.ndarray, float, float]:
    """Background level, noise and segmentation map of the central source.

    1. Background and noise of the pixels within ``border`` pixels of the image edge by
       :func:`sky_noise` (their standard deviation if that is 0).
    2. Detection image = background-subtracted image smoothed by a Gaussian of ``smooth`` pixels.
    3. Threshold = ``max(k_sigma * noise, min_threshold)``; pixels strictly above it are grouped
       into 8-connected regions (``scipy.ndimage.label``).
    4. The main source is the region containing the brightest detection pixel inside the
       central box (``central_box`` times the image size, centred); its holes are filled.
       Companions and noise peaks not connected to it are left out.

    Parameters
    ----------
    image : array_like, shape (height, width), float
    k_sigma : float
        Detection threshold in units of the border noise.
    border : int
        Width in pixels of the frame used for the background statistics.
    smooth : float
        Gaussian sigma (pixels) of the detection smoothing; 0 for none.
    min_threshold : float
        Floor of the threshold, in image units (use about one quantisation step for uint8-derived
        images, whose border noise can be exactly 0).
    central_box : float
        Side of the central search box as a fraction of the image size.

    Returns
    -------
    mask : ndarray of bool, shape (height, width)
        The main source; all False when nothing in the central box is above the threshold.
    background, noise : float
    """
    img = _as_image(image)
    h, w = img.shape
    border = int(border)
    if border < 1 or 2 * border >= min(h, w):
        raise AvaderError(f"border: must be between 1 and {(min(h, w) - 1) // 2} pixels, got {border}")
    frame = np.ones((h, w), dtype=bool)
    frame[border:-border, border:-border] = False
    edge = img[frame]
    background, noise = (float(v) for v in sky_noise(edge))
    if noise == 0.0:
        noise = float(edge.std())
    detect = img - background
    if smooth > 0:
        detect = ndimage.gaussian_filter(detect, float(smooth), mode="nearest")
    threshold = max(k_sigma * noise, float(min_threshold))
    labels, _ = ndimage.label(detect > threshold, structure=np.ones((3, 3), dtype=bool))
    half_h, half_w = max(1, round(h * central_box / 2)), max(1, round(w * central_box / 2))
    rows = slice(max(0, h // 2 - half_h), min(h, h // 2 + half_h + 1))
    cols = slice(max(0, w // 2 - half_w), min(w, w // 2 + half_w + 1))
    box = detect[rows, cols]
    r, c = np.unravel_index(int(np.argmax(box)), box.shape)
    label = labels[rows, cols][r, c]
    if label == 0:
        return np.zeros((h, w), dtype=bool), background, noise
    return ndimage.binary_fill_holes(labels == label), background, noise


def _measure_one(img, wanted, weighted, segmentation) -> dict[str, float]:
    mask, background, noise = segment_main_source(img, **segmentation)
    out = {"background": background, "noise": noise, "n_pixels": float(mask.sum())}
    work = np.where(mask, img - background, 0.0)
    if not mask.any() or not work.sum() > 0:
        return out
    x0, y0 = centroid(work)
    out.update({"x": x0, "y": y0, "flux": float(work.sum())})
    if wanted & {"axis_ratio", "position_angle", "e1", "e2", "ellipticity"}:
        moments = second_moments(work, weighted=weighted, center=None if weighted else (x0, y0))
        out.update({key: moments[key] for key in ("axis_ratio", "position_angle", "e1", "e2", "ellipticity")})
    if wanted & {"r20", "r_half", "r80", "concentration", "r80_r20"}:
        r20, r_half, r80 = light_radii(work, (0.2, 0.5, 0.8), center=(x0, y0))
        ratio = r80 / r20 if r20 > 0 else float("nan")
        out.update({"r20": r20, "r_half": r_half, "r80": r80, "r80_r20": ratio})
        out["concentration"] = float(5.0 * np.log10(ratio))
    if "gini" in wanted:
        out["gini"] = gini(work, mask=mask)
    if "m20" in wanted:
        out["m20"] = m20(work, mask=mask)
    if "asymmetry" in wanted:
        out["asymmetry"] = asymmetry(work, center=(x0, y0))
    return out


def measure(
    images,
    statistics: Sequence[str] = DEFAULT_STATISTICS,
    weighted: bool = False,
    k_sigma: float = 2.0,
    border: int = 4,
    smooth: float = 1.0,
    min_threshold: float = 0.0,
    as_table: bool = False,
    progress: bool = False,
):
    """Morphological statistics of each image of a batch, after background removal and segmentation.

    For each image: the background (median of the border frame) is subtracted, the main source
    is segmented with :func:`segment_main_source` (``k_sigma``, ``border``, ``smooth``,
    ``min_threshold``), every pixel outside it is set to 0 so that noise and unconnected
    companions do not dominate, and the statistics are computed on what is left
    (Gini and M20 over the segmentation pixels only). Images where no source is found give nan.

    Parameters
    ----------
    images : array_like, shape (n, height, width) or (height, width)
        Any real dtype (uint8 is fine: the statistics do not depend on the flux scale,
        except through ``min_threshold``); read one image at a time, so a memory map works.
    statistics : sequence of str
        Names from :data:`KNOWN_STATISTICS`: ``x, y`` (centroid, pixels), ``flux``,
        ``axis_ratio``, ``position_angle`` (degrees), ``e1, e2, ellipticity``,
        ``r20, r_half, r80`` (pixels), ``concentration`` (5 log10 R80/R20), ``r80_r20``,
        ``gini``, ``m20``, ``asymmetry``, ``n_pixels`` (segmentation size), ``background``, ``noise``.
    weighted : bool
        Use adaptive (Gaussian-weighted) moments for the shape statistics.
    as_table : bool
        Return an :class:`astropy.table.Table` instead of a dict.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict of str to ndarray, shape (n,), float64 (or Table with those columns)

    Notes
    -----
    The statistics describe the segmented light only: wings below the threshold are lost (radii
    and concentration of high-Sersic-index profiles shrink at low signal-to-noise) and pixel noise
    inside the segment raises the asymmetry, which has no background correction. Compare samples
    (for example real against generated) measured with the same settings.
    """
    statistics = (statistics,) if isinstance(statistics, str) else tuple(statistics)
    unknown = [name for name in statistics if name not in KNOWN_STATISTICS]
    if unknown:
        raise AvaderError(f"statistics: unknown {unknown} (known: {', '.join(KNOWN_STATISTICS)})")
    stack = np.asarray(images) if not hasattr(images, "shape") else images
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise AvaderError(f"images: expected shape (n, height, width), got {tuple(stack.shape)}")
    n = stack.shape[0]
    result = {name: np.full(n, np.nan) for name in statistics}
    segmentation = {"k_sigma": k_sigma, "border": border, "smooth": smooth, "min_threshold": min_threshold}
    indices = range(n)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="morphology", unit="image")
    n_empty = 0
    for i in indices:
        values = _measure_one(_as_image(stack[i], f"images[{i}]"), set(statistics), weighted, segmentation)
        n_empty += "flux" not in values
        for name in statistics:
            result[name][i] = values.get(name, np.nan)
    if n_empty:
        logger.warning("no central source found in %d of %d images; their statistics are nan", n_empty, n)
    if as_table:
        from astropy.table import Table

        return Table(result)
    return result
