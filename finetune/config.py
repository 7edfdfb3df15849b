"""Fine-tuning configuration: dataclasses loaded from YAML, every field with a default that works.

As in TRL, the config sits beside the trainer and each field documents itself (``metadata["help"]``;
``litevlm finetune --show-defaults`` prints them). A YAML file is flat for one stage::

    model: google/paligemma-3b-pt-224
    data: {path: data/train.jsonl}
    method: lora

or lists ``stages``; keys at the top level that belong to a stage are the defaults of every stage::

    learning_rate: 2.0e-4
    stages:
      - {name: align, method: lora, train_projector: true, data: {path: captions.csv, layout: roco}}
      - {name: vqa, method: lora, data: {path: vqa_rad.json, layout: vqa_rad}}

Each stage starts from the weights the previous stage ended with.
"""

# _f() returns a dataclasses.field(); ruff cannot see that.
# ruff: noqa: RUF009

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from litevlm.errors import ConfigError

Method = Literal["lora", "qlora", "full", "prompt_tuning"]
Layout = Literal["auto", "jsonl", "csv", "vqa_rad", "slake", "pathvqa", "roco", "hf"]

# Gemma's attention and MLP projections; the SigLIP tower has its own q/k/v_proj, which the
# default leaves alone (see ``lora_vision_tower``).
DEFAULT_TARGET_MODULES = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
]
# Learning rates that are usual for each method when none is given.
DEFAULT_LEARNING_RATES: dict[str, float] = {
    "lora": 2e-4,
    "qlora": 2e-4,
    "full": 2e-5,
    "prompt_tuning": 3e-2,
}


_FORBID_EXTRA = {"extra": "forbid"}  # a misspelt key is an error, not ignored


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        return field(
            default_factory=lambda d=default: copy.deepcopy(d), metadata={"help": help}, **kw
        )
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class DataConfig:
    """Where the examples come from and how they are split."""

    __pydantic_config__ = _FORBID_EXTRA

    path: str = _f(
        "data/train.jsonl",
        "A JSONL/CSV file, a layout's JSON file or folder (VQA-RAD, SLAKE, PathVQA, ROCO), or a "
        "folder written by datasets' save_to_disk.",
    )
    layout: Layout = _f(
        "auto", "auto (guessed from the file), jsonl, csv, vqa_rad, slake, pathvqa, roco or hf."
    )
    image_dir: str | None = _f(
        None, "Folder the image paths are relative to; default: the layout's usual folder."
    )
    prompt_template: str = _f(
        "answer en {question}", "PaliGemma prefix for a question; {question} is filled in."
    )
    caption_prompt: str = _f("caption en", "PaliGemma prefix for rows that have a caption only.")
    language: str = _f("en", "Questions kept from bilingual sets (SLAKE's q_lang).")
    val_fraction: float = _f(0.1, "Share of images held out for validation (0 = none).")
    test_fraction: float = _f(0.1, "Share of images held out for the test split (0 = none).")
    max_samples: int | None = _f(None, "Use at most this many examples (debugging).")
    cache_images: bool = _f(
        True, "Keep each image in memory, resized to the model's input size, after its first load."
    )


@dataclass
class StageConfig:
    """One training stage: a method, its hyperparameters and (optionally) its own data."""

    __pydantic_config__ = _FORBID_EXTRA

    name: str = _f("sft", "Stage name; its outputs go to <output_dir>/<name>/.")
    method: Method = _f("lora", "lora, qlora (4-bit base), full, or prompt_tuning.")
    data: DataConfig | None = _f(None, "This stage's data; default: the run's data.")
    # LoRA / QLoRA
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA input.")
    target_modules: list[str] = _f(
        DEFAULT_TARGET_MODULES, "Language-model linear layers that get LoRA adapters."
    )
    lora_vision_tower: bool = _f(False, "Also put LoRA on the SigLIP vision tower.")
    train_projector: bool = _f(
        False, "Train the image projector fully (saved with the adapter) — stage-1 alignment."
    )
    freeze_vision_tower: bool = _f(True, "method=full: keep the vision tower frozen.")
    num_virtual_tokens: int = _f(20, "method=prompt_tuning: number of learned soft tokens.")
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = _f("nf4", "method=qlora: 4-bit data type.")
    # Optimisation
    num_train_epochs: float = _f(3.0, "Epochs over the training split.")
    max_steps: int = _f(-1, "Stop after this many optimiser steps (overrides epochs when > 0).")
    learning_rate: float | None = _f(
        None, "Peak learning rate; default by method: lora/qlora 2e-4, full 2e-5, prompt 3e-2."
    )
    lr_scheduler_type: str = _f("cosine", "transformers scheduler name.")
    warmup_steps: float = _f(0.03, "Warm-up: steps, or a fraction of all steps when < 1.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.")
    per_device_train_batch_size: int = _f(4, "Examples per device per forward pass.")
    per_device_eval_batch_size: int = _f(8, "Examples per device per evaluation pass.")
    gradient_accumulation_steps: int = _f(4, "Forward passes per optimiser step.")
    gradient_checkpointing: bool = _f(True, "Recompute activations in backward to save memory.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _f(
        "auto", "auto = bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU."
    )
    max_length: int | None = _f(None, "Truncate text tokens (prefix + answer) beyond this.")
    # Evaluation, checkpoints, logs
    eval_steps: int = _f(50, "Evaluate on the validation split every N steps (0 = never).")
    eval_generate: int = _f(
        16,
        "At each evaluation also answer this many validation examples greedily and score them "
        "as `litevlm eval` does (accuracy, token F1, BLEU-4...); 0 = loss only.",
    )
    save_steps: int = _f(50, "Write a checkpoint every N steps.")
    save_total_limit: int | None = _f(2, "Keep at most this many checkpoints (best one kept).")
    logging_steps: int = _f(10, "Log loss and learning rate every N steps.")
    early_stopping_patience: int | None = _f(
        3, "Stop after N evaluations without improvement of eval_loss (null = never)."
    )


