"""The embedded default data: SDSS-like simulated galaxies with ground truth (GalSim).

Each image imitates one of the paper's Galaxy Zoo 2 cutouts: a grey (0.2125 g + 0.7154 r + 0.0721 i)
image spanning ``field_r90`` times the main galaxy's Petrosian R90 (the paper's 192 px crop of a
0.02 R90/px cutout: 3.84 R90), seen through an SDSS-like PSF, with sky noise, pixels below the sky
set to the sky (``sky_clip``, the black point of the SDSS colour JPEGs that the paper grey-scaled)
and a per-image min-max stretch to [0, 1]. The S/N range follows GZ2's bright limit (r < 17:
optimal S/N about 100-200 at the limit for a 2 arcsec half-light radius, 5 sigma point-source depth
r = 22.2, more for the brighter galaxies). Because every galaxy is scaled to its own size, the
physical size (R90 in arcsec) only sets the PSF width in pixels. Blend sets keep the sky's noise of
both signs (no clip), so that the deblender's Gaussian noise model holds.

Families: ``spheroid`` (Sersic n about 4, rounder), ``early`` (bulge + disk), ``late`` (exponential
disk, small bulge, star-forming knots) and ``irregular`` (clumpy, knot dominated). Disks are
inclined thin disks, so edge-on galaxies appear. A fraction of images hold neighbouring
galaxies or stars; blend sets hold 2 or 3 overlapping galaxies with their isolated components.

Image ``i`` depends only on ``(seed, i)`` (``np.random.default_rng([seed, i])``), so shards and
worker counts never change a pixel. Pixel coordinates are 0-based with ``image[y, x]``;
angles are degrees counter-clockwise from the +x axis (the array's column axis, row = y).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import AvaderError

__all__ = ["SimulationConfig", "FAMILIES", "HELDOUT_ID_START", "MIN_IMAGE_SIZE", "simulate", "render_galaxy", "render_blend"]

log = logging.getLogger(__name__)

HELDOUT_ID_START = 2_000_000  # first id of a profile's held-out comparison set (training sets use ids 0 .. n - 1)
FAMILIES = ("spheroid", "early", "late", "irregular")  # family_code is the index in this tuple
MIN_IMAGE_SIZE = 16  # pixels per side
MAX_SOURCES = 3  # galaxies per blend (COMPONENTS slots)
_TRUNC = 8.0  # Sersic truncation radius in units of the half-light radius
_KNOT_SCALE = 1.0 / 1.6783  # exponential scale length in units of its half-light radius
_PETRO_ETA = 0.2  # SDSS Petrosian ratio defining the Petrosian radius


def _default_fractions() -> dict[str, float]:
    return {"spheroid": 0.25, "early": 0.25, "late": 0.40, "irregular": 0.10}


@dataclass(frozen=True)
class SimulationConfig:
    """Population and observing conditions of the simulated catalogue (GZ2-like defaults)."""

    family_fractions: dict[str, float] = field(default_factory=_default_fractions)  # main galaxies per family (sum 1)
    field_r90: float = 3.84                   # image width, units of the main galaxy's Petrosian R90 (paper: 192 * 0.02)
    r90_arcsec: tuple[float, ...] = (3.0, 20.0)  # Petrosian R90, arcsec (log-uniform); sets the PSF width in pixels
    psf_profile: str = "moffat"               # "moffat" or "kolmogorov"
    psf_fwhm_arcsec: float = 1.4              # median seeing FWHM, arcsec (SDSS r band)
    psf_fwhm_scatter: float = 0.2             # Gaussian scatter of the seeing FWHM, arcsec (clipped to 0.5x..2x)
    moffat_beta: float = 3.5                  # Moffat slope (dimensionless)
    snr: tuple[float, ...] = (100.0, 2000.0)  # optimal S/N range of the main galaxy (log-uniform; GZ2's r < 17: 100-200 at the limit)
    disk_q0: tuple[float, ...] = (0.1, 0.2)   # intrinsic thickness of disks, minor/major (uniform): edge-on axis ratio
    spheroid_q0: tuple[float, ...] = (0.5, 0.9)  # intrinsic axis ratio of oblate spheroids and bulges (uniform)
    bulge_colour: tuple[float, ...] = (0.75, 0.40)  # (g - r, r - i) of bulges and spheroids, mag
    disk_colour: tuple[float, ...] = (0.45, 0.25)   # (g - r, r - i) of disks, mag
    knot_colour: tuple[float, ...] = (0.15, 0.05)   # (g - r, r - i) of star-forming knots, mag
    colour_scatter: float = 0.05              # Gaussian scatter of each colour, mag
    grey_weights: tuple[float, ...] = (0.2125, 0.7154, 0.0721)  # (g, r, i) weights of the grey image (paper)
    companion_fraction: float = 0.3           # fraction of images with at least one neighbour
    companion_two_fraction: float = 0.25      # fraction of those with two neighbours
    companion_star_fraction: float = 0.35     # fraction of neighbours that are stars (others: galaxies)
    companion_flux_ratio: tuple[float, ...] = (0.05, 1.0)  # neighbour / main galaxy flux (log-uniform)
    companion_sep_r90: tuple[float, ...] = (0.7, 1.8)      # neighbour distance from the main galaxy, units of its R90
    blend_three_fraction: float = 0.2         # fraction of blends with three galaxies (others: two)
    blend_sep_rhalf: tuple[float, ...] = (0.5, 4.0)        # blend separation, units of the brighter half-light radius
    blend_flux_ratio: tuple[float, ...] = (0.1, 1.0)       # faint / bright flux in blends (log-uniform)
    image_dtype: str = "uint8"                # stored pixels, "uint8" or "float32" (blend sets: always float32)
    stretch: str = "linear"                   # "linear" min-max, or "asinh" then min-max (blends need "linear")
    asinh_softening: float = 3.0              # asinh softening, units of the noise sigma
    sky_clip: bool = True                     # pixels below the sky set to the sky (the SDSS JPEGs' black point); not blends

    def validate(self) -> None:
        """Raise AvaderError ``"<key>: <problem>"`` for an inconsistent configuration."""
        fractions = dict(self.family_fractions)
        unknown = sorted(set(fractions) - set(FAMILIES))
        if unknown:
            raise AvaderError(f"family_fractions: unknown family {unknown[0]!r} (known: {', '.join(FAMILIES)})")
        if not fractions or not all(math.isfinite(v) and v >= 0 for v in fractions.values()):
            raise AvaderError(f"family_fractions: need non-negative fractions, got {fractions}")
        if abs(sum(fractions.values()) - 1.0) > 1e-6:
            raise AvaderError(f"family_fractions: fractions sum to {sum(fractions.values()):.6g}, not 1")
        for key in ("r90_arcsec", "snr", "disk_q0", "spheroid_q0", "companion_flux_ratio", "companion_sep_r90",
                    "blend_sep_rhalf", "blend_flux_ratio"):
            v = tuple(getattr(self, key))
            if len(v) != 2 or not all(math.isfinite(x) and x > 0 for x in v) or v[0] > v[1] or (key[-2:] == "q0" and v[1] > 1):
                raise AvaderError(f"{key}: need (low, high) with 0 < low <= high (<= 1 for axis ratios), got {v}")
        for key, length in (("bulge_colour", 2), ("disk_colour", 2), ("knot_colour", 2), ("grey_weights", 3)):
            if len(getattr(self, key)) != length:
                raise AvaderError(f"{key}: need {length} values, got {getattr(self, key)}")
        for key in ("companion_fraction", "companion_two_fraction", "companion_star_fraction", "blend_three_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise AvaderError(f"{key}: must be a fraction in [0, 1], got {getattr(self, key)}")
        for key in ("field_r90", "psf_fwhm_arcsec", "moffat_beta", "asinh_softening"):
            if not getattr(self, key) > 0:
                raise AvaderError(f"{key}: must be positive, got {getattr(self, key)}")
        if min(self.psf_fwhm_scatter, self.colour_scatter, *self.grey_weights) < 0:
            raise AvaderError("psf_fwhm_scatter, colour_scatter, grey_weights: must not be negative")
        for key, allowed in (("psf_profile", ("moffat", "kolmogorov")), ("image_dtype", ("uint8", "float32")),
                             ("stretch", ("linear", "asinh"))):
            if getattr(self, key) not in allowed:
                raise AvaderError(f"{key}: must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")


# --------------------------------------------------------------------------- galaxy models

@dataclass
class _Galaxy:
    """One galaxy before rendering, in model units (main component half-light radius about 1)."""

    family: str
    comps: list           # (sersic n, half-light radius, grey flux, axis ratio)
    knots: np.ndarray     # (k, 2) knot positions, already inclined and rotated
    knot_flux: float      # total grey flux in knots
    knot_profile: tuple   # (half-light radius, axis ratio) of the disk the knots follow, for profiles
    knot_sigma: float     # Gaussian size of each knot
    pa: float             # degrees
    inclination: float    # degrees
    sersic_index: float
    bulge_to_total: float


def _grey(rng, colour, cfg) -> float:
    """Grey flux of one unit of r-band flux with colours (g - r, r - i) plus scatter."""
    g_r, r_i = np.asarray(colour) + rng.normal(0.0, cfg.colour_scatter, 2)
    w_g, w_r, w_i = cfg.grey_weights
    return w_g * 10 ** (-0.4 * g_r) + w_r + w_i * 10 ** (0.4 * r_i)


def _projected_q(q0: float, cos_i: float) -> float:
    """Apparent axis ratio of an oblate body of thickness q0 at inclination arccos(cos_i)."""
    return math.sqrt(cos_i**2 * (1.0 - q0**2) + q0**2)


def _rotate(points: np.ndarray, q: float, pa: float) -> np.ndarray:
    """Apply GalSim's area-preserving shear (axis ratio q) then rotate by pa degrees (counter-clockwise)."""
    a = math.radians(pa)
    stretched = points * np.array([1.0 / math.sqrt(q), math.sqrt(q)])
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return stretched @ rot.T


