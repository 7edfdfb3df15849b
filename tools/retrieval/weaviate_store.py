"""Weaviate backend (weaviate-client v4): for collections beyond one machine.

Vectors are self-provided named vectors (``image``, ``text``; cosine HNSW), queried with
``near_vector(target_vector=...)``; keyword + vector search is Weaviate's own ``hybrid`` over
the ``caption`` property. Collections are multi-tenant (tenants created on first write);
records without a tenant go to the tenant ``default``. The collection spec (model id and
dimension per vector) is kept as JSON in the collection description.

Weaviate object ids must be UUIDs: the UUID is ``generate_uuid5(case id)`` and the case id is
kept in the ``case_id`` property (``id`` is reserved by Weaviate).

Start a local server with ``docker compose up -d`` (see docker-compose.yml).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np

from litevlm.errors import ServiceUnavailable
from tools.retrieval.store import (
    FILTER_FIELDS,
    CaseRecord,
    Collection,
    CollectionSpec,
    Hit,
    RetrievalError,
    Store,
    as_matrix,
    check_filters,
    check_name,
)

_PROPS = ("case_id", *FILTER_FIELDS, "caption", "uri", "extra")
_SPEC_PREFIX = "litevlm:"
DEFAULT_TENANT = "default"


def class_name(name: str) -> str:
    """Weaviate capitalises collection names; do it here so lookups agree."""
    check_name(name)
    return name[0].upper() + name[1:]


def build_filters(filters: dict[str, str] | None) -> Any:
    from weaviate.classes.query import Filter

    parts = [Filter.by_property(k).equal(v) for k, v in check_filters(filters).items()]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Filter.all_of(parts)


def collection_config(spec: CollectionSpec) -> dict[str, Any]:
    """Keyword arguments for ``client.collections.create`` (tested against the client's types)."""
    from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances

    props = [
        Property(
            name=p,
            data_type=DataType.TEXT,
            # captions are searched by words; the rest are exact-match filter fields
            tokenization=Tokenization.WORD if p == "caption" else Tokenization.FIELD,
            index_searchable=p == "caption",
            index_filterable=p != "extra",
        )
        for p in _PROPS
    ]
    vectors = [
        Configure.Vectors.self_provided(
            name=name,
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE),
        )
        for name in spec.vectors
    ]
    return {
        "description": _SPEC_PREFIX + spec.model_dump_json(),
        "properties": props,
        "vector_config": vectors,
        "multi_tenancy_config": Configure.multi_tenancy(
            enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
        ),
    }


def _record(obj: Any) -> CaseRecord:
    props = dict(obj.properties)
    props["id"] = props.pop("case_id", "") or str(obj.uuid)
    return CaseRecord.from_row(props)


class WeaviateCollection(Collection):
    def __init__(self, handle: Any, name: str, spec: CollectionSpec, batch_size: int = 200):
        self.handle = handle
        self.name = name
        self.spec = spec
        self.batch_size = batch_size

    def _t(self, tenant: str | None) -> Any:
        return self.handle.with_tenant(tenant or DEFAULT_TENANT)

    def upsert(
        self,
        records: Sequence[CaseRecord],
        vectors: dict[str, np.ndarray],
        tenant: str | None = None,
    ) -> int:
        from weaviate.util import generate_uuid5

        mats = {
            n: as_matrix(vectors[n], self.spec.vectors[n].dim, n)
            for n in self.spec.vectors
            if n in vectors
        }
        handle = self._t(tenant)
        with handle.batch.fixed_size(batch_size=self.batch_size) as batch:
            for i, rec in enumerate(records):
                props = rec.row()
                props["case_id"] = props.pop("id")
                vec = {n: m[i].tolist() for n, m in mats.items() if not np.isnan(m[i]).any()}
                batch.add_object(properties=props, uuid=generate_uuid5(rec.id), vector=vec)
        failed = handle.batch.failed_objects
        if failed:
            first = failed[0]
            raise ServiceUnavailable(
                f"Weaviate rejected {len(failed)} of {len(records)} objects in "
                f"{self.name!r}; first: {getattr(first, 'message', first)}",
                "re-run the same `litevlm index` command: ids are content hashes, "
                "so records already stored are not duplicated",
            )
        return len(records)

    def existing_ids(self, ids: Sequence[str], tenant: str | None = None) -> set[str]:
        from weaviate.classes.query import Filter

        if not ids:
            return set()
        res = self._t(tenant).query.fetch_objects(
            filters=Filter.by_property("case_id").contains_any(list(ids)),
            limit=len(ids),
            return_properties=["case_id"],
        )
        return {o.properties["case_id"] for o in res.objects}

    def search(
        self,
        vector: np.ndarray,
        *,
        target: str,
        k: int = 5,
        filters: dict[str, str] | None = None,
        tenant: str | None = None,
    ) -> list[Hit]:
        from weaviate.classes.query import MetadataQuery

        q = self.query_vector(vector, target)
        res = self._t(tenant).query.near_vector(
            near_vector=q.tolist(),
            target_vector=target,
            limit=k,
            filters=build_filters(filters),
            return_metadata=MetadataQuery(distance=True),
        )
        return [
            Hit(record=_record(o), score=1.0 - float(o.metadata.distance), match=target)
            for o in res.objects
        ]

    def hybrid(
        self,
        text: str,
        vector: np.ndarray,
        *,
        target: str = "text",
        k: int = 5,
        filters: dict[str, str] | None = None,
        tenant: str | None = None,
        alpha: float = 0.5,
    ) -> list[Hit]:
        from weaviate.classes.query import HybridFusion, MetadataQuery

        q = self.query_vector(vector, target)
        res = self._t(tenant).query.hybrid(
            query=text,
            vector=q.tolist(),
            target_vector=target,
            alpha=alpha,
            query_properties=["caption"],
            fusion_type=HybridFusion.RELATIVE_SCORE,
            limit=k,
            filters=build_filters(filters),
            return_metadata=MetadataQuery(score=True),
        )
        return [
            Hit(record=_record(o), score=float(o.metadata.score or 0.0), match="hybrid")
            for o in res.objects
        ]

    def delete(self, ids: Sequence[str], tenant: str | None = None) -> int:
        from weaviate.classes.query import Filter

        if not ids:
            return 0
        res = self._t(tenant).data.delete_many(
            where=Filter.by_property("case_id").contains_any(list(ids))
        )
        return int(res.successful)

    def count(self, filters: dict[str, str] | None = None, tenant: str | None = None) -> int:
        res = self._t(tenant).aggregate.over_all(total_count=True, filters=build_filters(filters))
        return int(res.total_count or 0)

    def iter_batches(
        self, batch_size: int = 1000, tenant: str | None = None
    ) -> Iterator[tuple[list[CaseRecord], dict[str, np.ndarray]]]:
        records: list[CaseRecord] = []
        rows: dict[str, list[np.ndarray]] = {n: [] for n in self.spec.vectors}
        for obj in self._t(tenant).iterator(include_vector=True):
            records.append(_record(obj))
            for n, v in self.spec.vectors.items():
                got = (obj.vector or {}).get(n)
                rows[n].append(np.asarray(got, np.float32) if got else np.full(v.dim, np.nan))
            if len(records) == batch_size:
                yield records, {n: np.stack(r) for n, r in rows.items()}
                records, rows = [], {n: [] for n in self.spec.vectors}
        if records:
            yield records, {n: np.stack(r) for n, r in rows.items()}


