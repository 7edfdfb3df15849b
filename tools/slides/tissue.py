"""Tissue detection on a slide thumbnail: optical density, so pale stroma counts as tissue.

Glass is near white in every channel (optical density ~0); stained tissue, even pale eosin,
absorbs some light. The threshold is Otsu's on the thumbnail's optical density, bounded below
so a slide that is all tissue is not split in two, then small specks (dust, pen dots) are
removed and holes (lumina, fat) inside tissue kept as tissue.
"""

from __future__ import annotations

import numpy as np

MIN_OD = 0.05  # below this, glass: ~11% absorption in the most absorbed channel
MAX_OD = 0.25  # above this, tissue whatever Otsu says (a thumbnail that is all tissue)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel maximum optical density over the three channels."""
    rgb01 = (rgb.astype(np.float32) + 1.0) / 256.0
    return (-np.log10(rgb01)).max(axis=-1)


def tissue_mask(rgb: np.ndarray, *, min_fraction_of_speck: float = 1e-4) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_objects

    od = optical_density(rgb)
    od = ndi.gaussian_filter(od, 1.0)
    try:
        t = float(threshold_otsu(od))
    except ValueError:  # a single-valued thumbnail
        t = MIN_OD
    mask = od > min(max(t, MIN_OD), MAX_OD)
    min_size = max(16, int(mask.size * min_fraction_of_speck))
    mask = remove_small_objects(mask, max_size=min_size) if mask.any() else mask
    return ndi.binary_fill_holes(mask)
