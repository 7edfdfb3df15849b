"""Where the model looked: attention maps for PaliGemma, as heat-maps over the image.

Two methods, both read from one greedy answer re-run with eager attention:

- ``raw``: attention from the text queries that produced the answer (the last prompt position and
  every generated token but the last) to the image tokens, per decoder layer and head
  (``AttentionMap.per_head``, shape layers x heads x patches), averaged over the chosen layers
  and heads.
- ``rollout``: attention rollout (Abnar & Zuidema, 2020) over the SigLIP vision tower: per layer
  the head-mean attention plus the identity for the residual path, rows renormalised, multiplied
  through the layers. SigLIP has no class token, so the rollout starts from the text queries:
  the raw text-to-image weights (over the tower's output patches) are pushed back through the
  rollout matrix to the input patches.

PaliGemma puts one image token per SigLIP patch, in raster order, before the text; the grid is
the processor's square resize, so stretching it to the original image size puts it back in
place. Attention is evidence of where information flowed, not proof of what the answer rests on.

Per word: ``per_token`` holds one map per generated token (the query that produced it);
``attention_map(..., word="effusion")`` (or ``.for_word``) keeps the tokens that spell that word
of the answer. ``attention_on_objects(map.grid, mask)`` checks a map against the objects the
measurement segmented: the share of attention mass on them against their share of the image,
and whether the peak patch lands on one (the pointing game).

The agent and the UI call ``attention_map(vision_model, image, question)``; the map carries the
image, so ``.save_overlay(path)`` writes the PNG.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from litevlm.errors import LiteVLMError, ModelLoadError

if TYPE_CHECKING:
    import torch
    from PIL import Image

Method = Literal["raw", "rollout"]
METHODS: tuple[str, ...] = ("raw", "rollout")


@dataclass
class AttentionMap:
    """A heat-map over an image plus the arrays it came from.

    ``heatmap`` is H x W (the image's size) in [0, 1]; ``grid`` the patch-level weights (sum 1);
    ``per_head`` (raw only) layers x heads x grid_h x grid_w, each slice summing to 1.
    """

    heatmap: np.ndarray
    grid: np.ndarray
    method: str
    image: Any = field(repr=False)
    question: str = ""
    answer: str = ""
    per_head: np.ndarray | None = field(default=None, repr=False)
    rollout: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0
    tokens: list[str] = field(default_factory=list)  # the answer's tokens, as text pieces
    per_token: np.ndarray | None = field(default=None, repr=False)  # tokens x grid_h x grid_w
    word: str | None = None  # the word this map is restricted to, if any

    def overlay(self, alpha: float = 0.45, cmap: str = "jet") -> Image.Image:
        return render_overlay(self.image, self.heatmap, alpha=alpha, cmap=cmap)

    def save_overlay(self, path: str | Path, alpha: float = 0.45, cmap: str = "jet") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.overlay(alpha=alpha, cmap=cmap).save(path)
        return path

    def peak(self) -> tuple[int, int]:
        """(row, column) of the strongest patch in ``grid``."""
        return _peak(self.grid)

    def words(self) -> list[str]:
        """The answer's words, as ``for_word`` accepts them."""
        return _WORD.findall(self.answer)

    def for_word(self, word: str) -> AttentionMap:
        """The map of the tokens spelling ``word`` in the answer (every occurrence)."""
        if self.per_token is None or not self.tokens:
            raise LiteVLMError("this map has no per-token attention", "compute it with raw")
        idx = word_token_indices(self.tokens, word)
        if not idx:
            raise LiteVLMError(
                f"{word!r} is not a word of the answer {self.answer!r}",
                f"pick one of: {', '.join(dict.fromkeys(self.words())) or '(no words)'}",
            )
        grid = self.per_token[idx].mean(0)
        grid = grid / max(float(grid.sum()), 1e-12)
        size = (self.heatmap.shape[1], self.heatmap.shape[0])
        return replace(self, grid=grid, heatmap=upsample(grid, size), word=word)


# ----- pure array functions (numpy in, numpy out) -----


def text_to_image_attention(
    attentions: Sequence[Any], image_positions: Sequence[int], query_positions: Sequence[int]
) -> np.ndarray:
    """layers x heads x n_image: attention from the query rows to the image columns.

    ``attentions`` holds one (1, heads, seq, seq) array per layer (transformers' output). Each
    query's image weights are renormalised to sum 1 before averaging over queries, so a query
    that mostly attends to text still counts as much as one that looks at the image.
    """
    return query_image_attention(attentions, image_positions, query_positions).mean(2)


def query_image_attention(
    attentions: Sequence[Any], image_positions: Sequence[int], query_positions: Sequence[int]
) -> np.ndarray:
    """layers x heads x queries x n_image, each query's image weights renormalised to sum 1."""
    img = np.asarray(image_positions, dtype=int)
    qry = np.asarray(query_positions, dtype=int)
    if img.size == 0 or qry.size == 0:
        raise ValueError("need at least one image position and one query position")
    layers = []
    for a in attentions:
        w = _np(a)[0][:, qry][:, :, img]  # heads x queries x n_image
        layers.append(w / np.clip(w.sum(-1, keepdims=True), 1e-12, None))
    return np.stack(layers)


def per_query_maps(
    per_query: np.ndarray, layers: Sequence[int] | None = None, heads: Sequence[int] | None = None
) -> np.ndarray:
    """queries x n_image: mean over the chosen layers and heads, each row summing to 1."""
    x = per_query
    if layers is not None:
        x = x[list(layers)]
    if heads is not None:
        x = x[:, list(heads)]
    w = x.mean((0, 1))
    return w / np.clip(w.sum(-1, keepdims=True), 1e-12, None)


_WORD = re.compile(r"[^\W_]+(?:[-'.][^\W_]+)*")


def word_token_indices(pieces: Sequence[str], word: str) -> list[int]:
    """Indices of the tokens (text pieces that concatenate to the answer) spelling ``word``.

    Matching is case-insensitive and on whole words; every occurrence counts.
    """
    text = "".join(pieces)
    target = word.strip().lower()
    if not target:
        return []
    starts = np.cumsum([0, *[len(p) for p in pieces]])
    out: set[int] = set()
    for m in _WORD.finditer(text):
        if m.group(0).lower() != target:
            continue
        for k in range(len(pieces)):
            if starts[k] < m.end() and starts[k + 1] > m.start():
                out.add(k)
    return sorted(out)


@dataclass
class ObjectAttention:
    """How much of a map lies on segmented objects (a saliency check, not a proof)."""

    on_objects: float  # share of the attention mass on object pixels
    object_area: float  # share of the image the objects cover (what uniform attention gets)
    lift: float | None  # on_objects / object_area: > 1 means attention concentrates on objects
    pointing_hit: bool  # the peak patch covers an object (the pointing game)
    n_objects: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "on_objects": round(self.on_objects, 4),
            "object_area": round(self.object_area, 4),
            "lift": None if self.lift is None else round(self.lift, 3),
            "pointing_hit": self.pointing_hit,
            "n_objects": self.n_objects,
        }


