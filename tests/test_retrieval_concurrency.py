"""Two `litevlm index` processes on one collection, a file indexed twice, a collection that
already holds duplicates: every case is stored once and `similar` shows it once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from litevlm.config import Settings

EMBEDDER = "classical:color-texture-v1"


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    """40 distinct crops of four real scikit-image samples, plus one byte-identical copy."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("crops")
    n = 0
    for sample in (data.immunohistochemistry(), data.retina(), data.astronaut(), data.coffee()):
        h, w = sample.shape[:2]
        for i in range(10):  # around the centre: the retina's black corners are all alike
            y, x = h // 2 - 150 + 17 * i, w // 2 - 150 + 25 * i
            Image.fromarray(sample[y : y + 96, x : x + 96]).save(folder / f"c{n:03d}.png")
            n += 1
    shutil.copy(folder / "c000.png", folder / "copy_of_c000.png")
    return folder


def _rows(data_dir: Path, name: str) -> list[str]:
    from tools.retrieval.lancedb_store import LanceStore

    table = LanceStore(data_dir / "lancedb").open_collection(name).table
    return table.search().select(["id"]).limit(None).to_arrow()["id"].to_pylist()


@pytest.mark.slow
def test_two_index_processes_store_each_case_once(crops: Path, tmp_path: Path) -> None:
    env = {**os.environ, "LITEVLM_DATA_DIR": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "litevlm", "index", str(crops), "--collection", "race",
           "--embedder", EMBEDDER, "--no-text", "--json"]  # fmt: skip
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    reports = [json.loads(out[out.index("{") :]) for out, _ in outs]
    ids = _rows(tmp_path / "data", "race")
    assert len(ids) == len(set(ids)) == 40  # 41 files, one a byte copy
    assert sum(r["added"] for r in reports) >= 40


def test_reindex_repairs_duplicates_and_similar_shows_a_case_once(crops, tmp_path) -> None:
    from tools.images import load_image
    from tools.retrieval import Retriever

    s = Settings(data_dir=tmp_path / "data", retrieval={"embedder": EMBEDDER})
    r = Retriever(s, collection="dups")
    report = r.index(crops, text=False, progress=False)
    assert report.added == 40 and report.duplicates + report.already_present == 1
    table = r.collection.table
    # What two unlocked writers left behind: every row twice.
    table.add(table.search().limit(None).to_arrow().select(table.schema.names))
    assert table.count_rows() == 80

    hits = r.similar(image=load_image(crops / "c005.png"), k=10, exclude_self=False)
    assert len(hits) == len({h.id for h in hits})

    again = r.index(crops, text=False, progress=False)
    assert again.added == 0 and again.already_present + again.duplicates == 41
    ids = _rows(tmp_path / "data", "dups")
    assert len(ids) == len(set(ids)) == 40
    vectors = next(r.collection.iter_batches(batch_size=100))[1]["image"]
    assert np.isfinite(vectors).all()  # the copies kept their vectors
    r.close()


def test_same_file_twice_in_one_batch_is_stored_once(crops: Path, tmp_path: Path) -> None:
    from tools.embeddings import ClassicalImageEmbedder
    from tools.retrieval.ingest import ingest
    from tools.retrieval.lancedb_store import LanceStore
    from tools.retrieval.store import CollectionSpec, VectorSpec

    emb = ClassicalImageEmbedder()
    spec = CollectionSpec(vectors={"image": VectorSpec(model=emb.model_id, dim=emb.dim)})
    coll = LanceStore(tmp_path / "lancedb").create_collection("batch", spec)
    report = ingest(crops, coll, image_embedder=emb, batch_size=64, progress=False)
    assert (report.added, report.duplicates) == (40, 1)
    assert coll.count() == 40
