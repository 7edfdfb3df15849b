"""The vision tool: a Hugging Face image-text-to-text model (PaliGemma by default) behind one class.

``VisionModel`` loads any checkpoint that ``AutoModelForImageTextToText`` knows (hub id or local
directory), optionally quantised with bitsandbytes (8-bit, or 4-bit NF4 with double
quantisation), with LoRA adapters from peft on top, several by name, switchable per call.
PaliGemma gets its task prefixes (``caption en``, ``describe en``, ``answer en <question>``,
``detect <objects>``, ``segment <objects>``); other VLMs get their chat template.

Every call returns a ``VisionResult`` (text, tokens, latency, tokens/s). ``model`` and
``processor`` are public: explanation code reads attentions from them, and ``inputs()`` builds
exactly the tensors that generation uses.

    vm = VisionModel(model="google/paligemma-3b-mix-448", quantization="4bit")
    vm.answer(load_image("cells.png"), "how many cells are there?").text
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from types import EllipsisType
from typing import Any

from pydantic import ValidationError

from litevlm.config import VisionConfig
from litevlm.errors import ConfigError, ModelLoadError
from litevlm.types import LoadedImage, VisionResult

# PaliGemma's task prefixes (big_vision's "mix" checkpoints understand all of them).
PALIGEMMA_TASKS = {
    "caption": "caption en",
    "describe": "describe en",
    "answer": "answer en {question}",
    "detect": "detect {objects}",
    "segment": "segment {objects}",
}

_LOC = re.compile(r"<loc(\d{4})><loc(\d{4})><loc(\d{4})><loc(\d{4})>\s*([^<;]*)")


def _download_hint(model_id: str) -> str:
    return (
        f"download it while online with `hf download {model_id}` "
        f"(older hubs: `huggingface-cli download {model_id}`), "
        "or point --model / [vision] model at a local directory"
    )


def _gated_hint(model_id: str) -> str:
    from huggingface_hub import get_token

    login = "log in with `hf auth login` (or `huggingface-cli login`) or set HF_TOKEN"
    if get_token():
        return (
            f"the Hugging Face token found here has no access yet: accept the licence at "
            f"https://huggingface.co/{model_id} with that account, or {login} as one that has"
        )
    return (
        f"no Hugging Face token found: accept the licence at https://huggingface.co/{model_id}, "
        f"then {login}"
    )


_OOM_HINT = (
    'CUDA ran out of memory: use quantization = "4bit" (or 8bit), a smaller checkpoint '
    '(e.g. a 224 px one instead of 448), a smaller batch_size, or device = "cpu"'
)


def _causes(e: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _is_oom(e: BaseException) -> bool:
    import torch

    return any(
        isinstance(c, torch.OutOfMemoryError) or "out of memory" in str(c).lower()
        for c in _causes(e)
    )


def load_error(model_id: str, e: BaseException) -> ModelLoadError:
    """Turn an exception from ``from_pretrained`` into a ``ModelLoadError`` that says what to do."""
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    chain = _causes(e)
    text = " ".join(str(c) for c in chain)
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if any(isinstance(c, GatedRepoError) for c in chain) or "gated repo" in text:
        return ModelLoadError(
            f"{model_id}: access to this gated model was refused", _gated_hint(model_id)
        )
    if _is_oom(e):
        return ModelLoadError(f"{model_id}: out of memory while loading", _OOM_HINT)
    if any(isinstance(c, (LocalEntryNotFoundError, OfflineModeIsEnabled)) for c in chain) or (
        "couldn't find them in the cached files" in text or "offline mode" in text.lower()
    ):
        return ModelLoadError(
            f"{model_id}: weights are not in the local Hugging Face cache and the hub cannot "
            "be reached (offline)",
            _download_hint(model_id),
        )
    if (
        any(isinstance(c, RepositoryNotFoundError) for c in chain)
        or "is not a local folder" in text
    ):
        return ModelLoadError(
            f"{model_id}: neither a local directory nor a model on the Hugging Face hub",
            "check the spelling, or log in (`hf auth login`) if it is a private repository",
        )
    if "does not appear to have a file named" in text or "no file named" in text:
        return ModelLoadError(
            f"{model_id}: incomplete checkpoint: {first_line}", _download_hint(model_id)
        )
    if "Unrecognized" in text or "not supported" in text.lower():
        return ModelLoadError(
            f"{model_id}: not an image-text-to-text checkpoint transformers can load: {first_line}",
            "use a vision-language model such as google/paligemma-3b-mix-448",
        )
    return ModelLoadError(f"{model_id}: could not load: {first_line}")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            'device = "cuda" but torch sees no CUDA GPU',
            'use device = "auto" or "cpu", or install a CUDA build of torch',
        )
    return device


def resolve_dtype(config: VisionConfig, device: str) -> Any:
    """The dtype of the unquantised parts: bf16 on GPU, fp32 on CPU unless asked otherwise."""
    import torch

    if config.dtype != "auto":
        return getattr(torch, config.dtype)
    if config.quantization == "8bit":
        return torch.float16  # bitsandbytes' int8 matmul computes in fp16 anyway
    if config.quantization == "4bit":
        return getattr(torch, config.bnb_4bit_compute_dtype)
    return torch.bfloat16 if device == "cuda" else torch.float32


def quantization_config(config: VisionConfig) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if config.quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise ModelLoadError(
            f"quantization = {config.quantization!r} needs bitsandbytes, which is not installed",
            'pip install bitsandbytes, or use quantization = "none"',
        ) from e
    if config.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=config.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=config.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=getattr(torch, config.bnb_4bit_compute_dtype),
    )


def copy_out_of_checkpoint(model: Any) -> None:
    """Copy the few unquantised tensors (norms, biases, position tables) out of the checkpoint.

    On CPU they are views of the memory-mapped safetensors file; while any one lives, the whole
    mapping stays and every page the loader read counts in the process's RSS (7.7 GiB for a
    1.9 GiB 4-bit PaliGemma-3B). Quantised weights are already copies.
    """
    for t in list(model.parameters()) + list(model.buffers()):
        if t.device.type == "cpu" and t.dtype.is_floating_point:
            t.data = t.data.clone()


def release_freed_memory() -> None:
    """Give memory freed while loading back to the OS.

    Quantising on load frees many mid-sized bf16 tensors; glibc keeps such freed heap memory in
    the process, where it counts as resident (0.31 GiB after a 4-bit PaliGemma-3B load on CPU,
    0.39 GiB more after its first call).
    """
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rgb(image: Any) -> Any:
    """PIL image (RGB) from a PIL image or a LoadedImage."""
    if isinstance(image, LoadedImage) or hasattr(image, "source_path"):
        image = image.image
    if not hasattr(image, "convert"):
        raise TypeError(f"expected a PIL image or LoadedImage, got {type(image).__name__}")
    return image if image.mode == "RGB" else image.convert("RGB")


def parse_detections(text: str, width: int, height: int) -> list[dict[str, Any]]:
    """Pixel boxes from PaliGemma ``detect`` output: ``<locY1><locX1><locY2><locX2> label``."""
    boxes = []
    for m in _LOC.finditer(text):
        y1, x1, y2, x2 = (int(v) / 1024 for v in m.groups()[:4])
        boxes.append(
            {
                "label": m.group(5).strip(),
                "box": [x1 * width, y1 * height, x2 * width, y2 * height],  # x0, y0, x1, y1
            }
        )
    return boxes


def with_overrides(
    config: VisionConfig,
    *,
    model: str | None = None,
    adapter: str | None = None,
    quantization: str | None = None,
    device: str | None = None,
    max_new_tokens: int | None = None,
) -> VisionConfig:
    """``config`` with command-line choices applied (validated).

    ``adapter`` may name a configured adapter or be a directory / hub id, which is added under
    its last path component and made the default.
    """
    data = config.model_dump()
    for key, value in {
        "model": model,
        "quantization": quantization,
        "device": device,
        "max_new_tokens": max_new_tokens,
    }.items():
        if value is not None:
            data[key] = value
    if adapter is not None:
        if adapter not in data["adapters"]:
            name = Path(adapter.rstrip("/")).name or "adapter"
            data["adapters"] = {**data["adapters"], name: adapter}
            adapter = name
        data["adapter"] = adapter
    return _validated(data)


def _validated(data: dict[str, Any]) -> VisionConfig:
    try:
        return VisionConfig.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"[vision] {key} = {first.get('input')!r} is not allowed: {first['msg']}"
        ) from None


def _strip_adapter_layers(model: Any) -> Any:
    """Undo a half-finished peft injection: put the original layers back, drop peft's config.

    ``PeftModel.from_pretrained`` replaces layers in the base model before it loads weights, so
    a failed load would otherwise leave random adapter layers in the model.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer) and name:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    if "peft_config" in vars(model):
        del model.peft_config
    return model


