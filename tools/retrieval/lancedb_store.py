"""LanceDB backend: embedded, on disk under the data directory, no server.

One table per collection. Named vectors are fixed-size-list columns (``image``, ``text``);
a record without one gets a placeholder vector and ``has_<name> = false``, which every search
filters on. The collection spec (model id and dimension per vector) lives in the table's
schema metadata, so it travels with the files.

Tenants are a ``tenant`` column ('' when unused): LanceDB has no native tenants, and a filter
column keeps one contract for both backends.

Writers (``upsert``, ``delete``, ``finish``, creating a table) hold a file lock per collection
(``<uri>/.<name>.lock``) and re-read the latest table version first. LanceDB's merge_insert
joins against the version its handle has loaded and concurrent inserts never conflict, so two
``litevlm index`` processes on one collection stored the same ids twice (368 rows for 200
images); serialised and up to date, the second one's merge finds the first one's rows.
``finish()`` also repairs a collection that already holds duplicate ids (one row kept per id).

Above ``ann_threshold`` rows ``finish()`` builds an IVF_FLAT index per vector (about 1,500
rows per partition) and queries probe 5% of the partitions (at least 8). IVF_FLAT keeps full
vectors, so recall depends only on how many partitions are probed; LanceDB's default IVF_PQ
measured recall@10 of 0.33-0.51 on clustered 512-d data here and IVF_HNSW_SQ 0.94 (see
``benchmarks/retrieval.py`` and docs/retrieval.md).
Below the threshold search is exact. Above it, scalar indexes (bitmap or B-tree) on the
filter columns keep the tenant/has_<vector>/metadata prefilter from scanning every row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

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
    rrf,
)

_META_KEY = b"litevlm.collection"
# Long enough for another process's finish() to build its indexes on a large collection.
_LOCK_TIMEOUT_S = 3600.0
_TEXT_FIELDS = ("id", "tenant", *FILTER_FIELDS, "caption", "uri", "extra")


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _where(filters: dict[str, str] | None, tenant: str | None, extra: str | None = None) -> str:
    parts = [f"tenant = {_quote(tenant or '')}"]
    parts += [f"{key} = {_quote(value)}" for key, value in check_filters(filters).items()]
    if extra:
        parts.append(extra)
    return " AND ".join(parts)


class IndexParams:
    """ANN settings; defaults measured by benchmarks/retrieval.py (see docs/retrieval.md)."""

    def __init__(
        self,
        index_type: str = "IVF_FLAT",
        rows_per_partition: int = 1500,
        nprobes_fraction: float = 0.05,
        min_nprobes: int = 8,
        ef: int = 120,
        refine_factor: int | None = None,
    ) -> None:
        self.index_type = index_type
        self.rows_per_partition = rows_per_partition
        self.nprobes_fraction = nprobes_fraction
        self.min_nprobes = min_nprobes
        self.ef = ef
        self.refine_factor = refine_factor

    def partitions(self, rows: int) -> int:
        return max(1, rows // self.rows_per_partition)

    def nprobes(self, rows: int) -> int:
        parts = self.partitions(rows)
        return min(parts, max(self.min_nprobes, int(parts * self.nprobes_fraction + 0.999)))

    def config(self, rows: int) -> Any:
        from lancedb.index import HnswSq, IvfFlat, IvfPq

        n = self.partitions(rows)
        if self.index_type == "IVF_HNSW_SQ":
            return HnswSq(distance_type="cosine", num_partitions=n)
        if self.index_type == "IVF_FLAT":
            return IvfFlat(distance_type="cosine", num_partitions=n)
        if self.index_type == "IVF_PQ":
            return IvfPq(distance_type="cosine", num_partitions=n)
        raise RetrievalError(f"unknown index type {self.index_type}")


def _lock(uri: str, name: str) -> Any:
    from filelock import FileLock

    return FileLock(str(Path(uri) / f".{name}.lock"), timeout=_LOCK_TIMEOUT_S)


class LanceCollection(Collection):
    def __init__(
        self,
        table: Any,
        spec: CollectionSpec,
        ann_threshold: int,
        params: IndexParams,
        lock: Any = None,
    ):
        self.table = table
        self.lock = lock
        self.name = table.name
        self.spec = spec
        self.ann_threshold = ann_threshold
        self.params = params
        # Index list and row count, read once per write rather than on every query: each is a
        # metadata read that costs more than a small ANN search.
        self._state: tuple[set[tuple[str, ...]], int] | None = None
        self._unfiltered: set[str] = set()

    def _indexes_and_rows(self) -> tuple[set[tuple[str, ...]], int]:
        if self._state is None:
            indexed = {tuple(ix.columns) for ix in self.table.list_indices()}
            rows = self.table.count_rows()
            self._state = (indexed, rows)
            # Vectors every row has, in a table with no tenants: the default prefilter
            # (tenant = '' AND has_<name>) selects every row, and skipping it saves a few ms
            # per query.
            self._unfiltered = {
                n
                for n in self.spec.vectors
                if rows and self.table.count_rows(_where(None, None, f"has_{n} = true")) == rows
            }
        return self._state

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer per collection across processes, on the latest version of the table."""
        if self.lock is None:
            yield
            return
        with self.lock:
            self.table.checkout_latest()
            try:
                yield
            finally:
                self._state = None

    def upsert(
        self,
        records: Sequence[CaseRecord],
        vectors: dict[str, np.ndarray],
        tenant: str | None = None,
    ) -> int:
        import pyarrow as pa

        if not records:
            return 0
        cols: dict[str, Any] = {f: [] for f in _TEXT_FIELDS}
        for rec in records:
            row = rec.row()
            for f in _TEXT_FIELDS:
                cols[f].append((tenant or "") if f == "tenant" else str(row.get(f) or ""))
        arrays = {f: pa.array(v, pa.string()) for f, v in cols.items()}
        for name, vspec in self.spec.vectors.items():
            x = vectors.get(name)
            x = (
                np.full((len(records), vspec.dim), np.nan, np.float32)
                if x is None
                else as_matrix(x, vspec.dim, name).copy()
            )
            missing = np.isnan(x).any(axis=1)
            # A unit placeholder keeps cosine distance defined; has_<name> hides it.
            x[missing] = 0.0
            x[missing, 0] = 1.0
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), vspec.dim)
            arrays[f"has_{name}"] = pa.array(~missing)
        data = pa.table(arrays).select(self.table.schema.names)
        with self._writing():
            (
                self.table.merge_insert(["tenant", "id"])
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )
        self._state = None
        return len(records)

    def existing_ids(self, ids: Sequence[str], tenant: str | None = None) -> set[str]:
        if not ids:
            return set()
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ", ".join(_quote(x) for x in ids[i : i + 500])
            rows = (
                self.table.search()
                .where(_where(None, tenant, f"id IN ({chunk})"))
                .select(["id"])
                .limit(None)
                .to_arrow()
            )
            found.update(rows["id"].to_pylist())
        return found

    def delete(self, ids: Sequence[str], tenant: str | None = None) -> int:
        if not ids:
            return 0
        chunk = ", ".join(_quote(x) for x in ids)
        with self._writing():
            before = self.count(tenant=tenant)
            self.table.delete(_where(None, tenant, f"id IN ({chunk})"))
            after = self.count(tenant=tenant)
        self._state = None
        return before - after

    def count(self, filters: dict[str, str] | None = None, tenant: str | None = None) -> int:
        return self.table.count_rows(_where(filters, tenant))

    def finish(self) -> None:
        """Repair duplicate ids, then build the ANN and keyword indexes once the table is big
        enough (refresh them otherwise)."""
        with self._writing():
            self.remove_duplicates()
            self._build_indexes()
        self._state = None

    def remove_duplicates(self) -> int:
        """Keep one row per (tenant, id); returns how many rows were removed.

        Collections written before the lock (or by two processes at once without it) can hold
        the same case twice. The duplicates are deleted and one copy of each written back; if
        the process dies in between, those cases are missing, not doubled, and the next
        ``litevlm index`` of the same files adds them again.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        keys = self.table.search().select(["tenant", "id"]).limit(None).to_arrow()
        if keys.num_rows == 0:
            return 0
        counts = keys.group_by(["tenant", "id"]).aggregate([("id", "count")])
        dup = counts.filter(pc.greater(counts["id_count"], 1))
        if dup.num_rows == 0:
            return 0
        removed = 0
        for tenant in set(dup["tenant"].to_pylist()):
            ids = dup.filter(pc.equal(dup["tenant"], tenant))["id"].to_pylist()
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                where = _where(None, tenant, f"id IN ({', '.join(_quote(x) for x in chunk)})")
                rows = self.table.search().where(where).limit(None).to_arrow()
                rows = rows.select(self.table.schema.names)
                _, first = np.unique(np.asarray(rows["id"].to_pylist(), dtype=object),
                                     return_index=True)  # fmt: skip
                keep = rows.take(pa.array(np.sort(first)))
                self.table.delete(where)
                self.table.add(keep)
                removed += rows.num_rows - keep.num_rows
        return removed

    def _build_indexes(self) -> None:
        from lancedb.index import FTS, Bitmap, BTree

        rows = self.table.count_rows()
        indexed = {tuple(ix.columns) for ix in self.table.list_indices()}
        changed = False
        if ("caption",) not in indexed and rows:
            self.table.create_index("caption", config=FTS(), replace=True)
            changed = True
        if rows >= self.ann_threshold:
            # Every search prefilters on tenant and has_<vector>; without scalar indexes that
            # filter scans every row (measured at 1M rows: 136 ms of a 150 ms query; 16 ms
            # with bitmaps). Re-runs look ids up before embedding: B-tree on id.
            wanted = {
                "id": BTree(),
                "source": BTree(),
                "license": BTree(),
                "tenant": Bitmap(),
                **{f: Bitmap() for f in ("modality", "stain", "organ")},
                **{f"has_{n}": Bitmap() for n in self.spec.vectors},
            }
            for column, config in wanted.items():
                if (column,) not in indexed:
                    self.table.create_index(column, config=config, replace=True)
                    changed = True
        for name in self.spec.vectors:
            if rows >= max(self.ann_threshold, 256) and (name,) not in indexed:
                self.table.create_index(name, config=self.params.config(rows), replace=True)
                changed = True
        if not changed and indexed:
            self.table.optimize()  # folds new rows into the existing indexes

    def has_index(self, name: str) -> bool:
        return (name,) in self._indexes_and_rows()[0]

    # -- reading -------------------------------------------------------------------------------
    def _vector_query(self, query: Any, rows: int, name: str) -> Any:
        if self.has_index(name):
            query = query.nprobes(self.params.nprobes(rows))
            if self.params.index_type.startswith("IVF_HNSW"):
                query = query.ef(self.params.ef)
            if self.params.refine_factor:
                query = query.refine_factor(self.params.refine_factor)
        return query

    def search(
        self,
        vector: np.ndarray,
        *,
        target: str,
        k: int = 5,
        filters: dict[str, str] | None = None,
        tenant: str | None = None,
    ) -> list[Hit]:
        q = self.query_vector(vector, target)
        rows = self._indexes_and_rows()[1]
        query = (
            self.table.search(q, vector_column_name=target)
            .distance_type("cosine")
            .select([*_TEXT_FIELDS, "_distance"])
            .limit(k)
        )
        if filters or tenant or target not in self._unfiltered:
            query = query.where(_where(filters, tenant, f"has_{target} = true"), prefilter=True)
        query = self._vector_query(query, rows, target)
        table = query.to_arrow()
        return [
            Hit(record=CaseRecord.from_row(row), score=1.0 - float(row["_distance"]), match=target)
            for row in table.to_pylist()
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
    ) -> list[Hit]:
        self.query_vector(vector, target)  # the same checks as search(), before any work
        if not self.has_index("caption"):
            self.finish()
        # Two ranked lists fused by reciprocal rank (what LanceDB's hybrid query does too),
        # run separately so that each selects its score column explicitly.
        vector_hits = self.search(vector, target=target, k=k, filters=filters, tenant=tenant)
        rows = (
            self.table.search(text, query_type="fts", fts_columns="caption")
            .where(_where(filters, tenant), prefilter=True)
            .select([*_TEXT_FIELDS, "_score"])
            .limit(k)
            .to_arrow()
            .to_pylist()
        )
        keyword_hits = [
            Hit(record=CaseRecord.from_row(r), score=float(r["_score"]), match="keyword")
            for r in rows
        ]
        fused = rrf([vector_hits, keyword_hits], k)
        return [Hit(record=h.record, score=h.score, match="hybrid") for h in fused]

    def iter_batches(
        self, batch_size: int = 1000, tenant: str | None = None
    ) -> Iterator[tuple[list[CaseRecord], dict[str, np.ndarray]]]:
        names = list(self.spec.vectors)
        cols = [*_TEXT_FIELDS, *names, *(f"has_{n}" for n in names)]
        query = self.table.search().where(_where(None, tenant)).select(cols).limit(None)
        for batch in query.to_arrow().to_batches(max_chunksize=batch_size):
            rows = batch.to_pydict()
            records = [
                CaseRecord.from_row({f: rows[f][i] for f in _TEXT_FIELDS})
                for i in range(batch.num_rows)
            ]
            vectors = {}
            for n in names:
                x = np.asarray(rows[n], dtype=np.float32).reshape(batch.num_rows, -1)
                x[~np.asarray(rows[f"has_{n}"], dtype=bool)] = np.nan
                vectors[n] = x
            yield records, vectors


class LanceStore(Store):
    def __init__(
        self, uri: str | Path, ann_threshold: int = 50_000, params: IndexParams | None = None
    ) -> None:
        import lancedb

        self.uri = str(Path(uri).expanduser())
        Path(self.uri).mkdir(parents=True, exist_ok=True)
        self.db = lancedb.connect(self.uri)
        self.ann_threshold = ann_threshold
        self.params = params or IndexParams()

    def _schema(self, spec: CollectionSpec) -> Any:
        import pyarrow as pa

        fields = [pa.field(f, pa.string()) for f in _TEXT_FIELDS]
        for name, v in spec.vectors.items():
            fields.append(pa.field(name, pa.list_(pa.float32(), v.dim)))
            fields.append(pa.field(f"has_{name}", pa.bool_()))
        return pa.schema(fields, metadata={_META_KEY: spec.model_dump_json().encode()})

    def list_collections(self) -> list[str]:
        try:
            return sorted(self.db.list_tables().tables)
        except (AttributeError, NotImplementedError):
            return sorted(self.db.table_names(limit=10_000))

    def create_collection(self, name: str, spec: CollectionSpec) -> LanceCollection:
        check_name(name)
        with _lock(self.uri, name):  # two processes creating one collection: one creates it
            if name not in self.list_collections():
                table = self.db.create_table(name, schema=self._schema(spec))
                return LanceCollection(
                    table, spec, self.ann_threshold, self.params, lock=_lock(self.uri, name)
                )
        coll = self.open_collection(name)
        if coll.spec != spec:
            # Naming each vector's model makes the refusal actionable.
            for vname, v in spec.vectors.items():
                coll.spec.check(vname, v.model, v.dim, name)
            raise RetrievalError(
                f"collection {name!r} exists with vectors {sorted(coll.spec.vectors)}, "
                f"not {sorted(spec.vectors)}",
                "use another --collection or drop it",
            )
        return coll

    def open_collection(self, name: str) -> LanceCollection:
        check_name(name)
        if name not in self.list_collections():
            raise RetrievalError(
                f"no collection {name!r} in {self.uri}",
                "index images first: `litevlm index PATH --collection " + name + "`",
            )
        table = self.db.open_table(name)
        meta = (table.schema.metadata or {}).get(_META_KEY)
        if meta is None:
            raise RetrievalError(f"table {name!r} in {self.uri} is not a litevlm collection")
        spec = CollectionSpec.model_validate(json.loads(meta))
        return LanceCollection(
            table, spec, self.ann_threshold, self.params, lock=_lock(self.uri, name)
        )

    def drop_collection(self, name: str) -> None:
        with _lock(self.uri, name):
            if name in self.list_collections():
                self.db.drop_table(name)
