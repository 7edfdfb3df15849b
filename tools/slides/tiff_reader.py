"""Tiled pyramidal TIFF and OME-TIFF via tifffile, decoding only the tiles a region touches.

``tifffile`` reads the pyramid (``series[0].levels``, SubIFDs or reduced-resolution pages); a
region is assembled from the tiles it overlaps, each decoded on its own, so memory follows the
region, never the slide.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from litevlm.errors import ImageLoadError
from tools.slides.reader import SlideMetadata, clip_read

MAX_UNTILED_PIXELS = 64_000_000  # a striped (untiled) level is decoded whole: keep it small


def _to_rgb(tile: np.ndarray) -> np.ndarray:
    t = np.asarray(tile)
    if t.ndim == 2:
        t = t[..., None]
    if t.dtype != np.uint8:
        hi = float(t.max()) if t.size else 1.0
        t = (t.astype(np.float32) * (255.0 / (hi or 1.0))).clip(0, 255).astype(np.uint8)
    if t.shape[-1] == 1:
        t = np.repeat(t, 3, axis=-1)
    return t[..., :3]


class TiffSlideReader:
    def __init__(self, path: Path) -> None:
        import tifffile

        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
            self._pages = [lvl.keyframe for lvl in series.levels]
        except Exception as e:  # tifffile raises several types for broken files
            raise ImageLoadError(
                path, f"not a readable TIFF slide ({type(e).__name__}: {e})", "copy the file again"
            ) from e
        self.path = path
        axes = series.axes
        if not (axes.endswith("YXS") or axes.endswith("YX")) or any(
            n > 1 for a, n in zip(axes, series.shape, strict=False) if a not in "YXS"
        ):
            raise ImageLoadError(
                path,
                f"a {axes} TIFF with several planes is not a brightfield slide",
                "open it as an image (litevlm inspect) or export one RGB pyramid",
            )
        self.level_dimensions = [(int(p.imagewidth), int(p.imagelength)) for p in self._pages]
        w0 = self.level_dimensions[0][0]
        self.level_downsamples = [w0 / w for w, _ in self.level_dimensions]
        p0 = self._pages[0]
        self.metadata = SlideMetadata(
            vendor="ome-tiff" if self._tif.is_ome else "generic-tiff",
            mpp=self._mpp(),
            tile_size=(int(p0.tilewidth), int(p0.tilelength)) if p0.is_tiled else None,
        )

    def _mpp(self) -> float | None:
        if self._tif.is_ome and self._tif.ome_metadata:
            m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', self._tif.ome_metadata)
            unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', self._tif.ome_metadata)
            if m and (not unit or unit.group(1) in ("µm", "um", "\u00b5m")):
                return float(m.group(1))
        p0 = self._pages[0]
        res, unit = p0.tags.get("XResolution"), p0.tags.get("ResolutionUnit")
        if res is None or unit is None:
            return None
        num, den = res.value
        per = {2: 25_400.0, 3: 10_000.0}.get(int(unit.value))  # inch, centimetre in um
        if not per or not num:
            return None
        mpp = per * den / num
        return mpp if 0.01 < mpp < 100 else None  # 72 dpi "resolutions" are not microscopy

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        page = self._pages[level]
        out = np.full((h, w, 3), 255, np.uint8)
        lx, ly, cw, ch, ox, oy = clip_read(
            self.level_dimensions[level], self.level_downsamples[level], x, y, w, h
        )
        if cw == 0 or ch == 0:
            return out
        try:
            if not page.is_tiled:
                if page.imagewidth * page.imagelength > MAX_UNTILED_PIXELS:
                    raise ImageLoadError(
                        self.path,
                        "this TIFF level is not tiled and too large to read in parts",
                        "re-save it as a tiled pyramid (vips tiffsave --tile --pyramid)",
                    )
                out[oy : oy + ch, ox : ox + cw] = _to_rgb(page.asarray())[
                    ly : ly + ch, lx : lx + cw
                ]
                return out
            self._read_tiles(page, lx, ly, cw, ch, out, ox, oy)
        except ImageLoadError:
            raise
        except Exception as e:
            raise ImageLoadError(
                self.path,
                f"the slide is damaged or truncated ({type(e).__name__}: {e})",
                "copy the file again",
            ) from e
        return out

    def _read_tiles(
        self, page, lx: int, ly: int, cw: int, ch: int, out: np.ndarray, ox: int, oy: int
    ) -> None:
        tw, th = int(page.tilewidth), int(page.tilelength)
        across = -(-int(page.imagewidth) // tw)
        fh = self._tif.filehandle
        for ty in range(ly // th, (ly + ch - 1) // th + 1):
            for tx in range(lx // tw, (lx + cw - 1) // tw + 1):
                index = ty * across + tx
                offset, count = page.dataoffsets[index], page.databytecounts[index]
                if not count:
                    continue  # an empty tile: glass
                fh.seek(offset)
                tile, _, _ = page.decode(fh.read(count), index, jpegtables=page.jpegtables)
                tile = _to_rgb(tile.reshape(tile.shape[-3:]))
                # overlap of this tile with the wanted region, in level pixels
                x0, y0 = max(lx, tx * tw), max(ly, ty * th)
                x1, y1 = min(lx + cw, (tx + 1) * tw), min(ly + ch, (ty + 1) * th)
                out[oy + y0 - ly : oy + y1 - ly, ox + x0 - lx : ox + x1 - lx] = tile[
                    y0 - ty * th : y1 - ty * th, x0 - tx * tw : x1 - tx * tw
                ]

    def close(self) -> None:
        self._tif.close()
