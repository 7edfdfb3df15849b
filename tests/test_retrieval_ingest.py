"""Ingest layouts, idempotent and resumable indexing, the Retriever API and the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from retrieval_fixtures import *  # noqa: F403
from retrieval_fixtures import write_samples

from litevlm.config import load_settings
from tools.retrieval import RetrievalError, Retriever, similar_cases
from tools.retrieval.ingest import detect_layout, ingest, read_items
from tools.retrieval.lancedb_store import LanceStore
from tools.retrieval.store import CollectionSpec, VectorSpec


def _settings(tmp_path, **retrieval):
    return load_settings(data_dir=tmp_path / "data", retrieval=retrieval)


def _collection(tmp_path, image, text):
    spec = CollectionSpec(
        vectors={
            "image": VectorSpec(model=image.model_id, dim=image.dim),
            "text": VectorSpec(model=text.model_id, dim=text.dim),
        }
    )
    return LanceStore(tmp_path / "db").create_collection("cases", spec)


def test_folder_with_jsonl_sidecar_bad_file_and_rerun(tmp_path, sample_folder, classical, minilm):
    folder = tmp_path / "imgs"
    shutil.copytree(sample_folder, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    coll = _collection(tmp_path, classical, minilm)
    report = ingest(
        folder, coll, image_embedder=classical, text_embedder=minilm, batch_size=2, progress=False
    )
    assert report.layout == "folder"
    assert report.added == 4 and coll.count() == 4
    assert [w for w, _ in report.failed] == [str((folder / "broken.png").resolve())]
    again = ingest(folder, coll, image_embedder=classical, text_embedder=minilm, progress=False)
    assert again.added == 0 and again.already_present == 4 and coll.count() == 4
    hit = coll.search(minilm.embed_texts(["fundus photograph"])[0], target="text", k=1)[0]
    assert hit.record.organ == "eye" and hit.record.extra["image_sha256"]


def test_killed_midway_then_rerun_stores_each_record_once(
    tmp_path, sample_folder, classical, minilm
):
    coll = _collection(tmp_path, classical, minilm)

    def die(_n):
        raise KeyboardInterrupt  # the user presses Ctrl-C after the first batch

    with pytest.raises(KeyboardInterrupt):
        ingest(sample_folder, coll, image_embedder=classical, text_embedder=minilm,
               batch_size=2, progress=False, on_batch=die)  # fmt: skip
    assert coll.count() == 2
    report = ingest(sample_folder, coll, image_embedder=classical, text_embedder=minilm,
                    batch_size=2, progress=False)  # fmt: skip
    assert report.added == 2 and report.already_present == 2
    ids = [r.id for recs, _ in coll.iter_batches() for r in recs]
    assert len(ids) == len(set(ids)) == 4


def test_csv_sidecar(tmp_path):
    rows = write_samples(tmp_path / "f", size=32)
    with open(tmp_path / "f" / "meta.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file_name", "caption", "modality"])
        w.writeheader()
        for r in rows:
            w.writerow({"file_name": r["image"], "caption": r["caption"], "modality": "x"})
    layout, n, items = read_items(tmp_path / "f")
    items = list(items)
    assert layout == "folder" and n == 4
    assert all(i.caption and i.meta["modality"] == "x" for i in items)


def test_roco_layout(tmp_path):
    root = tmp_path / "roco" / "train" / "radiology"
    rows = write_samples(root / "images", size=32)
    with open(root / "radiologytraindata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "caption"])
        for i, r in enumerate(rows):
            w.writerow([f"ROCO_{i:05d}", r["image"], f" {r['caption']} "])
    assert detect_layout(root) == "roco"
    _, n, items = read_items(root)
    items = list(items)
    assert n == 4 and items[0].meta["source"] == "ROCO" and items[0].extra["roco_id"]
    assert items[0].path.is_file() and items[0].caption == rows[0]["caption"]


def test_vqa_rad_layout_groups_questions_per_image(tmp_path):
    root = tmp_path / "vqarad"
    rows = write_samples(root / "VQA_RAD Image Folder", size=32)
    qa = [
        {"image_name": rows[0]["image"], "question": "Is this a CT?", "answer": "no",
         "image_organ": "HEAD"},
        {"image_name": rows[0]["image"], "question": "Is there a mass?", "answer": "yes",
         "image_organ": "HEAD"},
        {"image_name": rows[1]["image"], "question": "Which organ?", "answer": "colon",
         "image_organ": "ABD"},
    ]  # fmt: skip
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(qa))
    layout, n, items = read_items(root)
    items = list(items)
    assert layout == "vqa-rad" and n == 2
    assert "Q: Is this a CT? A: no" in items[0].caption and "mass" in items[0].caption
    assert items[0].meta == {"source": "VQA-RAD", "organ": "head"}


def test_slake_layout_keeps_english_only(tmp_path):
    root = tmp_path / "slake"
    rows = write_samples(root / "imgs" / "xmlab1", size=32)
    qa = [
        {"img_name": f"xmlab1/{rows[0]['image']}", "question": "What modality?",
         "answer": "MRI", "q_lang": "en", "location": "Brain", "modality": "MRI"},
        {"img_name": f"xmlab1/{rows[0]['image']}", "question": "这是什么?",
         "answer": "脑", "q_lang": "zh", "location": "Brain", "modality": "MRI"},
    ]  # fmt: skip
    (root / "train.json").write_text(json.dumps(qa, ensure_ascii=False))
    layout, n, items = read_items(root)
    items = list(items)
    assert layout == "slake" and n == 1
    assert items[0].meta["modality"] == "MR" and items[0].meta["organ"] == "Brain"
    assert "这是" not in items[0].caption


def test_saved_hf_dataset(tmp_path, classical):
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    rows = write_samples(tmp_path / "src", size=32)
    ds = Dataset.from_dict(
        {
            "image": [PILImage.open(tmp_path / "src" / r["image"]) for r in rows],
            "caption": [r["caption"] for r in rows],
            "modality": [r["modality"] for r in rows],
        },
        features=Features({"image": Image(), "caption": Value("string"),
                           "modality": Value("string")}),
    )  # fmt: skip
    ds.save_to_disk(str(tmp_path / "hf"))
    spec = CollectionSpec(
        vectors={"image": VectorSpec(model=classical.model_id, dim=classical.dim)}
    )
    coll = LanceStore(tmp_path / "db").create_collection("hf", spec)
    report = ingest(tmp_path / "hf", coll, image_embedder=classical, progress=False)
    assert report.layout == "hf" and report.added == 4
    assert ingest(tmp_path / "hf", coll, image_embedder=classical, progress=False).added == 0


def test_retriever_with_tiny_clip_and_mismatch_refused(tmp_path, sample_folder, tiny_clip, minilm):
    from tools.images import load_image

    s = _settings(tmp_path, embedder=str(tiny_clip), fallback_embedder=None)
    r = Retriever(s, text_embedder=minilm)
    report = r.index(sample_folder, progress=False)
    assert report.image_embedder == str(tiny_clip) and report.added == 4
    cases = r.similar(image=load_image(sample_folder / "retina.png"), k=3)
    assert len(cases) == 3 and all(c.embedder == str(tiny_clip) for c in cases)
    # the query image itself is indexed: it is left out of its own similar cases
    assert not any(c.image_uri.endswith("retina.png") for c in cases)
    text_cases = r.similar(text="fundus photograph of the retina", k=2, filters={"organ": "eye"})
    assert {c.metadata["organ"] for c in text_cases} == {"eye"}
    # captions (keyword + MiniLM) fused with CLIP text-to-image
    assert text_cases[0].match in {"hybrid+image", "hybrid", "image"}
    assert any("MiniLM" in c.embedder for c in text_cases)

    other = _settings(tmp_path, embedder="classical:color-texture-v1")
    with pytest.raises(RetrievalError, match="indexed with image model"):
        Retriever(other, text_embedder=minilm).similar(
            image=load_image(sample_folder / "cells.png")
        )


def test_fallback_is_named_and_similar_cases_one_call(tmp_path, sample_folder, minilm):
    from tools.images import load_image

    s = _settings(tmp_path, embedder=str(tmp_path / "no-such-model"))
    r = Retriever(s, text_embedder=minilm)
    r.index(sample_folder, progress=False)
    assert any("classical:color-texture-v1" in w for w in r.warnings)
    cases = similar_cases(image=load_image(sample_folder / "ihc.png"), k=2, settings=s)
    assert cases and cases[0].embedder == "classical:color-texture-v1"
    with pytest.raises(RetrievalError, match="image or a text"):
        r.similar()


def test_cli_index_and_similar(tmp_path, sample_folder, monkeypatch):
    from typer.testing import CliRunner

    from litevlm.cli import app

    monkeypatch.setenv("LITEVLM_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    args = ["--collection", "demo", "--embedder", "classical:color-texture-v1"]
    res = runner.invoke(app, ["index", str(sample_folder), *args, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output[res.output.index("{") :])["added"] == 4
    res = runner.invoke(
        app, ["similar", str(sample_folder / "ihc.png"), *args, "--k", "2",
              "--filter", "modality=photo"]
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "retina" in res.output or "microaneurysms" in res.output
    assert "scores from: classical:color-texture-v1" in res.output


def test_unknown_layout_and_missing_path(tmp_path):
    with pytest.raises(RetrievalError, match="unknown layout"):
        read_items(tmp_path, layout="nope")
    with pytest.raises(RetrievalError, match="no such file"):
        read_items(Path(tmp_path / "missing"))
