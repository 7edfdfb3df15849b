"""Outputs of a run: a merged model (base + adapter in one set of weights) and a model card."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litevlm.errors import ModelLoadError

if TYPE_CHECKING:
    from finetune.config import FinetuneRunConfig
    from finetune.trainer import RunResult

DISCLAIMER = "Research use only, not a medical device."


def resolve_adapter(path: str | Path) -> tuple[Path, str | None]:
    """An adapter folder, or a run folder (its last stage's output); and that adapter's base."""
    path = Path(path)
    run_json = path / "run.json"
    if run_json.exists():
        final = json.loads(run_json.read_text())["stages"][-1]
        return Path(final["output"]), final["base"]
    if not (path / "adapter_config.json").exists():
        raise ModelLoadError(
            f"{path}: neither a run folder (run.json) nor an adapter (adapter_config.json)",
            "pass the run's output_dir or its <stage>/final folder",
        )
    return path, None


def merge_adapter(
    adapter: str | Path,
    out_dir: str | Path,
    *,
    base: str | None = None,
    dtype: str = "auto",
    local_files_only: bool = False,
) -> Path:
    """Load the base in full precision, apply the adapter, fold it into the weights, save.

    The base is loaded unquantized even for a QLoRA adapter, so the merged weights are exact.
    """
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    adapter, run_base = resolve_adapter(adapter)
    peft_config = PeftConfig.from_pretrained(str(adapter))
    base = base or run_base or peft_config.base_model_name_or_path
    if peft_config.is_prompt_learning:
        raise ModelLoadError(
            f"{adapter}: a prompt-tuning adapter cannot be merged into the weights",
            "load it as an adapter instead",
        )
    torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype, torch.float32)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            base, dtype=torch_dtype, local_files_only=local_files_only
        )
        processor = AutoProcessor.from_pretrained(str(adapter))
    except OSError as e:
        raise ModelLoadError(f"cannot load base model {base!r}: {e}", "pass --base") from None
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out = Path(out_dir)
    merged.save_pretrained(out)
    processor.save_pretrained(out)
    card = adapter / "README.md"
    if card.exists():
        (out / "README.md").write_text(
            card.read_text().replace("library_name: peft\n", "library_name: transformers\n")
        )
    return out


def write_model_card(out_dir: Path, cfg: FinetuneRunConfig, run: RunResult) -> Path:
    """README.md with the data, the configuration, the metrics and the intended use."""
    import yaml

    final = run.final
    is_adapter = (out_dir / "adapter_config.json").exists()
    front = {
        "library_name": "peft" if is_adapter else "transformers",
        "base_model": cfg.model,
        "pipeline_tag": "image-text-to-text",
        "tags": ["litevlm", "medical", "paligemma", *(s.method for s in cfg.stages)],
    }
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", ""]
    lines += [f"# {Path(cfg.output_dir).name}", ""]
    lines += [f"Fine-tuned from `{cfg.model}` with litevlm in {len(run.stages)} stage(s).", ""]
    lines += ["## Intended use", "", cfg.intended_use, ""]
    if DISCLAIMER not in cfg.intended_use:
        lines += [DISCLAIMER, ""]
    lines += [
        "Answers can be wrong, and the model has seen only the data below: check them against "
        "an expert read and the cited sources before relying on them.",
        "",
        "## Training data",
        "",
    ]
    for s in run.stages:
        lines += [
            f"### Stage `{s.name}` ({s.method})",
            "",
            f"Source: `{s.data.source}` "
            f"(layout {s.data.layout}); splits made by image, seed {cfg.seed}.",
            "",
        ]
        lines += [
            "| split | examples | images | yes/no share | synthetic |",
            "|---|---|---|---|---|",
        ]
        for name, st in s.data.splits.items():
            lines.append(
                f"| {name} | {st.examples} | {st.images} | {st.closed_fraction:.2f} | "
                f"{st.synthetic} |"
            )
        lines.append("")
    lines += ["## Results", "", "| stage | steps | train loss | eval loss | trainable params |"]
    lines.append("|---|---|---|---|---|")
    for s in run.stages:
        tl = f"{s.train_loss:.4f}" if s.train_loss is not None else "-"
        el = f"{s.eval_loss:.4f}" if s.eval_loss is not None else "-"
        frac = 100 * s.trainable_params / max(s.total_params, 1)
        lines.append(
            f"| {s.name} | {s.steps} | {tl} | {el} | {s.trainable_params:,} ({frac:.2f}%) |"
        )
    extra = {k: v for k, v in final.metrics.items() if k not in ("eval_loss", "epoch")}
    if extra:
        lines += ["", "Validation metrics of the last stage:", ""]
        lines += [f"- {k}: {v:.4g}" for k, v in sorted(extra.items())]
    lines += ["", "## Configuration", "", "```yaml"]
    lines += [yaml.safe_dump(_plain(asdict(cfg)), sort_keys=False).strip(), "```", ""]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines))
    return path


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