def attention_on_objects(grid: np.ndarray, mask: np.ndarray, n_objects: int = 0) -> ObjectAttention:
    """Attention mass on a mask (H x W, objects true, or labels > 0) at the patch grid's scale.

    The mask is area-averaged to the grid (each patch's covered fraction), the same stretch
    that puts the grid over the image; the mass on objects is sum(grid * coverage).
    """
    from PIL import Image

    m = np.asarray(mask) > 0
    gh, gw = grid.shape
    cover = np.asarray(
        Image.fromarray(m.astype(np.float32), mode="F").resize((gw, gh), Image.Resampling.BOX)
    ).clip(0, 1)
    w = grid / max(float(grid.sum()), 1e-12)
    on = float((w * cover).sum())
    area = float(m.mean())
    return ObjectAttention(
        on_objects=on,
        object_area=area,
        lift=on / area if area > 0 else None,
        pointing_hit=bool(cover[_peak(grid)] > 0),
        n_objects=n_objects,
    )


def word_attention(
    full: AttentionMap, word: str | None, mask: np.ndarray | None, n_objects: int = 0
) -> tuple[AttentionMap, ObjectAttention | None]:
    """The map of one word of the answer (the whole answer for ``None``) and its score against
    the segmented objects (``None`` without a mask): what ``litevlm explain --word`` and the
    chat's word picker show."""
    amap = full.for_word(word) if word else full
    score = attention_on_objects(amap.grid, mask, n_objects) if mask is not None else None
    return amap, score


