"""Warnings for results that look wrong: a count is only worth citing when these are quiet.

Each check compares the segmentation with what the image itself says: dim objects that the
threshold left out, objects that cover little of the foreground, sizes in two groups (clumps
not split, or two populations), one object covering most of the image.
"""

from __future__ import annotations

import numpy as np

from tools.measure.segmentation import Segmentation


def plausibility_warnings(seg: Segmentation, *, min_area_px: int = 20) -> list[str]:
    labels = seg.labels
    n = seg.count
    out: list[str] = []
    if n == 0:
        return out
    areas = np.bincount(labels.ravel())[1:].astype(float)
    areas = areas[areas > 0]
    covered = float((labels > 0).sum())
    fg = float(seg.foreground.sum())
    if fg > 0 and covered < 0.5 * fg and n < 10:
        out.append(
            f"implausible: {n} objects cover only {covered / fg:.0%} of the foreground; "
            "the threshold or the splitting may have failed (check the overlay)"
        )
    largest = float(areas.max())
    if largest > 0.3 * labels.size:
        out.append(
            f"implausible: one object covers {largest / labels.size:.0%} of the image; it is "
            "probably background, a confluent sheet or the wrong polarity"
        )
    bimodal = _bimodal_sizes(areas)
    if bimodal is not None:
        small, large, frac = bimodal
        out.append(
            f"object sizes fall in two groups (median {small:.0f} and {large:.0f} px^2, "
            f"{frac:.0%} in the large group): unsplit clumps or two populations; areas and "
            "the count are less reliable"
        )
    missed = _dim_objects_missed(seg, min_area_px)
    if missed >= max(3, 0.2 * n):
        out.append(
            f"implausible: {missed} further dim objects lie below the threshold next to the "
            f"{n} found (a few very bright objects may have set it); the count is likely low"
        )
    return out


def _bimodal_sizes(areas: np.ndarray) -> tuple[float, float, float] | None:
    """Two size groups whose medians differ more than 3x, each with >= 10% of >= 20 objects."""
    if areas.size < 20:
        return None
    from skimage.filters import threshold_otsu

    la = np.log(areas)
    if float(la.max() - la.min()) < 1e-6:
        return None
    t = threshold_otsu(la)
    lo, hi = areas[la <= t], areas[la > t]
    if min(lo.size, hi.size) < 0.1 * areas.size:
        return None
    ratio = float(np.median(hi) / np.median(lo))
    # Bimodal, not just skewed: the split must leave two tight groups.
    spread = (la[la <= t].std() + la[la > t].std()) / 2
    if ratio > 3 and (np.log(ratio) / max(spread, 1e-6)) > 4:
        return float(np.median(lo)), float(np.median(hi)), float(hi.size / areas.size)
    return None


def _dim_objects_missed(seg: Segmentation, min_area_px: int) -> int:
    """Blobs well above noise (8 sigma) of at least the typical size that no object overlaps."""
    if seg.signal is None or seg.noise <= 0:
        return 0
    from scipy import ndimage as ndi

    areas = np.bincount(seg.labels.ravel())[1:]
    areas = areas[areas > 0]
    min_size = max(min_area_px, int(0.5 * np.median(areas))) if areas.size else min_area_px
    dim = (seg.signal > 8 * seg.noise) & ~seg.foreground
    dim = ndi.binary_opening(dim, iterations=1)
    comps, k = ndi.label(dim)
    if k == 0:
        return 0
    sizes = np.bincount(comps.ravel())[1:]
    # Touching the border or a found object's halo does not count.
    touching = np.unique(comps[ndi.binary_dilation(seg.foreground, iterations=2)])
    ok = sizes >= min_size
    ok[touching[touching > 0] - 1] = False
    return int(ok.sum())
