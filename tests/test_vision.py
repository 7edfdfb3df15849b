"""tools.vision on tiny random PaliGemmas built locally and loaded through the real code.

Real here: transformers loading from a saved directory, bitsandbytes 8-bit / 4-bit on its CPU
backend, peft LoRA adapters, the hub client against a local server answering as a gated repo.
Mocked (no GPU here): CUDA out-of-memory is raised by a patched ``from_pretrained``/``generate``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from vision_fixtures import (  # noqa: F401 - fixtures
    cell_png,
    gated_hub,
    lora_adapters,
    make_adapter,
    varied_paligemma,
)

from litevlm.errors import ConfigError, ModelLoadError
from litevlm.types import VisionResult

ROOT = Path(__file__).resolve().parent.parent


def _image(seed: int = 0, size: tuple[int, int] = (48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def vm(varied_paligemma: Path):  # noqa: F811
    from tools.vision import VisionModel

    return VisionModel(model=str(varied_paligemma), max_new_tokens=5, batch_size=2)


def test_tiny_paligemma_loads_through_the_real_code(tiny_paligemma: Path) -> None:
    from tools.vision import VisionModel

    vm = VisionModel(model=str(tiny_paligemma), max_new_tokens=3, attn_implementation="eager")
    assert vm.is_paligemma and vm.device == "cpu"
    assert vm.load_seconds > 0
    assert type(vm.model).__name__ == "PaliGemmaForConditionalGeneration"
    assert type(vm.processor).__name__ == "PaliGemmaProcessor"
    assert vm.model.config._attn_implementation == "eager"
    r = vm.describe(_image())
    assert isinstance(r, VisionResult)
    assert r.prompt == "describe en" and r.model_id == str(tiny_paligemma)
    assert 0 <= r.tokens <= 3


def test_describe_and_answer(vm, cell_png: Path) -> None:  # noqa: F811
    from tools.images import load_image

    loaded = load_image(cell_png)
    r = vm.answer(loaded, "how many cells are there?")
    assert r.prompt == "answer en how many cells are there?"
    assert r.text and r.tokens == 5 and r.adapter is None
    assert r.latency_s > 0 and r.tokens_per_s == pytest.approx(r.tokens / r.latency_s)
    # LoadedImage and its PIL image give the same answer; greedy decoding is deterministic.
    assert vm.answer(loaded.image, "how many cells are there?").text == r.text
    assert vm.describe(loaded, task="caption").prompt == "caption en"
    assert vm.detect(loaded, "cell ; nucleus").prompt == "detect cell ; nucleus"
    assert vm.answer(loaded, "how many?", max_new_tokens=2).tokens <= 2


def test_batches_are_left_padded_and_match_single_calls(vm) -> None:
    images = [_image(i) for i in range(3)]
    questions = ["how many cells are there in this picture?", "what?", "is the stain brown?"]
    batch = vm.answer_batch(images, questions)  # batch_size=2: two generate calls
    single = [vm.answer(im, q) for im, q in zip(images, questions, strict=True)]
    assert [r.text for r in batch] == [r.text for r in single]
    assert len({r.text for r in batch}) > 1
    assert vm.processor.tokenizer.padding_side == "left"
    same_q = vm.describe_batch(images[:2])
    assert [r.prompt for r in same_q] == ["describe en", "describe en"]


def test_beam_search_and_sampling(vm) -> None:
    import torch

    image = _image()
    assert vm.describe(image, num_beams=2).tokens <= 5
    torch.manual_seed(0)
    a = vm.describe(image, do_sample=True, temperature=0.7, top_p=0.9)
    torch.manual_seed(0)
    b = vm.describe(image, do_sample=True, temperature=0.7, top_p=0.9)
    assert a.text == b.text


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_quantized_loading_on_cpu(varied_paligemma: Path, quantization: str) -> None:  # noqa: F811
    import bitsandbytes as bnb

    from tools.vision import VisionModel

    vm = VisionModel(model=str(varied_paligemma), quantization=quantization, max_new_tokens=3)
    layer = vm.model.model.language_model.layers[0].self_attn.q_proj
    if quantization == "8bit":
        assert isinstance(layer, bnb.nn.Linear8bitLt)
    else:
        assert isinstance(layer, bnb.nn.Linear4bit)
        q = vm.model.config.quantization_config
        assert q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
        assert layer.weight.quant_state.nested  # double quantisation of the scales
    r = vm.answer(_image(), "how many cells?")
    assert r.tokens > 0 and r.text


def test_lora_adapters_load_and_switch_per_call(
    vm,
    varied_paligemma: Path,  # noqa: F811
    lora_adapters: dict,  # noqa: F811
) -> None:
    from tools.vision import VisionModel

    image = _image()
    base = vm.answer(image, "how many cells?").text
    avm = VisionModel(
        model=str(varied_paligemma),
        max_new_tokens=5,
        adapters={k: str(v) for k, v in lora_adapters.items()},
        adapter="a1",
    )
    assert sorted(avm.adapters) == ["a1", "a2"]
    default = avm.answer(image, "how many cells?")
    a1 = avm.answer(image, "how many cells?", adapter="a1")
    a2 = avm.answer(image, "how many cells?", adapter="a2")
    plain = avm.answer(image, "how many cells?", adapter=None)
    assert default.adapter == "a1" and a2.adapter == "a2" and plain.adapter is None
    assert default.text == a1.text
    assert plain.text == base
    assert len({base, a1.text, a2.text}) == 3
    # Switching back and forth gives the same answers again.
    assert avm.answer(image, "how many cells?", adapter="a1").text == a1.text
    assert avm.answer_batch([image], "how many cells?", adapter="a2")[0].text == a2.text
    with pytest.raises(ModelLoadError, match="not loaded"):
        avm.answer(image, "x", adapter="nope")


def test_adapter_for_another_base_model_is_refused(
    vm,
    tmp_path: Path,
    lora_adapters: dict,  # noqa: F811
) -> None:
    from tools.tiny_models import build_tiny_paligemma

    other = build_tiny_paligemma(tmp_path / "other", hidden_size=48)
    wrong = make_adapter(other, tmp_path / "wrong", seed=3)
    image = _image()
    before = vm.answer(image, "how many cells?").text
    with pytest.raises(ModelLoadError, match="does not fit") as e:
        vm.load_adapter(wrong, "wrong")
    assert "base model it was trained from" in str(e.value)
    # The failed load leaves the model exactly as it was, and a good adapter still loads.
    assert vm.answer(image, "how many cells?").text == before
    assert vm.adapters == {}
    assert vm.load_adapter(lora_adapters["a1"], "a1") == "a1"
    assert vm.answer(image, "how many cells?", adapter=None).text == before
    with pytest.raises(ModelLoadError, match="does not fit"):
        vm.load_adapter(wrong, "wrong2")  # also refused as a second adapter
    assert sorted(vm.adapters) == ["a1"]
    vm.model = vm.base_model  # leave the module fixture without adapters
    vm.adapters.clear()


def test_adapter_errors(varied_paligemma: Path, lora_adapters: dict, tmp_path: Path) -> None:  # noqa: F811
    from tools.vision import VisionModel

    with pytest.raises(ModelLoadError, match="no adapter_config.json"):
        VisionModel(model=str(varied_paligemma), adapters={"x": str(tmp_path / "missing")})
    with pytest.raises(ModelLoadError, match="not one of the configured adapters"):
        VisionModel(model=str(varied_paligemma), adapter="zzz")
    with pytest.raises(ModelLoadError, match="is a LoRA/peft adapter") as e:
        VisionModel(model=str(lora_adapters["a1"]))
    assert "--adapter" in (e.value.hint or "")


def test_weights_missing_offline_says_how_to_download(tmp_path: Path) -> None:
    from tools.vision import VisionModel

    with pytest.raises(ModelLoadError) as e:
        VisionModel(model="google/paligemma-3b-mix-448", cache_dir=tmp_path / "empty-cache")
    assert "not in the local Hugging Face cache" in str(e.value)
    assert "hf download google/paligemma-3b-mix-448" in str(e.value)


def test_unreachable_hub_fails_in_seconds(tmp_path: Path, monkeypatch) -> None:
    """Not cached and the Hub's port refuses: a clear error at once, not minutes of retries."""
    import socket
    import time

    from tools.vision import VisionModel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError) as e:
        VisionModel(model="google/paligemma-3b-mix-448", cache_dir=tmp_path / "empty-cache")
    assert time.perf_counter() - t0 < 10
    assert "cannot be reached" in str(e.value)
    assert "hf download google/paligemma-3b-mix-448" in str(e.value)


