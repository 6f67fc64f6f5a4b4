"""Experiment: a copy of a GalaxySet with every image's sky put at the same level.

Each image becomes ``0.2 + 0.8 (x - sky) / (peak - sky)`` clipped to [0, 1], with ``sky`` the
median of its 4-pixel border and ``peak`` its maximum, so the sky sits at 0.2 in every image
instead of at a level set by the S/N through the min-max stretch.

Usage: ``python benchmarks/experiments/sky_fixed_set.py IN.fits OUT.fits``
"""

import sys

import numpy as np

from avader.data import GalaxySet

source, target = sys.argv[1:3]
galaxies = GalaxySet.read(source)
images = galaxies.get_images(slice(None)).astype(np.float32)
n = len(images)
frame = np.concatenate([images[:, :4].reshape(n, -1), images[:, -4:].reshape(n, -1),
                        images[:, :, :4].reshape(n, -1), images[:, :, -4:].reshape(n, -1)], axis=1)
sky = np.median(frame, axis=1)
peak = images.reshape(n, -1).max(axis=1)
fixed = np.clip(0.2 + 0.8 * (images - sky[:, None, None]) / (peak - sky)[:, None, None], 0, 1).astype(np.float32)
GalaxySet.from_arrays(fixed, galaxies.catalog, {"RECIPE": "sky at 0.2, peak at 1"}).write(target, overwrite=True)
print(f"wrote {target}")
