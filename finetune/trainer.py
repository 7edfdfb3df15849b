"""Run a fine-tuning config: one or more stages of LoRA, QLoRA, full or prompt tuning.

Each stage is a TRL ``SFTTrainer`` run (fused LM head: the 257k-word logits are never built)
with litevlm's collator, in ``<output_dir>/<stage>/``:

- ``checkpoint-N/``: written every ``save_steps``; a rerun resumes from the last one, continuing
  the same loss curve (optimizer, scheduler, RNG and data position are restored). Each one is
  written under ``.staging/`` and renamed into place when every process has finished writing,
  so a kill mid-save leaves no ``checkpoint-N/`` behind; a rerun also skips (with a warning)
  any ``checkpoint-N/`` without its ``trainer_state.json`` and resumes from the one before.
- ``final/``: the adapter (PEFT ``save_pretrained`` format, loadable by ``tools.vision``) or the
  full model, plus the processor and a model card.
- ``result.json``: metrics; its presence marks the stage done, so a rerun skips it.

``<output_dir>/log.jsonl`` has every logged step of every stage, ``<output_dir>/tensorboard/`` the
same for TensorBoard. A later stage starts from the earlier stages' weights: a PEFT stage's
adapter is merged into its base (``<stage>/merged/``) first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from finetune.config import DEFAULT_LEARNING_RATES, FinetuneRunConfig, StageConfig
from finetune.data import DatasetStats, Example, format_stats, load_splits
from litevlm.errors import ConfigError, ModelLoadError

# (model, processor, validation examples) -> {"metric": value}; the evaluation area plugs in here.
MetricsFn = Callable[[Any, Any, list[Example]], dict[str, float]]

VISION_TOWER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
STAGING = ".staging"  # checkpoints being written; never matched by transformers' checkpoint-N
COMPLETE_MARKER = "trainer_state.json"  # the Trainer writes it last into a checkpoint
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

logger = logging.getLogger(__name__)


class StageResult(BaseModel):
    name: str
    method: str
    output: str  # final/ folder: adapter or full model
    base: str  # what the adapter applies to (the model, or the previous stage's merged weights)
    steps: int
    train_loss: float | None
    eval_loss: float | None
    metrics: dict[str, float]
    trainable_params: int
    total_params: int
    samples_per_s: float | None
    seconds: float
    data: DatasetStats


class RunResult(BaseModel):
    output_dir: str
    stages: list[StageResult]

    @property
    def final(self) -> StageResult:
        return self.stages[-1]


# ---------------------------------------------------------------- model and method


def precision(stage: StageConfig) -> str:
    import torch

    if stage.precision != "auto":
        return stage.precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def load_base(model_id: str, stage: StageConfig, cfg: FinetuneRunConfig) -> tuple[Any, Any, str]:
    """The stage's base model (4-bit for QLoRA), its processor, and its model type."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    prec = precision(stage)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec, torch.float32)
    kwargs: dict[str, Any] = {
        "revision": cfg.revision if model_id == cfg.model else None,
        "local_files_only": cfg.local_files_only,
        # A frozen base can sit in half precision; full fine-tuning keeps fp32 master weights.
        "dtype": torch.float32 if stage.method == "full" else half,
    }
    if stage.method == "qlora":
        compute = half if half != torch.float32 else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=stage.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
            # The vision tower and projector are small and sensitive; keep them unquantized.
            # transformers 5 matches these from the start of the module's full name.
            llm_int8_skip_modules=["model.vision_tower", "model.multi_modal_projector", "lm_head"],
        )
        kwargs["device_map"] = {"": 0} if torch.cuda.is_available() else "cpu"
    try:
        processor = AutoProcessor.from_pretrained(
            model_id, revision=kwargs["revision"], local_files_only=cfg.local_files_only
        )
        model = AutoModelForImageTextToText.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"cannot load model {model_id!r}: {e}",
            "check `model` (hub id or local folder), the network, or set local_files_only",
        ) from None
    return model, processor, model.config.model_type


def lora_target(stage: StageConfig) -> str:
    """A PEFT regex: the language model's projections, and the vision tower's when asked."""
    lm = rf".*language_model.*\.({'|'.join(stage.target_modules)})"
    if not stage.lora_vision_tower:
        return lm
    return rf"({lm})|(.*vision_tower.*\.({'|'.join(VISION_TOWER_TARGETS)}))"


