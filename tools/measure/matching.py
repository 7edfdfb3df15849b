"""Object-level accuracy of a label image against an annotation (as StarDist reports it).

Objects are matched one-to-one by maximum total IoU (Hungarian assignment); a match counts at
IoU >= ``threshold``. Objects touching the image border are removed from both sides first, as
the pipeline drops them (they would be measured cut in half).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def match_objects(truth: np.ndarray, pred: np.ndarray, *, threshold: float = 0.5,
                  exclude_border: bool = True) -> dict[str, Any]:  # fmt: skip
    """Precision, recall, F1, count error and matched-object area error at ``threshold``."""
    from scipy.optimize import linear_sum_assignment
    from skimage.segmentation import clear_border, relabel_sequential

    if exclude_border:
        truth, pred = clear_border(truth), clear_border(pred)
    t = relabel_sequential(np.asarray(truth))[0].astype(np.int64)
    p = relabel_sequential(np.asarray(pred))[0].astype(np.int64)
    nt, np_ = int(t.max()), int(p.max())
    both = (t > 0) | (p > 0)
    inter = np.zeros((nt + 1, np_ + 1))
    np.add.at(inter, (t[both], p[both]), 1)
    at = np.bincount(t.ravel(), minlength=nt + 1).astype(float)
    ap = np.bincount(p.ravel(), minlength=np_ + 1).astype(float)
    iou = inter[1:, 1:] / np.maximum(at[1:, None] + ap[None, 1:] - inter[1:, 1:], 1)
    tp, area_err = 0, float("nan")
    if nt and np_:
        r, c = linear_sum_assignment(-iou)
        ok = iou[r, c] >= threshold
        tp = int(ok.sum())
        if tp:
            area_err = float(np.mean(np.abs(ap[1:][c[ok]] - at[1:][r[ok]]) / at[1:][r[ok]]))
    return {
        "threshold": threshold,
        "n_true": nt,
        "n_pred": np_,
        "tp": tp,
        "precision": tp / np_ if np_ else 0.0,
        "recall": tp / nt if nt else 0.0,
        "f1": 2 * tp / (nt + np_) if nt + np_ else 1.0,
        "count_error": (np_ - nt) / nt if nt else float(np_ > 0),
        "area_error": area_err,
    }
