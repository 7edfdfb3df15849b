"""Cellpose as the segmentation backend (``[measure] backend = "cellpose"``).

Weights are never downloaded: ``cellpose_model`` is a weights file, or the name of one in the
user's Cellpose model directory (``CELLPOSE_LOCAL_MODELS_PATH`` or ``~/.cellpose/models``, where
Cellpose keeps what it downloaded, e.g. ``nuclei`` -> ``nucleitorch_0``). A missing file is one
``MeasurementError`` naming where it was looked for. The result is a ``Segmentation`` like the
classical pipeline's, so measurement, plausibility checks and exports are the same.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from litevlm.errors import MeasurementError
from tools.measure.segmentation import Segmentation


def model_dir() -> Path:
    env = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH")
    return Path(env) if env else Path.home() / ".cellpose" / "models"


def resolve_weights(model: str) -> Path:
    """The weights file for ``model`` (a path, or a name in the Cellpose model directory)."""
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix != ".txt")
        if len(files) == 1:
            return files[0]
        raise MeasurementError(
            f"measure.cellpose_model {model!r} is a directory with {len(files)} model files",
            "name the weights file itself",
        )
    for name in (model, f"{model}torch_0", f"{model}_0"):
        candidate = model_dir() / name
        if candidate.is_file():
            return candidate
    raise MeasurementError(
        f"Cellpose weights {model!r} not found (looked for a file of that name and in "
        f"{model_dir()}); they are never downloaded here",
        "copy the weights file there (or set CELLPOSE_LOCAL_MODELS_PATH), point "
        "measure.cellpose_model at it, or set measure.backend = 'classical'",
    )


@lru_cache(maxsize=2)
def _model(path: str, gpu: bool):
    try:
        from cellpose import models
    except ImportError as e:
        raise MeasurementError(
            "measure.backend = 'cellpose' needs the cellpose package",
            "pip install 'litevlm[cellpose]', or set measure.backend = 'classical'",
        ) from e
    return models.CellposeModel(gpu=gpu, pretrained_model=path)


def cellpose_segment(
    img: np.ndarray,
    *,
    model: str = "nuclei",
    diameter_px: float | None = None,
    gpu: bool = False,
    min_area: int = 20,
    exclude_border: bool = True,
    polarity: str = "auto",
    **_: object,  # classical-only keywords (threshold, valid mask, ...) do not apply
) -> Segmentation:
    """Segment a 2D [0, 1] image with Cellpose; border objects and small ones dropped."""
    from skimage.segmentation import clear_border, relabel_sequential

    path = resolve_weights(model)
    net = _model(str(path), gpu)
    x = np.asarray(img, np.float32)
    if polarity == "dark":
        x = 1 - x
    masks = net.eval(x, channels=[0, 0], diameter=diameter_px, min_size=min_area)[0]
    labels = np.asarray(masks, np.int32)
    n_all = int(len(np.unique(labels)) - 1)
    warnings: list[str] = []
    excluded = 0
    if exclude_border:
        kept = clear_border(labels)
        excluded = n_all - int(len(np.unique(kept)) - 1)
        labels = kept
        if excluded:
            warnings.append(f"objects touching the border excluded: {excluded}")
    labels = relabel_sequential(labels)[0].astype(np.int32)
    params = {
        "backend": "cellpose",
        "cellpose_weights": path.name,
        "diameter_px": diameter_px if diameter_px else float(net.diam_labels),
        "min_area_px": min_area,
        "exclude_border": exclude_border,
    }
    return Segmentation(
        labels=labels, foreground=masks > 0, threshold=float("nan"), polarity=polarity,
        count=int(labels.max()), excluded_border=excluded, warnings=warnings, params=params,
    )  # fmt: skip
