"""Multi-process training that has actually run: ``accelerate launch --multi_gpu
--num_processes 2`` on a machine without a GPU (two torchrun processes, DDP over gloo on CPU;
``--cpu --num_processes 2`` would start one process only) on the tiny random PaliGemma.
A worker killed with SIGKILL mid-run takes the launch down; the same command again resumes
from the last checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from finetune.samples import write_sample_dataset

pytestmark = pytest.mark.slow

ACCELERATE = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which(
    "accelerate"
)

# Worker 0 kills itself (SIGKILL: no cleanup, no checkpoint) at step 5, after checkpoint-4.
DIE_AT_STEP_5 = """
import os, signal, sys
from transformers import TrainerCallback
from finetune.config import load_config
from finetune.trainer import train

class Die(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 5 and state.is_world_process_zero:
            os.kill(os.getpid(), signal.SIGKILL)

train(load_config(sys.argv[1]), callbacks=[Die()])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()), *args,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(ACCELERATE is None, reason="accelerate's launcher is not installed")
@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="the CPU (gloo) path; GPUs take the GPU one"
)
def test_two_process_cpu_training_checkpoints_resumes_and_loads(
    tiny_paligemma: Path, tmp_path: Path
) -> None:
    data = write_sample_dataset(tmp_path / "data", crops_per_image=2) / "train.jsonl"
    out = tmp_path / "run"
    config = tmp_path / "ddp.yaml"
    config.write_text(
        f"""
model: {tiny_paligemma}
local_files_only: true
output_dir: {out}
data: {{path: {data}, val_fraction: 0.0, test_fraction: 0.0}}
method: lora
lora_r: 8
max_steps: 8
per_device_train_batch_size: 4
gradient_accumulation_steps: 1
gradient_checkpointing: false
learning_rate: 5.0e-2
lr_scheduler_type: constant
warmup_steps: 0
logging_steps: 1
eval_steps: 0
save_steps: 2
save_total_limit: null
report_to: []
"""
    )
    script = tmp_path / "die_at_step_5.py"
    script.write_text(DIE_AT_STEP_5)
    killed = _launch(str(script), str(config), cwd=tmp_path)
    assert killed.returncode != 0, killed.stdout[-2000:] + killed.stderr[-2000:]
    stage = out / "sft"
    assert sorted(p.name for p in stage.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (stage / "result.json").exists()

    # The same launch with the CLI: it resumes from checkpoint-4.
    resumed = _launch("-m", "litevlm.cli", "finetune", str(config), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    resumed_from = [line for line in resumed.stderr.splitlines() if "resuming from" in line]
    assert resumed_from and resumed_from[0].endswith("checkpoint-4"), resumed.stderr[-3000:]

    # One checkpoint per save step, each complete, each with both ranks' RNG state and one
    # copy of the adapter (written by rank 0 only).
    checkpoints = sorted(stage.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in checkpoints] == [f"checkpoint-{n}" for n in (2, 4, 6, 8)]
    for ckpt in checkpoints:
        assert (ckpt / "trainer_state.json").is_file()
        assert {p.name for p in ckpt.glob("rng_state_*.pth")} == {
            "rng_state_0.pth",
            "rng_state_1.pth",
        }
        assert len(list(ckpt.glob("adapter_model.safetensors"))) == 1
    assert not (stage / ".staging").exists()
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    assert state["global_step"] == 8

    # Loss falls over the run (rank 0 logs the loss averaged over both processes).
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in records if "loss" in r}
    assert set(losses) >= set(range(1, 9))
    assert losses[8] < losses[1], losses
    result = json.loads((stage / "result.json").read_text())
    assert result["steps"] == 8

    # The final adapter loads in the vision tool.
    from PIL import Image

    from tools.vision import VisionModel

    image = Image.open(data.parent / "images" / "cell_0.png")
    vm = VisionModel(model=str(tiny_paligemma), device="cpu", adapters={"ddp": result["output"]})
    answer = vm.answer(image, "what is it?", adapter="ddp")
    assert answer.adapter == "ddp"
    print(
        "multi-process figures:",
        json.dumps({"losses": losses, "checkpoints": [p.name for p in checkpoints]}),
    )
