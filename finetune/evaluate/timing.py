"""Answer a test set and time it: latency per example, tokens/s, peak memory."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from finetune.data import Example
from finetune.evaluate.schema import Timing
from finetune.evaluate.vision import answer_batch, device_of


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return 0.0
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def generate_answers(
    vision_model: Any,
    examples: Sequence[Example],
    *,
    adapter: str | None = None,
    prompt: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "",
    warmup: bool = True,
) -> tuple[list[str], list[float], list[int], Timing]:
    """Greedy answers for every example; per-example latency is its batch's time / batch size.

    ``prompt``: a template (``{question}`` is filled in) replacing the model's own prompt.
    """
    from finetune.data import open_image

    texts: list[str] = []
    lat: list[float] = []
    toks: list[int] = []
    device = device_of(vision_model)
    if warmup and examples:
        # First calls pay one-off costs (allocator, kernels); keep them out of the timings.
        first = examples[0]
        answer_batch(
            vision_model,
            [open_image(first.image)],
            [first.question or ""],
            adapter=adapter,
            prompt=prompt,
        )
    _reset_peak(device)
    start = time.perf_counter()
    bar = _progress(len(examples), desc, progress)
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        images = [open_image(e.image) for e in batch]
        t0 = time.perf_counter()
        results = answer_batch(
            vision_model, images, [e.question or "" for e in batch], adapter=adapter, prompt=prompt
        )
        dt = (time.perf_counter() - t0) / len(batch)
        for r in results:
            texts.append(r.text)
            toks.append(int(getattr(r, "tokens", 0) or 0))
            lat.append(dt)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    total = time.perf_counter() - start
    peak, kind = _peak_memory_mb(device)
    timing = Timing(
        batch_size=batch_size,
        n=len(examples),
        total_s=total,
        latency_p50_s=percentile(lat, 50),
        latency_p95_s=percentile(lat, 95),
        tokens_per_s=sum(toks) / total if total > 0 else 0.0,
        examples_per_s=len(examples) / total if total > 0 else 0.0,
        peak_memory_mb=peak,
        memory_kind=kind,
        device=device,
    )
    return texts, lat, toks, timing


def _reset_peak(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def _peak_memory_mb(device: str) -> tuple[float | None, str]:
    if device == "server":  # the memory is the server's, not this process's
        return None, "server"
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20, "cuda"
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss"  # KiB on Linux
    except ImportError:  # Windows
        return None, "rss"


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc or "eval", unit="q", leave=False)
