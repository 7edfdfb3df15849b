"""``litevlm describe`` (the vision model on one image) and ``litevlm doctor`` (what works here).

Heavy imports (torch, transformers, the image loader) happen inside the commands so that
``litevlm --help`` stays instant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from litevlm.commands.common import ConfigOption, print_json, settings

ModelOption = typer.Option(
    None, "--model", "-m", help="hub id or local directory (default: [vision] model)"
)
AdapterOption = typer.Option(
    None, "--adapter", "-a", help="adapter name from [vision.adapters], or an adapter directory"
)
QuantOption = typer.Option(None, "--quantization", "-q", help="none | 8bit | 4bit")


def register(app: typer.Typer) -> None:
    app.command("describe")(describe_cmd)
    app.command("doctor")(doctor_cmd)


def describe_cmd(
    image: Path = typer.Argument(..., help="PNG, JPEG, TIFF, DICOM or NIfTI file"),
    question: str | None = typer.Option(None, "--question", "-Q", help="ask instead of describe"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON object"),
    model: str | None = ModelOption,
    adapter: str | None = AdapterOption,
    quantization: str | None = QuantOption,
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda"),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1),
    frame: int | None = typer.Option(None, "--frame", help="frame / slice (default: middle)"),
    config: Path | None = ConfigOption,
) -> None:
    """Describe an image, or answer --question about it, with the vision-language model."""
    from rich.console import Console

    from tools.images import load_image
    from tools.vision import with_overrides
    from tools.vision_backend import load_backend

    s = settings(config)
    cfg = with_overrides(
        s.vision,
        model=model,
        adapter=adapter,
        quantization=quantization,
        device=device,
        max_new_tokens=max_new_tokens,
    )
    # The image first: a bad file fails in milliseconds, before gigabytes of weights load.
    loaded = load_image(image, frame=frame)
    err = Console(stderr=True)
    where = f"asking {cfg.base_url}" if cfg.backend == "openai" else "loading"
    t0 = time.perf_counter()
    with err.status(f"{where} {cfg.model} ({cfg.quantization})", spinner="dots"):
        vm = load_backend(cfg)
    load_s = getattr(vm, "load_seconds", time.perf_counter() - t0)
    result = vm.answer(loaded, question) if question else vm.describe(loaded)

    if as_json:
        from litevlm.types import DISCLAIMER

        print_json(
            {
                **result.model_dump(),
                "load_seconds": round(load_s, 3),
                "image": loaded.model_dump(mode="json"),
                "disclaimer": DISCLAIMER,
            }
        )
        return
    typer.echo(result.text)
    from litevlm.types import DISCLAIMER

    via = f" + {result.adapter}" if result.adapter else ""
    err.print(
        f"[dim]{result.model_id}{via}: {result.tokens} tokens in {result.latency_s:.2f} s "
        f"({result.tokens_per_s:.1f}/s), loaded in {load_s:.1f} s; "
        f"{loaded.modality} {loaded.size[0]}x{loaded.size[1]}[/dim]"
    )
    err.print(f"[dim]{DISCLAIMER}[/dim]")


# ---------------------------------------------------------------------- doctor


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def doctor_cmd(
    config: Path | None = ConfigOption,
    model: str | None = ModelOption,
    as_json: bool = typer.Option(False, "--json", help="print a JSON list"),
    timeout: float = typer.Option(3.0, "--timeout", help="seconds per service check"),
) -> None:
    """Check this machine: torch/CUDA, bitsandbytes, model weights, HF token, services."""
    s = settings(config)
    model_id = model or s.vision.model
    local = s.vision.backend == "local"
    checks = [
        _check_torch(),
        _check_bitsandbytes(s.vision.quantization),
        *([_check_model(model_id, s.vision.revision)] if local else []),
        *(_check_adapters(s.vision.adapters) if local else []),
        *([_check_token(model_id)] if local else []),
        *_check_services(_services(s), timeout),
        _clear_vision_memo(s.data_dir),
    ]
    if as_json:
        print_json([c.__dict__ for c in checks])
    else:
        colours = {"ok": "green", "warn": "yellow", "fail": "red"}
        for c in checks:
            mark = typer.style(f"{c.status:<4}", fg=colours[c.status], bold=True)
            line = f"{mark} {c.name}: {c.detail}"
            typer.echo(line + (f"  -> {c.fix}" if c.fix and c.status != "ok" else ""))
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


def _check_torch() -> Check:
    try:
        import torch
    except ImportError as e:
        return Check("torch", "fail", f"not importable: {e}", "pip install -e . (or make demo)")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("torch", "ok", f"{torch.__version__}, CUDA {torch.version.cuda}: {names}")
    return Check(
        "torch",
        "warn",
        f"{torch.__version__}, no CUDA GPU: the vision model runs on CPU (slow at 3B)",
        'on a GPU machine install a CUDA build of torch; on CPU, quantization = "4bit" saves '
        "memory (2.95 vs 5.88 GiB at 3B) but decodes slower than bf16 (benchmarks/vision.py)",
    )


def _check_bitsandbytes(quantization: str) -> Check:
    need = quantization != "none"
    try:
        import bitsandbytes as bnb
        import torch
    except Exception as e:
        return Check(
            "bitsandbytes",
            "fail" if need else "warn",
            f"not importable ({type(e).__name__}): 8-bit/4-bit loading unavailable",
            'pip install bitsandbytes, or set [vision] quantization = "none"',
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        # A real NF4 round trip on the device the model will use.
        x = torch.randn(256, device=device)
        q, state = bnb.functional.quantize_4bit(x, quant_type="nf4")
        err = float((bnb.functional.dequantize_4bit(q, state) - x).abs().mean())
    except Exception as e:
        return Check(
            "bitsandbytes",
            "fail" if need else "warn",
            f"{bnb.__version__}: 4-bit kernels fail on {device}: {str(e).splitlines()[0]}",
            'upgrade bitsandbytes (>= 0.45 has a CPU backend), or quantization = "none"',
        )
    return Check("bitsandbytes", "ok", f"{bnb.__version__}, NF4 works on {device} (err {err:.3f})")


def _check_model(model_id: str, revision: str | None) -> Check:
    local = Path(model_id).expanduser()
    if local.is_dir():
        if (local / "config.json").is_file():
            return Check("model", "ok", f"{model_id}: local directory")
        return Check(
            "model", "fail", f"{model_id}: directory has no config.json", "point at a saved model"
        )
    hint = f"hf download {model_id} (needs access and `hf auth login`), or --model DIR"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return Check("model", "fail", "huggingface_hub not installed", "pip install -e .")
    try:
        cfg = try_to_load_from_cache(model_id, "config.json", revision=revision)
    except Exception as e:
        return Check("model", "fail", f"{model_id}: {e}", "check the model id")
    if not isinstance(cfg, str):
        return Check("model", "fail", f"{model_id}: not in the Hugging Face cache", hint)
    missing = _missing_shards(model_id, revision, Path(cfg).parent)
    if missing:
        return Check(
            "model", "fail", f"{model_id}: cached but weights missing ({missing[0]}...)", hint
        )
    return Check("model", "ok", f"{model_id}: in the Hugging Face cache ({Path(cfg).parent})")


def _missing_shards(model_id: str, revision: str | None, snapshot: Path) -> list[str]:
    import json

    from huggingface_hub import try_to_load_from_cache

    index = try_to_load_from_cache(model_id, "model.safetensors.index.json", revision=revision)
    if isinstance(index, str):
        shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
        return [f for f in shards if not (snapshot / f).is_file()]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(model_id, single, revision=revision), str):
            return []
    return ["model.safetensors"]


def _check_adapters(adapters: dict[str, str]) -> list[Check]:
    out = []
    for name, path in adapters.items():
        p = Path(path).expanduser()
        if (p / "adapter_config.json").is_file():
            out.append(Check(f"adapter {name}", "ok", str(p)))
        elif p.exists() or path.startswith((".", "/", "~")):
            out.append(
                Check(
                    f"adapter {name}",
                    "fail",
                    f"{p}: no adapter_config.json",
                    "point [vision.adapters] at a directory saved by `litevlm finetune`",
                )
            )
        else:
            out.append(Check(f"adapter {name}", "warn", f"{path}: hub id, fetched on first use"))
    return out


def _check_token(model_id: str) -> Check:
    from huggingface_hub import get_token

    from litevlm.hub import offline

    mode = " (HF_HUB_OFFLINE is set: cache only)" if offline() else ""
    if get_token():
        return Check("hf token", "ok", "a Hugging Face token is configured" + mode)
    if Path(model_id).expanduser().is_dir():
        return Check("hf token", "ok", "none configured; not needed for a local model" + mode)
    gated = model_id.startswith("google/")
    return Check(
        "hf token",
        "warn",
        "no Hugging Face token" + (f": {model_id} is gated" if gated else "") + mode,
        f"accept the licence at https://huggingface.co/{model_id}, then `hf auth login` "
        "(or `huggingface-cli login`) or set HF_TOKEN",
    )


def _services(s: Any) -> list[tuple[str, str, bool]]:
    """(name, URL, required) for every configured remote service."""
    lit = s.literature
    urls = {
        "pubmed": lit.pubmed_base_url,
        "arxiv": lit.arxiv_base_url,
        "web": lit.tavily_base_url,
        "wikipedia": lit.wikipedia_base_url,
    }
    out = [(f"literature {src}", urls[src], False) for src in lit.sources]
    if s.retrieval.backend == "weaviate" or s.retrieval.weaviate_url:
        url = s.retrieval.weaviate_url or "http://localhost:8080"
        out.append(
            (
                "weaviate",
                url.rstrip("/") + "/v1/.well-known/ready",
                s.retrieval.backend == "weaviate",
            )
        )
    if s.agent.base_url:
        out.append(("chat model server", s.agent.base_url, True))
    if s.vision.backend == "openai" and s.vision.base_url:
        out.append(("vision server", s.vision.base_url.rstrip("/") + "/models", True))
    return out


def _clear_vision_memo(data_dir: Path) -> Check:
    """Report and forget the vision backends remembered as unavailable, so the next
    `litevlm ask` tries them again (after a download, or once the server is up)."""
    from tools.vision_backend import memo_in

    memo = memo_in(data_dir)
    entries = memo.entries()
    memo.clear()
    if not entries:
        return Check("vision memo", "ok", "no vision backend remembered as unavailable")
    first = next(iter(entries.values()))
    return Check(
        "vision memo",
        "warn",
        f"cleared {len(entries)} remembered failure(s); the last: {first}",
        "the next `litevlm ask` tries loading again",
    )


def _check_services(services: list[tuple[str, str, bool]], timeout: float) -> list[Check]:
    from concurrent.futures import ThreadPoolExecutor

    if not services:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(services))) as pool:
        return list(pool.map(lambda svc: _reach(*svc, timeout=timeout), services))


def _reach(name: str, url: str, required: bool, *, timeout: float) -> Check:
    """Any HTTP answer (even 4xx) means reachable; no answer within ``timeout`` means not."""
    import time
    import urllib.error
    import urllib.request

    t0 = time.perf_counter()
    req = urllib.request.Request(url, method="GET", headers={"User-Agent": "litevlm-doctor"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except Exception as e:
        reason = getattr(e, "reason", e)
        why = "it is configured as required" if required else "litevlm works without it"
        return Check(
            name,
            "fail" if required else "warn",
            f"{url} unreachable ({reason})",
            f"check the network / proxy or the URL in litevlm.toml ({why})",
        )
    ms = (time.perf_counter() - t0) * 1000
    return Check(name, "ok", f"{url} answered HTTP {code} in {ms:.0f} ms")
