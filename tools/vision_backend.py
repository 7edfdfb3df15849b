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

import hashlib
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
    adapters: dict[str, str]  # adapter name -> where it comes from (a directory, a served name)

    def task_prompt(self, task: str, *, question: str = "") -> str: ...

    def generate(
        self, images: Sequence[Any], prompts: Sequence[str], **kw: Any
    ) -> list[VisionResult]: ...

    def load_adapter(self, path: str | Path, name: str | None = None) -> str: ...

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
    # Any change to [vision] (a fixed path, another adapter) is a new key: it is tried again.
    digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:12]
    return f"{config.backend}|{where}|{config.model}|{config.quantization}|{digest}"


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

    def clear(self, key: str | None = None) -> None:
        """Forget ``key`` (every backend when None): the next load tries again."""
        data = self._read()
        if key is None:
            self.path.unlink(missing_ok=True)
        elif data.pop(key, None) is not None:
            self.path.write_text(json.dumps(data))

    def entries(self) -> dict[str, str]:
        """Backend key -> why it could not load, for the entries still believed."""
        now = time.time()
        return {
            k: str(v.get("reason", ""))
            for k, v in self._read().items()
            if now - float(v.get("at", 0)) < self.ttl_s
        }


def memo_in(data_dir: Path) -> UnavailableMemo:
    """The memo every litevlm process on this data directory shares."""
    return UnavailableMemo(data_dir / "cache" / "vision_unavailable.json")


def _hub_cache_state(config: VisionConfig) -> str:
    """ "cached" / "absent" for a hub model's config.json, "" for a directory or a server.

    Part of the memo's key, so that a model downloaded since the failure is tried again at once.
    """
    model = config.model
    if config.backend != "local" or model.count("/") != 1 or model.startswith((".", "/", "~")):
        return ""
    if Path(model).expanduser().exists():
        return ""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "config.json", revision=config.revision)
    return "cached" if isinstance(found, str) else "absent"


def _not_in_cache(config: VisionConfig, state: str) -> ModelLoadError | None:
    """Offline and the hub model's config.json is not cached: known in milliseconds, before
    torch and transformers are imported (seconds) only to find out the same."""
    from litevlm.hub import offline

    if state != "absent" or not (offline() or config.local_files_only):
        return None  # online, VisionModel asks the hub (and fails fast when it cannot reach it)
    from tools.vision import _download_hint

    return ModelLoadError(
        f"{config.model}: weights are not in the local Hugging Face cache and the hub cannot "
        "be reached (offline)",
        _download_hint(config.model),
    )


def load_backend(config: VisionConfig, memo: UnavailableMemo | None = None) -> VisionBackend:
    """The configured backend; a remembered failure is raised again without retrying."""
    state = _hub_cache_state(config)
    key = backend_key(config) + (f"|{state}" if state else "")
    if memo is not None and (reason := memo.get(key)):
        raise ModelLoadError(f"{reason} (remembered from an earlier try; retried after "
                             f"{int(memo.ttl_s // 60)} minutes or `litevlm doctor`)")  # fmt: skip
    try:
        if config.backend == "openai":
            from tools.vision_openai import OpenAIVisionBackend

            return OpenAIVisionBackend(config)
        if (missing := _not_in_cache(config, state)) is not None:
            raise missing
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
        f"attention maps are not available from a server backend ({backend.model_id}): "
        "set [vision] backend = 'local' to compute them"
    )