def apply_method(model: Any, stage: StageConfig) -> Any:
    """Wrap or unfreeze ``model`` for the stage's method."""
    from peft import (
        LoraConfig,
        PromptTuningConfig,
        TaskType,
        get_peft_model,
        prepare_model_for_kbit_training,
    )

    if stage.method in ("lora", "qlora"):
        if stage.method == "qlora":
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=stage.gradient_checkpointing
            )
        config = LoraConfig(
            r=stage.lora_r,
            lora_alpha=stage.lora_alpha,
            lora_dropout=stage.lora_dropout,
            target_modules=lora_target(stage),
            modules_to_save=["multi_modal_projector"] if stage.train_projector else None,
            task_type=TaskType.CAUSAL_LM,
        )
        return get_peft_model(model, config)
    if stage.method == "prompt_tuning":
        return get_peft_model(
            model,
            PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM, num_virtual_tokens=stage.num_virtual_tokens
            ),
        )
    # full
    for name, p in model.named_parameters():
        p.requires_grad = not (stage.freeze_vision_tower and "vision_tower" in name)
    return model


def last_complete_checkpoint(stage_dir: Path, log: Callable[[str], None] = print) -> str | None:
    """The newest ``checkpoint-N/`` that holds a ``trainer_state.json``, or None.

    An older litevlm, or a copy interrupted by hand, can leave a checkpoint without it (empty or
    half-written); resuming from one crashes, so it is skipped with a warning.
    """
    if not stage_dir.is_dir():
        return None
    found = sorted(
        (int(m.group(1)), p)
        for p in stage_dir.iterdir()
        if p.is_dir() and (m := _CHECKPOINT.match(p.name))
    )
    for _, path in reversed(found):
        if (path / COMPLETE_MARKER).is_file():
            return str(path)
        msg = f"{path} is incomplete (no {COMPLETE_MARKER}: interrupted while saving); skipping it"
        logger.warning(msg)
        log(f"warning: {msg}")
    return None


