"""finetune.evaluate, `litevlm eval` and `litevlm explain` on the tiny PaliGemma, real images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from finetune import evaluate as ev
from litevlm.errors import LiteVLMError


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    """A small JSONL test set over real sample images (scikit-image, pydicom-data)."""
    import pydicom.data
    from PIL import Image
    from skimage import data

    from tools.images import load_image

    root = tmp_path_factory.mktemp("evalset")
    (root / "img").mkdir()
    Image.fromarray(data.cell()).save(root / "img" / "cell.png")
    Image.fromarray(data.immunohistochemistry()).save(root / "img" / "ihc.png")
    load_image(pydicom.data.get_testdata_file("CT_small.dcm")).image.save(root / "img" / "ct.png")
    desc = "immunohistochemistry with brown DAB staining and blue hematoxylin counterstain"
    rows = [
        dict(image="img/cell.png", question="any cells?", answer="yes", modality="microscopy"),
        dict(image="img/cell.png", question="is it CT?", answer="no", modality="microscopy"),
        dict(image="img/ihc.png", question="what stain is used?", answer="brown DAB staining",
             modality="histology", question_type="open"),
        dict(image="img/ihc.png", question="describe the image", answer=desc,
             modality="histology", keywords=["DAB", "hematoxylin"]),
        dict(image="img/ct.png", question="which organ is shown?", answer="abdomen", modality="CT"),
    ]  # fmt: skip
    path = root / "test.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_load_test_set(test_set):
    xs = ev.load_test_set(test_set)
    assert len(xs) == 5
    assert xs[0].image.endswith("cell.png") and xs[0].meta["modality"] == "microscopy"
    assert [ev.answer_type(x) for x in xs] == ["closed", "closed", "open", "description", "open"]
    assert xs[3].meta["keywords"] == ["DAB", "hematoxylin"]
    assert len(ev.load_test_set(test_set, limit=2)) == 2


def test_load_test_set_errors(tmp_path):
    with pytest.raises(ev.EvalDataError, match="not found"):
        ev.load_test_set(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x.png", "question": "q"}\n')
    with pytest.raises(ev.EvalDataError, match=r"bad.jsonl: .*answer"):
        ev.load_test_set(bad)
    bad.write_text('{"image": "x.png", "question": "q", "answer": "a"}\n')
    with pytest.raises(ev.EvalDataError, match="row 1: image file not found"):
        ev.load_test_set(bad)
    bad.write_text("{oops\n")
    with pytest.raises(ev.EvalDataError, match="line 1 is not valid JSON"):
        ev.load_test_set(bad)


def test_load_vqa_rad_layout_through_finetune_loader(tmp_path):
    from PIL import Image
    from skimage import data

    folder = tmp_path / "VQA_RAD Image Folder"
    folder.mkdir()
    Image.fromarray(data.cell()).save(folder / "synpic1.jpg")
    rows = [
        {"image_name": "synpic1.jpg", "question": "is there a mass?", "answer": "no",
         "answer_type": "CLOSED", "image_organ": "CHEST"},
        {"image_name": "synpic1.jpg", "question": "where is it?", "answer": "left lung",
         "answer_type": "OPEN", "image_organ": "CHEST"},
    ]  # fmt: skip
    (tmp_path / "VQA_RAD Dataset Public.json").write_text(json.dumps(rows))
    xs = ev.load_test_set(tmp_path)
    assert [(x.question, x.meta["question_type"]) for x in xs] == [
        ("is there a mass?", "closed"),
        ("where is it?", "open"),
    ]


def test_score_predictions_breakdowns(test_set):
    xs = ev.load_test_set(test_set)
    preds = ["yes", "yes", "DAB", "brown DAB staining with hematoxylin counterstain", "abdomen"]
    overall, by_type, by_mod, rows = ev.score_predictions(xs, preds, [0.1] * 5, [3] * 5)
    assert overall.closed_accuracy == 0.5
    assert overall.open_exact_match == 0.5  # "abdomen" exact, "DAB" not
    assert overall.open_recall == pytest.approx((1 / 3 + 1) / 2)
    assert overall.keyword_recall == 1.0  # DAB and hematoxylin both named
    assert set(by_type) == {"closed", "open", "description"}
    assert by_mod["microscopy"].n == 2 and by_mod["microscopy"].closed_accuracy == 0.5
    assert by_mod["CT"].open_exact_match == 1.0
    assert rows[1].correct is False and rows[0].correct is True


def test_percentile_matches_numpy():
    xs = [0.3, 0.1, 0.9, 0.5, 0.2, 0.7]
    for q in (50, 95, 0, 100):
        assert ev.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_pair_specs():
    s = ev.pair_specs(["M"], ["none", "runs/sft"])
    assert [(x.model, x.adapter) for x in s] == [("M", None), ("M", "runs/sft")]
    assert s[1].name() == "M+sft"
    s = ev.pair_specs(["A", "B"], [], ["pre", "mix"])
    assert [x.name() for x in s] == ["pre", "mix"]
    with pytest.raises(LiteVLMError, match="adapter"):
        ev.pair_specs(["A", "B"], ["x", "y", "z"])


def test_feedback_satisfaction(tmp_path):
    path = tmp_path / "feedback.csv"
    cols = ["thread_id", "message_id", "value", "comment", "vision_model", "adapter"]
    rows = [
        ["t1", "m1", "1", "", "pg-mix", ""],
        ["t1", "m2", "0", "wrong organ", "pg-mix", ""],
        ["t2", "m3", "up", "great", "pg-mix", "sft-v2"],
        ["t2", "m4", "up", "", "pg-mix", "sft-v2"],
        ["t3", "m5", "down", "", "pg-mix", "sft-v2"],
    ]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([cols, *rows])
    out = {(r.vision_model, r.adapter): r for r in ev.feedback_satisfaction(path)}
    assert out["pg-mix", "none"].satisfaction == 0.5 and out["pg-mix", "none"].comments == 1
    sft = out["pg-mix", "sft-v2"]
    assert (sft.n, sft.up, sft.down) == (3, 2, 1) and sft.satisfaction == pytest.approx(2 / 3)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ev.EvalDataError, match="value"):
        ev.feedback_satisfaction(bad)


def test_compute_metrics_for_trainer(tiny_paligemma):
    from transformers import AutoProcessor, EvalPrediction

    tok = AutoProcessor.from_pretrained(tiny_paligemma).tokenizer
    answers = ["yes", "round cells"]
    ids = [tok(a, add_special_tokens=False)["input_ids"] for a in answers]
    width = 4 + max(map(len, ids))
    labels = np.full((2, width), -100)
    preds = np.zeros((2, width), dtype=int)
    for i, a in enumerate(ids):
        labels[i, 4 : 4 + len(a)] = a
        preds[i, 3 : 3 + len(a)] = a  # teacher forcing: position t predicts label t+1
    scores = ev.make_compute_metrics(tok)(EvalPrediction(predictions=preds, label_ids=labels))
    assert scores["closed_accuracy"] == 1.0 and scores["open_exact_match"] == 1.0
    logits = np.eye(len(tok))[preds]  # raw logits work too
    assert ev.make_compute_metrics(tok)(EvalPrediction(logits, labels))["open_f1"] == 1.0


@pytest.fixture(scope="module")
def lora_adapter(tiny_paligemma, tmp_path_factory):
    """A LoRA adapter saved by peft on the tiny model (random, non-zero B so it changes output)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_paligemma)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter") / "sft-v1"
    peft.save_pretrained(out)
    return out


