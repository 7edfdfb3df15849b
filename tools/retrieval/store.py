"""The vector-store interface every backend implements, and the records it holds.

A collection holds one record per indexed case: metadata (caption, modality, stain, organ,
source, license, uri, extra) plus named vectors (``image``, ``text``). The collection remembers
which model made each named vector and its dimension (``CollectionSpec``); a query made with
another model is refused, because its scores would be meaningless.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from litevlm.errors import LiteVLMError

FILTER_FIELDS = ("modality", "stain", "organ", "source", "license")
VECTOR_NAMES = ("image", "text")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


class RetrievalError(LiteVLMError):
    """A collection is missing, mismatched or asked something it cannot answer."""


class VectorSpec(BaseModel):
    model: str
    dim: int = Field(ge=1)


class CollectionSpec(BaseModel):
    """Which model made each named vector; stored with the collection."""

    vectors: dict[str, VectorSpec]

    def check(self, name: str, model: str, dim: int, collection: str) -> None:
        """Refuse a query vector from a different model than the one the collection used."""
        have = self.vectors.get(name)
        if have is None:
            raise RetrievalError(
                f"collection {collection!r} has no {name!r} vectors "
                f"(it has: {', '.join(self.vectors) or 'none'})",
                "index it with an embedder for that vector, or query the other one",
            )
        if have.model != model or have.dim != dim:
            raise RetrievalError(
                f"collection {collection!r} was indexed with {name} model {have.model} "
                f"(dim {have.dim}); this query uses {model} (dim {dim})",
                f"set [retrieval] embedder = '{have.model}' (or text_embedder), "
                "or re-index the collection with the new model",
            )


class CaseRecord(BaseModel):
    """One indexed case; ``id`` is a content hash so re-indexing adds nothing twice."""

    id: str
    caption: str = ""
    modality: str = "unknown"
    stain: str = ""
    organ: str = ""
    source: str = ""
    license: str = ""
    uri: str = ""
    extra: dict[str, Any] = Field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        d = self.model_dump(exclude={"extra"})
        d["extra"] = json.dumps(self.extra, default=str, sort_keys=True)
        return d

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CaseRecord:
        data = {k: row.get(k) or "" for k in cls.model_fields if k != "extra"}
        extra = row.get("extra") or "{}"
        data["extra"] = json.loads(extra) if isinstance(extra, str) else dict(extra)
        return cls(**data)


class Hit(BaseModel):
    record: CaseRecord
    score: float = Field(description="cosine similarity for vector search, fused score for hybrid")
    match: str = Field(description="image, text, hybrid or image+text")


def check_name(name: str, what: str = "collection") -> str:
    if not _NAME.match(name):
        raise RetrievalError(
            f"{what} name {name!r} is not allowed",
            "use a letter then letters, digits or _ (at most 63 characters)",
        )
    return name


def check_filters(filters: dict[str, str] | None) -> dict[str, str]:
    filters = dict(filters or {})
    unknown = sorted(set(filters) - set(FILTER_FIELDS))
    if unknown:
        raise RetrievalError(
            f"cannot filter on {', '.join(unknown)}",
            f"filter keys are: {', '.join(FILTER_FIELDS)}",
        )
    return {k: str(v) for k, v in filters.items()}


def as_matrix(vectors: np.ndarray | Sequence[Sequence[float]], dim: int, what: str) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise RetrievalError(f"{what} vectors have shape {x.shape}, expected (n, {dim})")
    return x


class Collection(ABC):
    """One collection in a store. ``tenant`` scopes every call where the backend has tenants."""

    name: str
    spec: CollectionSpec

    def query_vector(self, vector: np.ndarray, target: str) -> np.ndarray:
        """``vector`` checked against the collection's ``target`` vectors, as one float row."""
        spec = self.spec.vectors.get(target)
        if spec is None:
            raise RetrievalError(f"collection {self.name!r} has no {target!r} vectors")
        return as_matrix(np.asarray(vector).reshape(1, -1), spec.dim, target)[0]

    @abstractmethod
    def upsert(
        self,
        records: Sequence[CaseRecord],
        vectors: dict[str, np.ndarray],
        tenant: str | None = None,
    ) -> int:
        """Insert or replace by id; ``vectors[name]`` has one row per record (NaN row = none)."""

    @abstractmethod
    def existing_ids(self, ids: Sequence[str], tenant: str | None = None) -> set[str]: ...

    @abstractmethod
    def search(
        self,
        vector: np.ndarray,
        *,
        target: str,
        k: int = 5,
        filters: dict[str, str] | None = None,
        tenant: str | None = None,
    ) -> list[Hit]: ...

    @abstractmethod
    def hybrid(
        self,
        text: str,
        vector: np.ndarray,
        *,
        target: str = "text",
        k: int = 5,
        filters: dict[str, str] | None = None,
        tenant: str | None = None,
    ) -> list[Hit]:
        """Keyword search on captions fused with vector search on ``target``."""

    @abstractmethod
    def delete(self, ids: Sequence[str], tenant: str | None = None) -> int: ...

    @abstractmethod
    def count(self, filters: dict[str, str] | None = None, tenant: str | None = None) -> int: ...

    @abstractmethod
    def iter_batches(
        self, batch_size: int = 1000, tenant: str | None = None
    ) -> Iterator[tuple[list[CaseRecord], dict[str, np.ndarray]]]:
        """Every record with its vectors, for moving a collection to another store."""

    def finish(self) -> None:  # noqa: B027 - optional hook
        """Called after an ingest run: build or refresh indexes."""


class Store(ABC):
    @abstractmethod
    def create_collection(self, name: str, spec: CollectionSpec) -> Collection:
        """Create, or open when it exists with the same spec (else RetrievalError)."""

    @abstractmethod
    def open_collection(self, name: str) -> Collection:
        """Open an existing collection; RetrievalError naming the store when missing."""

    @abstractmethod
    def list_collections(self) -> list[str]: ...

    @abstractmethod
    def drop_collection(self, name: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def rrf(ranked: Sequence[Sequence[Hit]], k: int, c: int = 60) -> list[Hit]:
    """Reciprocal-rank fusion of ranked lists (hybrid search, image+text queries)."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    matches: dict[str, set[str]] = {}
    for hits in ranked:
        for rank, hit in enumerate(hits):
            rid = hit.record.id
            scores[rid] = scores.get(rid, 0.0) + 1.0 / (c + rank + 1)
            first.setdefault(rid, hit)
            matches.setdefault(rid, set()).add(hit.match)
    order = sorted(scores, key=lambda r: -scores[r])[:k]
    # Scaled so that first place in every list scores 1.0: a 0-1 number reads like the cosine
    # scores elsewhere, but it is a rank score, and `match` says so.
    best = len(ranked) / (c + 1)
    return [
        Hit(record=first[r].record, score=scores[r] / best, match="+".join(sorted(matches[r])))
        for r in order
    ]
