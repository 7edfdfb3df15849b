"""The agent's tools: what the chat model may call, how each runs, and how its output is cited.

``Toolbox`` owns the loaded things (vision models, retriever, decoded images) so that later
turns reuse them; the assistant keeps one per process. Each tool's output becomes plain JSON
in the thread's state, and ``sources_for`` / ``sentences_for`` turn it into numbered sources
and the cited sentences of the rule-based answer.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from litevlm.config import Settings
from litevlm.errors import ModelLoadError
from litevlm.types import LoadedImage, Measurement, SimilarCase, VisionResult

TOOLS = ("vision", "measure", "similar", "literature")

# OpenAI-format tool schemas for ``bind_tools``; the names are what the chat model calls.
TOOL_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "vision",
            "description": "Ask the vision-language model about an image. Without a question it "
            "describes the image.",
            "parameters": {
                "type": "object",
                "properties": {
                    "image": {"type": "string", "description": "image name; default: latest"},
                    "question": {"type": "string", "description": "question; omit to describe"},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "measure",
            "description": "Count and measure cells, nuclei, stained area or intensities in an "
            "image (scikit-image); returns counts, sizes, fractions and an overlay.",
            "parameters": {
                "type": "object",
                "properties": {"image": {"type": "string", "description": "image name"}},
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "similar_cases",
            "description": "Find annotated cases that look like an image.",
            "parameters": {
                "type": "object",
                "properties": {
                    "image": {"type": "string", "description": "image name"},
                    "k": {"type": "integer", "description": "how many cases"},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_literature",
            "description": "Search PubMed, arXiv, Wikipedia and the web for what is known.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "medical terms, no identifiers"}
                },
                "required": ["query"],
            },
        },
    },
]
SCHEMA_TO_TOOL = {
    "vision": "vision",
    "measure": "measure",
    "similar_cases": "similar",
    "search_literature": "literature",
}


def image_id(path: Path) -> str:
    """Content hash: stable across processes and renames."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def normalise(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


