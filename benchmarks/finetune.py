"""``litevlm finetune`` against a plain TRL ``SFTTrainer`` on the same model, data and settings.

Measured in one run, so the ratios are meaningful:

1. LoRA training throughput (train samples/s, as ``Trainer`` reports it) and peak memory of
   ``finetune.trainer.train`` versus the usual PaliGemma recipe with TRL: a ``datasets`` image
   column, a ``collate_fn`` calling ``PaliGemmaProcessor(..., suffix=...)``, ``SFTTrainer`` with the
   same ``LoraConfig``. Same tiny random PaliGemma, same real sample images (scikit-image crops),
   same steps, batch size, learning rate and seed. Each run is its own process (so peak memory
   is per run: peak RSS above the RSS once the libraries are imported, covering data and model
   loading and training, and CUDA peak when on a GPU);
   runs alternate ours/baseline and the median of ``--repeats`` is reported.
2. The trainable-parameter fraction of the default LoRA on the full-size PaliGemma-3B
   architecture (random weights, built on the meta device: no memory, no download).
3. On a CUDA GPU only: QLoRA at full size (random weights saved then loaded in 4-bit): peak
   memory and samples/s. Skipped on CPU.

    .venv/bin/python benchmarks/finetune.py                # table + results/finetune.json
    .venv/bin/python benchmarks/finetune.py --steps 30 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = ROOT / "benchmarks" / "results" / "finetune.json"
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}


class PeakRSS:
    """Samples this process's resident memory every 5 ms; ``peak - start`` is training memory."""

    def __init__(self) -> None:
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _common(args: argparse.Namespace) -> dict:
    return {
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": 2e-4,
        "warmup_steps": 0,
        "lr_scheduler_type": "constant",
        "logging_steps": args.steps,
        "gradient_checkpointing": False,
        "seed": 0,
    }


def _preimport(threads: int) -> None:
    """Both sides import the same libraries before the memory window opens."""
    import torch

    if threads and not torch.cuda.is_available():
        torch.set_num_threads(threads)
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401
    from transformers import AutoModelForImageTextToText  # noqa: F401


def worker_ours(args: argparse.Namespace) -> dict:
    _preimport(args.threads)
    import torch

    from finetune.config import config_from_dict
    from finetune.trainer import train

    mem = PeakRSS().__enter__()

    c = _common(args)
    cfg = config_from_dict(
        {
            **{k: v for k, v in c.items() if k != "seed"},
            "seed": 0,
            "model": args.model,
            "output_dir": args.out,
            "resume": False,
            "data": {"path": args.data, "val_fraction": 0.0, "test_fraction": 0.0},
            "method": "lora",
            "lora_r": LORA["r"],
            "lora_alpha": LORA["alpha"],
            "lora_dropout": LORA["dropout"],
            "eval_steps": 0,
            "save_steps": 10**6,
            "report_to": [],
        }
    )
    stage = train(cfg, log=lambda _: None).final
    mem.__exit__()
    return {
        "samples_per_s": stage.samples_per_s,
        "train_loss": stage.train_loss,
        "peak_rss_delta_mb": (mem.peak - mem.start) / 2**20,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else None,
    }


