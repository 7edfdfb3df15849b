"""tools.quantization: the 4-bit token embedding / LM head, on bitsandbytes' real CPU backend.

Real here: bitsandbytes' NF4 quantiser and dequantiser, transformers models loaded in 4-bit from
saved tiny checkpoints, peft adapters on top.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from vision_fixtures import lora_adapters, varied_paligemma  # noqa: F401 - fixtures

torch = pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((40, 48, 3)) * 255).astype("uint8"))


def _weight(rows: int = 300, dim: int = 128) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)


def _reference(w: torch.Tensor) -> torch.Tensor:
    """bitsandbytes' own NF4 round trip of the whole matrix."""
    from bitsandbytes.functional import dequantize_4bit, quantize_4bit

    q, state = quantize_4bit(w, blocksize=64, compress_statistics=False, quant_type="nf4")
    return dequantize_4bit(q, state)


def test_row_major_table_equals_bitsandbytes_whole_matrix_quantisation(monkeypatch) -> None:
    import tools.quantization as tq

    monkeypatch.setattr(tq, "CHUNK_ROWS", 64)  # several chunks, the last one short
    w = _weight(300)
    table = tq.Table4bit(w, "nf4", torch.bfloat16, cpu_packed=False)
    whole = _reference(w)
    assert table.codes.numel() == w.numel() // 2  # 4 bits a value
    assert torch.equal(table.rows_between(0, 300), whole)
    assert torch.equal(table.rows_between(70, 131), whole[70:131])
    ids = torch.tensor([[5, 0, 299], [7, 7, 100]])
    assert torch.equal(table.lookup(ids), whole[ids])
    # NF4 on Gaussian weights: about 10% relative error.
    err = ((whole.float() - w.float()).norm() / w.float().norm()).item()
    assert 0.02 < err < 0.15
    x = torch.randn(2, 5, 128).to(torch.bfloat16)
    out = tq.LMHead4bit(table)(x)
    assert out.shape == (2, 5, 300)
    assert torch.allclose(out.float(), torch.nn.functional.linear(x, whole).float(), atol=2e-2)


def test_cpu_packed_table_reads_the_same_rows(monkeypatch) -> None:
    """Lookups decode bitsandbytes' CPU-kernel layout; any CPU runs this (pure torch)."""
    import tools.quantization as tq

    monkeypatch.setattr(tq, "CHUNK_ROWS", 64)
    w = _weight(320)  # a multiple of the 32-row groups
    table = tq.Table4bit(w, "nf4", torch.bfloat16, cpu_packed=True)
    assert table.cpu_packed and table.codes.numel() == w.numel() // 2
    whole = _reference(w)
    ids = torch.tensor([[0, 15, 16, 31], [32, 47, 200, 319]])
    got = table.lookup(ids)
    assert got.shape == (2, 4, 128)
    # Same codes; the packed layout keeps the scales in bf16, hence the tolerance.
    assert torch.allclose(got.float(), whole[ids].float(), rtol=1e-2, atol=1e-2)
    assert torch.allclose(
        table.rows_between(40, 72).float(), whole[40:72].float(), rtol=1e-2, atol=1e-2
    )
    # 300 rows cannot be packed in groups of 32: the table falls back to the row-major layout.
    assert not tq.Table4bit(_weight(300), "nf4", torch.bfloat16, cpu_packed=True).cpu_packed


def test_an_unknown_cpu_layout_falls_back_to_row_major(monkeypatch, caplog) -> None:
    """If a bitsandbytes release packs its CPU layout differently, lookups must not go wrong."""
    import bitsandbytes.functional as bf

    import tools.quantization as tq

    real = bf._convert_weight_packed_for_cpu

    def other_layout(q, state):
        packed, state = real(q, state)
        return packed.flip(0), state

    monkeypatch.setattr(bf, "_convert_weight_packed_for_cpu", other_layout)
    w = _weight(320)
    table = tq.Table4bit(w, "nf4", torch.bfloat16, cpu_packed=True)
    assert not table.cpu_packed
    assert "falls back to the row-major layout" in caplog.text
    assert torch.equal(table.rows_between(0, 320), _reference(w))


@pytest.mark.skipif(
    not __import__("tools.quantization", fromlist=["x"])._cpu_kernel_available(),
    reason="bitsandbytes' fused 4-bit CPU kernel needs AVX512-BF16",
)
def test_cpu_packed_head_uses_the_fused_kernel() -> None:
    import tools.quantization as tq

    w = _weight(320)
    table = tq.Table4bit(w, "nf4", torch.bfloat16)
    assert table.cpu_packed  # the default on such a CPU
    whole = _reference(w)
    for n in (1, 7):  # one decode step, a prompt
        x = torch.randn(1, n, 128).to(torch.bfloat16)
        out = tq.LMHead4bit(table)(x).float()
        ref = torch.nn.functional.linear(x, whole).float()
        assert out.shape == (1, n, 320)
        assert ((out - ref).norm() / ref.norm()).item() < 0.01


