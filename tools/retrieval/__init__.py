"""Similar-case retrieval: embed images and captions, store them, find the nearest cases.

The agent and the UI keep one ``Retriever`` (store and models load once, on first use)::

    retriever = Retriever(settings)
    cases = retriever.similar(image=loaded_image, text="ki-67 stained breast tissue", k=5)

``similar_cases(...)`` is the one-call form. ``open_store(settings)`` gives the configured
backend (LanceDB under the data directory, or Weaviate).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from litevlm.config import Settings
from litevlm.errors import ModelLoadError
from litevlm.types import LoadedImage, SimilarCase
from tools.retrieval.store import (
    CaseRecord,
    Collection,
    CollectionSpec,
    Hit,
    RetrievalError,
    Store,
    VectorSpec,
    rrf,
)

__all__ = [
    "CaseRecord",
    "Collection",
    "CollectionSpec",
    "Hit",
    "RetrievalError",
    "Retriever",
    "Store",
    "VectorSpec",
    "open_store",
    "similar_cases",
]


def lancedb_uri(settings: Settings) -> Path:
    r = settings.retrieval
    return Path(r.uri).expanduser() if r.uri else settings.data_dir / "lancedb"


def open_store(settings: Settings, backend: str | None = None) -> Store:
    r = settings.retrieval
    backend = backend or r.backend
    if backend == "weaviate":
        from tools.retrieval.weaviate_store import WeaviateStore

        key = r.weaviate_api_key.get_secret_value() if r.weaviate_api_key else None
        return WeaviateStore(
            r.weaviate_url or os.environ.get("WEAVIATE_URL"),
            r.weaviate_grpc_port,
            api_key=key or os.environ.get("WEAVIATE_API_KEY") or None,
        )
    from tools.retrieval.lancedb_store import LanceStore

    return LanceStore(lancedb_uri(settings), ann_threshold=r.ann_threshold)


class Retriever:
    """Holds the store, the collection and the embedders across calls (loaded lazily)."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        image_embedder: Any = None,
        text_embedder: Any = None,
        collection: str | None = None,
    ) -> None:
        self.settings = settings
        self.name = collection or settings.retrieval.collection
        self._store = store
        self._collection: Collection | None = None
        self._image = image_embedder
        self._text = text_embedder
        self.warnings: list[str] = []

    # -- lazily built parts ---------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    @property
    def collection(self) -> Collection:
        if self._collection is None:
            self._collection = self.store.open_collection(self.name)
        return self._collection

    def image_embedder(self, indexed_with: str | None = None) -> Any:
        """The configured image embedder, or the named fallback when it cannot load.

        ``indexed_with`` is the collection's image model: a collection built with the fallback
        is queried with the fallback without first trying to load weights that are missing.
        """
        if self._image is None:
            from tools.embeddings import load_image_embedder

            r = self.settings.retrieval
            use_fallback = bool(r.fallback_embedder) and indexed_with == r.fallback_embedder
            if use_fallback and indexed_with != r.embedder:
                self._warn(
                    f"collection {self.name!r} was indexed with {r.fallback_embedder}, not "
                    f"{r.embedder}; re-index once {r.embedder} weights are available"
                )
                self._image = load_image_embedder(r.fallback_embedder, r.device, r.batch_size)
                return self._image
            try:
                self._image = load_image_embedder(r.embedder, r.device, r.batch_size)
            except ModelLoadError as e:
                if not r.fallback_embedder:
                    raise
                self._warn(f"{e}; using {r.fallback_embedder} instead")
                self._image = load_image_embedder(r.fallback_embedder, r.device, r.batch_size)
        return self._image

    def text_embedder(self) -> Any:
        if self._text is None:
            from tools.embeddings import load_text_embedder

            r = self.settings.retrieval
            self._text = load_text_embedder(r.text_embedder, r.device)
        return self._text

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        logging.getLogger(__name__).warning(message)

    # -- indexing -------------------------------------------------------------------------------
    def index(
        self,
        path: str | Path,
        *,
        layout: str = "auto",
        text: bool = True,
        progress: bool = True,
        tenant: str | None = None,
    ) -> Any:
        from tools.retrieval.ingest import SlideTiling, ingest

        try:
            existing = self.store.open_collection(self.name)
        except RetrievalError:
            existing = None
        image_spec = existing.spec.vectors.get("image") if existing else None
        indexed_with = image_spec.model if image_spec else None
        image = self.image_embedder(indexed_with)
        vectors = {"image": VectorSpec(model=image.model_id, dim=image.dim)}
        text_emb = self.text_embedder() if text else None
        if text_emb is not None:
            vectors["text"] = VectorSpec(model=text_emb.model_id, dim=text_emb.dim)
        coll = existing or self.store.create_collection(self.name, CollectionSpec(vectors=vectors))
        self._collection = coll
        return ingest(
            path,
            coll,
            image_embedder=image,
            text_embedder=text_emb if "text" in coll.spec.vectors else None,
            layout=layout,
            batch_size=self.settings.retrieval.batch_size,
            tenant=tenant or self.settings.retrieval.tenant,
            progress=progress,
            tiling=SlideTiling(
                tiles=self.settings.retrieval.slide_tiles,
                mpp=self.settings.retrieval.slide_tile_mpp,
                tile_px=self.settings.retrieval.slide_tile_px,
            ),
        )

    # -- querying -------------------------------------------------------------------------------
    def similar(
        self,
        *,
        image: LoadedImage | None = None,
        text: str | None = None,
        k: int | None = None,
        filters: dict[str, str] | None = None,
        exclude_self: bool = True,
    ) -> list[SimilarCase]:
        """Nearest cases to an image, a text, or both (fused by reciprocal rank).

        With ``exclude_self`` an indexed copy of the query image itself is left out, so that
        asking about an example image does not return that same image as its best match.
        """
        if image is None and not (text and text.strip()):
            raise RetrievalError("similar cases need an image or a text query")
        r = self.settings.retrieval
        k = k or r.k
        tenant = r.tenant
        coll = self.collection
        fetch = k + 1 if exclude_self and image is not None else k
        own_slide = None
        if image is not None and "slide" in image.metadata and image.source_path:
            # A slide is looked up by a tissue tile at the index's resolution, not by its
            # thumbnail; its own indexed tiles are left out.
            own_slide = str(Path(image.source_path).resolve())
            image = self._slide_query_tile(image)
            fetch = k + r.slide_tiles
        ranked: list[list[Hit]] = []
        used: dict[str, str] = {}
        if image is not None and "image" in coll.spec.vectors:
            emb = self.image_embedder(coll.spec.vectors["image"].model)
            coll.spec.check("image", emb.model_id, emb.dim, coll.name)
            q = emb.embed_images([image])[0]
            ranked.append(coll.search(q, target="image", k=fetch, filters=filters, tenant=tenant))
            used["image"] = emb.model_id
        if text and text.strip():
            if "text" in coll.spec.vectors:
                temb = self.text_embedder()
                coll.spec.check("text", temb.model_id, temb.dim, coll.name)
                q = temb.embed_texts([text])[0]
                hits = (
                    coll.hybrid(text, q, target="text", k=fetch, filters=filters, tenant=tenant)
                    if r.hybrid
                    else coll.search(q, target="text", k=fetch, filters=filters, tenant=tenant)
                )
                ranked.append(hits)
                used["text"] = temb.model_id
            if "image" in coll.spec.vectors:
                # An image-text model (CLIP, BiomedCLIP) also finds images from words.
                emb = self.image_embedder(coll.spec.vectors["image"].model)
                spec = coll.spec.vectors["image"]
                if hasattr(emb, "embed_texts") and (emb.model_id, emb.dim) == (
                    spec.model,
                    spec.dim,
                ):
                    q = emb.embed_texts([text])[0]
                    ranked.append(
                        coll.search(q, target="image", k=fetch, filters=filters, tenant=tenant)
                    )
                    used["image"] = emb.model_id
            if not ranked and image is None:
                raise RetrievalError(
                    f"collection {coll.name!r} has no caption vectors for a text query",
                    "re-index with a text embedder, or query with an image",
                )
        if not ranked:
            raise RetrievalError(f"collection {coll.name!r} cannot answer this query")
        hits = ranked[0] if len(ranked) == 1 else rrf(ranked, fetch)
        hits = _first_per_id(hits)  # a collection with duplicate rows still shows a case once
        if exclude_self and image is not None:
            digest = _image_sha256(image)
            hits = [h for h in hits if not digest or h.record.extra.get("image_sha256") != digest]
        if exclude_self and own_slide:
            hits = [h for h in hits if h.record.extra.get("slide") != own_slide]
        return [_case(h, used) for h in hits[:k]]

    def _slide_query_tile(self, image: LoadedImage) -> LoadedImage:
        """The tissue tile nearest the middle of the slide's tissue, as indexed tiles are read."""
        from tools.slides import open_slide
        from tools.slides.tiles import read_tile_image, sample_tiles

        r = self.settings.retrieval
        with open_slide(image.source_path) as slide:
            picks = sample_tiles(slide, 1, mpp=r.slide_tile_mpp, tile_px=r.slide_tile_px)
            if not picks:
                return image
            pil = read_tile_image(slide, picks[0])
        mm = picks[0].mpp / 1000 if picks[0].mpp else None
        return LoadedImage(image=pil, modality="histology", pixel_size_mm=(mm, mm) if mm else None)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _first_per_id(hits: list[Hit]) -> list[Hit]:
    seen: set[str] = set()
    out = []
    for h in hits:
        if h.record.id not in seen:
            seen.add(h.record.id)
            out.append(h)
    return out


