"""One contract for every store: LanceDB always, Weaviate when WEAVIATE_URL names a server.

No Weaviate server can run on this machine (no Docker, no network), so the Weaviate leg is
skipped here; ``test_retrieval_weaviate_unit.py`` checks the adapter's calls against the
weaviate-client's own config and query objects instead.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from tools.retrieval.store import (
    CaseRecord,
    CollectionSpec,
    RetrievalError,
    VectorSpec,
)

SPEC = CollectionSpec(
    vectors={"image": VectorSpec(model="m-img", dim=8), "text": VectorSpec(model="m-txt", dim=4)}
)
CAPTIONS = [
    "H&E stained liver biopsy with steatosis",
    "chest radiograph with a right lower lobe opacity",
    "fluorescence micrograph of DAPI stained nuclei",
    "brain MR T1 weighted axial slice",
    "IHC ki-67 staining of breast carcinoma",
    "ultrasound of the thyroid nodule",
]
MODALITY = ["histology", "CR", "fluorescence", "MR", "histology", "US"]


def _data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, 8)).astype(np.float32)
    txt = rng.normal(size=(n, 4)).astype(np.float32)
    recs = [
        CaseRecord(
            id=f"case{i}",
            caption=CAPTIONS[i % 6],
            modality=MODALITY[i % 6],
            organ="liver" if i == 0 else "",
            source="test",
            uri=f"/data/{i}.png",
            extra={"n": i},
        )
        for i in range(n)
    ]
    return recs, {"image": img, "text": txt}


def _lancedb(tmp_path):
    from tools.retrieval.lancedb_store import LanceStore

    return LanceStore(tmp_path / "lancedb", ann_threshold=50_000)


def _weaviate(tmp_path):
    url = os.environ.get("WEAVIATE_URL")
    if not url:
        pytest.skip("WEAVIATE_URL not set: no Weaviate server can run here (docker compose up)")
    from tools.retrieval.weaviate_store import WeaviateStore

    return WeaviateStore(url)


@pytest.fixture(params=["lancedb", pytest.param("weaviate", marks=pytest.mark.weaviate)])
def store(request, tmp_path):
    s = _lancedb(tmp_path) if request.param == "lancedb" else _weaviate(tmp_path)
    yield s
    s.close()


@pytest.fixture
def coll(store):
    name = "t" + uuid.uuid4().hex[:10]
    c = store.create_collection(name, SPEC)
    recs, vecs = _data()
    c.upsert(recs, vecs)
    c.finish()
    yield c
    store.drop_collection(name)


def test_upsert_count_and_existing_ids(coll):
    assert coll.count() == 6
    assert coll.existing_ids(["case0", "case5", "nope"]) == {"case0", "case5"}
    recs, vecs = _data()
    coll.upsert(recs[:2], {k: v[:2] for k, v in vecs.items()})  # same ids: replaced, not added
    assert coll.count() == 6


def test_vector_search_on_each_named_vector(coll):
    _, vecs = _data()
    hits = coll.search(vecs["image"][3], target="image", k=3)
    assert hits[0].record.id == "case3" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].record.extra == {"n": 3} and hits[0].record.uri == "/data/3.png"
    assert coll.search(vecs["text"][1], target="text", k=1)[0].record.id == "case1"


def test_metadata_filters(coll):
    _, vecs = _data()
    hits = coll.search(vecs["image"][0], target="image", k=6, filters={"modality": "histology"})
    assert {h.record.id for h in hits} == {"case0", "case4"}
    assert coll.count(filters={"modality": "histology", "organ": "liver"}) == 1
    with pytest.raises(RetrievalError, match="filter keys"):
        coll.search(vecs["image"][0], target="image", filters={"patient": "x"})


def test_hybrid_keyword_plus_vector(coll):
    _, vecs = _data()
    # the vector points at case2; the keywords point at case4: both rank high
    hits = coll.hybrid("ki-67 breast carcinoma", vecs["text"][2], target="text", k=3)
    ids = [h.record.id for h in hits]
    assert "case4" in ids[:2] and "case2" in ids[:2]
    assert all(h.match == "hybrid" for h in hits)


def test_missing_named_vector_is_not_returned(store):
    name = "t" + uuid.uuid4().hex[:10]
    c = store.create_collection(name, SPEC)
    recs, vecs = _data(2)
    vecs["text"][1] = np.nan  # second case has no caption vector
    c.upsert(recs, vecs)
    hits = c.search(vecs["text"][0], target="text", k=5)
    assert [h.record.id for h in hits] == ["case0"]
    store.drop_collection(name)


def test_delete(coll):
    assert coll.delete(["case0", "case1"]) == 2
    assert coll.count() == 4
    assert coll.existing_ids(["case0"]) == set()


def test_tenants_are_separate(coll):
    recs, vecs = _data(2, seed=5)
    coll.upsert(recs, vecs, tenant="labB")
    assert coll.count(tenant="labB") == 2
    assert coll.count() == 6
    hits = coll.search(vecs["image"][0], target="image", k=10, tenant="labB")
    assert sorted(h.record.id for h in hits) == ["case0", "case1"]
    assert hits[0].record.caption == CAPTIONS[0] and hits[0].score == pytest.approx(1, abs=1e-4)
    assert coll.existing_ids(["case0", "case5"], tenant="labB") == {"case0"}


def test_collections_and_spec_mismatch(store, coll):
    assert coll.name in store.list_collections() or coll.name.capitalize() in (
        store.list_collections()
    )
    reopened = store.open_collection(coll.name)
    assert reopened.spec == SPEC
    other = CollectionSpec(vectors={"image": VectorSpec(model="other-model", dim=8)})
    with pytest.raises(RetrievalError, match="other-model"):
        store.create_collection(coll.name, other)
    with pytest.raises(RetrievalError, match="indexed with image model m-img"):
        reopened.spec.check("image", "other-model", 8, coll.name)
    with pytest.raises(RetrievalError, match="no collection"):
        store.open_collection("doesNotExist")


def test_iter_batches_round_trip(coll):
    got = {}
    for recs, vecs in coll.iter_batches(batch_size=4):
        for i, r in enumerate(recs):
            got[r.id] = vecs["image"][i]
    _, vecs = _data()
    assert len(got) == 6
    assert np.allclose(got["case2"], vecs["image"][2], atol=1e-6)


def test_lancedb_builds_ann_index_above_threshold(tmp_path):
    from tools.retrieval.lancedb_store import IndexParams, LanceStore

    store = LanceStore(
        tmp_path / "db", ann_threshold=300, params=IndexParams(rows_per_partition=100)
    )
    spec = CollectionSpec(vectors={"image": VectorSpec(model="m", dim=16)})
    c = store.create_collection("big", spec)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    x = (centres[rng.integers(0, 6, 600)] + 0.3 * rng.normal(size=(600, 16))).astype(np.float32)
    c.upsert([CaseRecord(id=str(i)) for i in range(600)], {"image": x})
    c.finish()
    assert c.has_index("image")
    q = x[:20] / np.linalg.norm(x[:20], axis=1, keepdims=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    truth = np.argsort(-(q @ xn.T), axis=1)[:, :10]
    recall = np.mean(
        [
            len({h.record.id for h in c.search(q[i], target="image", k=10)} & set(map(str, t))) / 10
            for i, t in enumerate(truth)
        ]
    )
    assert recall >= 0.9


def test_migrate_copies_vectors_and_spec(coll, tmp_path):
    """`litevlm index --migrate-to weaviate` runs this; here the target is a second LanceDB."""
    from tools.retrieval.ingest import migrate
    from tools.retrieval.lancedb_store import LanceStore

    target = LanceStore(tmp_path / "target")
    assert migrate(coll, target, name="moved") == 6
    moved = target.open_collection("moved")
    assert moved.spec == SPEC and moved.count() == 6
    _, vecs = _data()
    assert moved.search(vecs["image"][4], target="image", k=1)[0].record.id == "case4"
    assert migrate(coll, target, name="moved") == 6 and moved.count() == 6  # idempotent