class Toolbox:
    """Loads tools on first use and keeps them for later turns (one per assistant)."""

    def __init__(self, settings: Settings, *, max_images: int = 16) -> None:
        self.settings = settings
        self._vision: dict[tuple[str, str], Any] = {}
        self._vision_errors: dict[tuple[str, str], str] = {}
        self._retriever: Any = None
        self._http: Any = None  # one HTTP client for the literature providers, reused
        self._down: dict[str, str] = {}  # literature providers that could not be reached
        self._images: OrderedDict[tuple[str, float, int], LoadedImage] = OrderedDict()
        self._max_images = max_images
        self._lock = threading.Lock()
        self._vision_lock = threading.Lock()

    # -- images ---------------------------------------------------------------------------
    def load(self, path: str | Path) -> LoadedImage:
        from tools.images import load_image

        p = Path(path)
        st = p.stat() if p.exists() else None
        key = (str(p.resolve()), st.st_mtime if st else 0.0, st.st_size if st else 0)
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        loaded = load_image(p, max_pixels=self.settings.measure.max_pixels)
        with self._lock:
            self._images[key] = loaded
            while len(self._images) > self._max_images:
                self._images.popitem(last=False)
        return loaded

    # -- vision ---------------------------------------------------------------------------
    def vision_model_id(self, model: str | None = None) -> str:
        return model or self.settings.vision.model

    def _vision_model(self, model: str | None, quantization: str | None) -> Any:
        key = (self.vision_model_id(model), quantization or self.settings.vision.quantization)
        with self._vision_lock:
            if key in self._vision_errors:
                raise ModelLoadError(self._vision_errors[key])
            if key not in self._vision:
                from tools.vision import VisionModel

                cfg = self.settings.vision.model_copy(
                    update={"model": key[0], "quantization": key[1]}
                )
                try:
                    self._vision[key] = VisionModel(cfg)
                except ModelLoadError as e:
                    self._vision_errors[key] = str(e)
                    raise
            return self._vision[key]

    def vision(
        self,
        loaded: LoadedImage,
        question: str | None,
        *,
        model: str | None = None,
        adapter: str | None = None,
        quantization: str | None = None,
    ) -> VisionResult:
        vm = self._vision_model(model, quantization)
        key = (self.vision_model_id(model), quantization or self.settings.vision.quantization)
        try:
            # One generation at a time per process: parallel tool nodes share the model.
            with self._vision_lock:
                if question:
                    return vm.answer(loaded.image, question, adapter=adapter)
                return vm.describe(loaded.image, adapter=adapter)
        except ModelLoadError as e:
            # Weights are loaded on first use: remember the failure so later turns skip it.
            self._vision_errors[key] = str(e)
            raise

    def heatmap(
        self,
        loaded: LoadedImage,
        question: str,
        path: Path,
        *,
        model: str | None = None,
        adapter: str | None = None,
        quantization: str | None = None,
    ) -> Path:
        """Where the vision model looked while answering ``question``, saved as an overlay."""
        from tools.explain import attention_map

        vm = self._vision_model(model, quantization)
        with self._vision_lock:
            amap = attention_map(vm, loaded.image, question, adapter=adapter)
        path.parent.mkdir(parents=True, exist_ok=True)
        return amap.save_overlay(path)

    # -- measure --------------------------------------------------------------------------
    def measure(self, loaded: LoadedImage, overlay_path: Path | None = None) -> Measurement:
        from tools.measure import measure

        if overlay_path is not None:
            overlay_path.parent.mkdir(parents=True, exist_ok=True)
        # The pixel size comes from the image's metadata or [measure] pixel_size_um.
        return measure(loaded, overlay_path=overlay_path, settings=self.settings.measure)

    # -- similar cases --------------------------------------------------------------------
    def similar(self, loaded: LoadedImage, text: str | None, k: int) -> list[SimilarCase]:
        from tools import retrieval

        with self._lock:
            if self._retriever is None:
                self._retriever = retrieval.Retriever(self.settings)
        return self._retriever.similar(image=loaded, text=text, k=k)

    # -- literature -----------------------------------------------------------------------
    def literature(
        self,
        query: str,
        *,
        sources: list[str] | None,
        max_results: int,
        identifiers: dict[str, str] | None = None,
    ) -> Any:
        """Search the providers; one that could not be reached is skipped for later turns of
        this process (a report over many images offline would otherwise wait on every turn)."""
        import httpx

        from tools.literature import search_literature

        wanted = list(sources if sources is not None else self.settings.literature.sources)
        with self._lock:
            down = {k: v for k, v in self._down.items() if k in wanted}
            if self._http is None:
                self._http = httpx.Client(timeout=self.settings.literature.timeout_s)
        result = search_literature(
            query,
            sources=[s for s in wanted if s not in down],
            max_results=max_results,
            settings=self.settings.literature,
            identifiers=identifiers,
            cache_dir=self.settings.data_dir / "cache",
            http_client=self._http,
        )
        for name, reason in result.unavailable.items():
            if "connection failed" in reason or "timed out" in reason:
                with self._lock:
                    self._down[name] = reason
        for name, reason in down.items():
            result.unavailable[name] = f"{reason} (earlier in this run; not retried)"
        return result

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._retriever is not None:
            self._retriever.close()
            self._retriever = None


# -- how each tool's output is cited -------------------------------------------------------


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


_SYNONYMS = {
    "large": {"area", "diameter"}, "big": {"area", "diameter"}, "size": {"area", "diameter"},
    "positive": {"dab", "positive"}, "stained": {"dab", "positive"}, "round": {"circularity"},
    "nuclei": {"nuclear"}, "nucleus": {"nuclear"},
}  # fmt: skip


def measurement_summary(out: dict[str, Any], limit: int = 5, question: str = "") -> str:
    """``count = 12, mean area = 30.5 um^2, ...`` from a Measurement dump.

    Quantities named in ``question`` ("what fraction is DAB positive") come first.
    """
    words = set(normalise(question).split())
    for word, also in _SYNONYMS.items():
        if word in words:
            words |= also
    entries: list[tuple[int, str]] = []
    for k, v in (out.get("summary") or {}).items():
        name = k.replace("_", " ")
        if k == "count":
            continue
        if isinstance(v, int | float) and not isinstance(v, bool):
            text = f"{name} = {_fmt(v)}"
        elif isinstance(v, dict) and isinstance(v.get("mean"), int | float):
            unit = f" {v['unit']}" if v.get("unit") else ""
            text = f"mean {name} = {_fmt(float(v['mean']))}{unit}"
        else:
            continue
        entries.append((-len(words & set(normalise(name).split())), text))
    entries.sort(key=lambda e: e[0])  # stable: ties keep the measurement's own order
    items = [f"count = {out['count']}"] if out.get("count") is not None else []
    items += [text for _, text in entries[: max(0, limit - len(items))]]
    return ", ".join(items)


