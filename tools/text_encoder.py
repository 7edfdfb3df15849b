"""Sentence embeddings from a BERT-family checkpoint in NumPy: no torch, no sentence-transformers.

Why this exists: the router embeds every question (agent/routing.py), so a fresh ``litevlm ask``
paid for importing torch, transformers and sentence-transformers (with peft, bitsandbytes and
scikit-learn behind it) before the first tool ran - about 20 s of a turn on 2 cores, when the
encoder itself is 6 layers of 384 wide. This module reads the same ``model.safetensors`` and
``tokenizer.json`` (Hugging Face ``tokenizers``, a small Rust extension) and runs the forward pass
with NumPy, mean-pooled and L2-normalised as the sentence-transformers pipeline of
all-MiniLM-L6-v2 does; tests/test_text_encoder.py checks the vectors against
sentence-transformers' own on real texts.

Only plain BERT encoders with a ``Transformer -> Pooling(mean) -> Normalize`` pipeline qualify
(:func:`supports`); any other model goes to sentence-transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_MEAN_POOLED = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]


def supports(path: Path) -> bool:
    """Whether ``path`` holds a BERT encoder computed here exactly as sentence-transformers does."""
    try:
        config = json.loads((path / "config.json").read_text())
        modules = json.loads((path / "modules.json").read_text())
        pooling = json.loads((path / modules[1]["path"] / "config.json").read_text())
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    return (
        config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and [m["type"] for m in modules] == _MEAN_POOLED
        and pooling.get("pooling_mode_mean_tokens") is True
        and not any(
            pooling.get(k)
            for k in (
                "pooling_mode_cls_token",
                "pooling_mode_max_tokens",
                "pooling_mode_mean_sqrt_len_tokens",
            )
        )
        and (path / "model.safetensors").is_file()
        and (path / "tokenizer.json").is_file()
    )


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as BERT's "gelu"."""
    if x.size <= 1 << 18:
        # a question or two: math.erf element by element takes milliseconds, and importing
        # scipy.special (~0.4 s) would be most of routing's time
        import math

        erf = np.frompyfunc(math.erf, 1, 1)
        e = erf(x / np.float32(math.sqrt(2.0))).astype(np.float32)
    else:
        from scipy.special import erf as scipy_erf

        e = scipy_erf(x / np.float32(np.sqrt(2.0)))
    return (0.5 * x * (1.0 + e)).astype(np.float32)


class NumpyBertEncoder:
    """A mean-pooled BERT sentence encoder (see the module docstring); a
    ``tools.embeddings.TextEmbedder`` with a ``fingerprint`` for caches of its vectors."""

    def __init__(
        self,
        path: str | Path,
        *,
        model_id: str = "",
        batch_size: int = 64,
        max_seq_length: int | None = None,
    ) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = Path(path)
        self.model_id = model_id or str(path)
        self.batch_size = batch_size
        weights = path / "model.safetensors"
        st_ = weights.stat()
        # what a cache of this model's vectors is keyed by (agent/routing.py)
        self.fingerprint = f"numpy-bert:{path.resolve()}:{st_.st_size}:{st_.st_mtime_ns}"
        self.config = json.loads((path / "config.json").read_text())
        st = path / "sentence_bert_config.json"
        limit = json.loads(st.read_text()).get("max_seq_length") if st.is_file() else None
        self.max_seq_length = int(max_seq_length or limit or self.config["max_position_embeddings"])
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        # sentence-transformers pads each batch to its longest text and truncates at
        # max_seq_length, whatever tokenizer.json's own (fixed 128) settings say
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.weights = {k: v.astype(np.float32, copy=False) for k, v in load_file(weights).items()}
        self.dim = int(self.config["hidden_size"])

    def _w(self, name: str) -> np.ndarray:
        return self.weights[name]

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        c, w = self.config, self._w
        eps = float(c.get("layer_norm_eps", 1e-12))
        heads = int(c["num_attention_heads"])
        n, t = ids.shape
        x = (
            w("embeddings.word_embeddings.weight")[ids]
            + w("embeddings.position_embeddings.weight")[np.arange(t)][None]
            + w("embeddings.token_type_embeddings.weight")[0]
        )
        x = _layer_norm(x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), eps)
        # float32 throughout: one float64 array would turn every matmul after it into NumPy's
        # mixed-dtype loop, 100x slower than BLAS
        bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(
            np.float32
        )
        d = self.dim // heads

        def dense(h: np.ndarray, name: str) -> np.ndarray:
            flat = h.reshape(-1, h.shape[-1]) @ w(f"{name}.weight").T + w(f"{name}.bias")
            return flat.reshape(*h.shape[:-1], -1)

        def split(h: np.ndarray) -> np.ndarray:
            return h.reshape(n, t, heads, d).transpose(0, 2, 1, 3)

        for i in range(int(c["num_hidden_layers"])):
            p = f"encoder.layer.{i}"
            q, k, v = (
                split(dense(x, f"{p}.attention.self.{m}")) for m in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(d)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = (scores / scores.sum(-1, keepdims=True)) @ v
            ctx = ctx.transpose(0, 2, 1, 3).reshape(n, t, self.dim)
            x = _layer_norm(
                dense(ctx, f"{p}.attention.output.dense") + x,
                w(f"{p}.attention.output.LayerNorm.weight"),
                w(f"{p}.attention.output.LayerNorm.bias"),
                eps,
            )
            h = dense(_gelu(dense(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
            x = _layer_norm(
                h + x, w(f"{p}.output.LayerNorm.weight"), w(f"{p}.output.LayerNorm.bias"), eps
            )
        m = mask[..., None].astype(np.float32)
        pooled = (x * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 rows (``tools.embeddings.TextEmbedder``)."""
        texts, batch_size = list(texts), self.batch_size
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = []
        # sort by length so that each batch pads little (as sentence-transformers does)
        order = np.argsort([-len(s) for s in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            batch = [texts[j] for j in order[start : start + batch_size]]
            enc = self.tokenizer.encode_batch(batch)
            t = max(len(e.ids) for e in enc)
            ids = np.zeros((len(enc), t), np.int64)
            mask = np.zeros((len(enc), t), np.int64)
            for r, e in enumerate(enc):
                ids[r, : len(e.ids)] = e.ids
                mask[r, : len(e.ids)] = 1
            out.append(self._encode(ids, mask))
        result = np.empty((len(texts), self.dim), np.float32)
        result[order] = np.concatenate(out)
        return result
