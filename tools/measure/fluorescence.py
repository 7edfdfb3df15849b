"""Cells and nuclei in fluorescence (or unstained brightfield) images: count, shape, intensity.

``measure_objects(inp, kind=..., segment=...)`` picks the channel to segment, segments it with
the ``segment`` function it is given (the classical pipeline, or a deep backend), and returns a
``Measured``: per-object shape and intensity features, summary statistics, plausibility
warnings, and the label image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from litevlm.types import Measurement
from tools.measure.features import (
    Measured,
    capped,
    distributions,
    focus_scores,
    object_features,
    object_rows,
    object_summary,
)
from tools.measure.inputs import ImageInput, intensity_warnings, is_grey, unit_rgb
from tools.measure.kinds import colour_profile
from tools.measure.plausibility import plausibility_warnings
from tools.measure.segmentation import Segmentation


def grey_for_objects(inp: ImageInput, kind: str) -> tuple[np.ndarray, str]:
    """The one channel to segment, scaled to [0, 1], and its name."""
    data = inp.data
    if data.ndim == 2:
        channel, name = data, "grey"
    else:
        if is_grey(data):
            channel, name = data[..., 0], "grey"
        elif colour_profile(inp.rgb)["brightfield"]:
            if kind == "nuclei":
                from skimage.color import rgb2hed

                channel, name = rgb2hed(unit_rgb(inp))[..., 0], "haematoxylin"
            else:
                channel, name = data.mean(axis=-1), "luminance"
        elif kind == "nuclei" and data[..., 2].max() > 0.2 * data.max():
            channel, name = data[..., 2], "blue (nuclear stain)"
        else:
            channel, name = data.max(axis=-1), "max over channels"
    lo, hi = float(channel.min()), float(channel.max())
    return ((channel - lo) / (hi - lo) if hi > lo else channel * 0).astype(np.float32), name


def measure_objects(
    inp: ImageInput,
    *,
    kind: str = "cells",
    pixel_size_um: float | None = None,
    segment: Callable[..., Segmentation],
    min_area_px: int = 20,
    max_objects_listed: int = 5000,
) -> Measured:
    """Segment and measure cells or nuclei in ``inp``; sizes in um when the pixel size is known."""
    ps_um = pixel_size_um
    warnings = intensity_warnings(inp)
    grey, channel = grey_for_objects(inp, kind)
    units = "um" if ps_um else "px"
    if warnings and warnings[0].startswith("image is uniform"):
        m = Measurement(
            kind=kind, count=0, units=units, pixel_size_um=ps_um, warnings=warnings,
            summary={"count": 0, "confluence": 0.0}, params={"channel": channel},
        )  # fmt: skip
        return Measured(m, np.zeros(grey.shape, np.int32))
    seg = segment(grey)
    warnings += seg.warnings
    labels = seg.labels
    table = object_features(labels, inp.data)
    objects = object_rows(table, ps_um, inp.data.shape[-1] if inp.data.ndim == 3 else 1)
    summary = object_summary(objects, ps_um)
    summary["confluence"] = round(float(seg.foreground.mean()), 4)
    summary["focus"] = focus_scores(grey)
    if ps_um and objects:
        area_mm2 = labels.size * (ps_um / 1000) ** 2
        summary["density_per_mm2"] = round(len(objects) / area_mm2, 2)
    if seg.count == 0 and not any(w.startswith("no objects") for w in warnings):
        warnings.append(
            f"no objects of at least {min_area_px} px were found after "
            "thresholding; check measure.min_object_area_px and the polarity"
        )
    if summary["focus"]["blur_effect"] > 0.6:
        warnings.append(
            f"image looks blurred (blur effect {summary['focus']['blur_effect']:.2f} of 1): "
            "edges and areas are less reliable"
        )
    warnings += plausibility_warnings(seg, min_area_px=min_area_px)
    m = Measurement(
        kind=kind,
        count=seg.count,
        units=units,
        pixel_size_um=ps_um,
        summary=summary,
        distributions=distributions(objects, ("area", "equivalent_diameter", "circularity")),
        warnings=warnings,
        params={"channel": channel, **seg.params, "removed_small": seg.removed_small},
        objects=capped(objects, max_objects_listed, warnings),
    )

    def draw(path: Path) -> Path:
        from tools.overlay import label_overlay

        return label_overlay(inp.rgb, labels, path, caption=f"{kind}: {seg.count} objects")

    return Measured(m, labels, draw=draw, rows=objects)
