"""Synthetic cell images with known ground truth, for tests, benchmarks and sanity checks.

N discs of known radii on a background with uneven illumination (an additive gradient and a
multiplicative vignette), optical blur and Gaussian noise; a fraction of them are placed in
touching pairs. Discs never cross the border, so every one of them should be counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SyntheticDiscs:
    image: np.ndarray  # float32 in [0, 1], 2D
    centers: np.ndarray  # (N, 2) row, col
    radii: np.ndarray  # (N,)
    pairs: int = 0  # touching pairs among them

    @property
    def count(self) -> int:
        return len(self.radii)

    @property
    def mean_area(self) -> float:
        return float(np.mean(np.pi * self.radii**2))


def synthetic_discs(
    n: int,
    *,
    size: int | None = None,
    radius: tuple[float, float] = (6.0, 14.0),
    touching_fraction: float = 0.3,
    noise: float = 0.04,
    illumination: float = 0.3,
    blur: float = 1.0,
    bright: bool = True,
    coverage: float = 0.12,
    seed: int = 0,
) -> SyntheticDiscs:
    """Render ``n`` discs; ``size`` defaults to what gives ``coverage`` of the area covered."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    radii = rng.uniform(*radius, size=n)
    if size is None:
        size = int(max(256, np.sqrt(np.sum(np.pi * radii**2) / coverage)))
    margin = radius[1] + 3
    centers: list[tuple[float, float]] = []
    placed: list[float] = []

    def free(c: np.ndarray, r: float, gap: float = 3.0) -> bool:
        if not (margin <= c[0] <= size - margin and margin <= c[1] <= size - margin):
            return False
        if not centers:
            return True
        d = np.hypot(*(np.asarray(centers) - c).T)
        return bool(np.all(d >= np.asarray(placed) + r + gap))

    i = 0
    attempts = 0
    n_pairs = 0
    while i < n and attempts < 200_000:
        attempts += 1
        c = rng.uniform(margin, size - margin, size=2)
        if not free(c, radii[i]):
            continue
        pair = i + 1 < n and rng.random() < touching_fraction / (2 - touching_fraction)
        if pair:
            # Touching pair: centres 0.95 * (r1 + r2) apart, a slight overlap.
            angle = rng.uniform(0, 2 * np.pi)
            c2 = c + 0.95 * (radii[i] + radii[i + 1]) * np.array([np.sin(angle), np.cos(angle)])
            if not free(c2, radii[i + 1]):  # checked against the others, not its partner
                continue
            centers += [tuple(c), tuple(c2)]
            placed += [radii[i], radii[i + 1]]
            n_pairs += 1
            i += 2
            continue
        centers.append(tuple(c))
        placed.append(radii[i])
        i += 1
    if i < n:
        raise ValueError(f"could not place {n} discs in {size}x{size}; lower coverage")

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    signal = np.zeros((size, size), np.float32)
    amps = rng.uniform(0.6, 1.0, size=n)
    for (cy, cx), r, a in zip(centers, radii, amps, strict=True):
        r0, r1 = int(max(0, cy - r - 2)), int(min(size, cy + r + 3))
        c0, c1 = int(max(0, cx - r - 2)), int(min(size, cx + r + 3))
        d = np.hypot(yy[r0:r1, c0:c1] - cy, xx[r0:r1, c0:c1] - cx)
        # Anti-aliased edge: partial coverage over one pixel.
        cover = np.clip(r - d + 0.5, 0, 1) * a
        np.maximum(signal[r0:r1, c0:c1], cover, out=signal[r0:r1, c0:c1])
    if blur > 0:
        signal = ndi.gaussian_filter(signal, blur)
    u, v = yy / size, xx / size
    vignette = 1 - illumination * ((u - 0.5) ** 2 + (v - 0.5) ** 2) * 2
    gradient = 0.05 + illumination * 0.5 * (0.6 * u + 0.4 * v)
    img = gradient + 0.6 * signal * vignette
    if not bright:
        img = 1 - img
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return SyntheticDiscs(
        image=img.astype(np.float32),  # not clipped: clipping would look like saturation
        centers=np.asarray(centers, np.float32),
        radii=np.asarray(radii, np.float32),
        pairs=n_pairs,
    )