def vision_label(out: dict[str, Any]) -> str:
    adapter = out.get("adapter") or "no adapter"
    return f"{out.get('model_id', 'vision model')} ({adapter})"


def sources_for(record: dict[str, Any], image_name: str | None) -> list[dict[str, Any]]:
    """Source dumps for one tool record (none when the tool failed)."""
    out = record.get("output")
    if record.get("error") or out is None:
        return []
    tool = record["tool"]
    where = f" of {image_name}" if image_name else ""
    if tool == "vision":
        q = record["args"].get("question")
        title = f"Vision model {vision_label(out)}: " + (f"answer to '{q}'" if q else "description")
        return [
            {
                "kind": "vision",
                "id": f"{record['key']}",
                "title": title + where,
                "snippet": out.get("text", ""),
            }
        ]
    if tool == "measure":
        title = f"Measurement ({out.get('kind')}, {out.get('units', 'px')}){where}"
        return [
            {
                "kind": "measurement",
                "id": record["key"],
                "title": title,
                "snippet": measurement_summary(out, limit=12),
                "url": None,
            }
        ]
    if tool == "similar":
        return [
            {
                "kind": "case",
                "id": str(c.get("id")),
                "title": c.get("caption") or str(c.get("id")),
                "snippet": f"similarity {c.get('score', 0):.3f}"
                + (f" ({c['embedder']})" if c.get("embedder") else "")
                + "; "
                + ", ".join(f"{k}: {v}" for k, v in (c.get("metadata") or {}).items() if v)[:300],
                "url": c.get("image_uri")
                if str(c.get("image_uri", "")).startswith("http")
                else None,
            }
            for c in out.get("cases", [])
        ]
    if tool == "literature":
        return [dict(s, n=None) for s in out.get("sources", [])]
    return []


def sentences_for(
    record: dict[str, Any],
    numbers: list[int],
    image_name: str | None,
    multi: bool,
    question: str = "",
) -> list[str]:
    """The rule-based answer's cited sentences for one tool record."""
    out = record.get("output") or {}
    tool = record["tool"]
    prefix = f"In {image_name}, " if multi and image_name else ""

    def cap(s: str) -> str:
        return s[:1].upper() + s[1:]

    if tool == "vision":
        text = " ".join(str(out.get("text", "")).split()).replace('"', "'") or "(no text)"
        q = record["args"].get("question")
        verb = f"answers “{q}” with" if q else "describes the image as"
        return [
            cap(f'{prefix}the vision model {vision_label(out)} {verb} "{text}" [{numbers[0]}].')
        ]
    if tool == "measure":
        summary = measurement_summary(out, question=question)
        line = f"{prefix}measurement ({out.get('kind')}) found {summary} [{numbers[0]}]."
        lines = [cap(line)]
        for w in out.get("warnings", [])[:2]:
            lines.append(f"The measurement warns: {w.rstrip('.')} [{numbers[0]}].")
        return lines
    if tool == "similar":
        cases = out.get("cases", [])
        lines = []
        for c, n in zip(cases, numbers, strict=False):
            caption = " ".join(str(c.get("caption") or c.get("id")).split()).replace('"', "'")
            lines.append(
                cap(
                    f"{prefix}a similar annotated case is {c.get('id')} (similarity "
                    f'{c.get("score", 0):.2f}): "{caption}" [{n}].'
                )
            )
        return lines
    if tool == "literature":
        # The query as sent, after identifiers were removed; never the user's raw wording.
        sent = out.get("query", "")
        lines = []
        for s, n in zip(out.get("sources", []), numbers, strict=False):
            who = ""
            if s.get("authors"):
                who = s["authors"][0] + (" et al." if len(s["authors"]) > 1 else "")
            meta = ", ".join(x for x in (who, str(s.get("year") or "")) if x)
            title = " ".join(str(s.get("title") or s.get("id")).split()).replace('"', "'")
            lines.append(
                f'The {s.get("kind")} source "{title}"'
                + (f" ({meta})" if meta else "")
                + f" was found for “{sent}” [{n}]."
            )
        return lines
    return []