def _image_sha256(image: LoadedImage) -> str | None:
    path = getattr(image, "source_path", None)
    if path and Path(path).is_file():
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return None


def _case(hit: Hit, used: dict[str, str]) -> SimilarCase:
    rec = hit.record
    meta = {k: v for k, v in rec.model_dump(exclude={"id", "caption", "uri", "extra"}).items() if v}
    meta.update({k: v for k, v in rec.extra.items() if k != "image_sha256"})
    parts = [
        used[m] for m in ("image", "text") if m in used and m in hit.match.replace("hybrid", "text")
    ]
    return SimilarCase(
        id=rec.id,
        score=round(hit.score, 6),
        caption=rec.caption,
        metadata=meta,
        image_uri=rec.uri or None,
        embedder=" + ".join(parts) or " + ".join(used.values()),
        match=hit.match,
    )


def similar_cases(
    *,
    image: LoadedImage | None = None,
    text: str | None = None,
    k: int = 5,
    filters: dict[str, str] | None = None,
    settings: Settings,
) -> list[SimilarCase]:
    """One-call similar-case search (loads the models each call: keep a ``Retriever`` instead
    when calling repeatedly)."""
    retriever = Retriever(settings)
    try:
        return retriever.similar(image=image, text=text, k=k, filters=filters)
    finally:
        retriever.close()
