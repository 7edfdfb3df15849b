"""Measure what a vision-language model cannot be trusted to count.

``measure(image, kind=...)`` returns a ``Measurement``: object counts and shape/intensity
statistics for cell and nucleus images, haematoxylin/DAB quantities for IHC and H&E, intensity
statistics in stored units (HU for CT) for radiology, always in physical units when the pixel
size is known, with the parameters used and warnings. An overlay PNG shows what was measured.

Kinds:
- ``cells`` / ``nuclei``: classical segmentation (``tools.segmentation``) of a grey channel.
- ``ihc``: colour deconvolution (``rgb2hed``); nuclei from haematoxylin; DAB-positive fraction of
  cells (nucleus plus a thin ring, where membrane and cytoplasm stain) and of tissue area.
- ``he``: nuclei from haematoxylin; tissue and eosin fractions.
- ``radiology``: statistics of stored values, the display window, field of view.
- ``auto``: DICOM/NIfTI radiology -> radiology; brown DAB -> ihc; pink/purple -> he; else cells.

Heavy imports (skimage, scipy) happen inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from litevlm.config import MeasureConfig
from litevlm.errors import MeasurementError
from litevlm.types import LoadedImage, Measurement

KINDS = ("auto", "cells", "nuclei", "ihc", "he", "radiology")
RADIOLOGY_MODALITIES = {
    "CT", "MR", "CR", "DX", "US", "XA", "PT", "NM", "MG", "RF", "RG", "PX", "IO", "OCT",
}  # fmt: skip
MIN_SIDE = 8
# Hounsfield bands for a coarse CT composition (standard textbook ranges).
HU_BANDS = {
    "air": (-np.inf, -900.0),
    "lung": (-900.0, -500.0),
    "fat": (-190.0, -30.0),
    "soft_tissue": (-30.0, 100.0),
    "bone": (300.0, np.inf),
}


@dataclass
class _Input:
    """The image in the two forms measurement needs, plus what is known about it."""

    data: np.ndarray  # stored values: 2D, or HxWxC; float32
    rgb: np.ndarray  # uint8 HxWx3 for colour analysis and overlays
    modality: str = "unknown"
    metadata: dict[str, Any] = field(default_factory=dict)
    pixel_size_mm: tuple[float, float] | None = None
    source: str = "array"
    dtype_max: float | None = None  # full scale of the stored integer type, for saturation
    warnings: list[str] = field(default_factory=list)


def measure(
    image: LoadedImage | np.ndarray | str | Path,
    *,
    kind: str = "auto",
    pixel_size_um: float | None = None,
    overlay_path: Path | None = None,
    settings: MeasureConfig | None = None,
) -> Measurement:
    """Measure ``image`` and return a ``Measurement`` (see the module docstring for kinds).

    ``pixel_size_um`` overrides the pixel size from metadata or settings. ``overlay_path``, when
    given, receives a PNG with contours and object numbers (or the body outline in radiology).
    Bad input raises ``MeasurementError`` (too small, a 3D stack, too large) or returns a result
    whose ``warnings`` say what is wrong (blank, saturated, no objects found).
    """
    settings = settings or MeasureConfig()
    overlay_path = Path(overlay_path) if overlay_path is not None else None
    if kind not in KINDS:
        raise MeasurementError(f"unknown kind {kind!r}", f"use one of {', '.join(KINDS)}")
    inp = _as_input(image, settings, volume_ok=kind == "radiology")
    reason = "requested"
    if kind == "auto":
        kind, reason = detect_kind(inp)
    ps_um, ps_source, ps_warnings = _pixel_size_um(inp, pixel_size_um, settings)

    if kind == "radiology":
        result = _measure_radiology(inp, ps_um, overlay_path)
    else:
        if inp.data.ndim == 3 and inp.data.shape[-1] not in (1, 3, 4):
            raise MeasurementError(
                f"{inp.source}: a 3D stack of shape {inp.data.shape} cannot be segmented",
                "pass one plane (e.g. image[k]) or a projection (image.max(axis=0))",
            )
        if kind in ("ihc", "he"):
            result = _measure_stain(inp, kind, ps_um, settings, overlay_path)
        else:
            result = _measure_objects(inp, kind, ps_um, settings, overlay_path)
    result.warnings[:0] = inp.warnings + ps_warnings
    result.params.update({"kind_reason": reason, "pixel_size_source": ps_source})
    result.params.setdefault("backend", settings.backend)
    return result


# ---------------------------------------------------------------- input


def _as_input(
    image: LoadedImage | np.ndarray | str | Path, settings: MeasureConfig, volume_ok: bool
) -> _Input:
    if isinstance(image, (str, Path)):
        from tools.images import load_image

        image = load_image(image, max_pixels=settings.max_pixels)
    if isinstance(image, LoadedImage):
        rgb = np.asarray(image.image.convert("RGB"))
        raw = image.raw
        data = np.asarray(raw) if raw is not None else rgb
        if data.ndim == 3 and data.shape[-1] in (3, 4) and data.shape[:2] != rgb.shape[:2]:
            data = rgb  # stored values do not line up with the picture: measure the picture
        inp = _from_array(data, str(image.source_path or "image"), settings, volume_ok)
        inp.rgb = rgb if rgb.shape[:2] == inp.data.shape[:2] else inp.rgb
        inp.modality = image.modality
        inp.metadata = dict(image.metadata)
        inp.pixel_size_mm = image.pixel_size_mm
        return inp
    if isinstance(image, np.ndarray):
        return _from_array(image, "array", settings, volume_ok)
    raise MeasurementError(
        f"cannot measure an object of type {type(image).__name__}",
        "pass a file path, a LoadedImage or a numpy array",
    )


def _from_array(arr: np.ndarray, source: str, settings: MeasureConfig, volume_ok: bool) -> _Input:
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
    if arr.size > settings.max_pixels * (3 if arr.ndim == 3 else 1):
        raise MeasurementError(
            f"{source}: {h}x{w} is more than measure.max_pixels ({settings.max_pixels})",
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
    return _Input(
        data=data, rgb=_to_rgb8(view), source=source, dtype_max=dtype_max, warnings=warnings
    )


def _to_rgb8(data: np.ndarray) -> np.ndarray:
    if data.ndim == 3 and data.shape[-1] == 3 and data.min() >= 0 and 1.0 < data.max() <= 255:
        return data.astype(np.uint8)  # already 8-bit colour
    lo, hi = np.percentile(data, (0.5, 99.5))
    hi = hi if hi > lo else lo + 1
    out = (np.clip((data - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    return out if out.ndim == 3 else np.repeat(out[..., None], 3, axis=-1)


def _pixel_size_um(
    inp: _Input, explicit: float | None, settings: MeasureConfig
) -> tuple[float | None, str, list[str]]:
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
    if settings.pixel_size_um:
        return settings.pixel_size_um, "settings (measure.pixel_size_um)", []
    return None, "unknown", []


# ---------------------------------------------------------------- kind detection


def detect_kind(inp: _Input) -> tuple[str, str]:
    """Pick a kind from modality, file format and colour; return (kind, reason)."""
    modality = (inp.modality or "unknown").upper()
    fmt = str(inp.metadata.get("format", "")).lower()
    if modality in RADIOLOGY_MODALITIES:
        return "radiology", f"modality {modality}"
    if fmt == "nifti":
        return "radiology", "NIfTI volume"
    if fmt == "dicom" and modality not in ("SM", "OT") and inp.data.ndim == 2:
        return "radiology", f"greyscale DICOM ({modality})"
    if inp.data.ndim == 3 and inp.data.shape[-1] not in (3, 4):
        return "radiology", "3D volume"
    if modality == "FLUORESCENCE":
        return "cells", "fluorescence modality"
    if _is_grey(inp.data):
        return "cells", "greyscale image"
    colour = colour_profile(inp.rgb)
    if colour["brightfield"] and colour["brown"] > 0.1:
        return "ihc", f"brown DAB signal in {colour['brown']:.0%} of tissue"
    if colour["brightfield"] and colour["pink_purple"] > 0.3:
        return "he", f"pink/purple stain in {colour['pink_purple']:.0%} of tissue"
    return "cells", "no stain colours found"


def colour_profile(rgb: np.ndarray) -> dict[str, Any]:
    """Fractions of stained tissue that are brown (DAB) or pink/purple (H&E)."""
    from skimage.color import rgb2hsv

    # Fractions need no more than ~65k pixels.
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / 65_536))))
    hsv = rgb2hsv(rgb[::step, ::step])
    h, s, v = hsv[..., 0] * 360, hsv[..., 1], hsv[..., 2]
    tissue = (v > 0.2) & (s > 0.1) & (v < 0.97)
    n = max(1, int(tissue.sum()))
    brown = tissue & (h >= 10) & (h <= 50) & (s > 0.2)
    pink = tissue & ((h >= 260) | (h <= 5))
    return {
        # Brightfield: lit background or tissue, hardly any black (fluorescence, fundus).
        "brightfield": bool((v < 0.15).mean() < 0.05 and np.median(v) > 0.4),
        "tissue": float(tissue.mean()),
        "brown": float(brown.sum() / n),
        "pink_purple": float(pink.sum() / n),
    }


# ---------------------------------------------------------------- cells and nuclei


def _grey_for_objects(inp: _Input, kind: str) -> tuple[np.ndarray, str]:
    """The one channel to segment, scaled to [0, 1], and its name."""
    data = inp.data
    if data.ndim == 2:
        channel, name = data, "grey"
    else:
        if _is_grey(data):
            channel, name = data[..., 0], "grey"
        elif colour_profile(inp.rgb)["brightfield"]:
            if kind == "nuclei":
                from skimage.color import rgb2hed

                channel, name = rgb2hed(_unit_rgb(inp))[..., 0], "haematoxylin"
            else:
                channel, name = data.mean(axis=-1), "luminance"
        elif kind == "nuclei" and data[..., 2].max() > 0.2 * data.max():
            channel, name = data[..., 2], "blue (nuclear stain)"
        else:
            channel, name = data.max(axis=-1), "max over channels"
    lo, hi = float(channel.min()), float(channel.max())
    return ((channel - lo) / (hi - lo) if hi > lo else channel * 0).astype(np.float32), name


def _is_grey(data: np.ndarray) -> bool:
    """Colour array whose channels are equal (a greyscale picture saved as RGB)."""
    if data.ndim != 3:
        return True
    sub = data[::4, ::4]
    return bool(np.abs(sub - sub[..., :1]).max() <= 1e-3 * (float(np.ptp(sub)) + 1e-9))


def _unit_rgb(inp: _Input) -> np.ndarray:
    data = inp.data[..., :3]
    scale = inp.dtype_max or (255.0 if data.max() > 1.0 else 1.0)
    return np.clip(data / scale, 0, 1)


def _intensity_warnings(inp: _Input, saturation_limit: float = 0.01) -> list[str]:
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


def _segment(grey: np.ndarray, settings: MeasureConfig, **kw: Any):
    if settings.backend != "classical":
        return _deep_backend(settings.backend)
    from tools.segmentation import segment

    return segment(
        grey,
        polarity=kw.pop("polarity", settings.object_polarity),
        smooth_sigma=settings.smooth_sigma,
        threshold_method=settings.threshold_method,
        min_area=settings.min_object_area_px,
        exclude_border=settings.exclude_border,
        split=settings.split_touching,
        split_h_fraction=settings.split_h_fraction,
        background_tile=kw.pop("background_tile", settings.background_tile_px),
        **kw,
    )


def _deep_backend(name: str):
    """Cellpose/StarDist: only when installed with weights on disk; say so clearly otherwise."""
    import importlib.util
    import os

    module = {"cellpose": "cellpose", "stardist": "stardist"}[name]
    if importlib.util.find_spec(module) is None:
        raise MeasurementError(
            f"segmentation backend {name!r} is not installed",
            f"pip install {module} and place its model weights locally, "
            "or set measure.backend = 'classical'",
        )
    weights = {
        "cellpose": Path(
            os.environ.get("CELLPOSE_LOCAL_MODELS_PATH", Path.home() / ".cellpose" / "models")
        ),
        "stardist": Path.home() / ".keras" / "models" / "StarDist2D",
    }[name]
    if not weights.exists() or not any(weights.iterdir()):
        raise MeasurementError(
            f"segmentation backend {name!r} has no model weights at {weights}",
            "download them on a machine with network access and copy them there, "
            "or set measure.backend = 'classical'",
        )
    raise MeasurementError(
        f"segmentation backend {name!r} is installed but not wired in this version",
        "set measure.backend = 'classical'",
    )


def _measure_objects(
    inp: _Input, kind: str, ps_um: float | None, settings: MeasureConfig, overlay: Path | None
) -> Measurement:
    from tools.segmentation import object_features

    warnings = _intensity_warnings(inp)
    grey, channel = _grey_for_objects(inp, kind)
    units = "um" if ps_um else "px"
    if warnings and warnings[0].startswith("image is uniform"):
        return Measurement(
            kind=kind, count=0, units=units, pixel_size_um=ps_um, warnings=warnings,
            summary={"count": 0, "confluence": 0.0}, params={"channel": channel},
        )  # fmt: skip
    seg = _segment(grey, settings)
    warnings += seg.warnings
    labels = seg.labels
    table = object_features(labels, inp.data)
    objects = _object_rows(table, ps_um, inp.data.shape[-1] if inp.data.ndim == 3 else 1)
    summary = _object_summary(objects, ps_um)
    summary["confluence"] = round(float(seg.foreground.mean()), 4)
    summary["focus"] = focus_scores(grey)
    if ps_um and objects:
        area_mm2 = labels.size * (ps_um / 1000) ** 2
        summary["density_per_mm2"] = round(len(objects) / area_mm2, 2)
    if seg.count == 0 and not any(w.startswith("no objects") for w in warnings):
        warnings.append(
            f"no objects of at least {settings.min_object_area_px} px were found after "
            "thresholding; check measure.min_object_area_px and the polarity"
        )
    if summary["focus"]["blur_effect"] > 0.6:
        warnings.append(
            f"image looks blurred (blur effect {summary['focus']['blur_effect']:.2f} of 1): "
            "edges and areas are less reliable"
        )
    result = Measurement(
        kind=kind,
        count=seg.count,
        units=units,
        pixel_size_um=ps_um,
        summary=summary,
        distributions=_distributions(objects, ("area", "equivalent_diameter", "circularity")),
        warnings=warnings,
        params={"channel": channel, **seg.params, "removed_small": seg.removed_small},
        objects=_capped(objects, settings, warnings),
    )
    if overlay is not None:
        from tools.overlay import label_overlay

        caption = f"{kind}: {seg.count} objects"
        result.overlay_path = label_overlay(inp.rgb, labels, overlay, caption=caption)
    return result


def _object_rows(
    table: dict[str, np.ndarray], ps_um: float | None, channels: int
) -> list[dict[str, Any]]:
    k = ps_um or 1.0
    area = table["area"] * k * k
    # 4*pi*A/P^2, clipped: digital perimeters of tiny objects can run short.
    circ = np.clip(4 * np.pi * table["area"] / np.maximum(table["perimeter"], 1e-9) ** 2, 0, 1)
    names = ["intensity"] if channels == 1 else [
        f"intensity_{'rgb'[c] if channels == 3 else c}" for c in range(channels)
    ]  # fmt: skip
    rows = []
    for i in range(len(table["label"])):
        row: dict[str, Any] = {
            "id": int(table["label"][i]),
            "row": round(float(table["centroid_row"][i]), 1),
            "col": round(float(table["centroid_col"][i]), 1),
            "area": round(float(area[i]), 3),
            "equivalent_diameter": round(float(table["equivalent_diameter"][i] * k), 3),
            "eccentricity": round(float(table["eccentricity"][i]), 4),
            "solidity": round(float(table["solidity"][i]), 4),
            "circularity": round(float(circ[i]), 4),
        }
        for c, name in enumerate(names):
            row[name] = round(float(table[f"intensity_mean_{c}"][i]), 3)
        rows.append(row)
    return rows


def _stats(values: np.ndarray, unit: str | None = None) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0} | ({"unit": unit} if unit else {})
    p5, p50, p95 = np.percentile(v, (5, 50, 95))
    out = {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "median": float(p50),
        "p5": float(p5),
        "p95": float(p95),
        "min": float(v.min()),
        "max": float(v.max()),
    }
    out = {k: (round(x, 4) if isinstance(x, float) else x) for k, x in out.items()}
    return out | ({"unit": unit} if unit else {})


def _object_summary(objects: list[dict[str, Any]], ps_um: float | None) -> dict[str, Any]:
    u = "um" if ps_um else "px"
    summary: dict[str, Any] = {"count": len(objects)}
    units = {"area": f"{u}^2", "equivalent_diameter": u}
    for key in ("area", "equivalent_diameter", "eccentricity", "solidity", "circularity"):
        summary[key] = _stats(np.array([o[key] for o in objects]), units.get(key))
    for key in objects[0] if objects else {}:
        if key.startswith("intensity"):
            summary[f"mean_{key}"] = _stats(np.array([o[key] for o in objects]))
    return summary


def _distributions(objects: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for key in keys:
        v = np.array([o[key] for o in objects if key in o], dtype=np.float64)
        if v.size:
            counts, edges = np.histogram(v, bins=10)
            out[key] = {
                "bin_edges": [round(float(e), 4) for e in edges],
                "counts": counts.tolist(),
            }
    return out


def _capped(objects: list[dict[str, Any]], settings: MeasureConfig, warnings: list[str]):
    if len(objects) > settings.max_objects_listed:
        warnings.append(
            f"per-object table truncated to {settings.max_objects_listed} of {len(objects)} rows "
            "(measure.max_objects_listed); summary statistics use all objects"
        )
        return objects[: settings.max_objects_listed]
    return objects


def focus_scores(grey: np.ndarray) -> dict[str, float]:
    """Sharpness of the central crop: Laplacian variance (higher is sharper) and scikit-image's
    blur effect (0 sharp .. 1 blurred, Crete et al. 2007)."""
    from scipy import ndimage as ndi
    from skimage.measure import blur_effect

    h, w = grey.shape
    c = grey[max(0, h // 2 - 256) : h // 2 + 256, max(0, w // 2 - 256) : w // 2 + 256]
    lap = float(ndi.laplace(c.astype(np.float64)).var())
    blur = float(blur_effect(c)) if min(c.shape) >= 16 else float("nan")
    return {"laplacian_variance": round(lap, 6), "blur_effect": round(blur, 4)}


# ---------------------------------------------------------------- IHC and H&E


def _tissue_mask(rgb01: np.ndarray) -> np.ndarray:
    """Tissue is what is not (near-)white glass; small specks and holes are ignored."""
    from scipy import ndimage as ndi
    from skimage.morphology import remove_small_holes, remove_small_objects

    # Glass is bright and grey; stained tissue is darker or coloured.
    bright = rgb01.max(axis=-1)
    sat = (bright - rgb01.min(axis=-1)) / np.maximum(bright, 1e-6)
    glass = (ndi.gaussian_filter(bright, 2) > 0.82) & (ndi.gaussian_filter(sat, 2) < 0.12)
    mask = ~glass
    mask = remove_small_objects(mask, max_size=63)
    return remove_small_holes(mask, max_size=63)


def _measure_stain(
    inp: _Input, kind: str, ps_um: float | None, settings: MeasureConfig, overlay: Path | None
) -> Measurement:
    from scipy import ndimage as ndi
    from skimage.color import rgb2hed
    from skimage.segmentation import expand_labels

    # Glass in brightfield is legitimately at full scale; warn only when most of it is.
    warnings = _intensity_warnings(inp, saturation_limit=0.5)
    units = "um" if ps_um else "px"
    if inp.data.ndim == 2:
        raise MeasurementError(
            f"{inp.source}: {kind.upper()} measurement needs a colour (RGB) image",
            "use kind='cells' or 'nuclei' for greyscale images",
        )
    if warnings and warnings[0].startswith("image is uniform"):
        return Measurement(
            kind=kind, count=0, units=units, pixel_size_um=ps_um, warnings=warnings,
            summary={"count": 0, "tissue_fraction": 0.0},
        )  # fmt: skip
    rgb01 = _unit_rgb(inp)
    hed = rgb2hed(rgb01)
    hema, eosin, dab = hed[..., 0], hed[..., 1], hed[..., 2]
    tissue = _tissue_mask(rgb01)
    tissue_fraction = float(tissue.mean())
    if tissue_fraction < 0.01:
        warnings.append("hardly any tissue (stained area under 1%): nothing to measure")
    # Scale haematoxylin by a high percentile so that a few dark specks do not set the range.
    top = float(np.percentile(hema, 99.5))
    h01 = np.clip((hema - hema.min()) / (top - hema.min() + 1e-9), 0, 1).astype(np.float32)
    if kind == "ihc":
        # Counterstained nuclei stand out from DAB and pale stroma alike after the background
        # correction; the threshold is global so that pale stromal nuclei are kept.
        seg = _segment(h01, settings, polarity="bright")
    else:
        # In H&E most tissue takes up some haematoxylin: threshold within tissue, no glass.
        seg = _segment(h01, settings, polarity="bright", valid=tissue, background_tile=0)
    warnings += seg.warnings
    labels, dropped = _drop_non_nuclear(seg.labels, tissue, min_solidity=0.8 if kind == "he" else 0)
    if dropped:
        warnings.append(
            f"objects dropped as not nuclei (outside tissue or irregular, solidity < 0.8): "
            f"{dropped}"
        )
    n = int(labels.max())
    idx = np.arange(1, n + 1)
    k = ps_um or 1.0
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(float) * k * k
    centres = ndi.center_of_mass(labels > 0, labels, idx) if n else []
    u = "um" if ps_um else "px"
    summary: dict[str, Any] = {
        "count": n,
        "tissue_fraction": round(tissue_fraction, 4),
        "nuclear_area": _stats(areas, f"{u}^2"),
        "nuclear_area_fraction_of_tissue": round(
            float((labels > 0).sum() / max(1, tissue.sum())), 4
        ),
        "mean_haematoxylin_od": round(float(hema[tissue].mean()) if tissue.any() else 0.0, 4),
    }
    if ps_um and tissue.any():
        tissue_mm2 = tissue.sum() * (ps_um / 1000) ** 2
        summary["nuclei_per_mm2_tissue"] = round(n / tissue_mm2, 1)
    objects = [
        {"id": int(i), "row": round(float(c[0]), 1), "col": round(float(c[1]), 1),
         "area": round(float(a), 3)}
        for i, c, a in zip(idx, centres, areas, strict=True)
    ]  # fmt: skip
    params: dict[str, Any] = {"channel": "haematoxylin (rgb2hed)", **seg.params}
    colour = None
    if kind == "ihc":
        # Nuclear markers (Ki-67, ER) stain the nucleus; membrane markers (HER2) the ring
        # around it: report both, and score cells (nucleus plus ring) for the H-score.
        nuc_dab = np.asarray(ndi.mean(dab, labels, idx)) if n else np.zeros(0)
        cells = expand_labels(labels, settings.cell_expansion_px)
        cell_dab = np.asarray(ndi.mean(dab, cells, idx)) if n else np.zeros(0)
        t1, t2, t3 = settings.dab_bins
        positive = cell_dab > settings.dab_threshold
        score = np.digitize(cell_dab, [t1, t2, t3])  # 0, 1+, 2+, 3+
        pct = [float((score == s).mean() * 100) if n else 0.0 for s in (1, 2, 3)]
        dab_area = (dab > settings.dab_threshold) & tissue
        summary.update(
            {
                "dab_positive_fraction_of_nuclei": round(
                    float((nuc_dab > settings.dab_threshold).mean()) if n else 0.0, 4
                ),
                "dab_positive_fraction_of_cells": round(float(positive.mean()) if n else 0.0, 4),
                "dab_positive_fraction_of_tissue_area": round(
                    float(dab_area.sum() / max(1, tissue.sum())), 4
                ),
                "h_score": round(pct[0] + 2 * pct[1] + 3 * pct[2], 1),
                "cells_by_intensity_pct": {
                    "0": round(100 - sum(pct), 2) if n else 0.0,
                    "1+": round(pct[0], 2),
                    "2+": round(pct[1], 2),
                    "3+": round(pct[2], 2),
                },
                "mean_dab_od_tissue": round(float(dab[tissue].mean()) if tissue.any() else 0, 4),
            }
        )
        for o, dn, d, p in zip(objects, nuc_dab, cell_dab, positive, strict=True):
            o["nuclear_dab_od"] = round(float(dn), 4)
            o["dab_od"] = round(float(d), 4)
            o["dab_positive"] = bool(p)
        params.update(
            {
                "dab_threshold_od": settings.dab_threshold,
                "dab_bins_od": list(settings.dab_bins),
                "cell_expansion_px": settings.cell_expansion_px,
            }
        )
        colour = (positive, labels)
        if n == 0:
            warnings.append("no nuclei found: DAB fractions of cells are undefined")
    else:
        summary["eosin_fraction_of_tissue"] = round(
            float(((eosin > 0.02) & tissue).sum() / max(1, tissue.sum())), 4
        )
        summary["mean_eosin_od"] = round(float(eosin[tissue].mean()) if tissue.any() else 0, 4)
        if n == 0:
            warnings.append("no nuclei found in the haematoxylin channel")
    result = Measurement(
        kind=kind, count=n, units=units, pixel_size_um=ps_um, summary=summary,
        distributions=_distributions(objects, ("area", "dab_od")), warnings=warnings,
        params=params, objects=_capped(objects, settings, warnings),
    )  # fmt: skip
    if overlay is not None:
        result.overlay_path = _stain_overlay(inp.rgb, labels, colour, kind, summary, overlay)
    return result


def _drop_non_nuclear(
    labels: np.ndarray, tissue: np.ndarray, min_solidity: float
) -> tuple[np.ndarray, int]:
    """Drop objects mostly on glass and, if asked, irregular ones (fibres, folds)."""
    from scipy import ndimage as ndi
    from skimage.measure import regionprops_table
    from skimage.segmentation import relabel_sequential

    n = int(labels.max())
    if n == 0:
        return labels, 0
    idx = np.arange(1, n + 1)
    bad = np.asarray(ndi.mean(tissue, labels, idx)) < 0.25
    if min_solidity > 0:
        bad |= regionprops_table(labels, properties=["solidity"])["solidity"] < min_solidity
    if not bad.any():
        return labels, 0
    keep = np.concatenate([[False], ~bad])
    out = np.where(keep[labels], labels, 0)
    return relabel_sequential(out)[0].astype(np.int32), int(bad.sum())


def _stain_overlay(rgb, labels, colour, kind, summary, path) -> Path:
    from tools.overlay import label_overlay

    if colour is None:
        caption = f"H&E: {summary['count']} nuclei"
        return label_overlay(rgb, labels, path, caption=caption)
    positive, labels = colour
    pos_ids = np.flatnonzero(positive) + 1
    pos = np.where(np.isin(labels, pos_ids), labels, 0)
    neg = np.where(np.isin(labels, pos_ids), 0, labels)
    caption = (
        f"IHC: {summary['count']} cells, {summary['dab_positive_fraction_of_cells']:.0%} DAB+ (red)"
    )
    return label_overlay(
        rgb,
        pos,
        path,
        numbers=False,
        caption=caption,
        color=(255, 0, 0),
        under=(neg, (0, 120, 255)),
    )


# ---------------------------------------------------------------- radiology


def _measure_radiology(inp: _Input, ps_um: float | None, overlay: Path | None) -> Measurement:
    warnings: list[str] = []
    values = inp.data
    meta = inp.metadata
    units = meta.get("units") or ("HU" if inp.modality.upper() == "CT" else None)
    if values.ndim == 3 and values.shape[-1] in (3, 4) and meta.get("format") != "nifti":
        values = values[..., :3].mean(axis=-1)
        warnings.append("colour image: statistics are of the mean of R, G, B")
    if units is None:
        units = "stored value" if meta.get("format") in ("dicom", "nifti") else "grey level"
        if meta.get("format") not in ("dicom", "nifti"):
            warnings.append(
                "not a DICOM/NIfTI file: statistics are of display grey levels, not of "
                "physical units (HU etc.)"
            )
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        warnings.append(f"image is uniform (every value is {lo:g}): nothing to measure")
    body = _body_mask(values, units)
    summary: dict[str, Any] = {
        "units": units,
        "all_pixels": _stats(values.ravel()),
        "body": _stats(values[body]) if body.any() else {"n": 0},
        "body_fraction": round(float(body.mean()), 4),
        "shape": list(values.shape),
    }
    window = meta.get("window")
    if not window:
        p1, p99 = np.percentile(values, (1, 99))
        window = {"center": float(p1 + p99) / 2, "width": float(p99 - p1), "source": "computed"}
    summary["window"] = window
    spacing_mm = inp.pixel_size_mm or ((ps_um / 1000, ps_um / 1000) if ps_um else None)
    rows, cols = values.shape[-2:] if values.ndim == 3 else values.shape
    if spacing_mm:
        sr, sc = spacing_mm
        summary["pixel_spacing_mm"] = [round(sr, 5), round(sc, 5)]
        summary["field_of_view_mm"] = [round(rows * sr, 2), round(cols * sc, 2)]
        summary["body_area_cm2"] = round(float(body.sum() * sr * sc / 100), 2)
    else:
        warnings.append("pixel spacing unknown: sizes are in pixels (pass --pixel-size)")
    distributions: dict[str, Any] = {}
    finite = values[body] if body.any() else values.ravel()
    p_lo, p_hi = np.percentile(finite, (0.5, 99.5))
    if p_hi > p_lo:
        counts, edges = np.histogram(finite, bins=32, range=(p_lo, p_hi))
        distributions["histogram"] = {
            "bin_edges": [round(float(e), 3) for e in edges],
            "counts": counts.tolist(),
            "units": units,
        }
    if units == "HU" and body.any():
        bodyv = values[body]
        distributions["hu_bands_fraction_of_body"] = {
            name: round(float(((bodyv >= a) & (bodyv < b)).mean()), 4)
            for name, (a, b) in HU_BANDS.items()
        }
    for key in ("slice_thickness", "kvp", "body_part", "slice", "slices", "frame", "frames"):
        if key in meta:
            summary[key] = meta[key]
    result = Measurement(
        kind="radiology",
        count=None,
        units="mm" if spacing_mm else "px",
        pixel_size_um=round(spacing_mm[0] * 1000, 3) if spacing_mm else None,
        summary=summary,
        distributions=distributions,
        warnings=warnings,
        params={"modality": inp.modality, "body_mask": _body_rule(units)},
    )
    if overlay is not None:
        from tools.overlay import mask_overlay

        b = summary["body"]
        caption = f"body mean {b.get('mean', float('nan')):.1f} {units}"
        if "center" in window and "width" in window:
            caption += f", window C{window['center']:.0f}/W{window['width']:.0f}"
        mask2d = body if body.ndim == 2 else body[body.shape[0] // 2]
        result.overlay_path = mask_overlay(inp.rgb, mask2d, overlay, caption=caption)
    return result


def _body_rule(units: str) -> str:
    return "HU > -500, largest region, holes filled" if units == "HU" else "Otsu, largest region"


def _body_mask(values: np.ndarray, units: str) -> np.ndarray:
    """The patient (not the air around them): a threshold, the largest region, holes filled."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    if float(values.max()) == float(values.min()):
        return np.zeros(values.shape, bool)
    t = -500.0 if units == "HU" else threshold_otsu(values)
    mask = values > t
    lab, n = ndi.label(mask)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        mask = lab == sizes.argmax()
    return ndi.binary_fill_holes(mask)
