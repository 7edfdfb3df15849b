"""DICOM whole-slide images (VL Whole Slide Microscopy) via wsidicom.

A DICOM WSI is a folder of instances (one per pyramid level, plus label and overview images);
``WsiDicom.open`` takes the folder or the files. Only the pyramid is read: label and overview
instances (which can show a name or barcode) are never opened for pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from litevlm.errors import ImageLoadError
from tools.slides.reader import SlideMetadata, clip_read


def _files(path: Path) -> list[Path]:
    folder = path if path.is_dir() else path.parent
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


class DicomSlideReader:
    def __init__(self, path: Path) -> None:
        from wsidicom import WsiDicom

        try:
            self._wsi = WsiDicom.open(_files(path))
        except Exception as e:  # wsidicom raises its own and pydicom's errors
            raise ImageLoadError(
                path,
                f"not a readable DICOM whole-slide image ({type(e).__name__}: {e})",
                "give the folder holding all instances of one slide",
            ) from e
        self.path = path
        levels = sorted(self._wsi.levels, key=lambda lv: lv.level)
        self._levels = [lv.level for lv in levels]
        self.level_dimensions = [(int(lv.size.width), int(lv.size.height)) for lv in levels]
        w0 = self.level_dimensions[0][0]
        self.level_downsamples = [w0 / w for w, _ in self.level_dimensions]
        mpp = self._wsi.mpp
        tile = self._wsi.tile_size
        self.metadata = SlideMetadata(
            vendor="dicom",
            mpp=float((mpp.width + mpp.height) / 2) if mpp else None,
            tile_size=(int(tile.width), int(tile.height)) if tile else None,
        )

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        out = np.full((h, w, 3), 255, np.uint8)
        lx, ly, cw, ch, ox, oy = clip_read(
            self.level_dimensions[level], self.level_downsamples[level], x, y, w, h
        )
        if cw == 0 or ch == 0:
            return out
        try:
            arr = self._wsi.read_region((lx, ly), self._levels[level], (cw, ch), as_array=True)
        except Exception as e:
            raise ImageLoadError(
                self.path,
                f"the slide is damaged or truncated ({type(e).__name__}: {e})",
                "copy the instances again",
            ) from e
        arr = np.asarray(arr)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=-1)
        out[oy : oy + ch, ox : ox + cw] = arr[..., :3]
        return out

    def close(self) -> None:
        self._wsi.close()
