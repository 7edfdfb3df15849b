"""``litevlm finetune``, ``litevlm export`` and ``litevlm synth-qa``."""

from __future__ import annotations

from pathlib import Path

import typer

from litevlm.commands.common import ConfigOption, print_json, settings


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
    app.command("export")(export)
    app.command("synth-qa")(synth_qa)


def finetune(
    config_yaml: Path = typer.Argument(None, help="Run config (YAML); see examples/finetune/"),
    output_dir: str = typer.Option(None, "--output-dir", "-o", help="Override output_dir"),
    model: str = typer.Option(None, "--model", help="Override the base model (hub id or folder)"),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="Continue from checkpoints"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check config and data, print stats"),
    show_defaults: bool = typer.Option(False, "--show-defaults", help="Print every key"),
    config: Path = ConfigOption,
) -> None:
    """Fine-tune a VLM (LoRA, QLoRA, full, prompt tuning; one or more stages) on image data."""
    from finetune.config import describe_defaults, load_config

    if show_defaults:
        typer.echo(describe_defaults())
        return
    if config_yaml is None:
        raise typer.BadParameter("give a run config, e.g. examples/finetune/tiny_cpu.yaml")
    s = settings(config)
    cfg = load_config(config_yaml, output_dir=output_dir, model=model, resume=resume, seed=None)
    if cfg.output_dir == "runs/paligemma" and output_dir is None:
        cfg.output_dir = str(Path(s.finetune.output_dir) / Path(config_yaml).stem)
    if dry_run:
        from finetune.data import format_stats, load_splits
        from finetune.trainer import validate_stages

        validate_stages(cfg)
        for stage in cfg.stages:
            _, stats = load_splits(cfg.stage_data(stage), cfg.seed)
            typer.echo(f"stage {stage.name} ({stage.method})")
            typer.echo(format_stats(stats))
        return
    import contextlib
    import sys

    from finetune.trainer import train

    # Trainer prints its log lines on stdout; keep stdout for the JSON result alone.
    with contextlib.redirect_stdout(sys.stderr):
        result = train(cfg, log=lambda m: typer.echo(m, err=True))
    print_json(result)


def export(
    run_or_adapter: Path = typer.Argument(..., help="Run folder (output_dir) or adapter folder"),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the exported model"),
    merge: bool = typer.Option(True, "--merge/--no-merge", help="Fold the adapter into weights"),
    base: str = typer.Option(None, "--base", help="Base model, if not the adapter's own"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (float32), bfloat16 or float16"),
    config: Path = ConfigOption,
) -> None:
    """Export a fine-tuned model: merged weights (same outputs as base + adapter) and card."""
    import shutil

    from finetune.export import merge_adapter, resolve_adapter

    settings(config)
    if merge:
        path = merge_adapter(run_or_adapter, out, base=base, dtype=dtype)
    else:
        adapter, _ = resolve_adapter(run_or_adapter)
        path = Path(shutil.copytree(adapter, out, dirs_exist_ok=True))
    print_json({"exported": str(path), "merged": merge})


def _is_connection_error(e: BaseException) -> bool:
    """Provider clients wrap refused/timed-out connections in their own types (httpx, openai,
    langchain-openai, ollama): recognised by name along the cause chain."""
    while e is not None:
        names = {c.__name__ for c in type(e).__mro__}
        if isinstance(e, ConnectionError | TimeoutError) or any(
            "Connect" in n or "Timeout" in n for n in names
        ):
            return True
        e = e.__cause__ or e.__context__
    return False


def synth_qa(
    captions: Path = typer.Argument(..., help="JSONL/CSV with image and caption columns"),
    out: Path = typer.Option(
        None, "--out", "-o", help="Output JSONL (default <captions>.qa.jsonl)"
    ),
    chat_model: str = typer.Option(
        None, "--chat-model", help="init_chat_model string; default [agent] chat_model"
    ),
    per_caption: int = typer.Option(5, "--per-caption", min=1, max=20, help="Pairs per caption"),
    templates_only: bool = typer.Option(False, "--templates", help="Use the template fallback"),
    config: Path = ConfigOption,
) -> None:
    """Turn captions into question-answer pairs (chat model, or templates), marked synthetic."""
    from finetune.synth_qa import load_captions, synthesize, write_pairs
    from litevlm.commands.common import check_output_file

    s = settings(config)
    out = check_output_file(out or captions.with_suffix(".qa.jsonl"), "--out")
    model_name = None if templates_only else (chat_model or s.agent.chat_model)
    chat = None
    if model_name:
        from agent.context import load_chat_model

        # The agent's loader: a local OpenAI-compatible server needs no real key, and a bad
        # model string is one ConfigError line.
        chat = load_chat_model(s.agent.model_copy(update={"chat_model": model_name}))
    rows = load_captions(captions)
    try:
        pairs = synthesize(rows, chat=chat, per_caption=per_caption)
    except Exception as e:
        if not _is_connection_error(e):
            raise
        from litevlm.errors import ServiceUnavailable

        where = s.agent.base_url or f"the {model_name.split(':')[0]} API"
        raise ServiceUnavailable(
            f"chat model {model_name!r} at {where} did not answer ({type(e).__name__}: {e})",
            "start the server or check [agent] base_url, or pass --templates",
        ) from None
    write_pairs(pairs, out)
    print_json({"captions": len(rows), "pairs": len(pairs), "out": str(out), "model": model_name})
