"""What the agent, evaluation and explanation need from a vision model, wherever it runs.

Two backends satisfy ``VisionBackend``: ``tools.vision.VisionModel`` (a Hugging Face model in
this process, the default) and ``tools.vision_openai.OpenAIVisionBackend`` (an
OpenAI-compatible server: vLLM, TGI or ``transformers serve``, ``[vision] backend = "openai"``).
Only the local one can show attention maps: ``supports_attention`` says which.

A backend that cannot load (no weights offline, server down) is found out once and remembered
for a short time in the data directory, so the next ``litevlm ask`` says so at once instead of
trying again (``UnavailableMemo``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from litevlm.config import VisionConfig
from litevlm.errors import ModelLoadError
from litevlm.types import VisionResult

MEMO_TTL_S = 600.0  # how long "the model could not be loaded" is believed without retrying


@runtime_checkable
class VisionBackend(Protocol):
    model_id: str
    supports_attention: bool

    def describe(self, image: Any, *, task: str = "describe", **kw: Any) -> VisionResult: ...

    def answer(self, image: Any, question: str, **kw: Any) -> VisionResult: ...

    def describe_batch(
        self, images: Sequence[Any], *, task: str = "describe", **kw: Any
    ) -> list[VisionResult]: ...

    def answer_batch(
        self, images: Sequence[Any], questions: Sequence[str] | str, **kw: Any
    ) -> list[VisionResult]: ...


def backend_key(config: VisionConfig) -> str:
    where = config.base_url if config.backend == "openai" else "local"
    return f"{config.backend}|{where}|{config.model}|{config.quantization}"


class UnavailableMemo:
    """Remembers, in a small JSON file, which backends failed to load and why, for ``ttl_s``."""

    def __init__(self, path: Path, ttl_s: float = MEMO_TTL_S) -> None:
        self.path = path
        self.ttl_s = ttl_s

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> str | None:
        entry = self._read().get(key)
        if entry and time.time() - float(entry.get("at", 0)) < self.ttl_s:
            return str(entry.get("reason", ""))
        return None

    def put(self, key: str, reason: str) -> None:
        data = {k: v for k, v in self._read().items() if time.time() - v.get("at", 0) < self.ttl_s}
        data[key] = {"reason": reason, "at": time.time()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)  # atomic: concurrent processes never read half a file

    def clear(self, key: str) -> None:
        data = self._read()
        if data.pop(key, None) is not None:
            self.path.write_text(json.dumps(data))


def load_backend(config: VisionConfig, memo: UnavailableMemo | None = None) -> VisionBackend:
    """The configured backend; a remembered failure is raised again without retrying."""
    key = backend_key(config)
    if memo is not None and (reason := memo.get(key)):
        raise ModelLoadError(f"{reason} (remembered from an earlier try; retried after "
                             f"{int(memo.ttl_s // 60)} minutes or `litevlm doctor`)")  # fmt: skip
    try:
        if config.backend == "openai":
            from tools.vision_openai import OpenAIVisionBackend

            return OpenAIVisionBackend(config)
        from tools.vision import VisionModel

        return VisionModel(config)
    except ModelLoadError as e:
        if memo is not None:
            memo.put(key, str(e))
        raise


def attention_unavailable(backend: Any) -> str | None:
    """Why attention maps cannot come from ``backend`` (None when they can)."""
    if getattr(backend, "supports_attention", True):
        return None
    return (
        f"attention maps are not available from a server backend ({backend.model_id}); "
        "set [vision] backend = 'local' to compute them"
    )
