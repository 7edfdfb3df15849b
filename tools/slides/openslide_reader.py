"""Vendor slides (Aperio SVS, Hamamatsu NDPI, MIRAX, Leica SCN, Ventana BIF...) via OpenSlide.

The library comes from the ``openslide-bin`` wheel, so no system package is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from litevlm.errors import ImageLoadError
from tools.slides.reader import SlideMetadata

# Properties that describe the scan and carry no identifier; everything else is dropped.
_SAFE = ("openslide.vendor", "openslide.mpp-x", "openslide.mpp-y", "openslide.objective-power")


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


class OpenSlideReader:
    def __init__(self, path: Path) -> None:
        try:
            import openslide
        except ImportError as e:  # pragma: no cover - a dependency
            raise ImageLoadError(
                path,
                f"OpenSlide is not available ({e})",
                "pip install openslide-bin openslide-python",
            ) from e
        try:
            self._slide = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError as e:
            raise ImageLoadError(
                path,
                "not a slide format OpenSlide can read",
                "convert it to a pyramidal OME-TIFF (e.g. bfconvert or QuPath's export)",
            ) from e
        except openslide.OpenSlideError as e:
            raise ImageLoadError(
                path, f"the slide is damaged or truncated ({e})", "copy the file again"
            ) from e
        props = self._slide.properties
        self.path = path
        self.level_dimensions = [tuple(d) for d in self._slide.level_dimensions]
        self.level_downsamples = [float(d) for d in self._slide.level_downsamples]
        mpp_x, mpp_y = _float(props.get("openslide.mpp-x")), _float(props.get("openslide.mpp-y"))
        tw = props.get("openslide.level[0].tile-width")
        th = props.get("openslide.level[0].tile-height")
        self.metadata = SlideMetadata(
            vendor=props.get("openslide.vendor", "unknown"),
            mpp=(mpp_x + mpp_y) / 2 if mpp_x and mpp_y else (mpp_x or mpp_y),
            objective_power=_float(props.get("openslide.objective-power")),
            tile_size=(int(tw), int(th)) if tw and th else None,
        )

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        import openslide

        try:
            region = self._slide.read_region((x, y), level, (w, h))
        except openslide.OpenSlideError as e:
            raise ImageLoadError(
                self.path, f"the slide is damaged or truncated ({e})", "copy the file again"
            ) from e
        rgba = np.asarray(region)
        if (rgba[..., 3] == 255).all():
            return np.ascontiguousarray(rgba[..., :3])
        # Outside the scanned area OpenSlide returns transparent pixels: show them as glass.
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return rgb.round().astype(np.uint8)

    def close(self) -> None:
        self._slide.close()
