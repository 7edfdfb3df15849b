"""Annotated real images that ship inside wheels, for tests and benchmarks.

StarDist's wheel carries a fluorescence nuclei image with its annotation (``img2d.tif`` +
``mask2d.tif``) and a small 3D stack (``img3d.tif`` + ``mask3d.tif``). ``stardist_images`` gets
the wheel with ``pip download --no-deps`` (stardist itself needs TensorFlow and is never
installed), extracts only those files into a cache directory and returns their paths; later
calls read the cache. Offline it raises ``SampleDataUnavailable`` saying why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

FILES = ("img2d.tif", "mask2d.tif", "img3d.tif", "mask3d.tif")


class SampleDataUnavailable(RuntimeError):
    """The sample data is not cached and could not be downloaded."""


def cache_dir() -> Path:
    root = os.environ.get("LITEVLM_SAMPLE_DATA") or (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "litevlm" / "samples"
    )
    return Path(root) / "stardist"


def stardist_images(timeout_s: float = 180) -> dict[str, Path]:
    """Paths of StarDist's annotated sample images: ``{"img2d": ..., "mask2d": ..., ...}``."""
    out = cache_dir()
    paths = {f.removesuffix(".tif"): out / f for f in FILES}
    if all(p.is_file() for p in paths.values()):
        return paths
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-q", "-d", tmp, "stardist"]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SampleDataUnavailable(f"pip download stardist failed: {e}") from e
        wheels = list(Path(tmp).glob("stardist-*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise SampleDataUnavailable(f"pip download stardist failed (offline?): {last[0]}")
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as zf:
            for f in FILES:
                (out / f).write_bytes(zf.read(f"stardist/data/images/{f}"))
    return paths
