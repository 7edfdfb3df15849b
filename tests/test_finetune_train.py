"""Training on the tiny random PaliGemma (CPU): LoRA, QLoRA, prompt tuning, resume, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune.config import FinetuneRunConfig, config_from_dict
from finetune.samples import write_sample_dataset
from finetune.trainer import RunResult, train


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; more only add OpenMP contention on a shared CI box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return (
        write_sample_dataset(tmp_path_factory.mktemp("ft_data"), crops_per_image=2) / "train.jsonl"
    )


def _config(model: Path, data: Path, out: Path, **kw: Any) -> FinetuneRunConfig:
    base = {
        "model": str(model),
        "output_dir": str(out),
        "data": {"path": str(data), "val_fraction": 0.125, "test_fraction": 0.125},
        "max_steps": 6,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "gradient_checkpointing": False,
        "learning_rate": 2e-2,
        "warmup_steps": 0,
        "logging_steps": 1,
        "eval_steps": 0,
        "save_steps": 50,
        "report_to": [],
    }
    return config_from_dict({**base, **kw})


def _losses(out: Path, stage: str = "sft") -> dict[int, float]:
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if r["stage"] == stage and "loss" in r}


@pytest.fixture(scope="module")
def lora_run(tiny_paligemma: Path, sample_data: Path, tmp_path_factory) -> RunResult:
    out = tmp_path_factory.mktemp("lora_run")
    cfg = _config(
        tiny_paligemma, sample_data, out, max_steps=4, eval_steps=2, save_steps=2,
        report_to=["tensorboard"],
    )  # fmt: skip
    # Where the evaluation area's metrics plug in: called on the validation examples.
    return train(cfg, compute_metrics=lambda model, proc, ex: {"n_val": len(ex)}, log=print)


def test_loss_falls_on_sample_images(
    tiny_paligemma: Path, sample_data: Path, tmp_path: Path
) -> None:
    # Full fine-tuning: on a random 64-wide model, LoRA moves the loss too slowly to test fast.
    cfg = _config(
        tiny_paligemma, sample_data, tmp_path, method="full", max_steps=10, learning_rate=1e-2,
        lr_scheduler_type="constant",
    )  # fmt: skip
    losses = _losses(Path(train(cfg, log=lambda _: None).output_dir))
    first = (losses[1] + losses[2]) / 2
    last = (losses[9] + losses[10]) / 2
    assert last < first - 0.5, losses


def test_lora_run_outputs(lora_run: RunResult) -> None:
    out = Path(lora_run.output_dir)
    stage = lora_run.final
    assert stage.eval_loss is not None and stage.steps == 4
    assert stage.metrics["eval_n_val"] == stage.data.splits["val"].examples
    assert 0 < stage.trainable_params < stage.total_params
    final = Path(stage.output)
    assert (final / "adapter_config.json").exists() and (final / "README.md").exists()
    card = (final / "README.md").read_text()
    assert "Research use only" in card and "train.jsonl" in card
    assert list((out / "tensorboard" / "sft").glob("events.out.tfevents*"))
    assert set(_losses(out)) == {1, 2, 3, 4}
    # Only the language model's projections carry LoRA by default.
    adapter_cfg = json.loads((final / "adapter_config.json").read_text())
    assert "language_model" in adapter_cfg["target_modules"]


def test_default_evaluation_scores_generated_answers(
    tiny_paligemma: Path, sample_data: Path, tmp_path: Path
) -> None:
    # No compute_metrics given: the evaluation step answers validation examples and scores them
    # with the metrics of `litevlm eval`.
    cfg = _config(tiny_paligemma, sample_data, tmp_path, max_steps=2, eval_steps=2, eval_generate=4)
    stage = train(cfg, log=lambda _: None).final
    ours = {"eval_closed_accuracy", "eval_open_recall", "eval_open_f1", "eval_open_exact_match"}
    scored = ours & set(stage.metrics)
    assert scored, stage.metrics
    assert all(0.0 <= stage.metrics[k] <= 1.0 for k in scored)


def test_adapter_loads_with_peft_and_merge_matches(lora_run: RunResult, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from finetune.export import merge_adapter

    stage = lora_run.final
    merged_dir = merge_adapter(lora_run.output_dir, tmp_path / "merged")
    processor = AutoProcessor.from_pretrained(merged_dir)
    image = Image.open(Path(stage.data.source).parent / "images" / "cell_0.png")
    inputs = processor(images=image, text="<image>answer en what is it?", return_tensors="pt")
    base = AutoModelForImageTextToText.from_pretrained(stage.base)
    unmerged = PeftModel.from_pretrained(base, stage.output).eval()
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir).eval()
    with torch.no_grad():
        a = unmerged(**inputs).logits
        b = merged(**inputs).logits
        plain = AutoModelForImageTextToText.from_pretrained(stage.base).eval()(**inputs).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, plain, atol=1e-4)  # the adapter changed something
    gen_a = unmerged.generate(**inputs, max_new_tokens=5, do_sample=False)
    gen_b = merged.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert torch.equal(gen_a, gen_b)


def test_killed_run_resumes_to_the_same_loss(
    tiny_paligemma: Path, sample_data: Path, tmp_path: Path
) -> None:
    from transformers import TrainerCallback

    kw = {"max_steps": 6, "save_steps": 3, "lora_dropout": 0.1}
    unbroken = tmp_path / "unbroken"
    train(_config(tiny_paligemma, sample_data, unbroken, **kw), log=lambda _: None)

    class Kill(TrainerCallback):
        """Dies at step 5: after checkpoint-3, before checkpoint-6 (what a kill leaves)."""

        def on_step_end(self, args, state, control, **_):
            if state.global_step == 5:
                raise KeyboardInterrupt

    broken = tmp_path / "broken"
    cfg = _config(tiny_paligemma, sample_data, broken, **kw)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[Kill()], log=lambda _: None)
    assert (broken / "sft" / "checkpoint-3").is_dir()
    assert not (broken / "sft" / "result.json").exists()
    messages: list[str] = []
    train(cfg, log=messages.append)
    assert any("resuming from" in m and "checkpoint-3" in m for m in messages)
    a, b = _losses(unbroken), _losses(broken)
    assert b[6] == pytest.approx(a[6], abs=1e-4)
    assert b[4] == pytest.approx(a[4], abs=1e-4)
    # A rerun of a finished run does nothing.
    train(cfg, log=messages.append)
    assert "already done" in messages[-1]


def test_qlora_trains_on_cpu(tiny_paligemma: Path, sample_data: Path, tmp_path: Path) -> None:
    result = train(
        _config(tiny_paligemma, sample_data, tmp_path, method="qlora", max_steps=3),
        log=lambda _: None,
    )
    stage = result.final
    assert stage.steps == 3 and stage.train_loss is not None
    # No checkpoint off the save_steps grid at the end: final/ holds the result.
    assert not list((tmp_path / "sft").glob("checkpoint-*"))
    assert (Path(stage.output) / "adapter_model.safetensors").exists()
    assert stage.trainable_params < stage.total_params


def test_qlora_keeps_the_vision_tower_unquantized(tiny_paligemma: Path, sample_data: Path) -> None:
    import bitsandbytes as bnb

    from finetune.trainer import load_base

    cfg = _config(tiny_paligemma, sample_data, sample_data.parent / "q", method="qlora")
    model, _, _ = load_base(str(tiny_paligemma), cfg.stages[0], cfg)
    assert isinstance(model.model.language_model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    vision_q = model.model.vision_tower.encoder.layers[0].self_attn.q_proj
    assert not isinstance(vision_q, bnb.nn.Linear4bit)


def test_prompt_tuning_and_full(tiny_paligemma: Path, sample_data: Path, tmp_path: Path) -> None:
    pt = train(
        _config(
            tiny_paligemma, sample_data, tmp_path / "pt", method="prompt_tuning", max_steps=2,
            num_virtual_tokens=4,
        ),
        log=lambda _: None,
    ).final  # fmt: skip
    assert pt.trainable_params == 4 * 64  # virtual tokens x hidden size
    full = train(
        _config(tiny_paligemma, sample_data, tmp_path / "full", method="full", max_steps=2),
        log=lambda _: None,
    ).final
    assert (Path(full.output) / "config.json").exists()
    # The vision tower stays frozen by default in full fine-tuning.
    assert 0 < full.trainable_params < full.total_params


def test_two_stage_config_runs_both(
    tiny_paligemma: Path, sample_data: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from litevlm.cli import app

    config = tmp_path / "two.yaml"
    config.write_text(
        f"""