def test_eval_side_by_side_on_tiny_model(tiny_paligemma, lora_adapter, test_set, tmp_path):
    from litevlm.config import load_settings

    s = load_settings(vision={"model": str(tiny_paligemma), "max_new_tokens": 4})
    specs = ev.pair_specs([str(tiny_paligemma)], ["none", str(lora_adapter)], ["base", "sft"])
    report = ev.evaluate(test_set, specs, settings=s, batch_size=2, progress=False)
    assert [m.spec.name() for m in report.models] == ["base", "sft"]
    for m in report.models:
        assert m.overall.n == 5 and len(m.predictions) == 5
        assert m.timing.batch_size == 2 and m.timing.n == 5
        assert 0 < m.timing.latency_p50_s <= m.timing.latency_p95_s
        assert m.timing.peak_memory_mb > 0
        assert set(m.by_modality) == {"microscopy", "histology", "CT"}
    paths = ev.write_report(report, tmp_path / "rep")
    for key in ("json", "markdown", "html", "metrics", "latency"):
        assert paths[key].is_file(), key
    md = paths["markdown"].read_text()
    assert "| base |" in md and "| sft |" in md and "Per modality" in md
    assert json.loads(paths["json"].read_text())["models"][1]["spec"]["adapter"] == str(
        lora_adapter
    )