def test_4bit_paligemma_shares_one_4bit_table(varied_paligemma: Path) -> None:  # noqa: F811
    from tools.quantization import Embedding4bit, LMHead4bit
    from tools.vision import VisionModel

    plain = VisionModel(model=str(varied_paligemma), quantization="4bit")  # the default: no table
    vm = VisionModel(
        model=str(varied_paligemma), quantization="4bit", bnb_4bit_embeddings=True, max_new_tokens=4
    )
    emb, head = vm.model.get_input_embeddings(), vm.model.get_output_embeddings()
    assert isinstance(emb, Embedding4bit) and isinstance(head, LMHead4bit)
    assert emb.table is head.table  # tied in the checkpoint: one 4-bit copy
    old = plain.model.get_input_embeddings()
    assert isinstance(old, torch.nn.Embedding) and not isinstance(old, Embedding4bit)
    # Same lookups as the bf16 embedding, with Gemma's sqrt(hidden) scale, within NF4's error.
    ids = torch.arange(0, 200).reshape(4, 50)
    with torch.no_grad():
        a, b = old(ids).float(), emb(ids).float()
    assert ((a - b).norm() / a.norm()).item() < 0.15
    # Fewer bytes: the embedding table is 4-bit and stored once.
    size = sum(
        t.numel() * t.element_size() for t in list(vm.model.parameters()) + list(vm.model.buffers())
    )
    size_plain = sum(
        t.numel() * t.element_size()
        for t in list(plain.model.parameters()) + list(plain.model.buffers())
    )
    assert size < size_plain
    r = vm.answer(_image(), "how many cells?")
    assert r.tokens > 0
    vm.model.tie_weights()  # transformers must not re-tie (or break) the swapped modules
    assert isinstance(vm.model.get_output_embeddings(), LMHead4bit)


def test_adapters_load_on_a_4bit_embedding_model(
    varied_paligemma: Path,  # noqa: F811
    lora_adapters: dict,  # noqa: F811
) -> None:
    from tools.quantization import Embedding4bit
    from tools.vision import VisionModel

    vm = VisionModel(
        model=str(varied_paligemma),
        quantization="4bit",
        bnb_4bit_embeddings=True,
        max_new_tokens=4,
        adapters={k: str(v) for k, v in lora_adapters.items()},
        adapter="a1",
    )
    assert isinstance(vm.base_model.get_input_embeddings(), Embedding4bit)
    a1 = vm.answer(_image(), "how many cells?", adapter="a1")
    a2 = vm.answer(_image(), "how many cells?", adapter="a2")
    assert a1.adapter == "a1" and a2.adapter == "a2" and a1.tokens > 0


def test_untied_head_gets_its_own_table_and_narrow_models_are_left_alone() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from tools.quantization import Embedding4bit, LMHead4bit, quantize_embeddings_4bit

    def llama(hidden: int) -> LlamaForCausalLM:
        cfg = LlamaConfig(
            vocab_size=256,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            tie_word_embeddings=False,
        )
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).to(torch.bfloat16).eval()

    model = llama(64)
    ids = torch.randint(0, 256, (1, 9))
    with torch.no_grad():
        before = model(input_ids=ids).logits.float()
    assert quantize_embeddings_4bit(model, "nf4", torch.bfloat16)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert isinstance(emb, Embedding4bit) and isinstance(head, LMHead4bit)
    assert emb.table is not head.table
    with torch.no_grad():
        after = model(input_ids=ids).logits.float()
    cos = torch.nn.functional.cosine_similarity(before, after, -1).mean().item()
    assert cos > 0.9
    narrow = llama(32)  # rows of 32 values do not fill a 64-value block
    assert not quantize_embeddings_4bit(narrow, "nf4", torch.bfloat16)
    assert type(narrow.get_input_embeddings()) is torch.nn.Embedding


def _checkpoint_ranges(path: Path) -> list[tuple[int, int]]:
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[5] == str(path.resolve()):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            ranges.append((lo, hi))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc")
def test_quantized_cpu_model_lets_go_of_the_checkpoint_mapping(
    varied_paligemma: Path,  # noqa: F811
) -> None:
    """Unquantised leftovers (norms, biases) are copied out of the mmapped checkpoint, so the
    model does not keep the mapping (and the page cache it pins in the process's RSS) alive."""
    import gc

    from tools.vision import VisionModel

    checkpoint = next(varied_paligemma.glob("*.safetensors"))
    vm = VisionModel(model=str(varied_paligemma), quantization="4bit", device="cpu")
    gc.collect()
    ranges = _checkpoint_ranges(checkpoint)
    tensors = list(vm.model.parameters()) + list(vm.model.buffers())
    assert not any(lo <= t.data_ptr() < hi for t in tensors for lo, hi in ranges)
    # The first call (bitsandbytes repacks for its CPU kernel) is followed by a heap trim.
    assert vm._trim_after_call
    assert vm.answer(_image(), "how many cells?").tokens > 0
    assert not vm._trim_after_call
    plain = VisionModel(model=str(varied_paligemma), device="cpu", dtype="float32")  # as saved
    tensors = list(plain.model.parameters())
    ranges = _checkpoint_ranges(checkpoint)  # an unquantised model is the mapping itself
    assert ranges and any(lo <= t.data_ptr() < hi for t in tensors for lo, hi in ranges)


def test_adapter_that_trains_the_lm_head_gets_a_clear_hint(
    varied_paligemma: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from litevlm.errors import ModelLoadError
    from tools.vision import VisionModel

    base = AutoModelForImageTextToText.from_pretrained(varied_paligemma)
    cfg = LoraConfig(r=4, target_modules=["q_proj", "lm_head"], init_lora_weights=False)
    get_peft_model(base, cfg).save_pretrained(tmp_path / "head")
    vm = VisionModel(
        model=str(varied_paligemma), quantization="4bit", bnb_4bit_embeddings=True, max_new_tokens=3
    )
    with pytest.raises(ModelLoadError, match="bnb_4bit_embeddings = false"):
        vm.load_adapter(tmp_path / "head", "head")
    assert vm.answer(_image(), "how many cells?").tokens > 0  # the model is left as it was
    unquantised = VisionModel(
        model=str(varied_paligemma), quantization="4bit", bnb_4bit_embeddings=False
    )
    assert unquantised.load_adapter(tmp_path / "head", "head") == "head"
    assert unquantised.answer(_image(), "how many cells?", adapter="head").tokens >= 0
