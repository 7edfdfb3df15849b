"""Every call evaluation makes into a vision model, in one place.

A vision model here is a ``tools.vision.VisionModel`` (or anything with ``generate(images,
prompts, adapter=...)``, or the older ``answer``/``describe`` methods). Swapping the vision
backend means changing this module only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def load_vision_model(model: str, settings: Any = None, **overrides: Any) -> Any:
    """A ``tools.vision.VisionModel`` for ``model`` with the [vision] settings as defaults."""
    from litevlm.config import load_settings
    from tools.vision import VisionModel

    settings = settings or load_settings()
    cfg = settings.vision.model_copy(update={"model": model, **overrides})
    return VisionModel(cfg)


def adapter_name(vm: Any, adapter: str | None) -> str | None:
    """A loaded adapter's name; a directory or hub id is loaded on first use."""
    if adapter is None or adapter in getattr(vm, "adapters", {}):
        return adapter
    for name, path in getattr(vm, "adapters", {}).items():
        if path == adapter:
            return name
    return vm.load_adapter(adapter)


def prompt_for(vm: Any, question: str, template: str | None) -> str:
    """The text sent with the image: the template with {question} filled in, or the model's
    own task prompt (``answer en ...`` on PaliGemma; a caption prompt when there is no
    question)."""
    if template is not None:
        return template.replace("{question}", question.strip())
    task_prompt = getattr(vm, "task_prompt", None)
    if not callable(task_prompt):
        return question
    return task_prompt("answer", question=question) if question else task_prompt("caption")


def answer_batch(
    vm: Any,
    images: Sequence[Any],
    questions: Sequence[str],
    *,
    adapter: str | None = None,
    prompt: str | None = None,
) -> list[Any]:
    """One result (``.text``, ``.tokens``) per image; an empty question asks for a caption."""
    if hasattr(vm, "generate") and hasattr(vm, "task_prompt"):
        prompts = [prompt_for(vm, q, prompt) for q in questions]
        return list(vm.generate(list(images), prompts, adapter=adapter))
    if prompt is not None:
        raise ValueError(f"{type(vm).__name__} cannot take a prompt template")
    return [
        vm.answer(im, q, adapter=adapter) if q else vm.describe(im, task="caption", adapter=adapter)
        for im, q in zip(images, questions, strict=True)
    ]


def device_of(vm: Any) -> str:
    model = getattr(vm, "model", None)
    try:
        return str(next(model.parameters()).device.type)
    except (AttributeError, StopIteration, TypeError):
        return "cpu"