def worker_trl(args: argparse.Namespace) -> dict:
    """The plain TRL recipe for PaliGemma (as in the TRL/transformers fine-tuning guides)."""
    _preimport(args.threads)
    mem = PeakRSS().__enter__()
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor, set_seed
    from trl import SFTConfig, SFTTrainer

    from finetune.config import StageConfig
    from finetune.trainer import lora_target

    rows = [json.loads(x) for x in Path(args.data).read_text().splitlines()]
    root = Path(args.data).parent
    ds = datasets.Dataset.from_dict(
        {
            "image": [str(root / r["image"]) for r in rows],
            "prefix": [
                f"answer en {r['question']}" if "question" in r else "caption en" for r in rows
            ],
            "suffix": [r.get("answer") or r.get("caption") for r in rows],
        }
    ).cast_column("image", datasets.Image())
    processor = AutoProcessor.from_pretrained(args.model)

    def collate_fn(examples):
        return processor(
            text=["<image>" + e["prefix"] for e in examples],
            images=[e["image"].convert("RGB") for e in examples],
            suffix=[e["suffix"] for e in examples],
            return_tensors="pt",
            padding="longest",
        )

    set_seed(0)
    # Same precision as litevlm's "auto": a bf16 base on GPU, fp32 on CPU.
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=dtype)
    c = _common(args)
    sft = SFTConfig(
        bf16=bf16,
        fp16=False,
        output_dir=args.out,
        max_steps=c["max_steps"],
        per_device_train_batch_size=c["per_device_train_batch_size"],
        gradient_accumulation_steps=1,
        learning_rate=c["learning_rate"],
        warmup_steps=0,
        lr_scheduler_type="constant",
        logging_steps=c["logging_steps"],
        gradient_checkpointing=False,
        seed=0,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
    )
    peft_config = LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules=lora_target(StageConfig()),
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=sft,
        train_dataset=ds,
        data_collator=collate_fn,
        processing_class=processor,
        peft_config=peft_config,
    )
    out = trainer.train()
    mem.__exit__()
    return {
        "samples_per_s": out.metrics["train_samples_per_second"],
        "train_loss": out.training_loss,
        "peak_rss_delta_mb": (mem.peak - mem.start) / 2**20,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else None,
    }