def _sample_galaxy(rng, family: str, cfg: SimulationConfig) -> _Galaxy:
    """Draw the structural parameters of one galaxy of ``family``."""
    pa = rng.uniform(0.0, 180.0)
    cos_i = rng.uniform(0.0, 1.0)
    q_sph = _projected_q(rng.uniform(*cfg.spheroid_q0), cos_i)
    bulge_w, disk_w, knot_w = (_grey(rng, c, cfg) for c in (cfg.bulge_colour, cfg.disk_colour, cfg.knot_colour))
    if family == "spheroid":
        n_b = float(rng.choice([3.0, 4.0, 5.0], p=[0.25, 0.5, 0.25]))
        bt_r, h_b, n_knots, knot_frac, q0_d, clumpy = 1.0, 1.0, 0, 0.0, 1.0, False
    elif family == "early":
        n_b = float(rng.choice([2.0, 3.0, 4.0]))
        bt_r, h_b, n_knots, knot_frac = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.5), 0, 0.0
        q0_d, clumpy = rng.uniform(*cfg.disk_q0), False
    elif family == "late":
        n_b = float(rng.choice([1.0, 2.0]))
        bt_r, h_b = rng.uniform(0.0, 0.2), rng.uniform(0.1, 0.3)
        n_knots, knot_frac = int(rng.integers(10, 41)), rng.uniform(0.1, 0.35)
        q0_d, clumpy = rng.uniform(*cfg.disk_q0), False
    else:
        n_b, bt_r, h_b = 1.0, 0.0, 1.0
        n_knots, knot_frac = int(rng.integers(10, 31)), rng.uniform(0.4, 0.8)
        q0_d, clumpy = rng.uniform(0.3, 0.6), True
    q_d = _projected_q(q0_d, cos_i)
    f_bulge = bt_r * bulge_w
    f_disk = (1.0 - bt_r) * (1.0 - knot_frac) * disk_w
    f_knots = (1.0 - bt_r) * knot_frac * knot_w
    total = f_bulge + f_disk + f_knots
    comps = []
    if f_bulge > 0:
        comps.append((n_b, h_b, f_bulge / total, q_sph))
    if f_disk > 0:
        comps.append((1.0, 1.0, f_disk / total, q_d))
    knots = np.zeros((0, 2))
    if n_knots:
        if clumpy:
            n_clumps = int(rng.integers(2, 5))
            centres = _disk_points(rng, n_clumps)
            knots = centres[rng.integers(0, n_clumps, n_knots)] + rng.normal(0.0, 0.3, (n_knots, 2))
        else:
            knots = _disk_points(rng, n_knots)
        knots = _rotate(knots, q_d, pa)
    bt = f_bulge / total
    sersic = n_b if bt >= 0.5 else 1.0
    knot_sigma = rng.uniform(0.05, 0.15) if clumpy else rng.uniform(0.02, 0.08)
    return _Galaxy(family, comps, knots, f_knots / total, (1.0, q_d), knot_sigma, pa,
                   math.degrees(math.acos(cos_i)), sersic, bt)


