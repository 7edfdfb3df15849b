"""Fine-tuning data, config and synthetic QA: no model needed (fast)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from finetune.config import DataConfig, config_from_dict, load_config
from finetune.data import DataError, dataset_stats, format_stats, load_examples, split_by_image
from finetune.samples import write_sample_dataset
from finetune.synth_qa import CaptionRow, load_captions, model_pairs, synthesize, template_pairs
from litevlm.errors import ConfigError


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_dataset(tmp_path_factory.mktemp("ft_samples"), crops_per_image=2)


def _images(samples: Path) -> list[Path]:
    return sorted((samples / "images").glob("*.png"))


def test_jsonl_layout_loads_real_images(samples: Path) -> None:
    rows = load_examples(DataConfig(path=str(samples / "train.jsonl")))
    assert len(rows) == 24
    vqa = next(r for r in rows if r.kind == "vqa")
    assert vqa.prompt == "answer en what kind of image is this?"
    cap = next(r for r in rows if r.kind == "caption")
    assert cap.prompt == "caption en" and cap.answer.startswith("a ")


def test_csv_layout_with_prompt_column(samples: Path, tmp_path: Path) -> None:
    path = samples / "prompts.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["image", "prompt", "answer"])
        w.writeheader()
        for img in _images(samples):
            w.writerow({"image": f"images/{img.name}", "prompt": "detect cell", "answer": "x"})
    rows = load_examples(DataConfig(path=str(path)))
    assert {r.prompt for r in rows} == {"detect cell"}


def test_vqa_rad_layout(samples: Path, tmp_path: Path) -> None:
    folder = tmp_path / "VQA_RAD Image Folder"
    shutil.copytree(samples / "images", folder)
    rows = [
        {"image_name": img.name, "question": "is there a mass?", "answer": "no",
         "answer_type": "CLOSED", "phrase_type": "freeform"}
        for img in _images(samples)
    ]  # fmt: skip
    (tmp_path / "VQA_RAD Dataset Public.json").write_text(json.dumps(rows))
    ex = load_examples(DataConfig(path=str(tmp_path)))  # the folder is recognised
    assert len(ex) == len(rows) and ex[0].meta["answer_type"] == "CLOSED"


def test_slake_layout_keeps_english(samples: Path, tmp_path: Path) -> None:
    for img in _images(samples):
        (tmp_path / "imgs" / img.stem).mkdir(parents=True)
        shutil.copy(img, tmp_path / "imgs" / img.stem / "source.png")
    rows = []
    for img in _images(samples):
        rows.append({"img_name": f"{img.stem}/source.png", "question": "which organ?",
                     "answer": "lung", "q_lang": "en"})  # fmt: skip
        rows.append({"img_name": f"{img.stem}/source.png", "question": "哪个器官?",
                     "answer": "肺", "q_lang": "zh"})  # fmt: skip
    (tmp_path / "train.json").write_text(json.dumps(rows[:8]))
    (tmp_path / "test.json").write_text(json.dumps(rows[8:]))
    ex = load_examples(DataConfig(path=str(tmp_path)))
    assert len(ex) == len(_images(samples)) and {e.answer for e in ex} == {"lung"}


def test_pathvqa_layout_finds_images_by_name(samples: Path, tmp_path: Path) -> None:
    shutil.copytree(samples / "images", tmp_path / "images" / "train")
    rows = [
        {"image": img.stem, "question": "is this h&e?", "answer": "yes"} for img in _images(samples)
    ]
    (tmp_path / "train_vqa.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ex = load_examples(DataConfig(path=str(tmp_path), layout="pathvqa"))
    assert len(ex) == len(rows) and all(Path(e.image).is_file() for e in ex)


def test_roco_layout_captions(samples: Path, tmp_path: Path) -> None:
    shutil.copytree(samples / "images", tmp_path / "images")
    with open(tmp_path / "radiologytraindata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "caption"])
        for i, img in enumerate(_images(samples)):
            w.writerow([f"ROCO_{i:05d}", img.name, "Chest x-ray showing a small nodule."])
    ex = load_examples(DataConfig(path=str(tmp_path)))
    assert ex and all(e.kind == "caption" and e.prompt == "caption en" for e in ex)


def test_hf_saved_dataset_layout(samples: Path, tmp_path: Path) -> None:
    import datasets
    from PIL import Image

    imgs = [Image.open(p).convert("RGB") for p in _images(samples)]
    ds = datasets.Dataset.from_dict(
        {"image": imgs, "question": ["what is it?"] * len(imgs), "answer": ["cells"] * len(imgs)}
    ).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "hf"))
    ex = load_examples(DataConfig(path=str(tmp_path / "hf")))
    assert len(ex) == len(imgs) and ex[0].image.size == imgs[0].size
    assert len({e.image_id for e in ex}) == len(imgs)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"image": "images/missing.png", "question": "q", "answer": "a"}, "image file not found"),
        ({"image": "IMG", "question": "q", "answer": "  "}, "empty answer"),
        ({"image": "IMG", "question": "", "answer": "a"}, "empty question"),
    ],
)
def test_bad_rows_give_clear_errors(samples: Path, row: dict, message: str) -> None:
    row = {k: (f"images/{_images(samples)[0].name}" if v == "IMG" else v) for k, v in row.items()}
    path = _write_jsonl(samples / "bad.jsonl", [row])
    with pytest.raises(DataError, match=message) as e:
        load_examples(DataConfig(path=str(path)))
    assert "bad.jsonl" in str(e.value) and "row 1" in str(e.value)


def test_unknown_columns_are_named(samples: Path) -> None:
    path = _write_jsonl(
        samples / "cols.jsonl", [{"picture": "x.png", "questoin": "q", "answr": "a"}]
    )
    with pytest.raises(DataError, match=r"unknown columns.*picture.*image column.*answer column"):
        load_examples(DataConfig(path=str(path)))


def test_missing_file_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_examples(DataConfig(path=str(tmp_path / "nope.jsonl")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.png"\n')
    with pytest.raises(DataError, match="line 1 is not valid JSON"):
        load_examples(DataConfig(path=str(bad)))


def test_split_by_image_has_no_leak_and_is_seeded(samples: Path) -> None:
    rows = load_examples(DataConfig(path=str(samples / "train.jsonl")))
    splits = split_by_image(rows, 0.25, 0.25, seed=3)
    ids = {k: {e.image_id for e in v} for k, v in splits.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    assert sum(len(v) for v in splits.values()) == len(rows)
    again = split_by_image(rows, 0.25, 0.25, seed=3)
    assert [e.image_id for e in again["val"]] == [e.image_id for e in splits["val"]]
    stats = dataset_stats(splits, "x", "jsonl")
    assert stats.splits["train"].images == len(ids["train"])
    assert "top answers" in format_stats(stats)
    with pytest.raises(DataError, match="leave no training data"):
        split_by_image(rows, 0.5, 0.5, seed=0)


def test_config_yaml_two_stages_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "model: some/model\nlearning_rate: 0.001\n"
        "stages:\n  - {name: align, train_projector: true}\n  - {name: vqa, method: full}\n"
    )
    cfg = load_config(path)
    assert [s.name for s in cfg.stages] == ["align", "vqa"]
    assert cfg.stages[1].learning_rate == 0.001 and cfg.stages[0].train_projector
    with pytest.raises(ConfigError, match="unknown key.*lr"):
        config_from_dict({"lr": 1})
    with pytest.raises(ConfigError, match=r"stages.0.method"):
        config_from_dict({"stages": [{"method": "magic"}]})
    with pytest.raises(ConfigError, match=r"data.pth"):
        config_from_dict({"data": {"pth": "x"}})


def test_synth_qa_templates_dedup_and_marking(tmp_path: Path) -> None:
    path = tmp_path / "captions.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"image": "a.png", "caption": "Chest x-ray with a right lung nodule, no effusion."},
                {"image": "a.png", "caption": "Chest x-ray with a right lung nodule, no effusion."},
                {"image": "b.png", "caption": "H&E section of colon showing necrosis."},
            ]
        )
    )
    pairs = synthesize(load_captions(path), per_caption=5)
    assert all(p.synthetic and p.generator == "template" for p in pairs)
    a = {p.question: p.answer for p in pairs if p.image == "a.png"}
    assert a["what imaging modality is this?"] == "x-ray"
    assert a["which organ is shown?"] == "lung"
    assert a["is there a nodule?"] == "yes" and a["is there an effusion?"] == "no"
    assert len([p for p in pairs if p.image == "a.png"]) == len(a)  # duplicate caption removed
    b = {p.question: p.answer for p in pairs if p.image == "b.png"}
    assert b["what imaging modality is this?"] == "histology"


def test_synth_qa_with_a_chat_model() -> None:
    # A fake chat model from langchain_core: no LLM can run offline in CI.
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    reply = 'Here: [{"question": "Which organ?", "answer": "lung"}, {"question": "x"}]'
    chat = GenericFakeChatModel(messages=iter([AIMessage(content=reply), AIMessage(content="?")]))
    row = CaptionRow(image="a.png", caption="CT of the lung.")
    pairs = model_pairs(row, chat, 3)
    assert [(p.question, p.answer) for p in pairs] == [("Which organ?", "lung")]
    assert pairs[0].synthetic and pairs[0].generator == "GenericFakeChatModel"
    # A reply without pairs falls back to templates.
    out = synthesize([row], chat=chat, per_caption=2)
    assert out and all(p.generator == "template" for p in out)
    assert template_pairs(row)[1].answer == "CT"
