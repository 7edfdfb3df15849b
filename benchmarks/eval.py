"""Evaluation throughput (batched vs one at a time) and the cost of an attention map.

Both measured in one run on the same model and images, so the ratios are meaningful:

1. ``finetune.evaluate.generate_answers`` over N questions on real sample images with batch size 1
   (the baseline) and with batch size B: examples/s, generated tokens/s, p50/p95 latency per
   example, peak memory.
2. One plain ``VisionModel.answer`` (the model's default attention, sdpa) against
   ``tools.explain.attention_map`` with ``raw`` and ``rollout`` (greedy answer + one eager forward
   pass with attentions) on the same image and question; median of R repeats.

Default model: the tiny random PaliGemma built locally (the hub is offline here); pass
``--model`` for a real checkpoint on a GPU machine.

    .venv/bin/python benchmarks/eval.py              # prints a table, writes results/eval.json
    .venv/bin/python benchmarks/eval.py --n 64 --batch-size 16 --model google/paligemma-3b-mix-224
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results" / "eval.json"
QUESTIONS = [
    "how many cells are there?",
    "is there staining?",
    "what is in the image?",
    "is this a histology section?",
]


def sample_examples(n: int, root: Path) -> list:
    """N questions over scikit-image's real microscopy/histology/retina images."""
    from PIL import Image
    from skimage import data

    from finetune.evaluate import make_example

    images = []
    for name in ("cell", "immunohistochemistry", "retina", "microaneurysms"):
        path = root / f"{name}.png"
        Image.fromarray(getattr(data, name)()).save(path)
        images.append(str(path))
    return [
        make_example(
            images[i % len(images)],
            QUESTIONS[i % len(QUESTIONS)],
            "yes" if i % 2 else "cells",
            id=str(i),
            modality="microscopy",
        )
        for i in range(n)
    ]


def interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per function, calling them round-robin so load drift hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="hub id or directory (default: tiny random PaliGemma)")
    ap.add_argument("--n", type=int, default=32, help="questions to answer")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5, help="repeats for the attention-map timing")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    import torch

    from finetune.data import open_image
    from finetune.evaluate import generate_answers
    from tools.explain import attention_map
    from tools.vision import VisionModel

    tmp = Path(tempfile.mkdtemp(prefix="litevlm-bench-eval-"))
    model = args.model
    if model is None:
        from tools.tiny_models import build_tiny_paligemma

        model = str(build_tiny_paligemma(tmp / "tiny", init_std=1.0))
    vm = VisionModel(
        model=model,
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    examples = sample_examples(args.n, tmp)

    rows = {}
    for bs in (1, args.batch_size):
        _, _, _, t = generate_answers(vm, examples, batch_size=bs, progress=False, desc=f"bs={bs}")
        rows[f"batch {bs}"] = t.model_dump()
    base, batched = rows["batch 1"], rows[f"batch {args.batch_size}"]

    image = open_image(examples[0].image)
    question = examples[0].question
    vm.answer(image, question)  # warm-up
    med = interleaved_medians(
        {
            "answer": lambda: vm.answer(image, question),
            "raw": lambda: attention_map(vm, image, question, "raw"),
            "rollout": lambda: attention_map(vm, image, question, "rollout"),
        },
        args.repeats,
    )
    t_answer, t_raw, t_roll = med["answer"], med["raw"], med["rollout"]

    result = {
        "model": args.model or "tiny random PaliGemma (tools.tiny_models, init_std=1.0)",
        "device": vm.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "throughput": rows,
        "batched_speedup_examples_per_s": batched["examples_per_s"] / base["examples_per_s"],
        "attention_map": {
            "plain_answer_s": t_answer,
            "raw_s": t_raw,
            "rollout_s": t_roll,
            "raw_vs_answer": t_raw / t_answer,
            "rollout_vs_answer": t_roll / t_answer,
            "repeats": args.repeats,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    print(
        f"model: {result['model']}  device: {vm.device}  n={args.n}  "
        f"max_new_tokens={args.max_new_tokens}  torch threads={result['threads']}"
    )
    print(f"{'run':<10} {'ex/s':>8} {'tok/s':>8} {'p50 s':>8} {'p95 s':>8} {'peak MB':>9}")
    for name, t in rows.items():
        print(
            f"{name:<10} {t['examples_per_s']:>8.2f} {t['tokens_per_s']:>8.1f} "
            f"{t['latency_p50_s']:>8.4f} {t['latency_p95_s']:>8.4f} {t['peak_memory_mb']:>9.0f}"
        )
    print(f"batched / unbatched throughput: {result['batched_speedup_examples_per_s']:.2f}x")
    a = result["attention_map"]
    print(
        f"plain answer {a['plain_answer_s'] * 1000:.1f} ms | raw map {a['raw_s'] * 1000:.1f} ms "
        f"({a['raw_vs_answer']:.2f}x) | rollout map {a['rollout_s'] * 1000:.1f} ms "
        f"({a['rollout_vs_answer']:.2f}x)  (median of {args.repeats})"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