model: {tiny_paligemma}
output_dir: {tmp_path / "run"}
data: {{path: {sample_data}}}
max_steps: 2
per_device_train_batch_size: 4
gradient_accumulation_steps: 1
gradient_checkpointing: false
eval_steps: 0
report_to: []
stages:
  - {{name: align, method: lora, train_projector: true}}
  - {{name: vqa, method: lora, lora_r: 4}}
"""
    )
    result = CliRunner().invoke(app, ["finetune", str(config)])
    assert result.exit_code == 0, result.output
    run = RunResult.model_validate_json((tmp_path / "run" / "run.json").read_text())
    assert [s.name for s in run.stages] == ["align", "vqa"]
    assert run.stages[1].base == str(tmp_path / "run" / "align" / "merged")
    assert all(s.steps == 2 for s in run.stages)
    projector_saved = json.loads((Path(run.stages[0].output) / "adapter_config.json").read_text())[
        "modules_to_save"
    ]
    assert "multi_modal_projector" in projector_saved
    exported = CliRunner().invoke(
        app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "m")]
    )
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "m" / "model.safetensors").exists()
    assert (tmp_path / "m" / "README.md").exists()


def test_chat_template_collator_masks_all_but_the_answer(tiny_paligemma: Path, sample_data):
    from transformers import AutoProcessor

    from finetune.config import DataConfig
    from finetune.data import load_examples
    from finetune.formatting import ChatTemplateCollator, ExampleStore, image_size

    processor = AutoProcessor.from_pretrained(tiny_paligemma)
    # A minimal chat template, standing in for a chat VLM's (none can be downloaded here).
    processor.chat_template = (
        "{% for m in messages %}{% if m.role == 'user' %}<image>user: "
        "{{ m.content[1].text }}\n{% else %}assistant: {{ m.content[0].text }}<eos>{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    examples = load_examples(DataConfig(path=str(sample_data)))[:2]
    store = ExampleStore(examples, image_size(processor))
    batch = ChatTemplateCollator(processor, store)([{"row": 0}, {"row": 1}])
    for row, ex in enumerate(examples):
        kept = batch["labels"][row][batch["labels"][row] != -100]
        text = processor.tokenizer.decode(kept)
        assert text.strip() == ex.answer + "<eos>"


def test_vision_model_loads_the_adapter(lora_run: RunResult, tmp_path: Path) -> None:
    from PIL import Image

    from finetune.export import merge_adapter
    from tools.vision import VisionModel

    stage = lora_run.final
    image = Image.open(Path(stage.data.source).parent / "images" / "cell_0.png")
    vm = VisionModel(model=stage.base, device="cpu", adapters={"mine": stage.output})
    with_adapter = vm.answer(image, "what is it?", adapter="mine")
    assert with_adapter.adapter == "mine"
    merged = VisionModel(model=str(merge_adapter(stage.output, tmp_path / "m")), device="cpu")
    assert merged.answer(image, "what is it?").text == with_adapter.text


KILL_MID_SAVE = """
import os, signal, sys
from transformers import Trainer
from finetune.config import config_from_dict
from finetune.trainer import train

