"""Tiny, random, locally built models with the real architecture, for tests and benchmarks.

The hub is unreachable in CI, so the real loading code (``AutoModelForImageTextToText`` /
``AutoProcessor.from_pretrained``) is exercised on a directory written here: a PaliGemma with a
few-kilobyte Gemma decoder and SigLIP encoder, a Gemma-style BPE tokenizer trained in code with
the special tokens PaliGemma needs, ``SiglipImageProcessor`` and ``PaliGemmaProcessor``.

``paligemma_3b_config()`` writes out google/paligemma-3b-mix-448's architecture so that the
full-size benchmark and the trainable-fraction figures use the real shapes with random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Real PaliGemma: <pad>=0, <eos>=1, <bos>=2, <unk>=3, <mask>=4; <image> sits after the
# <loc>/<seg> tokens. The processor adds <image> and the 1024 <loc> + 128 <seg> tokens itself.
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
IMAGE_TOKEN = "<image>"

# A little life-science text, so the tokenizer learns merges for the words tests use.
_CORPUS = [
    "caption en",
    "describe en",
    "answer en what is in the image?",
    "answer en how many cells are there?",
    "detect nucleus ; cell",
    "segment cell",
    "a fluorescence microscopy image of cells with stained nuclei",
    "an H&E stained histology section showing tissue and glands",
    "immunohistochemistry with brown DAB staining and blue hematoxylin counterstain",
    "a chest x-ray radiograph with lungs, heart and ribs",
    "a retina fundus photograph with the optic disc and vessels",
    "an MRI slice of the brain; a CT scan of the abdomen; an ultrasound image",
    "there are many round cells, some are dividing, the nuclei are bright",
    "the image shows normal tissue with no obvious abnormality",
    "yes no one two three four five six seven eight nine ten",
]


def _train_gemma_tokenizer(vocab_size: int) -> Any:
    """Train a byte-fallback BPE on the corpus and wrap it as transformers' GemmaTokenizer."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import GemmaTokenizer

    # Gemma's normalizer turns spaces into "▁"; training splits before each "▁" so that learned
    # pieces are (parts of) words with their leading "▁", like SentencePiece pieces.
    tok = Tokenizer(BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        min_frequency=1,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    trained = tok.get_vocab()
    merges = [tuple(m) for m in _merges(tok)]

    # Ids: specials, then the byte-fallback tokens (as in Gemma), then learned pieces.
    vocab: dict[str, int] = {}
    for t in SPECIAL_TOKENS + byte_tokens:
        vocab[t] = len(vocab)
    for t, _ in sorted(trained.items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=False, add_eos_token=False)


def _merges(tok: Any) -> list[list[str]]:
    import json

    model = json.loads(tok.to_str())["model"]
    return [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]


def tiny_paligemma_config(
    vocab_size: int,
    image_token_index: int,
    *,
    image_size: int = 32,
    patch_size: int = 4,
    hidden_size: int = 64,
    num_layers: int = 2,
    init_std: float = 0.02,
) -> Any:
    """A PaliGemmaConfig with the real structure (GQA, gated MLP, SigLIP) and tiny sizes."""
    from transformers import GemmaConfig, PaliGemmaConfig, SiglipVisionConfig

    vision = SiglipVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        vision_use_head=False,
        projection_dim=hidden_size,
        projector_hidden_act="gelu_fast",
    )
    text = GemmaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        # bitsandbytes' 4-bit CPU kernel needs in_features % 64 == 0 and out_features % 32 == 0
        # (true of real models): hidden 64 with 2 heads of 32 keeps the tiny model quantizable.
        num_attention_heads=2,
        num_key_value_heads=1,  # multi-query, as PaliGemma-3B
        head_dim=hidden_size // 2,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        initializer_range=init_std,
    )
    config = PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_index,
        vocab_size=vocab_size,
        projection_dim=hidden_size,
        hidden_size=hidden_size,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    # _init_weights reads the top-level config's range when it has one.
    config.initializer_range = init_std
    return config


def build_tiny_paligemma(
    out_dir: Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 4,
    hidden_size: int = 64,
    num_layers: int = 2,
    tokenizer_vocab_size: int = 400,
    init_std: float = 0.02,
) -> Path:
    """Write a tiny random PaliGemma checkpoint (model, tokenizer, processor) to ``out_dir``.

    Deterministic for a given ``seed``. Loads with ``AutoModelForImageTextToText`` and
    ``AutoProcessor``; ``attn_implementation="eager"`` works for attention maps. With the usual
    ``init_std`` of 0.02 the untrained model repeats one token (often a newline, so the decoded
    text is empty); ``init_std=1.0`` makes it emit varied gibberish, handy where a test wants
    visible text. Returns ``out_dir``.
    """
    import torch
    from transformers import (
        GenerationConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_gemma_tokenizer(tokenizer_vocab_size)
    num_image_tokens = (image_size // patch_size) ** 2
    image_processor = SiglipImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        resample=3,
    )
    image_processor.image_seq_length = num_image_tokens
    # The processor adds <image>, <loc0000>..<loc1023> and <seg000>..<seg127> to the tokenizer.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    image_token_id = processor.image_token_id
    vocab_size = len(processor.tokenizer)

    config = tiny_paligemma_config(
        vocab_size,
        image_token_id,
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        init_std=init_std,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PaliGemmaForConditionalGeneration(config)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=2, eos_token_id=1, pad_token_id=0, max_new_tokens=16, do_sample=False
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def paligemma_3b_config() -> Any:
    """google/paligemma-3b-mix-448 architecture (config.json written out; the hub is offline).

    SigLIP-So400m/14 at 448 px (1024 image tokens) + Gemma-2B decoder (18 layers, width 2048,
    multi-query attention, head dim 256), vocabulary 257216 with <image> at 257152.
    """
    from transformers import GemmaConfig, PaliGemmaConfig, SiglipVisionConfig

    vision = SiglipVisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        image_size=448,
        patch_size=14,
        vision_use_head=False,
        projection_dim=2048,
        projector_hidden_act="gelu_fast",
    )
    text = GemmaConfig(
        vocab_size=257216,
        hidden_size=2048,
        intermediate_size=16384,
        num_hidden_layers=18,
        num_attention_heads=8,
        num_key_value_heads=1,
        head_dim=256,
        hidden_act="gelu_pytorch_tanh",
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    return PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=257152,
        vocab_size=257216,
        projection_dim=2048,
        hidden_size=2048,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )


# A LLaVA-1.5-style chat template: what the chat-template path of tools.vision is tested with.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>{{ '\\n' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% if message['role'] == 'user' %}{{ '\\n' }}{% else %}<eos>{{ '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_tiny_llava(out_dir: Path, *, seed: int = 0, init_std: float = 0.02) -> Path:
    """A tiny random LLaVA (CLIP vision + Llama text) with a chat template: a non-PaliGemma VLM.

    Loads with ``AutoModelForImageTextToText`` / ``AutoProcessor``; prompts go through
    ``processor.apply_chat_template``.
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_gemma_tokenizer(400)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        initializer_range=init_std,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=processor.image_token_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    config.initializer_range = init_std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=2, eos_token_id=1, pad_token_id=0, max_new_tokens=16, do_sample=False
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