def objects_sentence(o: dict[str, Any]) -> str:
    """One line for an ``ObjectAttention.as_dict()``: the share of the mass on the objects."""
    lift = f", {o['lift']:.2f}x uniform" if o.get("lift") is not None else ""
    return (
        f"attention on objects: {o['on_objects']:.2f} of the mass on {o['object_area']:.2f} of "
        f"the image ({o['n_objects']} objects{lift}), peak on an object: "
        f"{'yes' if o['pointing_hit'] else 'no'}"
    )


def object_mask(image: Any) -> tuple[np.ndarray, int]:
    """Objects segmented the way ``litevlm measure`` segments them (classical, defaults):
    (mask H x W, object count)."""
    from tools.measure.segmentation import segment

    grey = np.asarray(_as_pil(image).convert("L"), dtype=np.float32) / 255.0
    seg = segment(grey)
    return seg.labels > 0, int(seg.count)


def _peak(grid: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return int(r), int(c)


def aggregate_heads(
    per_head: np.ndarray, layers: Sequence[int] | None = None, heads: Sequence[int] | None = None
) -> np.ndarray:
    """Mean over the chosen layers and heads (all by default), renormalised to sum 1."""
    x = per_head
    if layers is not None:
        x = x[list(layers)]
    if heads is not None:
        x = x[:, list(heads)]
    w = x.reshape(-1, x.shape[-1]).mean(0)
    return w / max(float(w.sum()), 1e-12)


def attention_rollout(attentions: Sequence[Any], residual: float = 0.5) -> np.ndarray:
    """n x n rollout matrix; each row sums to 1 (row i: how input tokens feed output token i)."""
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    result: np.ndarray | None = None
    for a in attentions:
        a = _np(a)[0].mean(0)  # head mean: n x n
        a = (1 - residual) * a + residual * np.eye(a.shape[-1])
        a = a / a.sum(-1, keepdims=True)
        result = a if result is None else a @ result
    if result is None:
        raise ValueError("no attention layers to roll out")
    return result


def patch_grid(weights: np.ndarray) -> np.ndarray:
    """Square grid from raster-ordered patch weights."""
    n = weights.shape[-1]
    side = round(n**0.5)
    if side * side != n:
        raise ValueError(f"{n} image tokens do not form a square grid")
    return weights.reshape(*weights.shape[:-1], side, side)


def upsample(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a grid to (width, height), scaled to [0, 1]."""
    from PIL import Image

    up = np.asarray(
        Image.fromarray(grid.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR)
    )
    up = up - up.min()
    peak = float(up.max())
    return (up / peak if peak > 0 else up).astype(np.float32)


def render_overlay(
    image: Image.Image, heatmap: np.ndarray, alpha: float = 0.45, cmap: str = "jet"
) -> Image.Image:
    """The image in grey with the heat-map blended on top (alpha grows with the heat)."""
    import matplotlib
    from PIL import Image

    base = np.asarray(image.convert("L").convert("RGB"), dtype=np.float32) / 255.0
    if heatmap.shape != base.shape[:2]:
        heatmap = upsample(heatmap, (base.shape[1], base.shape[0]))
    colors = matplotlib.colormaps[cmap](heatmap)[..., :3]
    a = alpha * (0.3 + 0.7 * heatmap[..., None])
    out = (1 - a) * base + a * colors
    return Image.fromarray((out * 255).round().astype(np.uint8), mode="RGB")


# ----- the model side -----


def attention_map(
    vision_model: Any,
    image: Any,
    question: str,
    method: Method = "raw",
    *,
    max_new_tokens: int = 16,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    residual: float = 0.5,
    adapter: str | EllipsisType | None = ...,
    word: str | None = None,
) -> AttentionMap:
    """Answer ``question`` about ``image`` and return where the answer's tokens looked.

    ``word``: keep only the tokens spelling that word of the answer (``LiteVLMError`` naming
    the answer's words if it is not there); every token's own map is in ``per_token``.

    ``vision_model`` is a ``tools.vision.VisionModel`` (or anything with ``.model`` and
    ``.processor``; a ``(model, processor)`` pair works too). ``image`` is a PIL image, a
    ``LoadedImage`` or a path. The answer is generated with the model's own attention; eager
    attention is switched on for the re-run that reads the weights, and restored after.
    ``adapter``: a loaded peft adapter's name, ``None`` for the base model, or left out for
    whichever adapter is active.
    """
    import torch

    if method not in METHODS:
        raise LiteVLMError(f"unknown attention-map method {method!r}", f"use one of {METHODS}")
    model, processor, prompt = _unpack(vision_model, question)
    pil = _as_pil(image)
    start = time.perf_counter()
    with _adapter(model, adapter), torch.inference_mode():
        inputs = _inputs(processor, model, pil, prompt)
        n_prompt = inputs["input_ids"].shape[1]
        # Generate with the model's own (fast) attention; only the re-run needs eager weights.
        gen = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = _before_image_token(_strip_after_eos(gen[0, n_prompt:].tolist(), model), model)
        answer = processor.tokenizer.decode(new, skip_special_tokens=True).strip()
        weights, per_head, per_token, rollout = _attend(
            model, inputs, new, method, layers, heads, residual
        )
    grid = patch_grid(weights)
    amap = AttentionMap(
        heatmap=upsample(grid, pil.size),
        grid=grid,
        method=method,
        image=pil,
        question=question,
        answer=answer,
        per_head=patch_grid(per_head),
        rollout=rollout,
        seconds=time.perf_counter() - start,
        tokens=token_pieces(processor.tokenizer, new),
        per_token=patch_grid(per_token[: len(new)]) if new else None,
    )
    return amap.for_word(word) if word else amap


def token_pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token's share of the decoded, stripped answer; the pieces concatenate to it."""
    full = ""
    spans = []
    for k in range(len(ids)):
        text = tokenizer.decode(list(ids[: k + 1]), skip_special_tokens=True)
        start = len(full)
        if len(text) > start:
            full = full + text[start:] if text.startswith(full) else text
        spans.append((start, len(full)))
    lo, hi = len(full) - len(full.lstrip()), len(full.rstrip())
    return [full[max(a, lo) : min(b, hi)] if b > lo and a < hi else "" for a, b in spans]


def _attend(
    model: Any,
    inputs: dict[str, Any],
    new: list[int],
    method: str,
    layers: Sequence[int] | None,
    heads: Sequence[int] | None,
    residual: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Re-run prompt + answer with eager attention; (patch weights, per-head, per-token,
    rollout)."""
    import torch

    n_prompt = inputs["input_ids"].shape[1]
    with _eager(model):
        ids = torch.cat([inputs["input_ids"], torch.tensor([new], dtype=torch.long)], dim=1)
        ids = ids.to(inputs["input_ids"].device)
        tti = inputs.get("token_type_ids")
        extra: dict[str, Any] = {}
        if tti is not None:
            extra["token_type_ids"] = torch.cat([tti, torch.ones_like(ids[:, n_prompt:])], dim=1)
        out = model(
            input_ids=ids,
            pixel_values=inputs["pixel_values"],
            attention_mask=torch.ones_like(ids),
            output_attentions=True,
            **extra,
        )
        image_positions = _image_positions(ids[0], model)
        # Position i predicts token i+1: the queries behind the answer are n_prompt-1 ... end-1.
        query_positions = list(range(n_prompt - 1, n_prompt - 1 + max(len(new), 1)))
        per_query = query_image_attention(out.attentions, image_positions, query_positions)
        per_head = per_query.mean(2)
        weights = aggregate_heads(per_head, layers, heads)
        per_token = per_query_maps(per_query, layers, heads)
        rollout = None
        if method == "rollout":
            vout = _vision_tower(model)(inputs["pixel_values"], output_attentions=True)
            rollout = attention_rollout(vout.attentions, residual=residual)
            weights = weights @ rollout
            weights = weights / max(float(weights.sum()), 1e-12)
            per_token = per_token @ rollout
            per_token = per_token / np.clip(per_token.sum(-1, keepdims=True), 1e-12, None)
    return weights, per_head, per_token, rollout


def _unpack(vision_model: Any, question: str) -> tuple[Any, Any, str]:
    if isinstance(vision_model, tuple):
        model, processor = vision_model
        is_pg = getattr(model.config, "model_type", "") == "paligemma"
        return model, processor, f"answer en {question}" if is_pg else question
    from tools.vision_backend import attention_unavailable

    if why := attention_unavailable(vision_model):
        raise LiteVLMError(why)
    model = getattr(vision_model, "model", None)
    processor = getattr(vision_model, "processor", None)
    if model is None or processor is None:
        raise ModelLoadError(
            f"{type(vision_model).__name__} has no .model/.processor",
            "pass a tools.vision.VisionModel or a (model, processor) pair",
        )
    # VisionModel knows the model family's prompt ("answer en ..." for PaliGemma).
    task_prompt = getattr(vision_model, "task_prompt", None)
    prompt = task_prompt("answer", question=question) if callable(task_prompt) else question
    return model, processor, prompt


def _as_pil(image: Any) -> Image.Image:
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if hasattr(image, "image") and isinstance(image.image, Image.Image):
        return image.image.convert("RGB")
    if isinstance(image, str | Path):
        from tools.images import load_image

        return load_image(image).image.convert("RGB")
    raise LiteVLMError(
        f"cannot draw an attention map on a {type(image).__name__}",
        "pass a PIL image, a LoadedImage or a file path",
    )


def _adapter(model: Any, adapter: str | EllipsisType | None) -> Any:
    """peft: pick the named adapter, or disable adapters for ``None``; no-op for ``...``."""
    import contextlib

    if adapter is ... or not hasattr(model, "peft_config"):
        if adapter not in (..., None):
            raise LiteVLMError(f"adapter {adapter!r} requested but the model has no adapters")
        return contextlib.nullcontext()
    if adapter is None:
        return model.disable_adapter()
    if adapter not in model.peft_config:
        raise LiteVLMError(
            f"adapter {adapter!r} is not loaded; loaded: {sorted(model.peft_config)}",
            "load it first (VisionModel.load_adapter)",
        )
    model.set_adapter(adapter)
    return contextlib.nullcontext()


class _eager:
    """Switch the model to eager attention (weights are only returned there), then restore."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.before: str | None = None

    def __enter__(self) -> None:
        self.before = getattr(self.model.config, "_attn_implementation", None)
        if self.before in (None, "eager") or self.before not in _BUILTIN_IMPLS:
            return  # eager already, or a custom (e.g. planted) implementation that returns weights
        try:
            self.model.set_attn_implementation("eager")
        except Exception as e:
            raise ModelLoadError(
                f"cannot switch {type(self.model).__name__} to eager attention: {e}",
                "load it with attn_implementation='eager' ([vision] attn_implementation)",
            ) from e

    def __exit__(self, *exc: object) -> None:
        if self.before in _BUILTIN_IMPLS and self.before != "eager":
            self.model.set_attn_implementation(self.before)


_BUILTIN_IMPLS = {"eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"}


def _inputs(processor: Any, model: Any, image: Any, prompt: str) -> dict[str, torch.Tensor]:
    # One <image> marker up front: the processor expands it to the image tokens (no BC warning).
    token = getattr(processor, "image_token", "<image>")
    if token not in prompt:
        prompt = token + prompt
    inputs = processor(text=prompt, images=image, return_tensors="pt")
    inputs.pop("labels", None)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    out = {}
    for k, v in inputs.items():
        v = v.to(device)
        out[k] = v.to(dtype) if v.is_floating_point() else v
    return out


def _image_positions(ids: torch.Tensor, model: Any) -> list[int]:
    token = getattr(model.config, "image_token_id", None)
    if token is None:
        token = model.config.image_token_index
    pos = (ids == token).nonzero().flatten().tolist()
    if not pos:
        raise LiteVLMError("the prompt holds no image tokens", "is this a PaliGemma model?")
    return pos


def _before_image_token(tokens: list[int], model: Any) -> list[int]:
    """The answer up to an ``<image>`` token the model generated (an untrained or confused model
    can): it has no text, and in the re-run the model would count it as an image position
    ("image features and image tokens do not match")."""
    token = getattr(model.config, "image_token_id", None)
    if token is None:
        token = getattr(model.config, "image_token_index", None)
    return tokens[: tokens.index(token)] if token in tokens else tokens


def _strip_after_eos(tokens: list[int], model: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    pad = getattr(model.generation_config, "pad_token_id", None)
    out = []
    for t in tokens:
        if t in eos_ids or t == pad:
            break
        out.append(t)
    return out


def _vision_tower(model: Any) -> Any:
    inner = getattr(model, "model", model)
    tower = getattr(inner, "vision_tower", None)
    if tower is None:
        # A PEFT wrapper: reach the underlying model.
        base = getattr(model, "get_base_model", None)
        if callable(base):
            return _vision_tower(base())
        raise LiteVLMError("this model has no vision_tower", "rollout needs a PaliGemma model")
    return tower


def _np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        return a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=np.float64)
