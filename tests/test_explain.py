"""tools.explain: array maths, planted attention on the tiny PaliGemma, overlays on real images.

The planted tests register a custom attention function through transformers' public
``AttentionInterface`` that computes eager attention and then overwrites the weights with a
chosen pattern (text queries -> one image patch; in the vision tower every patch -> one patch),
so the whole path (model forward, output_attentions, our aggregation) is exercised and the
right answer is known.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from litevlm.errors import LiteVLMError
from tools import explain

# ----- pure functions -----


def _random_attn(rng, layers, heads, n):
    a = rng.random((layers, 1, heads, n, n))
    return list(a / a.sum(-1, keepdims=True))


def test_rollout_rows_sum_to_one_and_identity():
    rng = np.random.default_rng(0)
    r = explain.attention_rollout(_random_attn(rng, 3, 2, 16))
    assert r.shape == (16, 16)
    np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-9)
    assert (r >= 0).all()
    eye = [np.eye(5)[None, None].repeat(2, 1)] * 3
    np.testing.assert_allclose(explain.attention_rollout(eye), np.eye(5), atol=1e-12)
    with pytest.raises(ValueError):
        explain.attention_rollout([], 0.5)


def test_rollout_follows_planted_sink():
    # Every token attends to token 3 in every layer: rollout rows concentrate on column 3.
    n = 9
    a = np.zeros((1, 2, n, n))
    a[..., 3] = 1.0
    r = explain.attention_rollout([a, a, a], residual=0.5)
    assert (r.argmax(-1) == 3).all()
    assert r[0, 3] == pytest.approx(1 - 0.5**3)


def test_text_to_image_attention_planted_tensor():
    # 4 image tokens then 3 text tokens; text queries look at image token 2 (head 0) or 1 (head 1)
    seq, img = 7, [0, 1, 2, 3]
    a = np.full((1, 2, seq, seq), 0.01)
    a[0, 0, 4:, 2] = 1.0
    a[0, 1, 4:, 1] = 1.0
    per_head = explain.text_to_image_attention([a, a], img, [4, 5, 6])
    assert per_head.shape == (2, 2, 4)
    np.testing.assert_allclose(per_head.sum(-1), 1.0)
    assert per_head[:, 0].argmax(-1).tolist() == [2, 2]
    assert explain.aggregate_heads(per_head, heads=[1]).argmax() == 1
    w = explain.aggregate_heads(per_head)
    assert w.sum() == pytest.approx(1.0) and set(np.argsort(w)[-2:]) == {1, 2}


def test_grid_upsample_and_overlay():
    from PIL import Image

    grid = explain.patch_grid(np.arange(16, dtype=float))
    assert grid.shape == (4, 4)
    heat = explain.upsample(grid, (50, 30))
    assert heat.shape == (30, 50) and heat.min() == 0.0 and heat.max() == pytest.approx(1.0)
    img = Image.new("RGB", (50, 30), "white")
    over = explain.render_overlay(img, heat)
    assert over.size == (50, 30) and over.mode == "RGB"
    with pytest.raises(ValueError, match="square"):
        explain.patch_grid(np.ones(15))


# ----- the tiny PaliGemma -----


@pytest.fixture(scope="module")
def tiny(tiny_paligemma):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_paligemma, attn_implementation="eager")
    return model.eval(), AutoProcessor.from_pretrained(tiny_paligemma)


def _planted(target: int, from_index: int):
    """Eager attention whose rows >= from_index attend only to key ``target``."""
    import torch
    from transformers.models.gemma.modeling_gemma import repeat_kv

    def fn(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        groups = getattr(module, "num_key_value_groups", 1)
        value = repeat_kv(value, groups)
        q_len, k_len = query.shape[-2], value.shape[-2]
        w = torch.zeros(*query.shape[:2], q_len, k_len, dtype=query.dtype)
        w[..., :, target] = 1.0
        offset = k_len - q_len  # queries are the last q_len positions
        keep = torch.arange(q_len) + offset < from_index
        if keep.any():  # rows before from_index: uniform over what they may see
            w[..., keep, :] = 1.0 / k_len
        return torch.matmul(w, value).transpose(1, 2).contiguous(), w

    return fn


def _plant(model, **impls):
    from transformers import AttentionInterface

    names = {}
    for sub, (target, from_index) in impls.items():
        name = f"litevlm_test_{sub}_{target}_{from_index}"
        AttentionInterface.register(name, _planted(target, from_index))
        names[sub] = name
    model.set_attn_implementation(names)


def _restore(model):
    model.set_attn_implementation("eager")


def test_raw_map_highlights_planted_patch(tiny):
    from PIL import Image

    model, processor = tiny
    n_img = processor.image_seq_length
    side = round(n_img**0.5)
    target = 2 * side + 5
    _plant(model, text_config=(target, n_img))
    try:
        m = explain.attention_map(tiny, Image.new("RGB", (48, 40), "grey"), "what is here?")
    finally:
        _restore(model)
    assert m.method == "raw"
    assert m.peak() == (2, 5)
    assert m.heatmap.shape == (40, 48)
    assert m.heatmap.min() >= 0.0 and m.heatmap.max() == pytest.approx(1.0)
    assert m.grid.sum() == pytest.approx(1.0)
    n_layers = model.config.text_config.num_hidden_layers
    n_heads = model.config.text_config.num_attention_heads
    assert m.per_head.shape == (n_layers, n_heads, side, side)


def test_rollout_map_follows_planted_vision_attention(tiny):
    from PIL import Image

    model, processor = tiny
    n_img = processor.image_seq_length
    side = round(n_img**0.5)
    # Text looks at patch 0; inside SigLIP every patch attends to patch side*side-1: the rollout
    # moves the mass there, the raw map does not.
    sink = n_img - 1
    _plant(model, text_config=(0, n_img), vision_config=(sink, 0))
    try:
        img = Image.new("RGB", (32, 32), "black")
        raw = explain.attention_map(tiny, img, "where?", method="raw")
        roll = explain.attention_map(tiny, img, "where?", method="rollout")
    finally:
        _restore(model)
    assert raw.peak() == (0, 0)
    assert roll.peak() == (side - 1, side - 1)
    np.testing.assert_allclose(roll.rollout.sum(-1), 1.0, atol=1e-5)
    assert roll.grid.sum() == pytest.approx(1.0)


def test_overlays_for_real_sample_images(tiny, artifacts_dir):
    import pydicom.data
    from skimage import data

    from tools.images import load_image

    cell = data.cell()
    dicom = load_image(pydicom.data.get_testdata_file("CT_small.dcm"))
    for name, image, method in (("cell", cell, "raw"), ("ct_small", dicom, "rollout")):
        if isinstance(image, np.ndarray):
            from PIL import Image

            image = Image.fromarray(image)
        m = explain.attention_map(tiny, image, "what is shown?", method=method, max_new_tokens=4)
        path = m.save_overlay(artifacts_dir / f"explain_{name}_{method}.png")
        assert path.is_file()
        from PIL import Image

        with Image.open(path) as written:
            assert written.size == m.image.size
        assert m.heatmap.shape == (m.image.size[1], m.image.size[0])


def test_vision_model_with_sdpa_is_switched_to_eager_and_back(tiny_paligemma):
    from PIL import Image

    from tools.vision import VisionModel

    vm = VisionModel(model=str(tiny_paligemma), attn_implementation="sdpa", max_new_tokens=2)
    m = explain.attention_map(vm, Image.new("RGB", (32, 32)), "how many cells?", max_new_tokens=2)
    assert np.isfinite(m.grid).all() and m.grid.sum() == pytest.approx(1.0)
    assert vm.model.config._attn_implementation == "sdpa"
    # same answer as the plain path: the map explains what the model actually says
    assert m.answer == vm.answer(Image.new("RGB", (32, 32)), "how many cells?").text


def test_bad_inputs(tiny):
    with pytest.raises(LiteVLMError, match="method"):
        explain.attention_map(tiny, None, "q", method="gradcam")
    with pytest.raises(LiteVLMError, match="attention map"):
        explain.attention_map(tiny, 42, "q")
    with pytest.raises(LiteVLMError, match=r"\.model"):
        explain.attention_map(object(), None, "q")


# ----- per word, and attention on objects -----


def test_word_token_indices():
    pieces = ["small", " left", " pleural", " eff", "usion", ".", " Left", "-sided"]
    assert explain.word_token_indices(pieces, "effusion") == [3, 4]
    assert explain.word_token_indices(pieces, "LEFT") == [1]  # whole words: not "left-sided"
    assert explain.word_token_indices(pieces, "left-sided") == [6, 7]
    assert explain.word_token_indices(pieces, "lung") == []


def test_attention_on_objects_and_pointing_game():
    grid = np.zeros((4, 4))
    grid[0, 0] = 1.0
    mask = np.zeros((40, 40), bool)
    mask[:20, :20] = True  # the top-left quadrant: 4 of 16 patches
    o = explain.attention_on_objects(grid, mask, n_objects=1)
    assert o.on_objects == pytest.approx(1.0) and o.object_area == pytest.approx(0.25)
    assert o.lift == pytest.approx(4.0) and o.pointing_hit
    flat = explain.attention_on_objects(np.full((4, 4), 1 / 16), mask)
    assert flat.on_objects == pytest.approx(0.25) and flat.lift == pytest.approx(1.0)
    miss = np.zeros((4, 4))
    miss[3, 3] = 1.0
    assert not explain.attention_on_objects(miss, mask).pointing_hit
    assert explain.attention_on_objects(grid, np.zeros((8, 8))).lift is None


def _planted_walk(n_img: int, from_index: int):
    """Text rows attend one image patch each, the next patch for the next row."""
    import torch
    from transformers.models.gemma.modeling_gemma import repeat_kv

    def fn(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        value = repeat_kv(value, getattr(module, "num_key_value_groups", 1))
        q_len, k_len = query.shape[-2], value.shape[-2]
        w = torch.full((*query.shape[:2], q_len, k_len), 1.0 / k_len, dtype=query.dtype)
        for i in range(q_len):
            row = k_len - q_len + i  # absolute position of this query
            if row >= from_index:
                w[..., i, :] = 0
                w[..., i, (row - from_index) % n_img] = 1.0
        return torch.matmul(w, value).transpose(1, 2).contiguous(), w

    return fn


def test_per_token_maps_follow_each_token(tiny):
    from PIL import Image
    from transformers import AttentionInterface

    model, processor = tiny
    n_img = processor.image_seq_length
    AttentionInterface.register("litevlm_test_walk", _planted_walk(n_img, n_img))
    model.set_attn_implementation({"text_config": "litevlm_test_walk"})
    try:
        m = explain.attention_map(tiny, Image.new("RGB", (32, 32), "grey"), "where?")
    finally:
        _restore(model)
    assert "".join(m.tokens) == m.answer
    assert m.per_token.shape[0] == len(m.tokens) >= 2
    peaks = [int(g.argmax()) for g in m.per_token]
    assert all((b - a) % n_img == 1 for a, b in itertools.pairwise(peaks))
    np.testing.assert_allclose(m.per_token.mean(0), m.grid, atol=1e-6)  # the answer's map
    words = m.words()
    if words:  # the tiny model's answer is random text; when it has a word, map it alone
        w = m.for_word(words[0])
        idx = explain.word_token_indices(m.tokens, words[0])
        np.testing.assert_allclose(
            w.grid, m.per_token[idx].mean(0) / m.per_token[idx].mean(0).sum()
        )
        assert w.word == words[0]
    with pytest.raises(LiteVLMError, match="not a word of the answer"):
        m.for_word("pneumothorax-not-there")


def test_a_generated_image_token_ends_the_answer_that_is_re_run():
    from types import SimpleNamespace

    from tools.explain import _before_image_token

    model = SimpleNamespace(config=SimpleNamespace(image_token_id=257152))
    assert _before_image_token([5, 6, 257152, 7], model) == [5, 6]
    assert _before_image_token([5, 6, 7], model) == [5, 6, 7]
    old = SimpleNamespace(config=SimpleNamespace(image_token_index=9))
    assert _before_image_token([9, 1], old) == []
