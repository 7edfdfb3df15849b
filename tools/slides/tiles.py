"""Choosing a few tiles of a slide for the vision model and the similar-case index.

A vision-language model sees a few hundred pixels; a slide has billions. The model is shown
tiles at a fixed resolution: the tiles the measurement found densest in nuclei, and a few
representative tissue tiles spread over the tissue (farthest-point sampling on the thumbnail's
tissue mask: deterministic, and it covers the tissue instead of bunching in its first rows).
Every tile keeps its level-0 box and resolution, so an answer can cite where it looked.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from tools.slides.measure import SlideMeasurement, TileResult
from tools.slides.slide import Region, Slide
from tools.slides.tissue import tissue_mask

MIN_TISSUE = 0.5  # a representative tile is at least half tissue (on the thumbnail)
MAX_CANDIDATES = 20_000  # a finer grid is strided: the sample is spread, not exhaustive


class TileChoice(BaseModel):
    """A tile shown to a model: its level-0 box, the resolution it is read at, and why."""

    x: int
    y: int
    w: int
    h: int
    mpp: float | None = Field(default=None, description="um per pixel of the pixels read")
    px_w: int = Field(description="width of the pixels read")
    px_h: int
    why: str = Field(description="'dense' (nuclear density rank) or 'sample' (spread)")
    rank: int = 1
    density_per_mm2: float | None = None
    count: int | None = None

    @property
    def downsample(self) -> float:
        return self.w / self.px_w

    def where(self) -> str:
        """'x=4096, y=2048, 896x896 px at level 0 (448x448 px at 0.5 um/px)'."""
        at = f" at {self.mpp:.3g} um/px" if self.mpp else ""
        return (
            f"x={self.x}, y={self.y}, {self.w}x{self.h} px at level 0 "
            f"({self.px_w}x{self.px_h} px{at})"
        )

    def reason(self) -> str:
        if self.why == "dense":
            nth = "highest" if self.rank == 1 else f"{_ordinal(self.rank)} highest"
            d = f", {self.density_per_mm2:.0f} nuclei per mm²" if self.density_per_mm2 else ""
            return f"{nth} nuclear density of the measured tiles{d}"
        return f"representative tissue sample {self.rank}"


def _ordinal(n: int) -> str:
    return {2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def tile_geometry(slide: Slide, mpp: float | None, tile_px: int) -> tuple[float, int, float | None]:
    """(downsample, level-0 side, um/px actually read): ``mpp`` finer than the scan, or a
    slide without a pixel size, is read at the scan's own resolution."""
    ds = max(1.0, mpp / slide.mpp) if (mpp and slide.mpp) else 1.0
    return ds, max(1, round(tile_px * ds)), (round(slide.mpp * ds, 4) if slide.mpp else None)


def _bounds(slide: Slide, region: Region | None) -> Region:
    return slide.check_inside(region) if region else Region(0, 0, *slide.dimensions)


def _choice(
    box: tuple[int, int, int, int], ds: float, mpp: float | None, why: str, rank: int, **kw
) -> TileChoice:
    x, y, w, h = box
    return TileChoice(
        x=x, y=y, w=w, h=h, mpp=mpp, px_w=max(1, round(w / ds)), px_h=max(1, round(h / ds)),
        why=why, rank=rank, **kw,
    )  # fmt: skip