def _disk_points(rng, k: int) -> np.ndarray:
    """k points following a face-on exponential disk of unit half-light radius."""
    r = rng.gamma(2.0, _KNOT_SCALE, k)
    phi = rng.uniform(0.0, 2 * np.pi, k)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi)])


@functools.lru_cache(maxsize=64)
def _sersic_shape(n: float) -> tuple[float, float]:
    """(scale radius, <r^2>) of GalSim's unit half-light-radius Sersic profile truncated at _TRUNC."""
    import galsim
    from scipy.special import gammainc, gammaln

    r0 = galsim.Sersic(n, half_light_radius=1.0, trunc=_TRUNC).scale_radius
    x_t = (_TRUNC / r0) ** (1.0 / n)
    r2 = r0**2 * math.exp(gammaln(4 * n) - gammaln(2 * n)) * gammainc(4 * n, x_t) / gammainc(2 * n, x_t)
    return r0, r2


def _enclosed(gal: _Galaxy, r: np.ndarray) -> np.ndarray:
    """Circularised fraction of the light within radius r (model units); knots follow their disk."""
    from scipy.special import gammainc

    parts = list(gal.comps)
    if gal.knot_flux > 0:
        parts.append((1.0, gal.knot_profile[0], gal.knot_flux, gal.knot_profile[1]))
    total = np.zeros_like(r)
    for n, h, flux, _ in parts:
        r0, _ = _sersic_shape(n)
        x_t = (_TRUNC / r0) ** (1.0 / n)
        x = (np.minimum(r / h, _TRUNC) / r0) ** (1.0 / n)
        total += flux * gammainc(2 * n, x) / gammainc(2 * n, x_t)
    return total


_STEP = math.log(1.25) / 8  # log-radius grid step: 1.25 r and 0.8 r are exactly 8 steps away
_GRID = np.exp(np.arange(math.log(1e-3), math.log(2 * _TRUNC) + _STEP, _STEP))  # model units


def _radii(gal: _Galaxy) -> tuple[float, float, float]:
    """(true half-light radius, Petrosian R50, Petrosian R90) in model units (SDSS definition, eta = 0.2)."""
    r, f = _GRID, _enclosed(gal, _GRID)
    eta = (f[16:] - f[:-16]) / ((1.25**2 - 0.8**2) * np.maximum(f[8:-8], 1e-300))
    j = int(np.argmax(eta < _PETRO_ETA)) + 8
    r_p = float(np.interp(_PETRO_ETA, eta[j - 9 : j - 7][::-1], r[j - 1 : j + 1][::-1]))
    f_p = float(np.interp(2 * r_p, r, f))
    return (float(np.interp(0.5 * f[-1], f, r)), float(np.interp(0.5 * f_p, f, r)), float(np.interp(0.9 * f_p, f, r)))