class WeaviateStore(Store):
    def __init__(
        self,
        url: str | None = None,
        grpc_port: int = 50051,
        client: Any = None,
        api_key: str | None = None,
    ):
        """Connect to ``url`` (http://host:port) with ``api_key`` when the server requires one
        (docker-compose.yml does), or use an existing ``client`` (tests)."""
        if client is None:
            import weaviate

            if not url:
                raise RetrievalError(
                    "no Weaviate URL configured",
                    "set [retrieval] weaviate_url or WEAVIATE_URL (e.g. http://localhost:8080)",
                )
            u = urlparse(url)
            try:
                client = weaviate.connect_to_custom(
                    http_host=u.hostname or "localhost",
                    http_port=u.port or (443 if u.scheme == "https" else 80),
                    http_secure=u.scheme == "https",
                    grpc_host=u.hostname or "localhost",
                    grpc_port=grpc_port,
                    grpc_secure=u.scheme == "https",
                    auth_credentials=weaviate.classes.init.Auth.api_key(api_key)
                    if api_key
                    else None,
                )
            except Exception as e:
                raise ServiceUnavailable(
                    f"cannot reach Weaviate at {url}: {type(e).__name__}: {e}",
                    "start it with `docker compose up -d weaviate` or check [retrieval] "
                    "weaviate_url / weaviate_grpc_port",
                ) from e
        self.client = client
        self.url = url

    def list_collections(self) -> list[str]:
        return sorted(str(n) for n in self.client.collections.list_all(simple=True))

    def _spec(self, cname: str) -> CollectionSpec:
        config = self.client.collections.use(cname).config.get()
        desc = config.description or ""
        if not desc.startswith(_SPEC_PREFIX):
            raise RetrievalError(f"Weaviate collection {cname!r} is not a litevlm collection")
        return CollectionSpec.model_validate(json.loads(desc[len(_SPEC_PREFIX) :]))

    def create_collection(self, name: str, spec: CollectionSpec) -> WeaviateCollection:
        cname = class_name(name)
        if self.client.collections.exists(cname):
            coll = self.open_collection(name)
            for vname, v in spec.vectors.items():
                coll.spec.check(vname, v.model, v.dim, name)
            return coll
        handle = self.client.collections.create(cname, **collection_config(spec))
        return WeaviateCollection(handle, name, spec)

    def open_collection(self, name: str) -> WeaviateCollection:
        cname = class_name(name)
        if not self.client.collections.exists(cname):
            raise RetrievalError(
                f"no collection {name!r} in Weaviate at {self.url}",
                f"index into it, or migrate: `litevlm index --migrate-to weaviate "
                f"--collection {name}`",
            )
        return WeaviateCollection(self.client.collections.use(cname), name, self._spec(cname))

    def drop_collection(self, name: str) -> None:
        cname = class_name(name)
        if self.client.collections.exists(cname):
            self.client.collections.delete(cname)

    def close(self) -> None:
        self.client.close()