@dataclass
class FinetuneRunConfig:
    """A whole run: the base model, the data, and one or more stages run in order."""

    __pydantic_config__ = _FORBID_EXTRA

    model: str = _f("google/paligemma-3b-pt-224", "Hub id or local directory of the base model.")
    revision: str | None = _f(None, "Hub revision of the base model.")
    local_files_only: bool = _f(False, "Never reach the hub (offline machines).")
    output_dir: str = _f(
        "runs/paligemma", "Run folder: one sub-folder per stage, logs, model card."
    )
    seed: int = _f(42, "Seed for splits, adapter initialisation and data order.")
    data: DataConfig = _f(DataConfig(), "The run's data (a stage may bring its own).")
    stages: list[StageConfig] = _f([StageConfig()], "Stages, run in order.")
    resume: bool = _f(True, "Continue from the last checkpoint found in a stage's folder.")
    report_to: list[str] = _f(["tensorboard"], "Trainer loggers besides the JSONL log.")
    dataloader_num_workers: int = _f(0, "Worker processes that load images.")
    intended_use: str = _f(
        "Research use only, not a medical device.", "Intended use written into the model card."
    )

    def stage_data(self, stage: StageConfig) -> DataConfig:
        return stage.data or self.data


_RUN_KEYS = {f.name for f in dataclasses.fields(FinetuneRunConfig)}
_STAGE_KEYS = {f.name for f in dataclasses.fields(StageConfig)}


def config_from_dict(raw: dict[str, Any], source: str = "config") -> FinetuneRunConfig:
    """Validate a mapping (as read from YAML) into a run config; errors name the field."""
    from pydantic import TypeAdapter, ValidationError

    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _RUN_KEYS - _STAGE_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}",
            "see `litevlm finetune --show-defaults` for the keys",
        )
    defaults = {k: v for k, v in raw.items() if k in _STAGE_KEYS and k not in _RUN_KEYS}
    run = {k: v for k, v in raw.items() if k in _RUN_KEYS}
    stages = raw.get("stages") or [{}]
    if not isinstance(stages, list):
        raise ConfigError(f"{source}: stages must be a list of mappings")
    merged = []
    for i, s in enumerate(stages):
        if not isinstance(s, dict):
            raise ConfigError(f"{source}: stages[{i}] must be a mapping")
        bad = sorted(set(s) - _STAGE_KEYS)
        if bad:
            raise ConfigError(f"{source}: stages[{i}]: unknown key(s) {', '.join(bad)}")
        merged.append({**defaults, **s})
    run["stages"] = merged
    try:
        cfg = TypeAdapter(FinetuneRunConfig).validate_python(run)
    except ValidationError as e:
        msgs = [
            f"{'.'.join(str(p) for p in err['loc'])} = {err.get('input')!r}: {err['msg']}"
            for err in e.errors()
        ]
        raise ConfigError(f"{source}: invalid value(s): " + "; ".join(msgs)) from None
    names = [s.name for s in cfg.stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: stage names must differ, got {names}")
    return cfg


def load_config(path: str | Path, **overrides: Any) -> FinetuneRunConfig:
    """Read a YAML run config; keyword overrides replace top-level keys."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found", "check the path") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}", "fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    cfg = config_from_dict(raw, str(path))
    # Relative paths that exist beside the config file are taken from there, so a config and its
    # data can be moved together.
    model = Path(cfg.model)
    if not model.is_absolute() and not model.exists() and (path.parent / model).exists():
        cfg.model = str(path.parent / model)
    for data in [cfg.data, *(s.data for s in cfg.stages if s.data)]:
        for attr in ("path", "image_dir"):
            value = getattr(data, attr)
            if value and not Path(value).is_absolute() and not Path(value).exists():
                candidate = path.parent / value
                if candidate.exists():
                    setattr(data, attr, str(candidate))
    return cfg


def describe_defaults() -> str:
    """Every field with its default and help, as commented YAML."""
    lines = []
    for cls in (FinetuneRunConfig, StageConfig, DataConfig):
        lines.append(f"# --- {cls.__name__}: {cls.__doc__.strip()}")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if dataclasses.is_dataclass(default) or (
                isinstance(default, list) and default and dataclasses.is_dataclass(default[0])
            ):
                default = "(see below)"
            lines.append(f"{f.name}: {default!r}  # {f.metadata.get('help', '')}")
    return "\n".join(lines)