def test_missing_local_directory(tmp_path: Path) -> None:
    from tools.vision import VisionModel

    with pytest.raises(ModelLoadError, match="no such model directory"):
        VisionModel(model=str(tmp_path / "nope"))


def test_invalid_options_are_config_errors(varied_paligemma: Path) -> None:  # noqa: F811
    from litevlm.config import VisionConfig
    from tools.vision import VisionModel, with_overrides

    with pytest.raises(ConfigError, match="quantization = '3bit'"):
        VisionModel(model=str(varied_paligemma), quantization="3bit")
    cfg = with_overrides(VisionConfig(), model="m", adapter="/runs/x/final", quantization="4bit")
    assert cfg.adapters == {"final": "/runs/x/final"} and cfg.adapter == "final"


def test_gated_model_without_token(tmp_path: Path) -> None:
    """The real hub client against a local server answering 401 GatedRepo, as huggingface.co."""
    code = (
        "from tools.vision import VisionModel\nVisionModel(model='google/paligemma-3b-mix-448')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    with gated_hub() as url:
        env.update(HF_ENDPOINT=url, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))
        env["TRANSFORMERS_OFFLINE"] = "0"
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "ModelLoadError" in last and "gated" in last
    assert "hf auth login" in last and "no Hugging Face token" in last


