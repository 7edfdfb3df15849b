"""``Toolbox``: the loaded things behind the agent's tools, kept for the life of the process.

It owns the vision models, the retriever, the HTTP client and decoded images so that later
turns reuse them; the assistant keeps one per process. What each tool *is* to the agent (its
schema, cache key, facts, sentences) lives in that tool's module beside this one.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from litevlm.config import Settings
from litevlm.errors import LiteVLMError, ModelLoadError
from litevlm.types import Fact, LoadedImage, Measurement, SimilarCase, VisionResult

HASH_WHOLE_BYTES = 512 << 20  # larger files (slides) hash their size, head and tail


def image_id(path: Path) -> str:
    """Content hash: stable across processes and renames. A DICOM WSI folder hashes its
    files; a multi-GB slide its size, first and last 16 MiB (hashing it all each turn would
    take seconds per GB, and scanners write a unique header)."""
    p = Path(path)
    h = hashlib.sha256()
    for f in sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            if size > HASH_WHOLE_BYTES:
                h.update(str(size).encode() + fh.read(16 << 20))
                fh.seek(size - (16 << 20))
                h.update(fh.read())
            else:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
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
        self._router: Any = None
        self._evidence: Any = None
        # Slide measurements by (slide, region, settings): the measure and vision tools run in
        # parallel on the same slide and need the same tile-by-tile result; it is made once.
        self._slide_measures: OrderedDict[tuple, Any] = OrderedDict()
        self._slide_locks: dict[tuple, threading.Lock] = {}

    # -- routing --------------------------------------------------------------------------
    @property
    def router(self) -> Any:
        """The question router (``agent.routing.Router``), its text model loaded once."""
        with self._lock:
            if self._router is None:
                from agent.routing import Router

                self._router = Router(
                    semantic=self.settings.agent.routing == "semantic",
                    cache_dir=self.settings.data_dir / "cache",
                )
            return self._router

    @property
    def evidence(self) -> Any:
        """The evidence ranker (``tools.literature.evidence``), sharing the router's text model."""
        from tools.literature.evidence import EvidenceRanker

        semantic = self.settings.agent.routing == "semantic"
        embedder = self.router.text_embedder() if semantic else None  # one MiniLM per process
        with self._lock:
            if self._evidence is None:
                self._evidence = EvidenceRanker(embedder, semantic=semantic)
            return self._evidence

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
        """The configured ``VisionBackend`` (local model or server), loaded once per process;
        a backend that could not load is remembered across processes for a few minutes."""
        key = (self.vision_model_id(model), quantization or self.settings.vision.quantization)
        with self._vision_lock:
            if key in self._vision_errors:
                raise ModelLoadError(self._vision_errors[key])
            if key not in self._vision:
                from tools.vision_backend import load_backend, memo_in

                cfg = self.settings.vision.model_copy(
                    update={"model": key[0], "quantization": key[1]}
                )
                try:
                    memo = memo_in(self.settings.data_dir)
                    self._vision[key] = load_backend(cfg, memo)
                except ModelLoadError as e:
                    self._vision_errors[key] = str(e)
                    raise
            return self._vision[key]

    def vision_backend(self, model: str | None = None, quantization: str | None = None) -> Any:
        """The vision backend, loaded (or its one-line ``ModelLoadError``)."""
        return self._vision_model(model, quantization)

    def vision(
        self,
        loaded: LoadedImage,
        question: str | None,
        *,
        model: str | None = None,
        adapter: str | None = None,
        quantization: str | None = None,
    ) -> VisionResult:
        return self.vision_batch(
            [loaded.image], question, model=model, adapter=adapter, quantization=quantization
        )[0]

    def vision_batch(
        self,
        images: list[Any],
        question: str | None,
        *,
        model: str | None = None,
        adapter: str | None = None,
        quantization: str | None = None,
    ) -> list[VisionResult]:
        """The same question (or a description) for several images, in the model's batches."""
        vm = self._vision_model(model, quantization)
        key = (self.vision_model_id(model), quantization or self.settings.vision.quantization)
        try:
            # One generation at a time per process: parallel tool nodes share the model.
            with self._vision_lock:
                if len(images) == 1:
                    if question:
                        return [vm.answer(images[0], question, adapter=adapter)]
                    return [vm.describe(images[0], adapter=adapter)]
                if question:
                    return vm.answer_batch(images, question, adapter=adapter)
                return vm.describe_batch(images, adapter=adapter)
        except ModelLoadError as e:
            # Weights are loaded on first use: remember the failure so later turns skip it.
            self._vision_errors[key] = str(e)
            raise

    def slide_tiles(
        self, loaded: LoadedImage, region: str | None = None
    ) -> tuple[list[Any], list[Any]]:
        """The tiles of a slide the vision model sees ([vision] slide_*: the densest measured
        tiles and a spread sample of tissue, in ``region`` when given): (choices, images)."""
        from tools.slides import open_slide, parse_region
        from tools.slides.tiles import choose_tiles, read_tile_image

        cfg = self.settings.vision
        sm = self.slide_measurement(loaded, region) if cfg.slide_dense_tiles else None
        with open_slide(loaded.source_path) as slide:
            choices = choose_tiles(
                slide, sm, dense=cfg.slide_dense_tiles, sample=cfg.slide_sample_tiles,
                mpp=cfg.slide_tile_mpp, tile_px=cfg.slide_tile_px,
                region=parse_region(region) if region else None,
            )  # fmt: skip
            return choices, [read_tile_image(slide, c) for c in choices]

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
        amap = self.attention(
            loaded, question, model=model, adapter=adapter, quantization=quantization
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        return amap.save_overlay(path)

    def attention(
        self,
        loaded: LoadedImage,
        question: str,
        *,
        model: str | None = None,
        adapter: str | None = None,
        quantization: str | None = None,
        max_new_tokens: int = 16,
    ) -> Any:
        """The vision model's ``tools.explain.AttentionMap`` for ``question``, with one map per
        answer token (the chat's per-word picker); ``LiteVLMError`` from a server backend."""
        from tools.explain import attention_map
        from tools.vision_backend import attention_unavailable

        vm = self._vision_model(model, quantization)
        if why := attention_unavailable(vm):
            raise LiteVLMError(why)
        with self._vision_lock:
            return attention_map(
                vm, loaded.image, question, adapter=adapter, max_new_tokens=max_new_tokens
            )

    # -- header facts ---------------------------------------------------------------------
    def header(self, loaded: LoadedImage) -> list[Fact]:
        """Typed facts from the image's de-identified header (never an identifier)."""
        from tools.header_facts import header_facts

        return header_facts(loaded)

    # -- measure --------------------------------------------------------------------------
    def measure(
        self, loaded: LoadedImage, overlay_path: Path | None = None, *, region: str | None = None
    ) -> Measurement:
        from tools.measure import measure

        if overlay_path is not None:
            overlay_path.parent.mkdir(parents=True, exist_ok=True)
        if "slide" in loaded.metadata and loaded.source_path:
            return self._measure_slide(loaded, overlay_path, region)
        # The pixel size comes from the image's metadata or [measure] pixel_size_um.
        return measure(loaded, overlay_path=overlay_path, settings=self.settings.measure)

    def _measure_slide(
        self, loaded: LoadedImage, heatmap: Path | None, region: str | None
    ) -> Measurement:
        """A whole-slide image is measured tile by tile on the slide itself, not its thumbnail:
        an even sample of [measure] slide_max_tiles tissue tiles, with a density heat-map."""
        import numpy as np

        from tools.slides.measure import save_heatmap, to_measurement

        result = self.slide_measurement(loaded, region)
        if heatmap is not None and result.tiles:
            thumb = np.asarray(loaded.image.convert("RGB"))  # the slide's own thumbnail
            scale = float(loaded.metadata["slide"]["width"]) / thumb.shape[1]
            result = result.model_copy(
                update={"heatmap_path": save_heatmap(thumb, scale, result.tiles, heatmap)}
            )
        return to_measurement(result)

    def slide_measurement(self, loaded: LoadedImage, region: str | None = None) -> Any:
        """The slide's tile-by-tile measurement (``SlideMeasurement``), made once per slide,
        region and settings in this process, however many tools ask at once."""
        from tools.slides import open_slide, parse_region
        from tools.slides.measure import measure_slide

        cfg = self.settings.measure
        p = Path(loaded.source_path or "")
        st = p.stat() if p.is_file() else None
        key = (str(p.resolve()), st.st_mtime if st else 0.0, region, cfg.model_dump_json())
        with self._lock:
            lock = self._slide_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._slide_measures:
                    self._slide_measures.move_to_end(key)
                    return self._slide_measures[key]
            with open_slide(p) as slide:
                result = measure_slide(
                    slide, region=parse_region(region) if region else None,
                    max_tiles=cfg.slide_max_tiles, settings=cfg,
                )  # fmt: skip
            with self._lock:
                self._slide_measures[key] = result
                while len(self._slide_measures) > 8:
                    old = self._slide_measures.popitem(last=False)[0]
                    self._slide_locks.pop(old, None)
            return result

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