def _moments(gal: _Galaxy) -> tuple[float, float]:
    """(axis ratio b/a, position angle in degrees [0, 180)) of the light's second moments before the PSF."""
    m = np.zeros((2, 2))
    first = np.zeros(2)
    for n, h, flux, q in gal.comps:
        a = math.radians(gal.pa)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        m += flux * 0.5 * _sersic_shape(n)[1] * h**2 * rot @ np.diag([1.0 / q, q]) @ rot.T
    if len(gal.knots):
        w = gal.knot_flux / len(gal.knots)
        first = w * gal.knots.sum(0)
        m += w * gal.knots.T @ gal.knots + gal.knot_flux * gal.knot_sigma**2 * np.eye(2)
    m -= np.outer(first, first)
    lam_small, lam_big = np.linalg.eigvalsh(m)
    pa = 0.5 * math.degrees(math.atan2(2 * m[0, 1], m[0, 0] - m[1, 1])) % 180.0
    return math.sqrt(max(lam_small, 0.0) / lam_big), pa


# --------------------------------------------------------------------------- rendering

@functools.lru_cache(maxsize=1)
def _gsparams():
    """GalSim accuracy settings: 1% folding and 0.2% k-space truncation keep FFTs small (about 128^2 at 64 px)."""
    import galsim

    return galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3, maximum_fft_size=4096)


@functools.lru_cache(maxsize=8)
def _unit_psf(profile: str, beta: float):
    """The unit-FWHM PSF, built once per process and dilated per image (cheap)."""
    import galsim

    if profile == "moffat":
        return galsim.Moffat(beta=beta, fwhm=1.0, trunc=6.0, gsparams=_gsparams())
    return galsim.Kolmogorov(fwhm=1.0, gsparams=_gsparams())


def _deposit(grid: np.ndarray, xy: np.ndarray, flux: np.ndarray) -> None:
    """Add point sources at 0-based pixel positions (x, y) with bilinear weights."""
    x0 = np.floor(xy[:, 0]).astype(int)
    y0 = np.floor(xy[:, 1]).astype(int)
    fx, fy = xy[:, 0] - x0, xy[:, 1] - y0
    h, w = grid.shape
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xs, ys = x0 + dx, y0 + dy
        ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        np.add.at(grid, (ys[ok], xs[ok]), (wt * flux)[ok])


class _Scene:
    """Renders galaxies and stars into (size, size) float64 images through one PSF."""

    def __init__(self, size: int, psf_fwhm_pix: float, cfg: SimulationConfig):
        import galsim

        self.galsim = galsim
        self.size = size
        self.centre = (size - 1) / 2.0
        self.gsparams = _gsparams()
        self.fwhm = psf_fwhm_pix
        self.psf = _unit_psf(cfg.psf_profile, cfg.moffat_beta).dilate(psf_fwhm_pix)

    @functools.cached_property
    def kernel(self) -> np.ndarray:
        """Pixel-integrated PSF image (odd size, centred on its central pixel), from 4x4 sub-pixel samples."""
        k = min(2 * math.ceil(5 * self.fwhm) + 1, self.size + 1 - self.size % 2)
        fine = self.psf.drawImage(nx=4 * k, ny=4 * k, scale=0.25, method="no_pixel", dtype=np.float64).array
        return fine.reshape(k, 4, k, 4).sum(axis=(1, 3))

    def galaxy(self, gal: _Galaxy, scale: float, xy, flux: float) -> np.ndarray:
        """Noise-free image of ``gal`` dilated by ``scale`` pixels per model unit, centred at xy."""
        from scipy.ndimage import gaussian_filter

        gs = self.galsim
        image = np.zeros((self.size, self.size))
        parts = [gs.Sersic(n, half_light_radius=1.0, trunc=_TRUNC, flux=flux * f, gsparams=self.gsparams)
                 .dilate(h * scale).shear(q=q, beta=gal.pa * gs.degrees) for n, h, f, q in gal.comps]
        if parts:
            # draw centred (small FFTs), then paste at the integer shift
            shift = np.rint(np.asarray(xy) - self.centre).astype(int)
            offset = tuple(np.asarray(xy) - self.centre - shift)
            profile = gs.Convolve(gs.Add(parts) if len(parts) > 1 else parts[0], self.psf, gsparams=self.gsparams)
            stamp = profile.drawImage(nx=self.size, ny=self.size, scale=1.0, offset=offset, method="auto",
                                      dtype=np.float64).array
            _paste(image, stamp, shift)
        if len(gal.knots):
            points = np.zeros_like(image)
            knot_flux = np.full(len(gal.knots), flux * gal.knot_flux / len(gal.knots))
            _deposit(points, gal.knots * scale + np.asarray(xy), knot_flux)
            image += self.convolve(gaussian_filter(points, gal.knot_sigma * scale, mode="constant"))
        return image

    def star(self, xy, flux: float) -> np.ndarray:
        """Noise-free image of a point source of ``flux`` at xy."""
        points = np.zeros((self.size, self.size))
        _deposit(points, np.asarray([xy], dtype=float), np.asarray([flux]))
        return self.convolve(points)

    def convolve(self, points: np.ndarray) -> np.ndarray:
        """Convolve an image of point-like sources with the pixel-convolved PSF."""
        from scipy.signal import fftconvolve

        return fftconvolve(points, self.kernel, mode="same")


