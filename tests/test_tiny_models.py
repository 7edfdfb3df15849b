"""The tiny PaliGemma fixture loads through the real transformers code and is deterministic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image


def test_tiny_paligemma_loads_with_auto_classes(tiny_paligemma: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_paligemma, attn_implementation="eager")
    processor = AutoProcessor.from_pretrained(tiny_paligemma)
    assert type(model).__name__ == "PaliGemmaForConditionalGeneration"
    assert type(processor).__name__ == "PaliGemmaProcessor"
    tok = processor.tokenizer
    for t in ["<pad>", "<eos>", "<bos>", "<unk>", "<image>", "<loc0000>", "<loc1023>", "<seg127>"]:
        assert tok.convert_tokens_to_ids(t) != tok.unk_token_id or t == "<unk>"
    assert model.config.image_token_index == processor.image_token_id
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= names

    image = Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype("uint8"))
    inputs = processor(images=image, text="<image>answer en how many cells?", return_tensors="pt")
    out = model.generate(
        **inputs, max_new_tokens=4, do_sample=False, output_attentions=True,
        return_dict_in_generate=True,
    )  # fmt: skip
    assert out.sequences.shape[1] == inputs["input_ids"].shape[1] + 4
    assert out.attentions[0][0].shape[-1] == inputs["input_ids"].shape[1]


def test_tiny_paligemma_is_deterministic(tmp_path: Path, tiny_paligemma: Path) -> None:
    from tools.tiny_models import build_tiny_paligemma

    again = build_tiny_paligemma(tmp_path / "again", seed=0)
    for name in ["model.safetensors", "tokenizer.json"]:
        a = hashlib.sha256((tiny_paligemma / name).read_bytes()).hexdigest()
        b = hashlib.sha256((again / name).read_bytes()).hexdigest()
        assert a == b, name


def test_paligemma_3b_config_has_real_shapes() -> None:
    from tools.tiny_models import paligemma_3b_config

    c = paligemma_3b_config()
    assert c.text_config.num_hidden_layers == 18 and c.text_config.hidden_size == 2048
    assert c.vision_config.num_hidden_layers == 27 and c.vision_config.image_size == 448
    assert c.text_config.num_image_tokens == 1024
    assert c.image_token_index == 257152 and c.text_config.vocab_size == 257216