def count_parameters(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- trainer pieces


def _trainer_classes() -> tuple[type, type]:
    """Built lazily so importing this module does not import torch/transformers/trl."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class LiteVLMTrainer(SFTTrainer):
        """SFTTrainer whose evaluation also runs a ``MetricsFn`` on the validation examples."""

        def __init__(self, *a: Any, metrics_fn: MetricsFn | None = None, val: Any = None, **kw):
            super().__init__(*a, **kw)
            self.metrics_fn = metrics_fn
            self.val_examples = val or []
            self.last_eval: tuple[int, dict[str, float]] = (-1, {})
            self._staging = False

        def _get_output_dir(self, trial: Any) -> str:
            run_dir = super()._get_output_dir(trial)
            return os.path.join(run_dir, STAGING) if self._staging else run_dir

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            """Write ``checkpoint-N`` under ``.staging/``, then rename it into place: it appears
            only once complete, so a kill mid-save cannot leave one that resume would pick."""
            from transformers.trainer_utils import rotate_checkpoints

            run_dir = self._get_output_dir(trial)
            name = f"checkpoint-{self.state.global_step}"
            staged, final = Path(run_dir, STAGING, name), Path(run_dir, name)
            self._staging = True
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._staging = False
            best = self.state.best_model_checkpoint
            if best and Path(best).parent == staged.parent:
                self.state.best_model_checkpoint = str(final.parent / Path(best).name)
            # Every process writes into the staged folder (rank 0 the model and optimizer, each
            # rank its RNG state; FSDP/ZeRO their shards): rename once all have finished.
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                if self.state.best_model_checkpoint != best:  # the saved state names the real path
                    self.state.save_to_json(str(staged / COMPLETE_MARKER))
                if final.exists():
                    shutil.rmtree(final)  # an incomplete one from an earlier, killed run
                os.replace(staged, final)
                _fsync_dir(final.parent)
                with contextlib.suppress(OSError):
                    staged.parent.rmdir()  # only if empty: another process may stage next
                rotate_checkpoints(
                    output_dir=run_dir,
                    save_total_limit=self.args.save_total_limit,
                    best_model_checkpoint=self.state.best_model_checkpoint,
                    use_mtime=True,
                )
            self.accelerator.wait_for_everyone()

        def evaluate(self, *a: Any, **kw: Any) -> dict[str, float]:
            metrics = super().evaluate(*a, **kw)
            if self.metrics_fn is not None and self.val_examples:
                extra = self.metrics_fn(self.model, self.processing_class, self.val_examples)
                extra = {f"eval_{k}": float(v) for k, v in extra.items()}
                self.log(extra)
                metrics.update(extra)
            self.last_eval = (self.state.global_step, metrics)
            return metrics

    class JsonlLogger(TrainerCallback):
        """Appends every log line to ``log.jsonl`` (resumed runs keep appending)."""

        def __init__(self, path: Path, stage: str) -> None:
            self.path, self.stage = path, stage

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any):
            if logs and state.is_world_process_zero:
                record = {"stage": self.stage, "step": state.global_step, "epoch": state.epoch}
                record.update({k: v for k, v in logs.items() if isinstance(v, int | float | str)})
                record["time"] = time.time()
                with open(self.path, "a") as f:
                    f.write(json.dumps(record) + "\n")

    class SkipFinalCheckpoint(TrainerCallback):
        """No checkpoint at the very end off the ``save_steps`` grid: ``final/`` is written next,
        and the finished stage is never resumed, so its optimizer state would be wasted disk."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any):
            off_grid = state.save_steps <= 0 or state.global_step % state.save_steps
            if (
                state.global_step >= state.max_steps
                and off_grid
                and not args.load_best_model_at_end
            ):
                control.should_save = False
            return control

    return LiteVLMTrainer, JsonlLogger, SkipFinalCheckpoint


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (the directory entry itself), where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _distributed_on_cpu() -> bool:
    """Several processes (torchrun / ``accelerate launch --multi_gpu``) and no GPU: train on
    CPU over gloo. Without ``use_cpu`` accelerate sees no device and runs each process alone."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def training_args(stage: StageConfig, stage_dir: Path, cfg: FinetuneRunConfig, has_val: bool):
    from trl import SFTConfig

    prec = precision(stage)
    evaluate = has_val and stage.eval_steps > 0
    early = evaluate and stage.early_stopping_patience is not None
    save_steps = stage.save_steps
    if early and save_steps % stage.eval_steps:
        # Keeping the best checkpoint needs checkpoints on evaluation steps.
        save_steps = (save_steps // stage.eval_steps + 1) * stage.eval_steps
    return SFTConfig(
        output_dir=str(stage_dir),
        seed=cfg.seed,
        num_train_epochs=stage.num_train_epochs,
        max_steps=stage.max_steps,
        learning_rate=stage.learning_rate or DEFAULT_LEARNING_RATES[stage.method],
        lr_scheduler_type=stage.lr_scheduler_type,
        warmup_steps=stage.warmup_steps,
        weight_decay=stage.weight_decay,
        max_grad_norm=stage.max_grad_norm,
        per_device_train_batch_size=stage.per_device_train_batch_size,
        per_device_eval_batch_size=stage.per_device_eval_batch_size,
        gradient_accumulation_steps=stage.gradient_accumulation_steps,
        gradient_checkpointing=stage.gradient_checkpointing,
        bf16=prec == "bf16",
        fp16=prec == "fp16",
        eval_strategy="steps" if evaluate else "no",
        eval_steps=stage.eval_steps if evaluate else None,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=stage.save_total_limit,
        logging_steps=stage.logging_steps,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        report_to=[r for r in cfg.report_to if r != "tensorboard"],
        remove_unused_columns=False,
        dataloader_num_workers=cfg.dataloader_num_workers,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
        use_cpu=_distributed_on_cpu(),
    )


# ---------------------------------------------------------------- run


def validate_stages(cfg: FinetuneRunConfig) -> None:
    for i, stage in enumerate(cfg.stages[:-1]):
        if stage.method == "prompt_tuning":
            raise ConfigError(
                f"stages[{i}] ({stage.name}): prompt_tuning cannot be followed by another stage",
                "soft prompts cannot be merged into the weights; make it the last stage",
            )


def train(
    cfg: FinetuneRunConfig,
    *,
    compute_metrics: MetricsFn | None = None,
    callbacks: list[Any] | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Run every stage of ``cfg`` in order; return where each stage's outputs went."""
    validate_stages(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Under `accelerate launch` every process runs this; only the first writes run files.
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    base = cfg.model
    results: list[StageResult] = []
    for i, stage in enumerate(cfg.stages):
        stage_dir = out / stage.name
        done = stage_dir / "result.json"
        if cfg.resume and done.exists():
            result = StageResult.model_validate_json(done.read_text())
            log(f"stage {stage.name}: already done, skipping ({done})")
        else:
            metrics = compute_metrics
            if metrics is None and stage.eval_generate > 0:
                from finetune.evaluate import generation_metrics

                metrics = generation_metrics(max_examples=stage.eval_generate)
            result = run_stage(cfg, stage, base, stage_dir, metrics, callbacks or [], log)
            if main:
                done.write_text(result.model_dump_json(indent=2))
        results.append(result)
        if i + 1 < len(cfg.stages):
            base = stage_base_for_next(result, stage_dir, cfg, log)
    run = RunResult(output_dir=str(out), stages=results)
    if main:
        from finetune.export import write_model_card

        (out / "run.json").write_text(run.model_dump_json(indent=2))
        write_model_card(Path(run.final.output), cfg, run)
    return run


def stage_base_for_next(result: StageResult, stage_dir: Path, cfg: FinetuneRunConfig, log) -> str:
    if result.method == "full":
        return result.output
    from accelerate import PartialState

    merged = stage_dir / "merged"
    # With several processes the first one merges while the others wait, then find it done.
    with PartialState().main_process_first():
        if not (merged / "config.json").exists():
            from finetune.export import merge_adapter

            log(f"stage {result.name}: merging the adapter into {merged} for the next stage")
            merge_adapter(
                result.output, merged, base=result.base, local_files_only=cfg.local_files_only
            )
    return str(merged)


def run_stage(
    cfg: FinetuneRunConfig,
    stage: StageConfig,
    base: str,
    stage_dir: Path,
    compute_metrics: MetricsFn | None,
    callbacks: list[Any],
    log: Callable[[str], None],
) -> StageResult:
    from transformers import EarlyStoppingCallback, set_seed
    from transformers.integrations import TensorBoardCallback

    from finetune.formatting import ExampleStore, image_size, make_collator

    data_cfg = cfg.stage_data(stage)
    splits, stats = load_splits(data_cfg, cfg.seed)
    log(f"stage {stage.name} ({stage.method}) from {base}")
    log(format_stats(stats))
    if not splits["train"]:
        raise ConfigError(f"stage {stage.name}: the training split is empty")

    set_seed(cfg.seed)  # adapter initialisation is random
    model, processor, model_type = load_base(base, stage, cfg)
    model = apply_method(model, stage)
    trainable, total = count_parameters(model)
    log(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)")

    # One store holds train then validation examples; each split's dataset lists its row numbers.
    train_rows, val_rows = splits["train"], splits["val"]
    store = ExampleStore(train_rows + val_rows, image_size(processor), data_cfg.cache_images)
    train_ds = store.to_dataset(range(len(train_rows)))
    val_ds = store.to_dataset(range(len(train_rows), len(store))) if val_rows else None
    if data_cfg.cache_images:
        # Decode every image now: a corrupt file fails here, not hours into training.
        from tqdm import tqdm

        for i in tqdm(range(len(store)), desc="loading images", disable=len(store) < 500):
            store.image(i)
    collator = make_collator(model_type, processor, store, stage.max_length)

    args = training_args(stage, stage_dir, cfg, has_val=val_ds is not None)
    trainer_cls, jsonl_cls, skip_final_cls = _trainer_classes()
    cbs = [jsonl_cls(Path(cfg.output_dir) / "log.jsonl", stage.name), skip_final_cls(), *callbacks]
    if "tensorboard" in cfg.report_to:
        tensorboard = TensorBoardCallback()
        # A fixed folder per stage (not <stage>/runs/<date>), also for the final evaluation.
        tensorboard.logging_dir = str(Path(cfg.output_dir) / "tensorboard" / stage.name)
        cbs.append(tensorboard)
    if args.load_best_model_at_end:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=stage.early_stopping_patience))
    trainer = trainer_cls(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=processor,
        callbacks=cbs,
        metrics_fn=compute_metrics,
        val=splits["val"],
    )
    if int(os.environ.get("RANK", "0")) == 0 and (stage_dir / STAGING).exists():
        shutil.rmtree(stage_dir / STAGING)  # what a process killed mid-save had written
    last = last_complete_checkpoint(stage_dir, log) if cfg.resume else None
    if last:
        log(f"resuming from {last}")
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started
    metrics: dict[str, float] = {}
    if val_ds is not None:
        step, last = trainer.last_eval
        if step != trainer.state.global_step or args.load_best_model_at_end:
            last = trainer.evaluate()  # the weights being saved, evaluated
        metrics = {k: float(v) for k, v in last.items() if isinstance(v, int | float)}
    final = stage_dir / "final"
    trainer.save_model(str(final))
    processor.save_pretrained(str(final))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return StageResult(
        name=stage.name,
        method=stage.method,
        output=str(final),
        base=base,
        steps=trainer.state.global_step,
        train_loss=losses[-1] if losses else output.training_loss,
        eval_loss=metrics.get("eval_loss"),
        metrics=metrics,
        trainable_params=trainable,
        total_params=total,
        samples_per_s=output.metrics.get("train_samples_per_second"),
        seconds=round(seconds, 3),
        data=stats,
    )
