"""Input normalisation: a path, a ``LoadedImage`` or an array becomes an ``ImageInput``.

``ImageInput`` holds the image in the two forms measurement needs (stored values as float32 and
an 8-bit RGB picture for colour analysis and overlays) plus what is known about it (modality,
metadata, pixel size). Bad input raises ``MeasurementError`` with one line saying what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from litevlm.errors import MeasurementError
from litevlm.types import LoadedImage

MIN_SIDE = 8


@dataclass
class ImageInput:
    """The image in the two forms measurement needs, plus what is known about it."""

    data: np.ndarray  # stored values: 2D, or HxWxC; float32
    rgb: np.ndarray  # uint8 HxWx3 for colour analysis and overlays
    modality: str = "unknown"
    metadata: dict[str, Any] = field(default_factory=dict)
    pixel_size_mm: tuple[float, float] | None = None
    source: str = "array"
    dtype_max: float | None = None  # full scale of the stored integer type, for saturation
    warnings: list[str] = field(default_factory=list)


def as_input(
    image: LoadedImage | np.ndarray | str | Path,
    *,
    max_pixels: int = 100_000_000,
    volume_ok: bool = False,
) -> ImageInput:
    """Normalise ``image``; a 3D stack is accepted only when ``volume_ok`` (radiology)."""
    if isinstance(image, (str, Path)):
        from tools.images import load_image

        image = load_image(image, max_pixels=max_pixels)
    if isinstance(image, LoadedImage):
        rgb = np.asarray(image.image.convert("RGB"))
        raw = image.raw
        data = np.asarray(raw) if raw is not None else rgb
        if data.ndim == 3 and data.shape[-1] in (3, 4) and data.shape[:2] != rgb.shape[:2]:
            data = rgb  # stored values do not line up with the picture: measure the picture
        inp = from_array(data, source=str(image.source_path or "image"), max_pixels=max_pixels,
                         volume_ok=volume_ok)  # fmt: skip
        inp.rgb = rgb if rgb.shape[:2] == inp.data.shape[:2] else inp.rgb
        inp.modality = image.modality
        inp.metadata = dict(image.metadata)
        inp.pixel_size_mm = image.pixel_size_mm
        return inp
    if isinstance(image, np.ndarray):
        return from_array(image, max_pixels=max_pixels, volume_ok=volume_ok)
    raise MeasurementError(
        f"cannot measure an object of type {type(image).__name__}",
        "pass a file path, a LoadedImage or a numpy array",
    )


def from_array(
    arr: np.ndarray,
    *,
    source: str = "array",
    max_pixels: int = 100_000_000,
    volume_ok: bool = False,
) -> ImageInput:
    arr = np.asarray(arr)
    warnings: list[str] = []
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if not np.issubdtype(arr.dtype, np.number):
        raise MeasurementError(f"{source}: pixel type {arr.dtype} is not numeric")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    is_stack = arr.ndim == 3 and arr.shape[-1] not in (3, 4)
    if arr.ndim not in (2, 3) or (is_stack and not volume_ok):
        hint = (
            "pass one plane (e.g. image[k]) or a projection (image.max(axis=0)); "
            "channel-first colour arrays need moving the channel axis last"
        )
        raise MeasurementError(
            f"{source}: expected a 2D image or HxWx3/4 colour, got shape {arr.shape}"
            + (" (a 3D stack)" if arr.ndim == 3 else ""),
            hint,
        )
    h, w = arr.shape[1:] if is_stack else arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise MeasurementError(
            f"{source}: image is {h}x{w} pixels, too small to measure",
            f"use an image at least {MIN_SIDE}x{MIN_SIDE} pixels",
        )
    if arr.size > max_pixels * (3 if arr.ndim == 3 else 1):
        raise MeasurementError(
            f"{source}: {h}x{w} is more than measure.max_pixels ({max_pixels})",
            "crop or downsample the image, or raise measure.max_pixels",
        )
    if arr.ndim == 3 and arr.shape[-1] == 4 and not is_stack:
        arr = arr[..., :3]  # alpha carries no measurement
    dtype_max = float(np.iinfo(arr.dtype).max) if np.issubdtype(arr.dtype, np.integer) else None
    data = arr.astype(np.float32)
    if not np.all(np.isfinite(data)):
        bad = int((~np.isfinite(data)).sum())
        warnings.append(f"{bad} pixels were NaN or infinite and were set to the image minimum")
        finite = data[np.isfinite(data)]
        data = np.nan_to_num(data, nan=float(finite.min()) if finite.size else 0.0)
        data = np.clip(data, finite.min() if finite.size else 0, finite.max() if finite.size else 0)
    view = data[data.shape[0] // 2] if is_stack else data
    return ImageInput(
        data=data, rgb=to_rgb8(view), source=source, dtype_max=dtype_max, warnings=warnings
    )


def to_rgb8(data: np.ndarray) -> np.ndarray:
    if data.ndim == 3 and data.shape[-1] == 3 and data.min() >= 0 and 1.0 < data.max() <= 255:
        return data.astype(np.uint8)  # already 8-bit colour
    lo, hi = np.percentile(data, (0.5, 99.5))
    hi = hi if hi > lo else lo + 1
    out = (np.clip((data - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    return out if out.ndim == 3 else np.repeat(out[..., None], 3, axis=-1)


def resolve_pixel_size(
    inp: ImageInput, explicit: float | None, default: float | None
) -> tuple[float | None, str, list[str]]:
    """(micrometres per pixel or None, where it came from, warnings)."""
    if explicit is not None:
        if not explicit > 0:
            raise MeasurementError(f"pixel size {explicit} um is not positive")
        return float(explicit), "argument", []
    if inp.pixel_size_mm:
        r, c = (float(v) for v in inp.pixel_size_mm)
        warnings = []
        if abs(r - c) > 0.02 * max(r, c):
            warnings.append(f"pixels are not square ({r} x {c} mm): areas use the mean spacing")
        return (r + c) / 2 * 1000.0, "metadata", warnings
    for key in ("pixel_size_um", "mpp", "microns_per_pixel"):
        if isinstance(inp.metadata.get(key), (int, float)) and inp.metadata[key] > 0:
            return float(inp.metadata[key]), f"metadata ({key})", []
    if default:
        return default, "settings (measure.pixel_size_um)", []
    return None, "unknown", []


def is_grey(data: np.ndarray) -> bool:
    """Colour array whose channels are equal (a greyscale picture saved as RGB)."""
    if data.ndim != 3:
        return True
    sub = data[::4, ::4]
    return bool(np.abs(sub - sub[..., :1]).max() <= 1e-3 * (float(np.ptp(sub)) + 1e-9))


def unit_rgb(inp: ImageInput) -> np.ndarray:
    """Colour values scaled to [0, 1] by the full scale of the stored type."""
    data = inp.data[..., :3]
    scale = inp.dtype_max or (255.0 if data.max() > 1.0 else 1.0)
    return np.clip(data / scale, 0, 1)


def intensity_warnings(inp: ImageInput, saturation_limit: float = 0.01) -> list[str]:
    """A uniform image, or clipping at a full scale (8/10/12/14/16-bit or 1.0)."""
    data = inp.data
    hi = float(data.max())
    flat = data.reshape(-1, data.shape[-1]) if data.ndim == 3 else data.reshape(-1, 1)
    if not np.ptp(flat, axis=0).any():
        value = flat[0].tolist()
        value = value[0] if len(value) == 1 else tuple(value)
        return [f"image is uniform (every pixel is {value}): there is nothing to measure"]
    # Clipping shows as many pixels at the maximum, when the maximum is a full scale: of the
    # stored type, of a 10/12/14-bit camera in 16-bit words, or 1.0 for float images.
    full_scales = {1.0, 255.0, 1023.0, 4095.0, 16383.0, 65535.0, inp.dtype_max or 1.0}
    full = hi if (hi in full_scales or inp.dtype_max is None) else (inp.dtype_max or hi)
    sat = float((data >= full).mean()) if hi >= full else 0.0
    out = []
    if sat > saturation_limit:
        out.append(
            f"{sat:.0%} of pixel values are saturated at {full:g}: intensities are clipped and "
            "bright objects may merge; reduce exposure or gain"
        )
    return out
