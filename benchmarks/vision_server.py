"""The server vision backend: 16 requests concurrently vs one after another, and its overhead
over calling the server directly.

Against a real OpenAI-compatible server started here: ``transformers serve`` on 127.0.0.1
serving the tiny random PaliGemma that the tests build (``tests/vision_server_fixtures.py``),
on CPU. All in one run, on the same 16 real sample images (scikit-image) and questions:

1. 16 sequential ``OpenAIVisionBackend.answer`` calls (the baseline);
2. ``answer_batch`` of the 16 with ``concurrency`` 4 and 16 (requests in flight at once);
3. 16 sequential raw ``httpx`` POSTs of the very bodies the backend sends (the image already
   encoded): the backend's own cost per request is (1) minus (3).

Each mode runs ``--rounds`` times, interleaved; medians and the fastest round are reported.
What a real server (vLLM, TGI with continuous batching on a GPU) gains from concurrency is not
measured here: neither can run without a GPU and weights.

    .venv/bin/python benchmarks/vision_server.py            # table + results/vision_server.json
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = ROOT / "benchmarks" / "results" / "vision_server.json"
QUESTIONS = [
    "how many cells are there?",
    "is there staining?",
    "what is in the image?",
    "is this a histology section?",
]


def sample_images(n: int, size: int) -> list:
    from PIL import Image
    from skimage import data

    arrays = [data.immunohistochemistry(), data.cell(), data.retina(), data.microaneurysms()]
    return [Image.fromarray(arrays[i % len(arrays)]).convert("RGB").resize((size, size))
            for i in range(n)]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="requests per mode")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--size", type=int, default=224, help="image side in pixels")
    args = ap.parse_args()

    import httpx
    from vision_server_fixtures import build_served_tiny_vlm, start_vision_server

    from litevlm.config import VisionConfig
    from tools.vision_openai import OpenAIVisionBackend, image_url

    images = sample_images(args.n, args.size)
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.n)]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_served_tiny_vlm(Path(tmp))
        t0 = time.perf_counter()
        proc, url = start_vision_server(model_dir)
        start_s = time.perf_counter() - t0
        try:
            base = {
                "backend": "openai", "base_url": f"{url}/v1", "model": "google/paligemma-tiny",
                "served_model": str(model_dir), "max_new_tokens": args.max_new_tokens,
            }  # fmt: skip
            backends = {
                c: OpenAIVisionBackend(VisionConfig(**base, concurrency=c)) for c in (4, 16)
            }
            vm = backends[4]
            prompts = [vm.task_prompt("answer", question=q) for q in questions]
            bodies = [
                {
                    "model": str(model_dir),
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "image_url", "image_url": {"url": image_url(im)}},
                                {"type": "text", "text": p},
                            ],
                        }
                    ],
                    "max_tokens": args.max_new_tokens,
                    "temperature": 0.0,
                }
                for im, p in zip(images, prompts, strict=True)
            ]
            raw = httpx.Client(timeout=120)
            t = time.perf_counter()
            for im in images:
                image_url(im)
            encode_ms = (time.perf_counter() - t) / len(images) * 1000

            def sequential() -> list:
                return [vm.answer(im, q) for im, q in zip(images, questions, strict=True)]

            def concurrent(c: int):
                return lambda: backends[c].answer_batch(images, questions)

            def raw_posts() -> list:
                out = []
                for b in bodies:
                    r = raw.post(f"{url}/v1/chat/completions", json=b)
                    r.raise_for_status()
                    out.append(r.json())
                return out

            modes = {
                "sequential (backend.answer x16)": sequential,
                "answer_batch, concurrency 4": concurrent(4),
                "answer_batch, concurrency 16": concurrent(16),
                "raw httpx POST x16 (sequential)": raw_posts,
            }
            sequential()  # warm-up: the server's first request loads the model
            times: dict[str, list[float]] = {m: [] for m in modes}
            tokens: dict[str, int] = {}
            for _ in range(args.rounds):
                for name, fn in modes.items():
                    t = time.perf_counter()
                    out = fn()
                    times[name].append(time.perf_counter() - t)
                    tokens[name] = sum(
                        (r.get("usage") or {}).get("completion_tokens", 0) if isinstance(r, dict)
                        else r.tokens
                        for r in out
                    )  # fmt: skip
            raw.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    base_name = "sequential (backend.answer x16)"
    raw_name = "raw httpx POST x16 (sequential)"
    med = {m: statistics.median(v) for m, v in times.items()}
    rows = [
        {
            "mode": m,
            "median_s": round(med[m], 4),
            "min_s": round(min(times[m]), 4),
            "runs_s": [round(x, 4) for x in times[m]],
            "requests_per_s": round(args.n / med[m], 3),
            "completion_tokens": tokens[m],
            "speedup_vs_sequential": round(med[base_name] / med[m], 3),
        }
        for m in modes
    ]
    overhead_ms = (med[base_name] - med[raw_name]) / args.n * 1000
    # the fastest round is the least disturbed by other processes on a shared machine
    overhead_min_ms = (min(times[base_name]) - min(times[raw_name])) / args.n * 1000
    result = {
        "server": "transformers serve (CPU), tiny random PaliGemma",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}",
        "n_requests": args.n, "rounds": args.rounds, "max_new_tokens": args.max_new_tokens,
        "image_size": args.size, "server_start_s": round(start_s, 1), "rows": rows,
        "backend_overhead_ms_per_request": round(overhead_ms, 2),
        "backend_overhead_ms_per_request_fastest_rounds": round(overhead_min_ms, 2),
        "png_encode_ms_per_image": round(encode_ms, 2),
        "backend_vs_raw_ratio": round(med[base_name] / med[raw_name], 3),
    }  # fmt: skip
    print(f"\n{args.n} requests, {args.rounds} rounds, median; {result['machine']}")
    print(f"  {'mode':36}{'median s':>9}{'min s':>8}{'req/s':>8}{'x seq':>7}")
    for r in rows:
        print(f"  {r['mode']:36}{r['median_s']:>9.3f}{r['min_s']:>8.3f}"
              f"{r['requests_per_s']:>8.2f}{r['speedup_vs_sequential']:>7.2f}")  # fmt: skip
    print(f"  backend overhead over raw POST: {overhead_ms:.1f} ms/request median, "
          f"{overhead_min_ms:.1f} ms fastest rounds (x{result['backend_vs_raw_ratio']:.3f}); "
          f"of it PNG encoding {encode_ms:.1f} ms")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