def test_cuda_out_of_memory_suggests_4bit(vm, monkeypatch, varied_paligemma: Path) -> None:  # noqa: F811
    """No GPU here: the OOM is raised by patched calls, as torch raises it on CUDA."""
    import torch
    import transformers

    from tools.vision import VisionModel

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(vm.model, "generate", oom)
    with pytest.raises(ModelLoadError, match="out of memory while generating") as e:
        vm.describe(_image())
    assert "4bit" in str(e.value)
    monkeypatch.undo()

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", oom)
    with pytest.raises(ModelLoadError, match="out of memory while loading") as e:
        VisionModel(model=str(varied_paligemma))
    assert "4bit" in str(e.value) and "smaller" in str(e.value)


def test_parse_detections() -> None:
    from tools.vision import parse_detections

    boxes = parse_detections("<loc0000><loc0256><loc0512><loc1024> cell ; ", 200, 100)
    assert boxes == [{"label": "cell", "box": [50.0, 0.0, 200.0, 50.0]}]


def test_chat_template_path_for_other_vlms(tmp_path: Path) -> None:
    """A non-PaliGemma VLM (tiny LLaVA) is prompted through its processor's chat template."""
    from tools.tiny_models import build_tiny_llava
    from tools.vision import VisionModel

    vm = VisionModel(
        model=str(build_tiny_llava(tmp_path / "llava", init_std=1.0)), max_new_tokens=4
    )
    assert not vm.is_paligemma
    assert vm.task_prompt("answer", question="how many cells?") == "how many cells?"
    assert vm._model_text("how many cells?") == "USER: <image>\nhow many cells?\nASSISTANT:"
    images = [_image(0), _image(1)]
    questions = ["how many cells are there in this picture?", "what?"]
    batch = vm.answer_batch(images, questions)
    single = [vm.answer(im, q) for im, q in zip(images, questions, strict=True)]
    assert [r.text for r in batch] == [r.text for r in single]
    assert all(r.tokens == 4 and r.text for r in single)
    assert vm.describe(images[0]).prompt == "Describe this image in detail."
