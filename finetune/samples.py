"""A small real-image dataset for demos, tests and benchmarks, built from scikit-image's samples.

Crops of the cell, immunohistochemistry, retina and microaneurysm images, each with a few
question-answer pairs and a caption, written as a folder of PNGs + ``train.jsonl`` (and, on
request, the other layouts the loaders accept).
"""

from __future__ import annotations

import json
from pathlib import Path

_SOURCES = {
    "cell": ("fluorescence microscopy", "no", "a microscopy image of cells"),
    "immunohistochemistry": ("immunohistochemistry", "yes", "an immunohistochemistry section"),
    "retina": ("fundus photograph", "yes", "a retina fundus photograph with vessels"),
    "microaneurysms": ("fundus angiography", "no", "a retina image with microaneurysms"),
}


def write_sample_dataset(out_dir: str | Path, crops_per_image: int = 3, size: int = 96) -> Path:
    """Write PNG crops and ``train.jsonl`` (image, question, answer) to ``out_dir``; return it."""
    import numpy as np
    from PIL import Image
    from skimage import data

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (modality, colour, caption) in _SOURCES.items():
        arr = getattr(data, name)()
        h, w = arr.shape[:2]
        for k in range(crops_per_image):
            # Crops from different places, so each file is a different image.
            side = min(h, w) * (3 + k % 2) // 5
            y = (h - side) * k // max(crops_per_image - 1, 1)
            x = (w - side) * (crops_per_image - 1 - k) // max(crops_per_image - 1, 1)
            crop = np.ascontiguousarray(arr[y : y + side, x : x + side])
            image = Image.fromarray(crop).convert("RGB").resize((size, size))
            file = f"images/{name}_{k}.png"
            image.save(out / file)
            rows += [
                {"image": file, "question": "what kind of image is this?", "answer": modality},
                {"image": file, "question": "is this a colour image?", "answer": colour},
                {"image": file, "caption": caption},
            ]
    with open(out / "train.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return out
