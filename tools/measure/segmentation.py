"""Classical segmentation of round objects (nuclei, cells) with scikit-image and SciPy.

The pipeline, in order (each step a short function a reader can test alone):

1. Gaussian smoothing, and a tiled low-percentile background that is subtracted so that uneven
   illumination does not move the threshold (tiles at least 4 typical radii wide).
2. A global threshold computed on the signal clipped at its 99th percentile, so that a few very
   bright objects (mitotic nuclei, debris) cannot pull it above the dim ones.
3. A contrast check against the noise level (an empty field gives a warning, not noise blobs).
4. Declumping: a marker-controlled watershed on a landscape that is high where an object is both
   bright and far from the edge (distance transform x intensity smoothed at a fifth of the
   radius); markers are its local maxima at least ``seed_distance`` x the typical radius apart
   that also stand ``h`` and 2 noise sigmas above their surroundings. The typical radius is the
   image's own (a low percentile of object sizes).
5. Per-object refinement: each object keeps the pixels above ``refine_fraction`` of its own
   peak signal. A global threshold draws dim nuclei too small and bright ones with a halo, and
   merges neighbours through the halo; a local one does neither. What it cuts away is kept when
   it is a dim nucleus beside a bright one (compact, clearly above the threshold). The refined
   mask is declumped once more.
6. Notch cutting: large objects with two opposite notches (nuclei pressed together along a
   wide contact, no neck and no seam) are cut between the notches.
7. Objects touching the border are dropped (they would be measured cut in half).

Everything works on a 2D float image scaled to [0, 1]; ``tools.measure`` does the conversion and
the per-object measurements. skimage and scipy are imported inside the functions so that
``import tools.measure.segmentation`` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Polarity = Literal["auto", "bright", "dark"]


@dataclass
class Segmentation:
    """Labels plus what the caller needs to explain them."""

    labels: np.ndarray  # int32; 0 is background, objects 1..count
    foreground: np.ndarray  # bool mask of everything above threshold (border objects included)
    threshold: float
    polarity: str
    count: int
    excluded_border: int = 0
    removed_small: int = 0
    warnings: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    # Background-corrected, smoothed signal (objects positive) and its noise level, for the
    # plausibility checks; None from backends that do not threshold.
    signal: np.ndarray | None = None
    noise: float = 0.0


def noise_sigma(img: np.ndarray) -> float:
    """Robust noise estimate: MAD of horizontal neighbour differences (edges barely move it)."""
    step = max(1, img.shape[0] // 512)  # a few hundred rows are plenty
    d = np.diff(img[::step].astype(np.float32, copy=False), axis=1)
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def estimate_background(img: np.ndarray, tile: int, polarity: str) -> np.ndarray:
    """Smooth background from a low (bright objects) or high (dark objects) percentile per tile.

    A percentile rather than a mean keeps objects out of the estimate as long as they cover less
    than ~90% of a tile; the 3x3 median over tiles removes the tiles that a large object fills.
    """
    from scipy import ndimage as ndi
    from skimage.transform import resize

    h, w = img.shape
    ny, nx = max(1, h // tile), max(1, w // tile)
    th, tw = h // ny, w // nx
    blocks = img[: ny * th, : nx * tw].reshape(ny, th, nx, tw).transpose(0, 2, 1, 3)
    q = 10 if polarity == "bright" else 90
    grid = np.percentile(blocks.reshape(ny, nx, -1), q, axis=-1)
    if min(ny, nx) >= 3:
        grid = ndi.median_filter(grid, size=3, mode="nearest")
    return resize(grid, (h, w), order=1, mode="edge", anti_aliasing=False).astype(np.float32)


def threshold_value(img: np.ndarray, method: str = "otsu", clip_percentile: float = 99.0) -> float:
    """A global histogram threshold of ``img`` after clipping it at ``clip_percentile``.

    Clipping is what makes it robust: a few very bright objects otherwise stretch the histogram
    so far that Otsu's split falls between them and everything else.
    """
    from skimage import filters

    fn = {
        "otsu": filters.threshold_otsu,
        "li": filters.threshold_li,
        "triangle": filters.threshold_triangle,
        "yen": filters.threshold_yen,
    }[method]
    # A subsample gives the same histogram threshold at a fraction of the cost on large images.
    step = max(1, img.size // 1_000_000)
    x = img.ravel()[::step]
    if clip_percentile < 100:
        x = np.minimum(x, np.percentile(x, clip_percentile))
    if float(x.max()) == float(x.min()):
        return float(x.max())
    return float(fn(x))


def edge_perimeter(labels: np.ndarray, n: int) -> np.ndarray:
    """Per-label perimeter (index 0..n): 4-connected boundary edges x pi/4 (Crofton-style)."""
    padded = np.pad(labels, 1)
    edges = np.zeros(n + 1)
    for a, b in ((padded[:, :-1], padded[:, 1:]), (padded[:-1, :], padded[1:, :])):
        diff = a != b
        edges += np.bincount(a[diff], minlength=n + 1) + np.bincount(b[diff], minlength=n + 1)
    return edges * np.pi / 4


def typical_radius(labels: np.ndarray) -> float:
    """Radius of a typical object: from the 40th percentile of areas (clumps are the large
    ones, so the lower half of sizes is the better prior for a single object)."""
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    if areas.size == 0:
        return 0.0
    return float(np.sqrt(np.percentile(areas, 40) / np.pi))


def declump(
    mask: np.ndarray,
    signal: np.ndarray,
    *,
    radius: float,
    seed_distance: float = 0.3,
    h: float = 0.01,
    intensity_sigma: float | None = None,
    noise: float = 0.0,
    noise_sigmas: float = 2.0,
    presmoothed: float = 1.0,
) -> np.ndarray:
    """Label ``mask`` with touching objects split by a marker-controlled watershed.

    The landscape is high where an object is both far from its edge (distance transform, up to
    ``radius``) and bright (``signal`` smoothed at a fifth of ``radius``): necks between touching
    nuclei are low in both, a single elongated nucleus is high along its length only in
    distance. Markers are local maxima at least ``seed_distance * radius`` apart that stand at
    least ``h`` (landscape in 0..1) above the saddle to a neighbour, and at least
    ``noise_sigmas`` x the landscape's noise when ``noise`` (the noise sigma of the image before
    its ``presmoothed`` px Gaussian) is given; every connected component keeps one marker.
    """
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    comps, n = ndi.label(mask)
    if n == 0 or radius <= 0:
        return comps.astype(np.int32)
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(mask).astype(np.float32), 1.0)
    # A fifth of the radius keeps the darker seam between touching nuclei (a few px wide) that
    # a third blurred away; the noise floor on h below keeps noise from seeding at this scale.
    isg = max(0.5, radius / 5 if intensity_sigma is None else intensity_sigma)
    smooth = ndi.gaussian_filter(np.asarray(signal, np.float32), isg)
    top = float(np.percentile(smooth[mask], 99)) or 1.0
    if noise > 0:  # white noise after both Gaussians: sigma / (2 sqrt(pi) total sigma)
        total = np.hypot(max(presmoothed, 0.5), isg)
        h = max(h, noise_sigmas * noise / (2 * np.sqrt(np.pi) * total) / top)
    land = np.minimum(dist / radius, 1.0) * np.clip(smooth / top, 0, None) * mask
    # Over the whole image, not per component (labels=): the same peaks bar a few between
    # touching components, several times faster; a component left without one gets its own.
    peaks = peak_local_max(
        land, min_distance=max(1, int(seed_distance * radius)), threshold_abs=1e-6,
        exclude_border=False,
    )  # fmt: skip
    if h > 0 and len(peaks):
        peaks = _prominent(peaks, land, comps, h)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    seeded = np.zeros(n + 1, bool)
    seeded[comps[markers > 0]] = True
    missing = np.flatnonzero(~seeded[1:]) + 1
    if missing.size:  # a component without a strong peak is one object
        pos = ndi.maximum_position(land, comps, missing)
        for k, (r, c) in enumerate(pos, start=len(peaks) + 1):
            markers[r, c] = k
    return watershed(-land, markers, mask=mask).astype(np.int32)


def _declump_within(mask: np.ndarray, signal: np.ndarray, **kw: Any) -> np.ndarray:
    """``declump`` on the bounding box of ``mask`` only (a few objects in a large image)."""
    from scipy import ndimage as ndi

    out = np.zeros(mask.shape, np.int32)
    box = ndi.find_objects(mask.astype(np.int8))
    if not box:
        return out
    box = tuple(slice(max(0, b.start - 2), b.stop + 2) for b in box[0])
    out[box] = declump(mask[box], signal[box], **kw)
    return out


def _prominent(peaks: np.ndarray, land: np.ndarray, comps: np.ndarray, h: float) -> np.ndarray:
    """Peaks that are h-maxima (one per plateau), tested only in components with several
    peaks: a lone peak needs no test, and h-maxima over the whole image is the slowest step."""
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima

    owner = comps[tuple(peaks.T)]
    counts = np.bincount(owner, minlength=int(comps.max()) + 1)
    keep = counts[owner] == 1
    boxes = ndi.find_objects(comps)
    for c in np.flatnonzero(counts > 1):
        sl = boxes[c - 1]
        sub = np.where(comps[sl] == c, land[sl], 0)
        strong = h_maxima(sub, h).astype(bool)
        plateau = ndi.label(strong)[0]
        idx = np.flatnonzero(owner == c)
        local = peaks[idx] - [sl[0].start, sl[1].start]
        ids = plateau[tuple(local.T)]
        _, first = np.unique(ids, return_index=True)
        for j in first:
            if ids[j] > 0:
                keep[idx[j]] = True
    return peaks[keep]


def refine_objects(
    labels: np.ndarray, signal: np.ndarray, *, fraction: float, min_area: int
) -> np.ndarray:
    """Keep, in each object, the pixels above ``fraction`` of the object's own peak signal.

    The peak is the object's 95th percentile (robust to a hot pixel). A part cut off by the
    refinement becomes its own object if it is at least ``min_area``; holes are filled and go to
    the nearest object.
    """
    from scipy import ndimage as ndi
    from skimage.measure import label as label_runs

    n = int(labels.max())
    if n == 0 or fraction <= 0:
        return labels
    flat, vals = labels.ravel(), signal.ravel()
    nz = np.flatnonzero(flat)
    order = nz[np.lexsort((vals[nz], flat[nz]))]
    counts = np.bincount(flat[nz], minlength=n + 1)
    starts = np.concatenate([[0], np.cumsum(counts[1:])])[:-1]
    pick = starts + np.floor(0.95 * np.maximum(counts[1:] - 1, 0)).astype(int)
    peak = np.zeros(n + 1, np.float32)
    has = counts[1:] > 0
    peak[1:][has] = vals[order[pick[has]]]
    kept = np.where(signal > fraction * peak[labels], labels, 0)
    parts = label_runs(kept, connectivity=1, background=0)
    sizes = np.bincount(parts.ravel())
    parts[sizes[parts] < min_area] = 0
    filled = ndi.binary_fill_holes(parts > 0)
    holes = filled & (parts == 0)
    if holes.any():
        idx = ndi.distance_transform_edt(parts == 0, return_distances=False, return_indices=True)
        parts[holes] = parts[idx[0][holes], idx[1][holes]]
    return parts.astype(np.int32)


def dim_neighbours(
    labels: np.ndarray, refined: np.ndarray, signal: np.ndarray, *, radius: float,
    threshold: float, min_area: int, open_fraction: float = 0.5, area_fraction: float = 0.3,
    level: float = 1.5, min_solidity: float = 0.9,
) -> np.ndarray:  # fmt: skip
    """Objects that the refinement cut away: dim nuclei merged into a bright neighbour.

    ``refine_objects`` keeps the pixels above a fraction of each object's peak, so a dim
    nucleus that the declumping left inside a bright neighbour's region is dropped with the
    halo. What was dropped is kept as an object only if it looks like one: compact (it survives
    an opening with a disk of ``open_fraction`` x the typical radius, has ``area_fraction`` of a
    typical object's area and ``min_solidity``) and clearly above the threshold (median signal
    >= ``level`` x ``threshold``). A halo is a thin ring; filled holes and pale tissue sit at or
    below the threshold. Returns the objects kept, labelled.
    """
    from scipy import ndimage as ndi
    from skimage.measure import regionprops
    from skimage.morphology import disk

    dropped = (labels > 0) & (refined == 0)
    if radius <= 0 or not dropped.any():
        return np.zeros(labels.shape, np.int32)
    core = ndi.binary_opening(dropped, structure=disk(max(1, round(open_fraction * radius))))
    comps, _ = ndi.label(core)
    keep = np.zeros(int(comps.max()) + 1, bool)
    min_size = max(min_area, area_fraction * np.pi * radius**2)
    for rp in regionprops(comps, intensity_image=signal):
        if rp.area < min_size or rp.solidity < min_solidity:
            continue
        keep[rp.label] = np.median(rp.image_intensity[rp.image]) >= level * threshold
    return np.where(keep, np.cumsum(keep), 0).astype(np.int32)[comps]


def split_concave(
    labels: np.ndarray, *, radius: float, min_area: int, size_gate: float = 1.3,
    min_depth: float = 0.15, min_score: float = 0.25, part_fraction: float = 0.2,
) -> np.ndarray:  # fmt: skip
    """Cut objects that are two (or more) convex ones touching, between two concave points.

    Nuclei pressed together along a wide contact show neither a neck in the distance
    transform nor a dark seam, but their union has a notch on each side of the contact. Objects
    of at least ``size_gate`` x the median area are cut along the line joining the deepest
    points of two notches (each at least ``min_depth`` x ``radius`` deep from the convex hull)
    when the notches are deep for the cut's length ((depth + depth) / length >= ``min_score``)
    and both parts have ``part_fraction`` of a typical object's area; the parts are cut again.
    A single round or elongated nucleus has no two such notches; a kidney-shaped one has one.
    """
    from scipy import ndimage as ndi

    n = int(labels.max())
    if n == 0 or radius <= 0:
        return labels
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    median = float(np.median(areas[1:][areas[1:] > 0]))
    min_part = max(min_area, part_fraction * np.pi * radius**2)
    depth = max(2.0, min_depth * radius)
    out, nxt = labels.copy(), n + 1
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None or areas[i] < max(size_gate * median, 2 * min_part):
            continue
        box = tuple(slice(max(0, b.start - 2), b.stop + 2) for b in box)
        todo, pieces = [labels[box] == i], []
        while todo:
            obj = todo.pop()
            cut = None if len(pieces) + len(todo) >= 6 else _cut_at_notches(
                obj, depth, min_score, min_part
            )  # fmt: skip
            if cut is None:
                pieces.append(obj)
            else:
                todo.extend(cut)
        for piece in pieces[1:]:
            out[box][piece] = nxt
            nxt += 1
    return out


def _cut_at_notches(
    obj: np.ndarray, min_depth: float, min_score: float, min_part: float
) -> list[np.ndarray] | None:
    """The two parts of ``obj`` cut between its two best notches, or None."""
    from scipy import ndimage as ndi
    from skimage.draw import line
    from skimage.morphology import convex_hull_image

    if obj.sum() < 2 * min_part:
        return None
    smooth = ndi.binary_opening(obj)  # a ragged outline has many shallow notches
    hull = convex_hull_image(smooth)
    notches, k = ndi.label(hull & ~smooth)
    if k < 2:
        return None
    into_hull = ndi.distance_transform_edt(hull)
    deepest = []
    for j, box in enumerate(ndi.find_objects(notches), start=1):
        d = np.where(notches[box] == j, into_hull[box], 0)
        if d.max() >= min_depth:
            r, c = np.unravel_index(np.argmax(d), d.shape)
            deepest.append((float(d.max()), r + box[0].start, c + box[1].start))
    deepest = sorted(deepest, reverse=True)[:5]
    best = None
    for a, (da, ra, ca) in enumerate(deepest):
        for db, rb, cb in deepest[a + 1 :]:
            score = (da + db) / max(np.hypot(ra - rb, ca - cb), 1.0)
            if score < min_score or (best is not None and score <= best[0]):
                continue
            cut = obj.copy()
            cut[line(ra, ca, rb, cb)] = False
            parts, m = ndi.label(cut)
            if m < 2:
                continue
            sizes = np.bincount(parts.ravel())[1:]
            two = np.argsort(sizes)[::-1][:2] + 1
            if sizes[two[1] - 1] >= min_part:
                best = (score, parts, two)
    if best is None:
        return None
    _, parts, two = best
    # Every pixel (the cut line, crumbs) goes to the nearer of the two parts.
    seeds = np.where(parts == two[0], 1, 0) + np.where(parts == two[1], 2, 0)
    near = ndi.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
    lab = np.where(obj, seeds[near[0], near[1]], 0)
    return [lab == 1, lab == 2]


TILE_RADII = 4.0  # background tiles span at least two typical objects and the gaps between


def _foreground(
    s: np.ndarray, tile: int, polarity: str, valid: np.ndarray | None, method: str, clip: float
) -> tuple[np.ndarray, float, np.ndarray, int]:
    """Background-corrected signal (objects positive), its threshold, the mask, the tile used."""
    if tile and min(s.shape) >= 2 * tile:
        signal = s - estimate_background(s, tile, polarity)
    else:
        tile = 0  # too small to have a background gradient worth modelling
        # A low percentile, not the median: in a dense field objects are the majority.
        signal = s - np.percentile(s, 10 if polarity == "bright" else 90)
    if polarity == "dark":
        signal = -signal
    if valid is not None and valid.sum() > 100:
        # Stained slides: separate objects from tissue, not from the glass around it.
        t = threshold_value(signal[valid], method, clip)
        return signal, t, (signal > t) & valid, tile
    t = threshold_value(signal, method, clip)
    return signal, t, signal > t, tile


def _clean(fg: np.ndarray, min_area: int) -> np.ndarray:
    from scipy import ndimage as ndi
    from skimage.morphology import remove_small_objects

    fg = ndi.binary_fill_holes(fg)
    return remove_small_objects(fg, max_size=min_area - 1) if min_area > 1 else fg


def segment(
    img: np.ndarray,
    *,
    polarity: Polarity = "auto",
    smooth_sigma: float = 1.0,
    threshold_method: str = "li",
    clip_percentile: float = 99.0,
    min_area: int = 20,
    exclude_border: bool = True,
    split: bool = True,
    split_h: float = 0.01,
    seed_distance: float = 0.3,
    refine_fraction: float = 0.5,
    background_tile: int | None = None,  # None: automatic; 0: no background correction
    min_contrast_sigmas: float = 6.0,
    min_contrast: float = 0.02,
    valid: np.ndarray | None = None,
    seam_sigma: float = 0.2,
    seed_noise_sigmas: float = 2.0,
    split_notches: bool = True,
    recover_dim: bool = True,
) -> Segmentation:
    """Segment round objects in a 2D float image in [0, 1]; see the module docstring.

    ``valid`` (optional bool mask) limits where objects may be (e.g. tissue in a slide).
    ``seam_sigma`` (x the typical radius) smooths the intensity that seeds the declumping,
    ``seed_noise_sigmas`` is the seeds' minimum prominence in noise sigmas (0: ``split_h``
    only), ``split_notches`` cuts objects at two opposite notches (``split_concave``),
    ``recover_dim`` keeps dim nuclei cut away next to bright ones (``dim_neighbours``).
    """
    from scipy import ndimage as ndi

    warnings: list[str] = []
    img = np.asarray(img, dtype=np.float32)
    sigma_raw = noise_sigma(img)
    s = ndi.gaussian_filter(img, smooth_sigma) if smooth_sigma > 0 else img

    if polarity == "auto":
        # The background is the majority: if it lies below the threshold, objects are bright.
        t0 = threshold_value(s, "otsu", 100.0)
        polarity = "bright" if np.median(s) <= t0 else "dark"
    tile = (
        int(np.clip(min(img.shape) // 8, 32, 256)) if background_tile is None else background_tile
    )
    signal, t, fg, tile = _foreground(s, tile, polarity, valid, threshold_method, clip_percentile)
    params: dict[str, Any] = {
        "polarity": polarity,
        "smooth_sigma": smooth_sigma,
        "threshold_method": threshold_method,
        "threshold_clip_percentile": clip_percentile,
        "threshold": round(t, 5),
        "background_tile_px": tile,
        "min_area_px": min_area,
        "exclude_border": exclude_border,
        "split_touching": split,
        "refine_fraction": refine_fraction,
    }

    # Contrast check: without it a blank noisy image would be "segmented" into noise blobs.
    lo, hi = signal[~fg], signal[fg]
    contrast = float(hi.mean() - lo.mean()) if lo.size and hi.size else 0.0
    sigma_s = sigma_raw / (2 * np.sqrt(np.pi) * smooth_sigma) if smooth_sigma >= 0.5 else sigma_raw
    params["contrast"] = round(contrast, 5)
    params["noise_sigma"] = round(sigma_raw, 5)
    if contrast < max(min_contrast_sigmas * sigma_s, min_contrast):
        warnings.append(
            f"no objects: foreground/background contrast {contrast:.3f} is below what noise "
            f"({sigma_raw:.3f}) or a smooth gradient gives; the image looks empty"
        )
        empty = np.zeros(img.shape, np.int32)
        return Segmentation(
            empty, np.zeros(img.shape, bool), t, polarity, 0, warnings=warnings, params=params
        )

    fg = _clean(fg, min_area)
    r = typical_radius(ndi.label(fg)[0])
    if background_tile is None and 0 < tile < TILE_RADII * r:
        # Objects as large as the tile become their own background (a large nucleus would be
        # subtracted to a ring): estimate it again on tiles several objects wide.
        tile = int(TILE_RADII * r)
        signal, t, fg, tile = _foreground(
            s, tile, polarity, valid, threshold_method, clip_percentile
        )
        fg = _clean(fg, min_area)
        r = typical_radius(ndi.label(fg)[0]) or r
        params.update(background_tile_px=tile, threshold=round(t, 5))
    params["typical_radius_px"] = round(r, 2)
    seeding = {
        "h": split_h, "noise": sigma_raw if seed_noise_sigmas else 0.0,
        "noise_sigmas": seed_noise_sigmas, "presmoothed": smooth_sigma,
    }  # fmt: skip
    if split:
        labels = declump(
            fg, signal, radius=r, seed_distance=max(seed_distance, 0.5),
            intensity_sigma=seam_sigma * r, **seeding,
        )  # fmt: skip
    else:
        labels = ndi.label(fg)[0].astype(np.int32)
    if refine_fraction > 0:
        refined = refine_objects(labels, signal, fraction=refine_fraction, min_area=min_area)
        dim = np.zeros_like(refined)
        if recover_dim:
            dim = dim_neighbours(labels, refined, signal, radius=r, threshold=t, min_area=min_area)
        params["dim_neighbours_recovered"] = int(dim.max())
        labels = refined
        if split:  # the refined mask has clear necks: declump it once more
            r = typical_radius(labels) or r
            kw = {"radius": r, "seed_distance": seed_distance, "intensity_sigma": seam_sigma * r}
            kw |= seeding
            labels = declump(labels > 0, signal, **kw)
            # Apart: a dim nucleus touches its bright neighbour, one mask would merge them again.
            dim = _declump_within(dim > 0, signal, **kw)
        labels = np.where(dim > 0, dim + labels.max(), labels).astype(np.int32)
    if split:
        if split_notches:
            labels = split_concave(labels, radius=r, min_area=min_area)
        params.update(
            split_h=split_h, seed_distance=seed_distance, seam_sigma=seam_sigma,
            seed_noise_sigmas=seed_noise_sigmas, split_notches=split_notches,
        )  # fmt: skip

    # One lookup table drops watershed slivers and border objects and renumbers 1..count.
    sizes = np.bincount(labels.ravel())
    keep = sizes > 0
    keep[0] = False
    small = keep & (sizes < min_area)
    removed = int(small.sum())  # watershed can cut slivers off ragged objects
    keep &= ~small
    excluded = 0
    if exclude_border:
        edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        on_edge = np.zeros_like(keep)
        on_edge[edge] = True
        on_edge[0] = False
        excluded = int((on_edge & keep).sum())
        keep &= ~on_edge
        if excluded:
            warnings.append(f"objects touching the border excluded: {excluded}")
    lut = np.where(keep, np.cumsum(keep), 0).astype(np.int32)
    labels = lut[labels]
    count = int(labels.max())
    if fg.mean() > 0.9:
        warnings.append(
            f"foreground covers {fg.mean():.0%} of the image: objects may be confluent or the "
            "polarity wrong (set measure.object_polarity)"
        )
    return Segmentation(
        labels, fg, t, polarity, count, excluded, removed, warnings=warnings, params=params,
        signal=signal, noise=sigma_s,
    )  # fmt: skip
