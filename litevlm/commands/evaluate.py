"""``litevlm eval`` (models side by side on a test set), ``litevlm score`` (an answer file, no
model) and ``litevlm explain`` (attention map)."""

from __future__ import annotations

from pathlib import Path

import typer

from litevlm.commands.common import (
    ConfigOption,
    check_output_dir,
    check_output_file,
    print_json,
    settings,
)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("score")(score_cmd)
    app.command("explain")(explain_cmd)


SCORING_HELP = (
    "strict (ours: first option named, hedges wrong), llava-med (LLaVA-Med v1.0's published "
    "scorer, quirks included) or medgemma (the MedGemma card's tokenised F1)"
)
JUDGE_HELP = (
    "chat model that grades each answer for factuality: an init_chat_model string "
    "(e.g. openai:gpt-4o-mini, ollama:qwen2.5) or an OpenAI-compatible URL "
    "(http://127.0.0.1:8080/v1, model name after '#': URL#MODEL)"
)


def eval_cmd(
    data: Path | None = typer.Option(
        None,
        "--data",
        "-d",
        help="test set: JSONL/CSV (image, question, answer[, question_type, "
        "modality, keywords]) or a dataset folder (VQA-RAD, SLAKE, ...)",
    ),
    model: list[str] = typer.Option(
        [],
        "--model",
        "-m",
        help="hub id or local directory; repeat to compare (default [vision] model)",
    ),
    adapter: list[str] = typer.Option(
        [],
        "--adapter",
        "-a",
        help="adapter directory per --model ('none' = base); one --model "
        "with several --adapter compares them",
    ),
    prompt: list[str] = typer.Option(
        [],
        "--prompt",
        "-p",
        help="prompt template, repeatable: PaliGemma prefix ('caption en', 'describe en', "
        "'answer en {question}') or chat text with {question}; 'default' = the model's own",
    ),
    label: list[str] = typer.Option(
        [], "--label", help="column name per model/adapter/prompt combination"
    ),
    scoring: str = typer.Option("strict", "--scoring", help=SCORING_HELP),
    judge: str | None = typer.Option(None, "--judge", help=JUDGE_HELP),
    judge_timeout: float = typer.Option(
        120.0, "--judge-timeout", min=1, help="seconds the judge may take per answer"
    ),
    out: Path = typer.Option(Path("eval-report"), "--out", "-o", help="report folder"),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", min=1),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1),
    limit: int | None = typer.Option(None, "--limit", min=1, help="first N examples only"),
    feedback: Path | None = typer.Option(
        None,
        "--feedback",
        help="CSV from `litevlm feedback export`: satisfaction per model/adapter",
    ),
    plots: bool = typer.Option(True, "--plots/--no-plots"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    config: Path | None = ConfigOption,
) -> None:
    """Score model/adapter/prompt combinations side by side: accuracy, recall/F1, BLEU/ROUGE,
    latency, memory."""
    from finetune import evaluate as ev
    from finetune.evaluate.scoring import check_scoring
    from litevlm.errors import LiteVLMError

    check_scoring(scoring)
    s = settings(config)
    out = check_output_dir(out, "--out")
    if max_new_tokens:
        s = s.model_copy(
            update={"vision": s.vision.model_copy(update={"max_new_tokens": max_new_tokens})}
        )
    if data is None:
        if feedback is None:
            raise LiteVLMError("nothing to evaluate", "pass --data test.jsonl and/or --feedback")
        report = ev.EvalReport(
            data="", n_examples=0, satisfaction=ev.feedback_satisfaction(feedback)
        )
    else:
        specs = ev.pair_specs(model or [s.vision.model], adapter, label, prompt)
        grader = _judge(judge, judge_timeout)
        report = ev.evaluate(
            data,
            specs,
            settings=s,
            batch_size=batch_size,
            limit=limit,
            feedback=feedback,
            scoring=scoring,
            judge=grader,
        )
    paths = ev.write_report(report, out, plots=plots)
    if as_json:
        print_json(report)
        return
    if report.models:
        typer.echo(ev.markdown_table(report))
    if report.satisfaction:
        from litevlm.render import markdown_table

        typer.echo(markdown_table(ev.satisfaction_table(report.satisfaction)))
    typer.echo(f"report: {paths['html']} ({paths['markdown'].name}, {paths['json'].name})")


def _judge(spec: str | None, timeout_s: float):
    if not spec:
        return None
    from finetune.evaluate.judge import Judge

    return Judge.from_spec(spec, timeout_s=timeout_s)


def score_cmd(
    predictions: Path = typer.Argument(
        ...,
        help="JSONL, one answer a line: question, answer (reference), prediction, "
        "answer_type (closed/open)[, options, id]",
    ),
    scoring: str = typer.Option("strict", "--scoring", help=SCORING_HELP),
    judge: str | None = typer.Option(None, "--judge", help=JUDGE_HELP),
    judge_timeout: float = typer.Option(
        120.0, "--judge-timeout", min=1, help="seconds the judge may take per answer"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the figures and every row as JSON"),
) -> None:
    """Score answers already generated (ours or another system's) without loading a model."""
    from finetune.evaluate.data import load_answers
    from finetune.evaluate.scoring import check_scoring, score_answers

    check_scoring(scoring)
    rows = load_answers(predictions)
    result = score_answers(rows, scoring)
    grader = _judge(judge, judge_timeout)
    if grader is not None:
        result |= grader.grade_answer_rows(rows, result["examples"])
    if as_json:
        print_json(result)
        return

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.2f}"

    typer.echo(f"{predictions} ({result['n']} answers), scoring {scoring}")
    typer.echo(f"closed accuracy  {pct(result['closed_accuracy'])}  (n={result['n_closed']})")
    typer.echo(f"open recall      {pct(result['open_recall'])}  (n={result['n_open']})")
    typer.echo(f"open F1          {pct(result['open_f1'])}")
    typer.echo(f"tokenized F1     {pct(result['tokenized_f1'])}  (all questions)")
    if bleu := result.get("open_bleu"):
        typer.echo(
            f"open BLEU        {pct(bleu['bleu'])}  (BLEU-1 {pct(bleu['bleu_1'])}, "
            f"BLEU-2 {pct(bleu['bleu_2'])}, BLEU-3 {pct(bleu['bleu_3'])})"
        )
    if "judge" in result:
        j = result["judge"]
        typer.echo(
            f"judge {j['model']}: mean {pct(j['mean_score'])}, agrees with tokens "
            f"{pct(j['agreement'])} (n={j['n_compared']})"
        )


def explain_cmd(
    image: Path = typer.Argument(..., help="image file (PNG, JPEG, TIFF, DICOM, NIfTI)"),
    question: str = typer.Option("What is shown in this image?", "--question", "-q"),
    out: Path = typer.Option(Path("heat.png"), "--out", "-o", help="overlay PNG to write"),
    method: str = typer.Option("raw", "--method", help="raw (text-to-image attention) or rollout"),
    model: str | None = typer.Option(None, "--model", "-m", help="default: [vision] model"),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="adapter directory or name"),
    max_new_tokens: int = typer.Option(16, "--max-new-tokens", min=1),
    word: str | None = typer.Option(
        None, "--word", "-w", help="map only the tokens of this word of the answer"
    ),
    objects: bool = typer.Option(
        True,
        "--objects/--no-objects",
        help="score the map against the objects segmented as `litevlm measure` does "
        "(attention share on objects, pointing game)",
    ),
    save_array: bool = typer.Option(False, "--save-array", help="also write the heat-map as .npy"),
    as_json: bool = typer.Option(False, "--json"),
    config: Path | None = ConfigOption,
) -> None:
    """Where the model looked when answering: attention heat-map over the image, per word."""
    import numpy as np

    from tools.explain import (
        METHODS,
        attention_map,
        attention_on_objects,
        object_mask,
        objects_sentence,
        word_attention,
    )
    from tools.images import load_image

    if method not in METHODS:
        raise typer.BadParameter(
            f"{method!r}: use one of {', '.join(METHODS)}", param_hint="--method"
        )
    s = settings(config)
    out = check_output_file(out, "--out")
    from finetune.evaluate.vision import adapter_name, load_vision_model

    loaded = load_image(image)  # a bad file fails before the model loads
    vm = load_vision_model(model or s.vision.model, s, attn_implementation="eager")
    name = adapter_name(vm, adapter) if adapter else None
    full = attention_map(vm, loaded, question, method, max_new_tokens=max_new_tokens, adapter=name)
    mask, n_objects = object_mask(loaded) if objects else (None, 0)
    amap, score = word_attention(full, word, mask, n_objects)
    path = amap.save_overlay(out)

    def on_objects(grid):
        return attention_on_objects(grid, mask, n_objects).as_dict() if mask is not None else None

    per_token = full.per_token if full.per_token is not None else []
    info = {
        "overlay": str(path),
        "method": method,
        "question": question,
        "answer": amap.answer,
        "word": word,
        "peak_patch": amap.peak(),
        "grid": list(amap.grid.shape),
        "objects": score.as_dict() if score else None,
        "words": amap.words(),
        "tokens": [
            {
                "token": t,
                "peak_patch": [int(i) for i in np.unravel_index(int(g.argmax()), g.shape)],
                "objects": on_objects(g),
                "map": np.round(g, 5).tolist(),
            }
            for t, g in zip(full.tokens, per_token, strict=False)
        ],
        "seconds": round(amap.seconds, 3),
    }
    if save_array:
        npy = path.with_suffix(".npy")
        np.save(npy, amap.heatmap)
        info["array"] = str(npy)
    if as_json:
        print_json(info)
    else:
        typer.echo(f"answer: {amap.answer!r}\noverlay: {path} (peak patch {amap.peak()})")
        if info["objects"]:
            typer.echo(objects_sentence(info["objects"]))
