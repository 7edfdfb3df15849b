"""``litevlm eval`` (models side by side on a test set) and ``litevlm explain`` (attention map)."""

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
    app.command("explain")(explain_cmd)


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
    label: list[str] = typer.Option([], "--label", help="column name per model/adapter pair"),
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
    """Score model/adapter pairs side by side: accuracy, recall/F1, BLEU/ROUGE, latency, memory."""
    from finetune import evaluate as ev
    from litevlm.errors import LiteVLMError

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
        specs = ev.pair_specs(model or [s.vision.model], adapter, label)
        report = ev.evaluate(
            data, specs, settings=s, batch_size=batch_size, limit=limit, feedback=feedback
        )
    paths = ev.write_report(report, out, plots=plots)
    if as_json:
        print_json(report)
        return
    if report.models:
        typer.echo(ev.markdown_table(report))
    if report.satisfaction:
        typer.echo(ev._satisfaction_table(report.satisfaction))
    typer.echo(f"report: {paths['html']} ({paths['markdown'].name}, {paths['json'].name})")


def explain_cmd(
    image: Path = typer.Argument(..., help="image file (PNG, JPEG, TIFF, DICOM, NIfTI)"),
    question: str = typer.Option("What is shown in this image?", "--question", "-q"),
    out: Path = typer.Option(Path("heat.png"), "--out", "-o", help="overlay PNG to write"),
    method: str = typer.Option("raw", "--method", help="raw (text-to-image attention) or rollout"),
    model: str | None = typer.Option(None, "--model", "-m", help="default: [vision] model"),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="adapter directory or name"),
    max_new_tokens: int = typer.Option(16, "--max-new-tokens", min=1),
    save_array: bool = typer.Option(False, "--save-array", help="also write the heat-map as .npy"),
    as_json: bool = typer.Option(False, "--json"),
    config: Path | None = ConfigOption,
) -> None:
    """Where the model looked when answering: attention heat-map over the image."""
    from tools.explain import METHODS, attention_map
    from tools.images import load_image

    if method not in METHODS:
        raise typer.BadParameter(
            f"{method!r}: use one of {', '.join(METHODS)}", param_hint="--method"
        )
    s = settings(config)
    out = check_output_file(out, "--out")
    from finetune.evaluate import _adapter_name, load_vision_model

    loaded = load_image(image)  # a bad file fails before the model loads
    vm = load_vision_model(model or s.vision.model, s, attn_implementation="eager")
    name = _adapter_name(vm, adapter) if adapter else None
    amap = attention_map(vm, loaded, question, method, max_new_tokens=max_new_tokens, adapter=name)
    path = amap.save_overlay(out)
    info = {
        "overlay": str(path),
        "method": method,
        "question": question,
        "answer": amap.answer,
        "peak_patch": amap.peak(),
        "grid": list(amap.grid.shape),
        "seconds": round(amap.seconds, 3),
    }
    if save_array:
        import numpy as np

        npy = path.with_suffix(".npy")
        np.save(npy, amap.heatmap)
        info["array"] = str(npy)
    if as_json:
        print_json(info)
    else:
        typer.echo(f"answer: {amap.answer!r}\noverlay: {path} (peak patch {amap.peak()})")