def test_cli_eval_and_explain(
    tiny_paligemma, lora_adapter, test_set, tmp_path, artifacts_dir, monkeypatch
):
    from typer.testing import CliRunner

    from litevlm.cli import app

    monkeypatch.setenv("LITEVLM_VISION__MAX_NEW_TOKENS", "3")
    fb = tmp_path / "fb.csv"
    fb.write_text("value,comment,vision_model,adapter\n1,,tiny,\n0,meh,tiny,\n")
    runner = CliRunner()
    out = tmp_path / "rep"
    res = runner.invoke(
        app,
        ["eval", "--data", str(test_set), "--model", str(tiny_paligemma), "--out", str(out),
         "--limit", "3", "--batch-size", "3", "--feedback", str(fb), "--no-plots"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "closed acc." in res.output and (out / "report.html").is_file()
    assert "User satisfaction" in (out / "report.md").read_text()

    heat = artifacts_dir / "explain_cli_cell.png"
    from PIL import Image
    from skimage import data

    img = tmp_path / "cell.png"
    Image.fromarray(data.cell()).save(img)
    res = runner.invoke(
        app,
        ["explain", str(img), "--question", "how many cells?", "--out", str(heat),
         "--model", str(tiny_paligemma), "--adapter", str(lora_adapter), "--method", "rollout",
         "--json", "--save-array"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["method"] == "rollout" and heat.is_file()
    assert len(info["tokens"]) >= 1 and "map" in info["tokens"][0]
    o = info["objects"]  # the cells segmented as `litevlm measure` does
    assert o["n_objects"] > 0 and 0 <= o["on_objects"] <= 1 and 0 < o["object_area"] < 1
    assert np.load(info["array"]).shape == Image.open(img).size[::-1]
    res = runner.invoke(app, ["explain", str(img), "--method", "gradcam"])
    assert res.exit_code != 0


def test_prompt_experiments_side_by_side(tiny_paligemma, test_set):
    from finetune.evaluate.vision import prompt_for
    from litevlm.config import load_settings

    s = load_settings(vision={"model": str(tiny_paligemma), "max_new_tokens": 3})
    prompts = ["answer en {question}", "caption en", "default"]
    specs = ev.pair_specs([str(tiny_paligemma)], [], prompts=prompts)
    assert [x.prompt for x in specs] == ["answer en {question}", "caption en", None]
    report = ev.evaluate(test_set, specs, settings=s, batch_size=2, limit=2, progress=False)
    names = [m.spec.name() for m in report.models]
    assert names[0].endswith("[answer en {question}]") and names[1].endswith("[caption en]")
    for m in report.models:  # generation time per prompt
        assert m.timing.n == 2 and m.timing.total_s > 0
    # the explicit PaliGemma answer prefix is what the default prompt sends
    assert [p.prediction for p in report.models[0].predictions] == [
        p.prediction for p in report.models[2].predictions
    ]
    assert prompt_for(object(), "how many cells?", "Q: {question} A:") == "Q: how many cells? A:"
    with pytest.raises(LiteVLMError, match="label"):
        ev.pair_specs(["M"], [], ["one"], prompts=["caption en", "describe en"])


def test_slake_split_file_is_read_as_slake(tmp_path):
    from PIL import Image
    from skimage import data

    (tmp_path / "imgs" / "xmlab1").mkdir(parents=True)
    Image.fromarray(data.cell()).save(tmp_path / "imgs" / "xmlab1" / "source.jpg")
    rows = [
        {"img_name": "xmlab1/source.jpg", "question": "Which side?", "answer": "Left",
         "answer_type": "CLOSED", "q_lang": "en", "modality": "CT", "qid": 7},
        {"img_name": "xmlab1/source.jpg", "question": "哪边?", "answer": "左",
         "answer_type": "CLOSED", "q_lang": "zh", "modality": "CT", "qid": 8},
    ]  # fmt: skip
    (tmp_path / "test.json").write_text(json.dumps(rows))
    xs = ev.load_test_set(tmp_path / "test.json")
    assert [(x.meta["id"], x.meta["question_type"], x.meta["modality"]) for x in xs] == [
        ("7", "closed", "CT")
    ]


def test_judge_verdicts_reach_the_report(tiny_paligemma, test_set, tmp_path):
    """Plumbing only (the real local judge is in test_eval_judge.py): verdicts land per
    prediction, in the summary and in the report's tables."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from finetune.evaluate.judge import Judge
    from litevlm.config import load_settings

    replies = iter(
        [AIMessage('{"verdict": "incorrect", "errors": 1, "reasons": "wrong organ"}')] * 3
    )
    judge = Judge(GenericFakeChatModel(messages=replies), "fake")
    s = load_settings(vision={"model": str(tiny_paligemma), "max_new_tokens": 2})
    specs = ev.pair_specs([str(tiny_paligemma)], [])
    report = ev.evaluate(test_set, specs, settings=s, limit=3, progress=False, judge=judge)
    m = report.models[0]
    assert [p.judge.verdict for p in m.predictions] == ["incorrect"] * 3
    assert m.judge.n == 3 and m.judge.errors == 3 and m.judge.mean_score == 0.0
    md = ev.write_report(report, tmp_path / "rep", plots=False)["markdown"].read_text()
    assert "LLM judge" in md and "wrong organ" in md
