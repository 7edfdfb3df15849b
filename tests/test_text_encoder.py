"""The NumPy sentence encoder gives sentence-transformers' own vectors, without importing torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from retrieval_fixtures import minilm  # noqa: F401

from agent.routing import INTENTS, Router, exemplar_matrix
from tools.embeddings import MINILM, SentenceTextEmbedder, resolve_text_model
from tools.text_encoder import NumpyBertEncoder

ROOT = Path(__file__).resolve().parent.parent
ARXIV = ROOT / "tests" / "fixtures" / "literature" / "arxiv" / "query_testing_10_results.xml"


def real_texts() -> list[str]:
    """Routing exemplars, real arXiv abstracts (longer than the 256-token limit once joined),
    and edge cases: empty, accents, CJK, a formula."""
    abstracts = [
        " ".join(a.split())
        for a in re.findall(r"<summary>(.*?)</summary>", ARXIV.read_text(), re.S)
    ]
    assert len(abstracts) >= 5
    exemplars = [ex for i in INTENTS for ex in i.exemplars][::7]
    edge = ["", "façade Ünïcödé", "細胞核の数", "H-score = 1x(%1+) + 2x(%2+) + 3x(%3+)"]
    return exemplars + abstracts + [" ".join(abstracts)] + edge


def test_numpy_vectors_match_sentence_transformers(minilm):  # noqa: F811
    assert isinstance(minilm, NumpyBertEncoder)  # device="cpu" takes the NumPy path
    texts = real_texts()
    ours = minilm.embed_texts(texts)
    theirs = SentenceTextEmbedder(MINILM, device="cpu").embed_texts(texts)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (len(texts), 384)
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_routing_a_question_imports_no_torch(tmp_path):
    code = (
        "import sys; from agent.routing import Router;"
        f"r = Router(cache_dir=__import__('pathlib').Path({str(tmp_path)!r}));"
        "route = r.route('What tube voltage (kVp) was used for this radiograph?');"
        "assert route.method == 'semantic', r.fallback_reason;"
        "print(route.tools, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.split() == ["['header']", "False", "False"], out.stderr


def test_exemplar_vectors_are_cached_by_model_and_texts(tmp_path, minilm):  # noqa: F811
    calls: list[int] = []

    class Counting:
        model_id, dim, fingerprint = minilm.model_id, minilm.dim, minilm.fingerprint

        def embed_texts(self, texts):
            calls.append(len(texts))
            return minilm.embed_texts(texts)

    texts = ["How many nuclei are there?", "What is the kVp?"]
    first = exemplar_matrix(Counting(), texts, tmp_path)
    again = exemplar_matrix(Counting(), texts, tmp_path)
    assert calls == [2] and np.array_equal(first, again)
    exemplar_matrix(Counting(), [*texts, "Is it in focus?"], tmp_path)  # changed texts
    assert calls == [2, 3]
    (next(tmp_path.glob("*.npy"))).write_bytes(b"damaged")
    assert exemplar_matrix(Counting(), texts, tmp_path).shape == (2, 384)  # recomputed
    assert Router(minilm, cache_dir=tmp_path).route("Is this image in focus?").tools == ["measure"]


def test_a_model_not_mean_pooled_goes_to_sentence_transformers(tmp_path):
    from tools.text_encoder import supports

    assert supports(Path(resolve_text_model(MINILM)))
    assert not supports(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "roberta"}')
    assert not supports(tmp_path)


def test_a_damaged_weights_file_is_one_clear_error(tmp_path):
    import shutil

    from litevlm.errors import ModelLoadError
    from tools.embeddings import load_text_embedder

    src = Path(resolve_text_model(MINILM))
    dst = tmp_path / "minilm"
    shutil.copytree(src, dst)
    w = dst / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="could not load text embedder"):
        load_text_embedder(str(dst), device="cpu")
