"""Embedders: tiny random CLIP/SigLIP through the real transformers path, MiniLM, classical."""

from __future__ import annotations

import numpy as np
import pytest
from retrieval_fixtures import *  # noqa: F403

from litevlm.errors import ModelLoadError
from tools.embeddings import BIOMEDCLIP, build_tiny_clip, load_image_embedder


def _images(folder):
    from PIL import Image

    return [Image.open(folder / n) for n in ("cells.png", "ihc.png", "retina.png")]


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_tiny_clip_and_siglip_load_through_from_pretrained(tmp_path, sample_folder, kind):
    path = build_tiny_clip(tmp_path / kind, kind=kind)
    emb = load_image_embedder(str(path), device="cpu", batch_size=2)
    images = _images(sample_folder)
    x = emb.embed_images(images)
    t = emb.embed_texts(["micrograph of cells", "chest x-ray", "retina photo"])
    assert x.shape == (3, emb.dim) and t.shape == (3, emb.dim)
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    # batching must not change results (batch_size=2 splits these three)
    assert np.allclose(emb.embed_images(images[:1])[0], x[0], atol=1e-5)


def test_minilm_text_embeddings_are_meaningful(minilm):
    assert minilm.dim == 384
    x = minilm.embed_texts(
        ["fluorescence micrograph of stained cell nuclei", "microscopy image of cells",
         "chest radiograph showing the lungs"]
    )  # fmt: skip
    assert x[0] @ x[1] > x[0] @ x[2]


def test_classical_embedder_is_deterministic_and_named(classical, sample_folder):
    a, _, c = _images(sample_folder)
    x = classical.embed_images([a, a, c])
    assert x.shape == (3, classical.dim)
    assert np.allclose(x[0], x[1])
    assert classical.model_id.startswith("classical:")


def test_biomedclip_offline_says_how_to_download(monkeypatch):
    pytest.importorskip("open_clip")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_image_embedder(BIOMEDCLIP, device="cpu")
    assert "hf download microsoft/BiomedCLIP" in str(err.value)


def test_not_an_image_text_model_is_refused(tmp_path):
    with pytest.raises(ModelLoadError):
        load_image_embedder(str(tmp_path / "missing-model-dir"), device="cpu")
    with pytest.raises(ModelLoadError, match="classical"):
        load_image_embedder("classical:nope")


def test_unreachable_hub_fails_fast_instead_of_retrying(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # closed port on this machine
    with pytest.raises(ModelLoadError, match="cannot be reached"):
        load_image_embedder("openai/clip-vit-base-patch32", device="cpu")