def _paste(image: np.ndarray, stamp: np.ndarray, shift) -> None:
    """Add ``stamp`` (same shape as image) moved by the integer (dx, dy), clipped at the edges."""
    h, w = image.shape
    dx, dy = int(shift[0]), int(shift[1])
    if abs(dx) >= w or abs(dy) >= h:
        return
    image[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] += stamp[max(-dy, 0):h - max(dy, 0),
                                                                        max(-dx, 0):w - max(dx, 0)]


def _log_uniform(rng, low_high) -> float:
    low, high = low_high
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _observing(rng, size: int, cfg: SimulationConfig) -> dict:
    """Physical size, seeing and S/N of one image; pixel sizes follow from the fixed field."""
    r90_arcsec = _log_uniform(rng, cfg.r90_arcsec)
    fwhm = float(np.clip(rng.normal(cfg.psf_fwhm_arcsec, cfg.psf_fwhm_scatter),
                         0.5 * cfg.psf_fwhm_arcsec, 2.0 * cfg.psf_fwhm_arcsec))
    r90_pix = size / cfg.field_r90
    pixel_scale = r90_arcsec / r90_pix
    return {"r90_arcsec": r90_arcsec, "pixel_scale": pixel_scale, "psf_fwhm_arcsec": fwhm,
            "psf_fwhm_pix": fwhm / pixel_scale, "r90_pix": r90_pix, "snr": _log_uniform(rng, cfg.snr)}


