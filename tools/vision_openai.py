"""A vision model behind an OpenAI-compatible server (vLLM, TGI, ``transformers serve``).

Requests are chat completions with the image as an ``image_url`` data URL, the way these
servers take images. A LoRA adapter is chosen by its served name (vLLM serves each adapter
given to ``--lora-modules name=path`` as a model of that name): ``[vision] adapters`` maps our
adapter names to served names, and an adapter without an entry is asked for by its own name.
PaliGemma gets its task prefixes (``describe en``, ``answer en <question>``), other models
plain words. Timeouts, retries with exponential backoff on 429 and 5xx (``Retry-After``
honoured), and at most ``concurrency`` requests in flight for batches.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import EllipsisType
from typing import Any

from litevlm.config import VisionConfig
from litevlm.errors import ModelLoadError, ServiceUnavailable
from litevlm.types import VisionResult

RETRY_STATUS = {429, 500, 502, 503, 504}


def image_url(image: Any) -> str:
    """A PNG data URL of a PIL image (or a LoadedImage)."""
    pil = getattr(image, "image", image)
    buf = io.BytesIO()
    pil.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIVisionBackend:
    """``VisionBackend`` over HTTP. ``model_id`` is the served model's name."""

    supports_attention = False

    def __init__(self, config: VisionConfig, *, client: Any = None) -> None:
        import httpx

        if not config.base_url:
            raise ModelLoadError(
                "[vision] backend = 'openai' needs base_url",
                "set [vision] base_url to the server's /v1 URL (vLLM, TGI, transformers serve)",
            )
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.model_id = config.served_model or config.model
        # Our adapter name -> the server's name for it (vLLM: --lora-modules NAME=PATH).
        self.adapters: dict[str, str] = dict(config.adapters)
        key = os.environ.get(config.api_key_env or "", "") or "not-needed"
        self._http = client or httpx.Client(
            timeout=httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s)),
            headers={"Authorization": f"Bearer {key}"},
        )
        self._check()

    def _check(self) -> None:
        """Fail at load, not at the first answer, when the server is not there."""
        import httpx

        try:
            r = self._http.get(f"{self.base_url}/models")
        except httpx.HTTPError as e:
            raise ModelLoadError(
                f"vision server {self.base_url} is not reachable ({type(e).__name__})",
                "start it (e.g. vllm serve google/paligemma-3b-mix-448) or fix [vision] base_url",
            ) from e
        if r.status_code in (401, 403):
            raise ModelLoadError(
                f"vision server {self.base_url} refused the API key (HTTP {r.status_code})",
                f"set {self.config.api_key_env} to the server's key",
            )

    @property
    def is_paligemma(self) -> bool:
        # [vision] model names what is served (a hub id), served_model the server's name for it
        return "paligemma" in f"{self.config.model} {self.model_id}".lower()

    def task_prompt(self, task: str, *, question: str = "") -> str:
        from tools.vision import PALIGEMMA_TASKS

        if self.is_paligemma:
            return PALIGEMMA_TASKS[task].format(question=question.strip(), objects="")
        plain = {
            "caption": "Write a short caption for this image.",
            "describe": "Describe this image in detail.",
            "answer": question.strip(),
        }
        return plain[task]

    def _served(self, adapter: str | None) -> str:
        if not adapter:
            return self.model_id
        return self.adapters.get(adapter, adapter)

    def load_adapter(self, path: str | Path, name: str | None = None) -> str:
        """A served adapter by name; a directory cannot be sent, the server must load it."""
        if Path(path).expanduser().exists():
            raise ModelLoadError(
                f"{path}: a server backend cannot load an adapter directory",
                f"serve it (vllm serve ... --enable-lora --lora-modules NAME={path}) and pass "
                "--adapter NAME, or set [vision] backend = 'local'",
            )
        name = name or str(path)
        self.adapters.setdefault(name, str(path))
        return name

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        delay = 0.5
        for attempt in range(self.config.max_retries + 1):
            try:
                r = self._http.post(f"{self.base_url}/chat/completions", json=body)
            except httpx.TimeoutException as e:
                last = f"timed out after {self.config.timeout_s:g} s"
                err: Exception = e
            except httpx.HTTPError as e:
                last, err = f"connection failed ({type(e).__name__})", e
            else:
                if r.status_code < 400:
                    return r.json()
                last, err = f"HTTP {r.status_code}: {r.text[:200]}", RuntimeError(r.text[:200])
                if r.status_code not in RETRY_STATUS:
                    break
                retry_after = r.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    delay = max(delay, min(float(retry_after), 30.0))
            if attempt < self.config.max_retries:
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise ServiceUnavailable(
            f"vision server {self.base_url}: {last}", "check the server's log and [vision] base_url"
        ) from err

    def run(
        self, image: Any, prompt: str, *, adapter: str | EllipsisType | None = ..., **kw: Any
    ) -> VisionResult:
        if adapter is ...:  # left out: the configured one, as VisionModel does
            adapter = self.config.adapter
        body = {
            "model": self._served(adapter),
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": image_url(image)}},
                        {"type": "text", "text": prompt},
                    ],
                }
            ],
            "max_tokens": int(kw.get("max_new_tokens") or self.config.max_new_tokens),
            "temperature": self.config.temperature if self.config.do_sample else 0.0,
        }
        t0 = time.perf_counter()
        data = self._post(body)
        dt = time.perf_counter() - t0
        text = (data.get("choices") or [{}])[0].get("message", {}).get("content") or ""
        tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
        return VisionResult(
            text=text.strip(), model_id=self.model_id, adapter=adapter, prompt=prompt,
            tokens=tokens, latency_s=dt, tokens_per_s=tokens / dt if dt > 0 else 0.0,
        )  # fmt: skip

    def describe(self, image: Any, *, task: str = "describe", **kw: Any) -> VisionResult:
        return self.run(image, self.task_prompt(task), **kw)

    def answer(self, image: Any, question: str, **kw: Any) -> VisionResult:
        return self.run(image, self.task_prompt("answer", question=question), **kw)

    def _many(self, images: Sequence[Any], prompts: list[str], **kw: Any) -> list[VisionResult]:
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            return list(
                pool.map(lambda ip: self.run(ip[0], ip[1], **kw), zip(images, prompts, strict=True))
            )

    def generate(
        self, images: Sequence[Any], prompts: Sequence[str], **kw: Any
    ) -> list[VisionResult]:
        """Ready-made prompts, one per image, ``concurrency`` requests in flight."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        return self._many(images, list(prompts), **kw)

    def describe_batch(
        self, images: Sequence[Any], *, task: str = "describe", **kw: Any
    ) -> list[VisionResult]:
        return self._many(images, [self.task_prompt(task)] * len(images), **kw)

    def answer_batch(
        self, images: Sequence[Any], questions: Sequence[str] | str, **kw: Any
    ) -> list[VisionResult]:
        qs = [questions] * len(images) if isinstance(questions, str) else list(questions)
        return self._many(images, [self.task_prompt("answer", question=q) for q in qs], **kw)

    def close(self) -> None:
        self._http.close()