class VisionModel:
    """One loaded VLM (+ adapters). Build from a ``VisionConfig`` and/or keyword overrides.

    ``adapter=`` on each call picks a loaded adapter by name; ``None`` runs the base model;
    leaving it out uses ``config.adapter`` (``None`` unless configured).
    """

    supports_attention = True  # tools.explain reads attentions from .model

    def __init__(
        self,
        config: VisionConfig | None = None,
        *,
        token: str | None = None,
        cache_dir: str | Path | None = None,
        **overrides: Any,
    ) -> None:
        base = config or VisionConfig()
        self.config = _validated({**base.model_dump(), **overrides})
        self.model_id = self.config.model
        self.device = resolve_device(self.config.device)
        self.dtype = resolve_dtype(self.config, self.device)
        self.adapters: dict[str, str] = {}
        self._token = token
        self._cache_dir = str(cache_dir) if cache_dir else None
        self._source = self.model_id  # hub id, or the expanded local directory

        t0 = time.perf_counter()
        self._check_local_path()
        if not self.config.local_files_only:
            from litevlm.hub import fail_fast_if_unreachable

            hint = _download_hint(self.model_id)
            fail_fast_if_unreachable(self._source, "config.json", hint, cache_dir=self._cache_dir)
        self.processor = self._load_processor()
        self.model = self._load_model()
        # bitsandbytes repacks quantised weights for its CPU kernel when first used, freeing the
        # old layout: hand that memory back after the first call.
        self._trim_after_call = self.device == "cpu" and self.config.quantization != "none"
        for name, path in self.config.adapters.items():
            self.load_adapter(path, name)
        if self.config.adapter is not None and self.config.adapter not in self.adapters:
            raise ModelLoadError(
                f"[vision] adapter = {self.config.adapter!r} is not one of the configured "
                f"adapters {sorted(self.adapters)}",
                "add it under [vision.adapters] or unset [vision] adapter",
            )
        self.load_seconds = time.perf_counter() - t0

    # ---------------------------------------------------------------- loading

    def _check_local_path(self) -> None:
        """Local paths get a plain "not found" instead of the hub's repo-id syntax errors."""
        import json

        p = Path(self.model_id).expanduser()
        if p.is_dir():
            self._source = str(p)
            adapter_cfg = p / "adapter_config.json"
            if adapter_cfg.is_file() and not (p / "config.json").is_file():
                base = json.loads(adapter_cfg.read_text()).get("base_model_name_or_path")
                raise ModelLoadError(
                    f"{p} is a LoRA/peft adapter, not a full model",
                    f"use --model {base or '<its base model>'} --adapter {p}",
                )
            return
        if p.exists() or self.model_id.startswith((".", "/", "~")) or self.model_id.count("/") > 1:
            raise ModelLoadError(
                f"{self.model_id}: no such model directory",
                "check the path, or give a hub id such as google/paligemma-3b-mix-448",
            )

    def _hub_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"revision": self.config.revision, "cache_dir": self._cache_dir}
        if self._token:
            kw["token"] = self._token
        if self.config.local_files_only:
            kw["local_files_only"] = True
        return kw

    def _load_processor(self) -> Any:
        from transformers import AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(self._source, **self._hub_kwargs())
        except Exception as e:
            raise load_error(self.model_id, e) from e
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is not None:
            # Decoder-only generation needs the prompt flush against the new tokens.
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
        return processor

    def _load_model(self) -> Any:
        import torch
        from transformers import AutoModelForImageTextToText

        kwargs: dict[str, Any] = {"dtype": self.dtype, **self._hub_kwargs()}
        quant = quantization_config(self.config)
        if quant is not None:
            kwargs["quantization_config"] = quant
        # Weights go straight to the GPU; bitsandbytes needs a device map on CPU too. A plain
        # CPU model gets none, so that peft does not re-dispatch it when an adapter loads.
        if self.device == "cuda":
            kwargs["device_map"] = {"": 0}
        elif quant is not None:
            kwargs["device_map"] = {"": "cpu"}
        if self.config.attn_implementation:
            kwargs["attn_implementation"] = self.config.attn_implementation
        try:
            model = AutoModelForImageTextToText.from_pretrained(self._source, **kwargs)
            if "device_map" not in kwargs:
                model = model.to(self.device)
        except Exception as e:
            raise load_error(self.model_id, e) from e
        if self.config.quantization == "4bit" and self.config.bnb_4bit_embeddings:
            from tools.quantization import quantize_embeddings_4bit

            quantize_embeddings_4bit(
                model,
                self.config.bnb_4bit_quant_type,
                getattr(torch, self.config.bnb_4bit_compute_dtype),
            )
        if quant is not None and self.device == "cpu":
            copy_out_of_checkpoint(model)
        release_freed_memory()
        model.eval()
        return model

    @property
    def is_paligemma(self) -> bool:
        return getattr(self.base_model.config, "model_type", "") == "paligemma"

    @property
    def base_model(self) -> Any:
        """The transformers model without peft's wrapper."""
        get = getattr(self.model, "get_base_model", None)
        return get() if get is not None else self.model

    def load_adapter(self, path: str | Path, name: str | None = None) -> str:
        """Load a peft adapter (directory or hub id) under ``name``; return the name."""
        from peft import PeftModel

        name = name or Path(str(path)).name
        if name in self.adapters:
            raise ModelLoadError(f"adapter name {name!r} is already loaded", "pick another name")
        local = Path(str(path)).expanduser()
        if (local.exists() or str(path).startswith((".", "/", "~"))) and not (
            local / "adapter_config.json"
        ).is_file():
            raise ModelLoadError(
                f"adapter {name!r}: {local} has no adapter_config.json",
                "point at a directory saved by peft's save_pretrained (litevlm finetune output)",
            )
        first = not self.adapters
        try:
            if first:
                self.model = PeftModel.from_pretrained(
                    self.model, str(path), adapter_name=name, is_trainable=False
                )
                result = None
            else:
                result = self.model.load_adapter(str(path), adapter_name=name)
        except Exception as e:
            if first:
                _strip_adapter_layers(self.model)
            else:
                self._forget_adapter(name)
            raise self._adapter_error(name, path, e) from e
        missing = list(getattr(result, "missing_keys", []) or [])
        unexpected = [k for k in getattr(result, "unexpected_keys", []) or [] if name in k]
        if missing or unexpected:
            if first:
                self.model = _strip_adapter_layers(self.model.get_base_model())
            else:
                self._forget_adapter(name)
            raise ModelLoadError(
                f"adapter {name!r} ({path}) does not fit {self.model_id}: "
                f"{len(missing)} weights missing, {len(unexpected)} unexpected",
                "load it on the base model it was trained from",
            )
        self.model.eval()
        self.adapters[name] = str(path)
        return name

    def _forget_adapter(self, name: str) -> None:
        if name in getattr(self.model, "peft_config", {}):
            self.model.delete_adapter(name)

    def _adapter_error(self, name: str, path: str | Path, e: BaseException) -> ModelLoadError:
        text = " ".join(str(c) for c in _causes(e))
        if any(k in text for k in ("LMHead4bit", "Embedding4bit", ".table.codes")):
            return ModelLoadError(
                f"adapter {name!r} ({path}) trains the token embedding or LM head, which "
                "4-bit loading has quantised",
                "set [vision] bnb_4bit_embeddings = false (or LITEVLM_VISION__BNB_4BIT_EMBEDDINGS"
                "=false) to keep them unquantised for this adapter",
            )
        if "size mismatch" in text or "Target modules" in text or "not found in the base" in text:
            why = "its layer shapes or target modules do not match"
        elif isinstance(e, (OSError, ValueError)) and "adapter_config" in text:
            return ModelLoadError(
                f"adapter {name!r}: cannot read {path}: {str(e).splitlines()[0]}",
                "check the path; adapters are directories saved by peft",
            )
        else:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return ModelLoadError(
            f"adapter {name!r} ({path}) does not fit {self.model_id}: {why}",
            "load it on the base model it was trained from",
        )

    # ---------------------------------------------------------------- prompting

    def task_prompt(self, task: str, *, question: str = "", objects: str = "") -> str:
        """The text prompt for a task: PaliGemma prefixes, or plain words for chat VLMs."""
        if self.is_paligemma:
            if task not in PALIGEMMA_TASKS:
                raise ValueError(f"unknown task {task!r}; one of {sorted(PALIGEMMA_TASKS)}")
            return PALIGEMMA_TASKS[task].format(question=question.strip(), objects=objects.strip())
        plain = {
            "caption": "Write a short caption for this image.",
            "describe": "Describe this image in detail.",
            "answer": question.strip(),
            "detect": f"Locate: {objects.strip()}",
            "segment": f"Segment: {objects.strip()}",
        }
        return plain[task]

    def _model_text(self, prompt: str) -> str:
        """What the processor receives for one image and one prompt."""
        if self.is_paligemma:
            # The processor expands <image> and inserts <bos> after it, then appends "\n".
            return "<image>" + prompt
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
        ]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def inputs(self, images: Sequence[Any], prompts: Sequence[str]) -> Any:
        """Batched, left-padded model inputs on the model's device (what generate receives)."""
        texts = [self._model_text(p) for p in prompts]
        batch = self.processor(
            images=[_rgb(i) for i in images], text=texts, return_tensors="pt", padding="longest"
        )
        batch.pop("labels", None)
        if not self.is_paligemma:
            batch.pop("token_type_ids", None)
        return batch.to(self._input_device(), dtype=self.dtype)

    def _input_device(self) -> Any:
        import torch

        try:
            return next(self.base_model.parameters()).device
        except StopIteration:
            return torch.device(self.device)

    # ---------------------------------------------------------------- generation

    def _generation_kwargs(self, **kw: Any) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {
            "max_new_tokens": kw.get("max_new_tokens") or c.max_new_tokens,
            "num_beams": kw.get("num_beams") or c.num_beams,
        }
        do_sample = kw.get("do_sample")
        out["do_sample"] = c.do_sample if do_sample is None else do_sample
        if out["do_sample"]:
            out["temperature"] = kw.get("temperature") or c.temperature
            out["top_p"] = kw.get("top_p") or c.top_p
        else:
            out["temperature"] = None  # silence "temperature is set but do_sample=False"
            out["top_p"] = None
            out["top_k"] = None
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None and tok.pad_token_id is not None:
            out["pad_token_id"] = tok.pad_token_id
        return out

    def _adapter_context(self, adapter: str | EllipsisType | None) -> tuple[str | None, Any]:
        import contextlib

        name = self.config.adapter if adapter is ... else adapter
        if name is None:
            if self.adapters:
                return None, self.model.disable_adapter()
            return None, contextlib.nullcontext()
        if name not in self.adapters:
            raise ModelLoadError(
                f"adapter {name!r} is not loaded; loaded: {sorted(self.adapters) or 'none'}",
                "add it under [vision.adapters] or pass --adapter with a directory",
            )
        self.model.set_adapter(name)
        return name, contextlib.nullcontext()

    def generate(
        self,
        images: Sequence[Any],
        prompts: Sequence[str],
        *,
        adapter: str | EllipsisType | None = ...,
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
    ) -> list[VisionResult]:
        """Run prompts (task text, e.g. ``answer en ...``) on images in batches of ``batch_size``.

        In a batch every result reports the batch's wall time as ``latency_s`` (what each caller
        waited) and its own tokens over that time as ``tokens_per_s``.
        """
        import torch

        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        gen = self._generation_kwargs(
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
        )
        name, ctx = self._adapter_context(adapter)
        results: list[VisionResult] = []
        bs = self.config.batch_size
        with ctx:
            for start in range(0, len(images), bs):
                chunk_imgs, chunk_prompts = images[start : start + bs], prompts[start : start + bs]
                t0 = time.perf_counter()
                batch = self.inputs(chunk_imgs, chunk_prompts)
                try:
                    with torch.inference_mode():
                        out = self.model.generate(**batch, **gen)
                except Exception as e:
                    if _is_oom(e):
                        raise ModelLoadError(
                            f"{self.model_id}: out of memory while generating "
                            f"(batch of {len(chunk_imgs)})",
                            _OOM_HINT,
                        ) from e
                    raise
                new = out[:, batch["input_ids"].shape[1] :]
                texts = self.processor.batch_decode(new, skip_special_tokens=True)
                dt = time.perf_counter() - t0
                for prompt, text, ids in zip(chunk_prompts, texts, new, strict=True):
                    n = self._count_tokens(ids)
                    results.append(
                        VisionResult(
                            text=text.strip(),
                            model_id=self.model_id,
                            adapter=name,
                            prompt=prompt,
                            tokens=n,
                            latency_s=dt,
                            tokens_per_s=n / dt if dt > 0 else 0.0,
                        )
                    )
        if self._trim_after_call:
            release_freed_memory()
            self._trim_after_call = False
        return results

    def _count_tokens(self, ids: Any) -> int:
        """Generated tokens up to (not including) end-of-sequence or padding."""
        stop = set()
        tok = getattr(self.processor, "tokenizer", None)
        for t in (getattr(tok, "eos_token_id", None), getattr(tok, "pad_token_id", None)):
            if t is not None:
                stop.add(int(t))
        eos = self.base_model.generation_config.eos_token_id
        stop.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        n = 0
        for t in ids.tolist():
            if t in stop:
                break
            n += 1
        return n

    def run(self, image: Any, prompt: str, **kw: Any) -> VisionResult:
        """One image, one ready-made prompt (e.g. ``"detect nucleus"``)."""
        return self.generate([image], [prompt], **kw)[0]

    def describe(self, image: Any, *, task: str = "describe", **kw: Any) -> VisionResult:
        """Describe (or with ``task="caption"``, caption) one image."""
        return self.run(image, self.task_prompt(task), **kw)

    def answer(self, image: Any, question: str, **kw: Any) -> VisionResult:
        """Answer a question about one image."""
        return self.run(image, self.task_prompt("answer", question=question), **kw)

    def detect(self, image: Any, objects: str, **kw: Any) -> VisionResult:
        """PaliGemma detection; parse boxes from ``.text`` with ``parse_detections``."""
        return self.run(image, self.task_prompt("detect", objects=objects), **kw)

    def describe_batch(
        self, images: Sequence[Any], *, task: str = "describe", **kw: Any
    ) -> list[VisionResult]:
        return self.generate(images, [self.task_prompt(task)] * len(images), **kw)

    def answer_batch(
        self, images: Sequence[Any], questions: Sequence[str] | str, **kw: Any
    ) -> list[VisionResult]:
        """Answer one question per image (or the same question for all)."""
        qs = [questions] * len(images) if isinstance(questions, str) else list(questions)
        return self.generate(images, [self.task_prompt("answer", question=q) for q in qs], **kw)
