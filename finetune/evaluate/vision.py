"""Every call evaluation makes into a vision model, in one place.

A vision model here is a ``tools.vision_backend.VisionBackend``: the local Hugging Face model
(``tools.vision.VisionModel``) or an OpenAI-compatible server (``[vision] backend = "openai"``,
``tools.vision_openai``). Both take ready-made prompts through ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def load_vision_model(model: str, settings: Any = None, **overrides: Any) -> Any:
    """The configured vision backend for ``model``, the [vision] settings as defaults.

    On a server backend ``model`` names what is served; options only a local model has
    (``attn_implementation``, ``batch_size``) are ignored there.
    """
    from litevlm.config import load_settings
    from tools.vision_backend import load_backend

    settings = settings or load_settings()
    update = {"model": model, **overrides}
    if settings.vision.backend == "openai" and model != settings.vision.model:
        # --model names one of the server's models; [vision] model still says which family
        # it is (PaliGemma's task prefixes)
        update = {"served_model": model, **overrides}
    return load_backend(settings.vision.model_copy(update=update))


def adapter_name(vm: Any, adapter: str | None) -> str | None:
    """A loaded adapter's name; a directory or hub id is loaded on first use."""
    if adapter is None or adapter in vm.adapters:
        return adapter
    for name, path in vm.adapters.items():
        if path == adapter:
            return name
    return vm.load_adapter(adapter)


def prompt_for(vm: Any, question: str, template: str | None) -> str:
    """The text sent with the image: the template with {question} filled in, or the model's
    own task prompt (``answer en ...`` on PaliGemma; a caption prompt when there is no
    question)."""
    if template is not None:
        return template.replace("{question}", question.strip())
    return vm.task_prompt("answer", question=question) if question else vm.task_prompt("caption")


def answer_batch(
    vm: Any,
    images: Sequence[Any],
    questions: Sequence[str],
    *,
    adapter: str | None = None,
    prompt: str | None = None,
) -> list[Any]:
    """One result (``.text``, ``.tokens``) per image; an empty question asks for a caption."""
    prompts = [prompt_for(vm, q, prompt) for q in questions]
    return list(vm.generate(list(images), prompts, adapter=adapter))


def device_of(vm: Any) -> str:
    """Where generation runs: the local model's device, or "server" for a server backend."""
    if not vm.supports_attention and getattr(vm, "base_url", None):
        return "server"
    model = getattr(vm, "model", None)
    try:
        return str(next(model.parameters()).device.type)
    except (AttributeError, StopIteration, TypeError):
        return "cpu"