def run_worker(kind: str, args: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--model", args.model, "--data"]
    cmd += [args.data, "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    cmd += ["--out", str(out), "--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{kind} worker failed (exit {proc.returncode}): {stdout[-2000:]}")
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def lora_fraction_3b() -> dict:
    """Default LoRA on PaliGemma-3B's architecture, built on the meta device (no memory)."""
    import torch
    from transformers import PaliGemmaForConditionalGeneration

    from finetune.config import StageConfig
    from finetune.trainer import apply_method, count_parameters
    from tools.tiny_models import paligemma_3b_config

    with torch.device("meta"):
        model = PaliGemmaForConditionalGeneration(paligemma_3b_config())
        base_total = sum(p.numel() for p in model.parameters())
        model = apply_method(model, StageConfig())
    trainable, _ = count_parameters(model)
    return {
        "base_params": base_total,
        "lora_trainable_params": trainable,
        "fraction_percent": 100 * trainable / base_total,
        "lora_r": StageConfig().lora_r,
        "targets": StageConfig().target_modules,
    }


def qlora_full_size_cuda(steps: int, work: Path) -> dict:
    """QLoRA on random PaliGemma-3B weights (saved, then loaded in 4-bit) on the GPU."""
    import torch
    from transformers import PaliGemmaForConditionalGeneration

    from finetune.config import config_from_dict
    from finetune.trainer import train
    from tools.tiny_models import build_tiny_paligemma, paligemma_3b_config

    # The tiny build gives a processor; its tokenizer is too small for the 3B vocabulary, so the
    # token ids stay inside both. The 3B config's image size (448) sets the image tokens.
    tiny = build_tiny_paligemma(work / "tiny")
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny)
    cfg3b = paligemma_3b_config()
    processor.image_processor.size = {"height": 448, "width": 448}
    processor.image_processor.image_seq_length = processor.image_seq_length = 1024
    big = work / "paligemma3b-random"
    with torch.device("cuda"):
        cfg3b.image_token_index = processor.image_token_id
        model = PaliGemmaForConditionalGeneration(cfg3b).to(torch.bfloat16)
    model.save_pretrained(big)
    processor.save_pretrained(big)
    del model
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    from finetune.samples import write_sample_dataset

    data = write_sample_dataset(work / "data", size=448) / "train.jsonl"
    cfg = config_from_dict({
        "model": str(big), "output_dir": str(work / "qlora"), "method": "qlora",
        "data": {"path": str(data), "val_fraction": 0, "test_fraction": 0},
        "max_steps": steps, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
        "eval_steps": 0, "save_steps": 10**6, "report_to": [], "logging_steps": steps,
    })  # fmt: skip
    stage = train(cfg, log=lambda _: None).final
    return {
        "samples_per_s": stage.samples_per_s,
        "cuda_peak_gb": torch.cuda.max_memory_allocated() / 2**30,
        "trainable_params": stage.trainable_params,
        "steps": steps,
        "batch_size": 4,
        "device": torch.cuda.get_device_name(0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per run (0 = torch's default); 1 keeps a shared machine's OpenMP "
        "contention out of the comparison",
    )
    ap.add_argument("--model", default=None, help="default: a tiny random PaliGemma built here")
    ap.add_argument("--data", default=None, help="default: sample images (scikit-image)")
    ap.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        result = (worker_ours if args.worker == "ours" else worker_trl)(args)
        print("RESULT " + json.dumps(result))
        return

    import torch

    from finetune.samples import write_sample_dataset
    from tools.tiny_models import build_tiny_paligemma

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        args.model = args.model or str(build_tiny_paligemma(tmp / "tiny"))
        args.data = args.data or str(write_sample_dataset(tmp / "data") / "train.jsonl")
        runs: dict[str, list[dict]] = {"ours": [], "trl": []}
        for r in range(args.repeats):
            # Alternate the order so a busy machine penalises both sides alike.
            for kind in ("ours", "trl") if r % 2 == 0 else ("trl", "ours"):
                runs[kind].append(run_worker(kind, args, tmp / f"{kind}{r}"))
                print(f"repeat {r} {kind}: {runs[kind][-1]}", file=sys.stderr)
        med = {
            k: {
                m: statistics.median(x[m] for x in v)
                for m in ("samples_per_s", "peak_rss_delta_mb")
            }
            for k, v in runs.items()
        }
        cuda = {k: [x["cuda_peak_mb"] for x in v] for k, v in runs.items()}
        fraction = lora_fraction_3b()
        qlora = qlora_full_size_cuda(10, tmp) if torch.cuda.is_available() else None

    result = {
        "command": "python benchmarks/finetune.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "settings": {"steps": args.steps, "batch_size": args.batch_size, "repeats": args.repeats,
                     "threads": args.threads,
                     "method": "lora", "lora": LORA},
        "ours": med["ours"],
        "trl_sft_baseline": med["trl"],
        "throughput_ratio": med["ours"]["samples_per_s"] / med["trl"]["samples_per_s"],
        "memory_ratio": med["ours"]["peak_rss_delta_mb"] / med["trl"]["peak_rss_delta_mb"],
        "cuda_peak_mb": cuda,
        "final_train_loss": {k: [round(x["train_loss"], 4) for x in v] for k, v in runs.items()},
        "paligemma_3b_default_lora": fraction,
        "qlora_full_size_cuda": qlora or "skipped: no CUDA GPU",
    }  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))

    print(f"{'':28} {'litevlm':>10} {'TRL SFT':>10} {'ratio':>7} target")
    print(
        f"{'train samples/s':28} {med['ours']['samples_per_s']:>10.2f} "
        f"{med['trl']['samples_per_s']:>10.2f} {result['throughput_ratio']:>7.2f} >= 1.0"
    )
    print(
        f"{'peak memory above imports (MB)':28} {med['ours']['peak_rss_delta_mb']:>10.1f} "
        f"{med['trl']['peak_rss_delta_mb']:>10.1f} {result['memory_ratio']:>7.2f} <= 1.0"
    )
    print(
        f"PaliGemma-3B default LoRA (r={fraction['lora_r']}): "
        f"{fraction['lora_trainable_params']:,} of {fraction['base_params']:,} parameters "
        f"= {fraction['fraction_percent']:.3f}% trainable"
    )
    print(f"QLoRA full size on CUDA: {result['qlora_full_size_cuda']}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