real = Trainer._save_rng_state

def die_on_second_save(self, output_dir):
    # Model and optimizer of checkpoint-6 are on disk, its RNG and trainer state are not.
    if self.state.global_step == 6:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, output_dir)

Trainer._save_rng_state = die_on_second_save
train(config_from_dict(__import__("json").loads(sys.argv[1])), log=lambda _: None)
"""


def test_kill_9_mid_checkpoint_leaves_nothing_that_resume_trips_on(
    tiny_paligemma: Path, sample_data: Path, tmp_path: Path
) -> None:
    """Issue 16: a SIGKILL while checkpoint-N is written must not leave a checkpoint-N/ that
    resume picks; an incomplete checkpoint-N/ left some other way is skipped with a warning."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "run"
    kw = {"max_steps": 9, "save_steps": 3}
    cfg = _config(tiny_paligemma, sample_data, out, **kw)
    raw = {
        "model": str(tiny_paligemma), "output_dir": str(out), "data": {"path": str(sample_data)},
        "max_steps": 9, "save_steps": 3, "per_device_train_batch_size": 4,
        "gradient_checkpointing": False, "eval_steps": 0, "logging_steps": 1, "report_to": [],
    }  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_MID_SAVE, json.dumps(raw)], env=env, timeout=600
    )
    assert proc.returncode == -signal.SIGKILL
    stage = out / "sft"
    assert (stage / "checkpoint-3" / "trainer_state.json").is_file()
    assert not (stage / "checkpoint-6").exists()  # the half-written one stayed under .staging
    assert (stage / ".staging" / "checkpoint-6").is_dir()
    # What an older litevlm (or a copy interrupted by hand) leaves: an empty checkpoint-N/.
    (stage / "checkpoint-7").mkdir()
    messages: list[str] = []
    result = train(cfg, log=messages.append)
    assert any("checkpoint-7 is incomplete" in m for m in messages), messages
    assert any("resuming from" in m and m.endswith("checkpoint-3") for m in messages), messages
    assert result.final.steps == 9
    assert not (stage / ".staging").exists()
    assert (stage / "checkpoint-6" / "trainer_state.json").is_file()  # rewritten, complete
    assert (stage / "checkpoint-9" / "trainer_state.json").is_file()