def _centred(t: TileResult, side: int, b: Region) -> tuple[int, int, int, int]:
    """A ``side`` box centred on a measured tile, kept inside the bounds."""
    w, h = min(side, b.w), min(side, b.h)
    x = min(max(b.x, t.x + t.w // 2 - w // 2), b.x + b.w - w)
    y = min(max(b.y, t.y + t.h // 2 - h // 2), b.y + b.h - h)
    return x, y, w, h


def dense_tiles(
    slide: Slide,
    sm: SlideMeasurement,
    k: int,
    *,
    mpp: float | None,
    tile_px: int,
    region: Region | None = None,
) -> list[TileChoice]:
    """The ``k`` measured tiles with the most nuclei per mm² (per tile when the slide has no
    pixel size), each as a model-sized box at its centre."""
    ds, side, read_mpp = tile_geometry(slide, mpp, tile_px)
    b = _bounds(slide, region)
    ranked = sorted(
        (t for t in sm.tiles if t.count > 0), key=lambda t: (-(t.density_per_mm2 or 0), -t.count)
    )
    return [
        _choice(
            _centred(t, side, b), ds, read_mpp, "dense", i,
            density_per_mm2=round(t.density_per_mm2, 1) if t.density_per_mm2 else None,
            count=t.count,
        )
        for i, t in enumerate(ranked[:k], 1)
    ]  # fmt: skip


def _overlap(a: tuple[int, int, int, int], b: TileChoice) -> float:
    """The share of box ``a`` that ``b`` covers."""
    ox = min(a[0] + a[2], b.x + b.w) - max(a[0], b.x)
    oy = min(a[1] + a[3], b.y + b.h) - max(a[1], b.y)
    return max(0, ox) * max(0, oy) / (a[2] * a[3])


def sample_tiles(
    slide: Slide,
    n: int,
    *,
    mpp: float | None,
    tile_px: int,
    region: Region | None = None,
    avoid: list[TileChoice] | None = None,
    thumbnail: np.ndarray | None = None,
) -> list[TileChoice]:
    """``n`` tissue tiles spread over the tissue of ``region`` (default: the slide): the first
    nearest the tissue's centre, each next the farthest from those chosen. Deterministic."""
    if n <= 0:
        return []
    ds, side, read_mpp = tile_geometry(slide, mpp, tile_px)
    b = _bounds(slide, region)
    w, h = min(side, b.w), min(side, b.h)
    thumb = thumbnail if thumbnail is not None else slide.thumbnail()
    mask = tissue_mask(thumb)
    scale = slide.dimensions[0] / thumb.shape[1]
    xs = np.arange(b.x, b.x + b.w - w + 1, w)
    ys = np.arange(b.y, b.y + b.h - h + 1, h)
    stride = max(1, int(np.ceil(np.sqrt(len(xs) * len(ys) / MAX_CANDIDATES))))
    boxes, fracs, shared = [], [], []
    for y in ys[::stride]:
        for x in xs[::stride]:
            box = (int(x), int(y), w, h)
            shared.append(max((_overlap(box, a) for a in avoid or []), default=0.0))
            y0, x0 = int(y / scale), int(x / scale)
            part = mask[y0 : max(y0 + 1, int(np.ceil((y + h) / scale))),
                        x0 : max(x0 + 1, int(np.ceil((x + w) / scale)))]  # fmt: skip
            boxes.append(box)
            fracs.append(float(part.mean()) if part.size else 0.0)
    if not boxes:
        return []
    # Tissue tiles that show nothing already shown; failing that, a little overlap; then any.
    f, o = np.asarray(fracs), np.asarray(shared)
    keep = np.flatnonzero((f >= MIN_TISSUE) & (o == 0))
    if len(keep) < n:
        keep = np.flatnonzero((f >= MIN_TISSUE) & (o <= 0.5))
    if not len(keep):  # a region of pale or scant tissue: its most tissue-rich tiles
        keep = np.argsort(-f, kind="stable")[: max(n, 1)]
    centres = np.asarray([(boxes[i][0] + w / 2, boxes[i][1] + h / 2) for i in keep])
    first = int(np.argmin(((centres - centres.mean(0)) ** 2).sum(1)))
    chosen = [first]
    dist = ((centres - centres[first]) ** 2).sum(1)
    while len(chosen) < min(n, len(keep)):
        nxt = int(np.argmax(dist))
        if dist[nxt] <= 0:
            break
        chosen.append(nxt)
        dist = np.minimum(dist, ((centres - centres[nxt]) ** 2).sum(1))
    return [_choice(boxes[keep[i]], ds, read_mpp, "sample", r) for r, i in enumerate(chosen, 1)]


def read_tile_image(slide: Slide, t: TileChoice):
    """The tile's pixels as an RGB PIL image at its resolution."""
    from PIL import Image

    return Image.fromarray(slide.read_scaled(t.x, t.y, t.w, t.h, t.downsample))


def choose_tiles(
    slide: Slide,
    sm: SlideMeasurement | None,
    *,
    dense: int,
    sample: int,
    mpp: float | None,
    tile_px: int,
    region: Region | None = None,
) -> list[TileChoice]:
    """The ``dense`` densest measured tiles, then ``sample`` tissue tiles away from them."""
    top = dense_tiles(slide, sm, dense, mpp=mpp, tile_px=tile_px, region=region) if sm else []
    spread = sample_tiles(slide, sample, mpp=mpp, tile_px=tile_px, region=region, avoid=top)
    return top + spread
