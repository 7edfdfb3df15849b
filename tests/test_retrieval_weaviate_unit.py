"""Weaviate adapter against the weaviate-client's own config and query objects.

A mock stands in for the server (none can run here); what is checked is that the adapter
builds the client's real objects (``Configure.Vectors.self_provided``, ``Filter``,
``MetadataQuery``) and passes them where the v4 API expects them.
"""

from __future__ import annotations

from unittest.mock import MagicMock

import numpy as np
import pytest

pytest.importorskip("weaviate")

from weaviate.classes.config import Configure
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery
from weaviate.util import generate_uuid5

from litevlm.errors import ServiceUnavailable
from tools.retrieval.store import CaseRecord, CollectionSpec, VectorSpec
from tools.retrieval.weaviate_store import (
    WeaviateStore,
    build_filters,
    collection_config,
)

SPEC = CollectionSpec(
    vectors={"image": VectorSpec(model="m-img", dim=3), "text": VectorSpec(model="m", dim=2)}
)


def _store():
    client = MagicMock()
    client.collections.exists.return_value = False
    return WeaviateStore(client=client), client


def test_collection_config_uses_self_provided_named_vectors_and_tenants():
    cfg = collection_config(SPEC)
    names = [v.name for v in cfg["vector_config"]]
    assert names == ["image", "text"]
    expected = Configure.Vectors.self_provided(name="image")
    assert type(cfg["vector_config"][0]) is type(expected)
    assert cfg["vector_config"][0].vectorizer == expected.vectorizer
    assert cfg["multi_tenancy_config"].enabled is True
    assert cfg["multi_tenancy_config"].autoTenantCreation is True
    assert CollectionSpec.model_validate_json(cfg["description"].removeprefix("litevlm:")) == SPEC
    caption = next(p for p in cfg["properties"] if p.name == "caption")
    assert caption.indexSearchable is True


def test_create_collection_passes_config():
    store, client = _store()
    store.create_collection("cases", SPEC)
    args, kwargs = client.collections.create.call_args
    assert args == ("Cases",)
    assert kwargs["vector_config"][1].name == "text"


def test_near_vector_with_target_vector_and_filters():
    store, client = _store()
    coll = store.create_collection("cases", SPEC)
    handle = client.collections.create.return_value
    tenant_handle = handle.with_tenant.return_value
    obj = MagicMock(properties={"case_id": "c1", "caption": "x", "modality": "CT"})
    obj.metadata.distance = 0.25
    tenant_handle.query.near_vector.return_value.objects = [obj]
    hits = coll.search(np.ones(3), target="image", k=4, filters={"modality": "CT"}, tenant="lab")
    handle.with_tenant.assert_called_with("lab")
    kwargs = tenant_handle.query.near_vector.call_args.kwargs
    assert kwargs["target_vector"] == "image" and kwargs["limit"] == 4
    assert kwargs["filters"] == Filter.by_property("modality").equal("CT")
    assert kwargs["return_metadata"] == MetadataQuery(distance=True)
    assert hits[0].record.id == "c1" and hits[0].score == pytest.approx(0.75)


def test_hybrid_call():
    store, client = _store()
    coll = store.create_collection("cases", SPEC)
    th = client.collections.create.return_value.with_tenant.return_value
    th.query.hybrid.return_value.objects = []
    coll.hybrid("ki-67", np.ones(2), target="text", k=3, filters={"organ": "breast"})
    kwargs = th.query.hybrid.call_args.kwargs
    assert kwargs["query"] == "ki-67" and kwargs["target_vector"] == "text"
    assert kwargs["query_properties"] == ["caption"]
    assert kwargs["fusion_type"] == HybridFusion.RELATIVE_SCORE
    assert kwargs["filters"] == Filter.by_property("organ").equal("breast")


def test_two_filters_are_combined_with_all_of():
    f = build_filters({"modality": "CT", "organ": "lung"})
    expected = Filter.all_of(
        [Filter.by_property("modality").equal("CT"), Filter.by_property("organ").equal("lung")]
    )
    assert type(f) is type(expected)  # _FilterAnd has no __eq__; compare its operands
    assert f.filters == expected.filters
    assert build_filters(None) is None


def test_batch_import_uses_uuid5_named_vectors_and_checks_failed_objects():
    store, client = _store()
    coll = store.create_collection("cases", SPEC)
    th = client.collections.create.return_value.with_tenant.return_value
    batch = th.batch.fixed_size.return_value.__enter__.return_value
    th.batch.failed_objects = []
    vecs = {"image": np.ones((2, 3)), "text": np.array([[1.0, 0.0], [np.nan, np.nan]])}
    coll.upsert([CaseRecord(id="a", caption="c"), CaseRecord(id="b")], vecs)
    first, second = batch.add_object.call_args_list
    assert first.kwargs["uuid"] == generate_uuid5("a")
    assert first.kwargs["properties"]["case_id"] == "a"
    assert set(first.kwargs["vector"]) == {"image", "text"}
    assert set(second.kwargs["vector"]) == {"image"}  # no caption vector: left out

    th.batch.failed_objects = [MagicMock(message="vector dimension mismatch")]
    with pytest.raises(ServiceUnavailable, match="rejected 1 of 1"):
        coll.upsert([CaseRecord(id="c")], {"image": np.ones((1, 3))})


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(ServiceUnavailable, match="docker compose"):
        WeaviateStore("http://127.0.0.1:9", grpc_port=9)