def _pick_family(rng, cfg: SimulationConfig) -> str:
    names = [f for f in FAMILIES if cfg.family_fractions.get(f, 0.0) > 0]
    p = np.array([cfg.family_fractions[f] for f in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _galaxy_truth(gal: _Galaxy, r90_pix: float) -> tuple[float, dict]:
    """Pixels per model unit placing Petrosian R90 at ``r90_pix``, and the galaxy's truth columns."""
    r_half, r50, r90 = _radii(gal)
    scale = r90_pix / r90
    q, pa = _moments(gal)
    return scale, {"family": gal.family, "family_code": FAMILIES.index(gal.family), "axis_ratio": q,
                   "position_angle": pa, "inclination": gal.inclination, "sersic_index": gal.sersic_index,
                   "bulge_to_total": gal.bulge_to_total, "r_half": r_half * scale, "concentration": r90 / r50,
                   "n_knots": len(gal.knots), "knot_fraction": gal.knot_flux}


def _stretch(image: np.ndarray, sigma: float, cfg: SimulationConfig) -> tuple[np.ndarray, float, float, float]:
    """Min-max stretch (after asinh if configured): (stored image, gain, zero level, noise sigma at zero)."""
    if cfg.sky_clip:
        image = np.maximum(image, 0.0)
    if cfg.stretch == "asinh":
        soft = cfg.asinh_softening * sigma
        image, sigma = np.arcsinh(image / soft), 1.0 / cfg.asinh_softening
    low, high = float(image.min()), float(image.max())
    span = high - low if high > low else 1.0
    return ((image - low) / span).astype(np.float32), 1.0 / span, -low / span, sigma / span


def _check_int(key: str, value, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise AvaderError(f"{key}: must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def _setup(index, seed, image_size, config, stream: tuple):
    """(config, random generator of (seed, index, *stream), observing conditions, scene)."""
    cfg = config if config is not None else SimulationConfig()
    cfg.validate()
    size, seed = _check_int("image_size", image_size, MIN_IMAGE_SIZE), _check_int("seed", seed, 0)
    rng = np.random.default_rng([seed, _check_int("index", index, 0), *stream])
    obs = _observing(rng, size, cfg)
    return cfg, rng, obs, _Scene(size, obs["psf_fwhm_pix"], cfg)


def _neighbour(rng, cfg: SimulationConfig, r90_pix: float, flux: float) -> tuple[_Galaxy, float, dict]:
    """A galaxy of relative flux ``flux``, its size scaled roughly as sqrt(flux): (galaxy, scale, truth)."""
    gal = _sample_galaxy(rng, _pick_family(rng, cfg), cfg)
    size_ratio = min(1.2, math.sqrt(flux) * math.exp(rng.normal(0.0, 0.2)))
    return (gal, *_galaxy_truth(gal, r90_pix * size_ratio))


def render_galaxy(index: int, seed: int, image_size: int = 64, config: SimulationConfig | None = None,
                  noise_free: bool = False):
    """Render simulated galaxy ``index`` of the catalogue with ``seed``.

    Parameters
    ----------
    index : int
        Galaxy id (>= 0). The image depends only on ``(seed, index)``.
    seed : int
        Catalogue seed (>= 0).
    image_size : int
        Pixels per side (>= 16).
    config : SimulationConfig, optional
        Population settings; defaults to ``SimulationConfig()``.
    noise_free : bool
        Also return the same scene without noise, in the same stretch (linear stretch only), e.g.
        to check a measurement's noise model against the noisy image.

    Returns
    -------
    image : ndarray, shape (image_size, image_size), float32 in [0, 1]
        Grey image, ``image[y, x]``, after the per-image stretch.
    truth : dict
        Catalogue row: ``id``, ``family``, ``family_code``, ``x``/``y`` (centre, pixels), ``axis_ratio``
        (b/a of the light's second moments before the PSF), ``position_angle`` (degrees in [0, 180),
        counter-clockwise from +x), ``sersic_index`` (of the dominant component), ``bulge_to_total``
        (grey light), ``r_half`` (pixels), ``r90_pix`` (Petrosian R90, pixels), ``concentration``
        (Petrosian R90/R50 before the PSF), ``snr`` (optimal S/N of the main galaxy), ``noise_sigma`` and
        ``zero_level`` (stored units), seeing, pixel scale and the ``companion_*`` columns.
    clean : ndarray, shape (image_size, image_size), float32, only with ``noise_free``
        ``zero_level + gain * scene`` (not clipped or quantised).
    """
    cfg, rng, obs, scene = _setup(index, seed, image_size, config, ())
    if noise_free and cfg.stretch != "linear":
        raise AvaderError(f"noise_free: needs the linear stretch, got stretch={cfg.stretch!r}")
    gal = _sample_galaxy(rng, _pick_family(rng, cfg), cfg)
    scale, truth = _galaxy_truth(gal, obs["r90_pix"])
    xy = scene.centre + rng.uniform(-0.5, 0.5, 2)
    main = scene.galaxy(gal, scale, xy, 1.0)
    sigma = float(np.sqrt(np.sum(main**2))) / obs["snr"]
    n_comp = 0
    if rng.uniform() < cfg.companion_fraction:
        n_comp = 2 if rng.uniform() < cfg.companion_two_fraction else 1
    companions = []
    for _ in range(n_comp):
        ratio = _log_uniform(rng, cfg.companion_flux_ratio)
        sep = rng.uniform(*cfg.companion_sep_r90) * obs["r90_pix"]
        phi = rng.uniform(0.0, 2 * np.pi)
        cxy = xy + sep * np.array([math.cos(phi), math.sin(phi)])
        if rng.uniform() < cfg.companion_star_fraction:
            main = main + scene.star(cxy, ratio)
            companions.append((ratio, "star", "", cxy, sep))
        else:
            other, other_scale, _ = _neighbour(rng, cfg, obs["r90_pix"], ratio)
            main = main + scene.galaxy(other, other_scale, cxy, ratio)
            companions.append((ratio, "galaxy", other.family, cxy, sep))
    noisy = main + rng.normal(0.0, sigma, main.shape)
    image, gain, zero, noise = _stretch(noisy, sigma, cfg)
    companions.sort(key=lambda c: -c[0])
    first = companions[0] if companions else (math.nan, "none", "", (math.nan, math.nan), math.nan)
    truth.update(obs, id=int(index), x=float(xy[0]), y=float(xy[1]), noise_sigma=noise, zero_level=zero,
                 n_companions=n_comp, companion_type=first[1], companion_family=first[2],
                 companion_x=float(first[3][0]), companion_y=float(first[3][1]), companion_sep=float(first[4]),
                 companion_flux_ratio=float(first[0]))
    if noise_free:
        return image, truth, (zero + gain * main).astype(np.float32)
    return image, truth


def render_blend(index: int, seed: int, image_size: int = 64, config: SimulationConfig | None = None):
    """Render blend ``index``: 2 or 3 overlapping galaxies and their isolated components.

    The random stream is ``np.random.default_rng([seed, index, 1])``. The first source is the
    brightest; its R90 sets the field, and the pair of the two brightest is centred in the image.
    With ``zero_level`` and ``noise_sigma`` from the truth (stored units, linear stretch only),
    ``image == zero_level + components.sum(0) + noise`` with noise of standard deviation ``noise_sigma``.

    Returns
    -------
    image : ndarray, shape (image_size, image_size), float32 in [0, 1]
    components : ndarray, shape (3, image_size, image_size), float32
        Noise-free isolated sources in the blend's stored units; unused slots are zero.
    truth : dict
        The columns of :func:`render_galaxy` for the brightest source plus ``n_sources``, ``x_k``,
        ``y_k`` (pixels), ``flux_k`` (stored units), ``r_half_k`` (pixels), ``family_k`` for k = 0..2,
        ``separation`` (pixels), ``separation_rhalf`` (units of the brightest r_half) and ``flux_ratio``.
    """
    cfg, rng, obs, scene = _setup(index, seed, image_size, config, (1,))
    if cfg.stretch != "linear":
        raise AvaderError(f"stretch: blends need the linear stretch, got {cfg.stretch!r}")
    size = scene.size
    n_src = 3 if rng.uniform() < cfg.blend_three_fraction else 2
    ratio1 = _log_uniform(rng, cfg.blend_flux_ratio)
    fluxes = [1.0, ratio1] + ([_log_uniform(rng, (cfg.blend_flux_ratio[0], max(ratio1, cfg.blend_flux_ratio[0])))]
                              if n_src == 3 else [])
    first = _sample_galaxy(rng, _pick_family(rng, cfg), cfg)
    sources = [(first, *_galaxy_truth(first, obs["r90_pix"]))]
    sources += [_neighbour(rng, cfg, obs["r90_pix"], flux) for flux in fluxes[1:]]
    gals, scales, truths = zip(*sources, strict=True)
    r_half0 = truths[0]["r_half"]
    offsets = [np.zeros(2)]
    for _ in fluxes[1:]:
        sep = rng.uniform(*cfg.blend_sep_rhalf) * r_half0
        phi = rng.uniform(0.0, 2 * np.pi)
        offsets.append(sep * np.array([math.cos(phi), math.sin(phi)]))
    shift = scene.centre + rng.uniform(-0.5, 0.5, 2) - 0.5 * offsets[1]
    centres = [shift + o for o in offsets]
    comps = np.zeros((MAX_SOURCES, size, size))
    for k, (gal, scale, flux) in enumerate(zip(gals, scales, fluxes, strict=True)):
        comps[k] = scene.galaxy(gal, scale, centres[k], flux)
    sigma = float(np.sqrt(np.sum(comps[0] ** 2))) / obs["snr"]
    noise = rng.normal(0.0, sigma, (size, size))
    image, gain, zero, noise_sigma = _stretch(comps.sum(0) + noise, sigma, dataclasses.replace(cfg, sky_clip=False))
    components = (comps * gain).astype(np.float32)
    truth = dict(truths[0], **obs)
    sep01 = float(np.hypot(*offsets[1]))
    truth.update(id=int(index), x=float(centres[0][0]), y=float(centres[0][1]), noise_sigma=noise_sigma,
                 zero_level=zero, n_companions=n_src - 1, companion_type="galaxy", companion_family=gals[1].family,
                 companion_x=float(centres[1][0]), companion_y=float(centres[1][1]), companion_sep=sep01,
                 companion_flux_ratio=fluxes[1], n_sources=n_src, separation=sep01,
                 separation_rhalf=sep01 / r_half0, flux_ratio=fluxes[1])
    for k in range(MAX_SOURCES):
        used = k < n_src
        truth[f"x_{k}"] = float(centres[k][0]) if used else math.nan
        truth[f"y_{k}"] = float(centres[k][1]) if used else math.nan
        truth[f"flux_{k}"] = fluxes[k] * gain if used else 0.0
        truth[f"r_half_{k}"] = truths[k]["r_half"] if used else math.nan
        truth[f"family_{k}"] = gals[k].family if used else ""
    return image, components, truth


# --------------------------------------------------------------------------- catalogues and files

_STR_WIDTH = {"family": 9, "companion_type": 6, "companion_family": 9, "family_0": 9, "family_1": 9, "family_2": 9}
_INT_COLUMNS = ("id", "family_code", "n_knots", "n_companions", "n_sources")


def _columns(truths: list[dict]) -> dict[str, np.ndarray]:
    """Catalogue columns of one chunk, with fixed dtypes so that chunks and shards agree."""
    out = {}
    for name in truths[0]:
        values = [t[name] for t in truths]
        if name in _STR_WIDTH:
            out[name] = np.array(values, dtype=f"U{_STR_WIDTH[name]}")
        elif name in _INT_COLUMNS:
            out[name] = np.array(values, dtype=np.int64)
        else:
            out[name] = np.array(values, dtype=np.float64)
    return out


def _render_chunk(task):
    """Worker: render ids ``start .. stop`` (top-level so that spawned processes can import it)."""
    start, stop, seed, size, cfg, blends = task
    images = np.empty((stop - start, size, size), dtype=np.float32)
    comps = np.zeros((stop - start, MAX_SOURCES, size, size), dtype=np.float32) if blends else None
    truths = []
    for j, index in enumerate(range(start, stop)):
        if blends:
            images[j], comps[j], truth = render_blend(index, seed, size, cfg)
        else:
            images[j], truth = render_galaxy(index, seed, size, cfg)
        truths.append(truth)
    if not blends and cfg.image_dtype == "uint8":
        images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    return start, images, comps, _columns(truths)


def _results(tasks: list, workers: int):
    """Rendered chunks in id order: in this process, or from ``workers`` spawned processes.

    At most ``4 * workers`` chunks are in flight, so memory stays bounded however many there are.
    """
    if workers == 1:
        yield from map(_render_chunk, tasks)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    waiting, pending = iter(tasks), deque()
    try:
        for task in waiting:
            pending.append(pool.submit(_render_chunk, task))
            if len(pending) >= 4 * workers:
                break
        while pending:
            result = pending.popleft().result()
            task = next(waiting, None)
            if task is not None:
                pending.append(pool.submit(_render_chunk, task))
            yield result
    except BrokenProcessPool:
        raise AvaderError("workers: a worker process died; a script that calls simulate(workers > 1) "
                          "must guard its top level with `if __name__ == '__main__':`") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _parse_shard(shard, n: int) -> tuple[int, int, str]:
    """(start, stop, "k/n") of shard ``(k, n_shards)`` or ``"k/n_shards"``; None is the whole catalogue."""
    if shard is None:
        return 0, n, ""
    try:
        k, n_shards = (int(p) for p in (shard.split("/") if isinstance(shard, str) else shard))
    except (TypeError, ValueError):
        raise AvaderError(f"shard: expected (k, n_shards) or 'k/n_shards', got {shard!r}") from None
    if n_shards < 1 or not 0 <= k < n_shards:
        raise AvaderError(f"shard: need 0 <= k < n_shards, got {k}/{n_shards}")
    start, stop = k * n // n_shards, (k + 1) * n // n_shards
    if stop <= start:
        raise AvaderError(f"shard: shard {k}/{n_shards} of {n} galaxies is empty")
    return start, stop, f"{k}/{n_shards}"


def config_digest(config: SimulationConfig | None) -> str:
    """Short sha256 of the simulation settings (header key ``SIMCFG``), to tell stale files from current ones."""
    cfg = config if config is not None else SimulationConfig()
    return hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode()).hexdigest()[:16]


def _meta(cfg: SimulationConfig, n: int, size: int, seed: int, blends: bool, shard: str, start: int) -> dict:
    import galsim

    digest = config_digest(cfg)
    return {"SOURCE": "simulation", "RECIPE": "avader.simulate", "NSIM": n, "IMSIZE": size, "SEED": seed,
            "BLENDS": blends, "SHARD": shard or "all", "IDSTART": start, "FIELDR90": cfg.field_r90,
            "PIXR90": cfg.field_r90 / size, "STRETCH": cfg.stretch, "SKYCLIP": cfg.sky_clip and not blends, "SIMCFG": digest, "GALSIMV": galsim.__version__}


def simulate(n: int, image_size: int = 64, seed: int = 0, config: SimulationConfig | None = None, out=None,
             workers: int | None = None, shard=None, blends: bool = False, overwrite: bool = False,
             progress: bool = True, first_id: int = 0):
    """Simulate a catalogue of ``n`` SDSS-like galaxies (or blends) with ground truth.

    Parameters
    ----------
    n : int
        Size of the whole catalogue (ids ``first_id`` .. ``first_id + n - 1``), at least 1.
    image_size : int
        Pixels per side, at least 16.
    seed : int
        Catalogue seed (>= 0); image ``i`` depends only on ``(seed, i)``.
    config : SimulationConfig, optional
        Population settings; defaults to ``SimulationConfig()``.
    out : path-like, optional
        Stream the set into this GalaxySet file (memory flat in ``n``) and return its path.
        Without it the set is built in memory and returned.
    workers : int, optional
        Processes (spawned) rendering chunks of ids; default all cores, 1 renders in this process.
    shard : (int, int) or str, optional
        ``(k, n_shards)`` or ``"k/n_shards"``: render only the k-th contiguous block of ids
        (``k * n // n_shards`` up to ``(k + 1) * n // n_shards``); the shards concatenate to the whole.
    blends : bool
        Blend set: images of 2 or 3 galaxies, float32, with their components in the HDU
        ``COMPONENTS`` of shape (n, 3, image_size, image_size) (see :func:`render_blend`).
    overwrite : bool
        Replace an existing ``out``.
    progress : bool
        Show a tqdm progress bar.
    first_id : int
        Id of the catalogue's first galaxy (>= 0). Galaxy ``i`` of a seed is the same whatever
        catalogue holds it, so sets with disjoint ids are independent draws from the same population
        (the held-out comparison set of :func:`avader.data.ensure_heldout` starts at
        ``HELDOUT_ID_START``).

    Returns
    -------
    GalaxySet or Path
        The in-memory set, or the path of the written file when ``out`` is given.
    """
    from tqdm.auto import tqdm

    from .data import GalaxySet, GalaxySetWriter

    cfg = config if config is not None else SimulationConfig()
    cfg.validate()
    n = _check_int("n", n, 1)
    size, seed = _check_int("image_size", image_size, MIN_IMAGE_SIZE), _check_int("seed", seed, 0)
    if blends and cfg.stretch != "linear":
        raise AvaderError(f"stretch: blends need the linear stretch, got {cfg.stretch!r}")
    start, stop, shard_text = _parse_shard(shard, n)
    offset = _check_int("first_id", first_id, 0)
    start, stop = start + offset, stop + offset
    workers = _check_int("workers", (os.cpu_count() or 1) if workers is None else workers, 1)
    dtype = "float32" if blends else cfg.image_dtype
    count = stop - start
    chunk = max(1, min(64, -(-count // (4 * workers))))
    tasks = [(s, min(s + chunk, stop), seed, size, cfg, blends) for s in range(start, stop, chunk)]
    meta = _meta(cfg, int(n), size, seed, blends, shard_text, start)
    extra_shapes = {"COMPONENTS": ((MAX_SOURCES, size, size), "float32")} if blends else None
    workers = min(int(workers), len(tasks))
    log.info("simulating %d %s (ids %d..%d) at %dx%d with %d worker(s)", count, "blends" if blends else "galaxies",
             start, stop - 1, size, size, workers)
    t0 = time.perf_counter()
    columns = {}
    images = components = None
    if out is None:
        images = np.empty((count, size, size), dtype=np.dtype(dtype))
        components = np.empty((count, MAX_SOURCES, size, size), dtype=np.float32) if blends else None
    sink = (GalaxySetWriter(out, count, (size, size), dtype, meta, overwrite=overwrite, extra_shapes=extra_shapes)
            if out is not None else contextlib.nullcontext())
    with sink as writer, tqdm(total=count, disable=not progress, unit="gal", desc="simulate") as bar:
        for first, block, comps, cols in _results(tasks, workers):
            rows = slice(first - start, first - start + len(block))
            for name, values in cols.items():
                if name not in columns:
                    columns[name] = np.empty(count, dtype=values.dtype)
                columns[name][rows] = values
            if writer is not None:
                writer.write(rows.start, block, extra={"COMPONENTS": comps} if blends else None)
            else:
                images[rows] = block
                if blends:
                    components[rows] = comps
            bar.update(len(block))
        if writer is not None:
            writer.set_catalog(columns)
    elapsed = time.perf_counter() - t0
    log.info("simulated %d images in %.1f s (%.0f per second)", count, elapsed, count / max(elapsed, 1e-9))
    if writer is not None:
        return writer.path
    return GalaxySet(images, columns, meta, {"COMPONENTS": components} if blends else None)
