"""Turn examples into model inputs, with the loss on the answer only.

PaliGemma: the prefix is ``<image>`` + prompt (the processor expands the image token and adds
``<bos>`` and the newline), the suffix is the answer + ``<eos>``. ``token_type_ids`` are 0 on the
prefix (attended bidirectionally, as PaliGemma was trained) and 1 on the suffix; labels are the
suffix tokens, -100 elsewhere.

Other VLMs: the conversation goes through the processor's chat template; labels start after the
rendered user turn (``add_generation_prompt=True``), so the loss is on the assistant turn only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from finetune.data import Example, open_image

IGNORE_INDEX = -100


def image_size(processor: Any) -> tuple[int, int] | None:
    """(width, height) the image processor resizes to, when it is a fixed size."""
    size = getattr(getattr(processor, "image_processor", None), "size", None) or {}
    if "height" in size and "width" in size:
        return int(size["width"]), int(size["height"])
    return None


@dataclass
class ExampleStore:
    """Examples by row number; images are decoded once and kept at the model's input size.

    Resizing once here instead of in every epoch's collation is where most of the CPU time of a
    small-model epoch goes; the processor's own resize of an image already at size is a no-op.
    """

    examples: list[Example]
    size: tuple[int, int] | None = None
    cache: bool = True
    _images: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.examples)

    def image(self, i: int) -> Any:
        # Keyed by image: the several questions about one image share one decoded copy.
        key = self.examples[i].image_id
        if key in self._images:
            return self._images[key]
        image = open_image(self.examples[i].image)
        if self.size is not None and image.size != self.size:
            from PIL import Image

            image = image.resize(self.size, Image.Resampling.BICUBIC)
        if self.cache:
            self._images[key] = image
        return image

    def to_dataset(self, rows: Any = None) -> Any:
        """A ``datasets.Dataset`` of row numbers (what ``Trainer`` iterates over).

        The empty ``image`` column tells TRL the data is multimodal (no text pre-tokenising).
        """
        import datasets

        rows = list(range(len(self.examples)) if rows is None else rows)
        return datasets.Dataset.from_dict({"row": rows, "image": [""] * len(rows)})


@dataclass
class PaliGemmaCollator:
    """Prefix/suffix batches for PaliGemma with ``token_type_ids`` and answer-only labels."""

    processor: Any
    store: ExampleStore
    max_length: int | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        idx = [r["row"] for r in rows]
        examples = [self.store.examples[i] for i in idx]
        kwargs: dict[str, Any] = {}
        if self.max_length:
            # The image tokens come first and must survive truncation.
            kwargs = {
                "truncation": True,
                "max_length": self.processor.image_seq_length + self.max_length,
            }
        batch = self.processor(
            images=[self.store.image(i) for i in idx],
            text=["<image>" + e.prompt for e in examples],
            suffix=[e.answer for e in examples],
            return_tensors="pt",
            padding="longest",
            padding_side="right",
            **kwargs,
        )
        labels = batch["input_ids"].clone()
        labels[(batch["token_type_ids"] == 0) | (batch["attention_mask"] == 0)] = IGNORE_INDEX
        batch["labels"] = labels
        return dict(batch)


def chat_messages(example: Example, with_answer: bool = True) -> list[dict[str, Any]]:
    question = example.question or example.prompt
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    ]
    if with_answer:
        messages.append(
            {"role": "assistant", "content": [{"type": "text", "text": example.answer}]}
        )
    return messages


@dataclass
class ChatTemplateCollator:
    """Batches for chat VLMs (Idefics, Qwen-VL, LLaVA...) with loss on the assistant turn."""

    processor: Any
    store: ExampleStore
    max_length: int | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        idx = [r["row"] for r in rows]
        examples = [self.store.examples[i] for i in idx]
        render = self.processor.apply_chat_template
        full = [render(chat_messages(e), tokenize=False) for e in examples]
        prompts = [
            render(chat_messages(e, False), tokenize=False, add_generation_prompt=True)
            for e in examples
        ]
        images = [[self.store.image(i)] for i in idx]
        kwargs = {"truncation": True, "max_length": self.max_length} if self.max_length else {}
        common = {"return_tensors": "pt", "padding": True, "padding_side": "right"}
        batch = self.processor(
            images=images, text=full, add_special_tokens=False, **common, **kwargs
        )
        # Each prompt alone, with its image, gives the tokens before the answer. Tokens can merge
        # across the boundary, so the answer starts where the two token sequences diverge.
        prompt_lengths = []
        for row, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
            ids = self.processor(images=[image], text=[prompt], add_special_tokens=False)
            prompt_ids = list(ids["input_ids"][0])
            full_ids = batch["input_ids"][row].tolist()
            n = 0
            while n < min(len(prompt_ids), len(full_ids)) and prompt_ids[n] == full_ids[n]:
                n += 1
            prompt_lengths.append(n)
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        for row, n in enumerate(prompt_lengths):
            labels[row, :n] = IGNORE_INDEX
        batch["labels"] = labels
        return dict(batch)


def make_collator(model_type: str, processor: Any, store: ExampleStore, max_length: int | None):
    """The PaliGemma collator for PaliGemma, the chat-template one for every other VLM."""
    if model_type == "paligemma":
        return PaliGemmaCollator(processor, store, max_length)
    if not getattr(processor, "chat_template", None):
        from litevlm.errors import ConfigError

        raise ConfigError(
            f"model type {model_type!r} has no chat template and is not PaliGemma",
            "use a PaliGemma or a chat VLM whose processor has a chat template",
        )
    return ChatTemplateCollator(processor, store, max_length)
