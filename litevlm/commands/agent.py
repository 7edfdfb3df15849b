"""``litevlm ask`` (one grounded turn, resumable threads) and ``litevlm report`` (scripted runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from litevlm.commands.common import (
    ConfigOption,
    check_output_dir,
    print_json,
    settings,
)

SourcesOption = typer.Option(
    None, "--sources", help="literature providers, comma-separated (pubmed,arxiv,wikipedia,web)"
)


def _options(
    model: str | None,
    adapter: str | None,
    sources: str | None,
    similar_k: int | None,
    pixel_size: float | None = None,
    region: str | None = None,
) -> object:
    from agent.assistant import TurnOptions
    from litevlm.errors import ConfigError

    if pixel_size is not None and not pixel_size > 0:
        raise ConfigError(f"--pixel-size {pixel_size}: not a positive size", "give micrometres")
    return TurnOptions(
        vision_model=model,
        adapter=adapter,
        sources=[s.strip() for s in sources.split(",") if s.strip()] if sources else None,
        similar_k=similar_k,
        pixel_size_um=pixel_size,
        region=region,
    )


def _overrides(chat_model: str | None, base_url: str | None) -> dict:
    agent: dict = {}
    if chat_model:
        agent["chat_model"] = chat_model
    if base_url:
        agent["base_url"] = base_url
    return {"agent": agent} if agent else {}


def ask(
    args: list[str] = typer.Argument(
        ...,
        metavar="[IMAGE]... [QUESTION]",
        help="image files, then the question (last); without one the image is described",
    ),
    thread: str | None = typer.Option(
        None, "--thread", "-t", help="continue a thread: a follow-up may omit the image"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the Answer as JSON"),
    model: str | None = typer.Option(None, "--model", help="vision model: hub id or directory"),
    adapter: str | None = typer.Option(None, "--adapter", help="vision adapter name or path"),
    sources: str | None = SourcesOption,
    similar_k: int | None = typer.Option(None, "--similar-k", help="similar cases to show"),
    pixel_size: float | None = typer.Option(
        None, "--pixel-size", help="pixel size in micrometres: sizes in um, densities per mm^2"
    ),
    region: str | None = typer.Option(
        None,
        "--region",
        help="whole-slide images: x,y,w,h (level-0 px) or x,y,w,h@level to measure and describe",
    ),
    chat_model: str | None = typer.Option(
        None, "--chat-model", help="init_chat_model string, e.g. openai:gpt-4o-mini"
    ),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL"),
    config: Path | None = ConfigOption,
) -> None:
    """Ask a grounded question about an image; every sentence cites its source."""
    from agent.assistant import Assistant
    from agent.citations import format_sources
    from litevlm.types import DISCLAIMER

    *images, question = args
    if _is_image_arg(question):  # `ask IMAGE`: describe it; a path is never a question
        images, question = [*images, question], ""
    cfg = settings(config, **_overrides(chat_model, base_url))
    with Assistant(cfg) as assistant:
        answer = assistant.ask(
            question,
            images,
            thread_id=thread,
            options=_options(model, adapter, sources, similar_k, pixel_size, region),
        )
    if as_json:
        print_json(answer)
        return
    typer.echo(answer.text)
    if answer.sources:
        typer.echo("\nSources:\n" + format_sources(answer.sources))
    for name, path in answer.figures.items():
        typer.echo(f"{name}: {path}")
    for w in answer.warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"\nthread: {answer.thread_id} (follow up with --thread {answer.thread_id})")
    typer.echo(DISCLAIMER)


def _is_image_arg(arg: str) -> bool:
    """An existing file, a DICOM WSI folder, or a name with an image suffix: an image, never a
    query to send."""
    from tools.images import is_supported

    p = Path(arg)
    if p.is_dir():
        from tools.slides import is_slide

        return is_slide(p)
    return p.is_file() or (is_supported(arg) and not arg.rstrip().endswith("?"))


def report(
    inputs: list[Path] = typer.Argument(..., metavar="IMAGES_OR_DIR...", help="images or folders"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for report.md/.html/.json"),
    questions: Path | None = typer.Option(
        None, "--questions", "-q", help="YAML: default questions and per-image questions"
    ),
    model: str | None = typer.Option(None, "--model", help="vision model: hub id or directory"),
    adapter: str | None = typer.Option(None, "--adapter", help="vision adapter name or path"),
    sources: str | None = SourcesOption,
    similar_k: int | None = typer.Option(None, "--similar-k", help="similar cases per image"),
    chat_model: str | None = typer.Option(None, "--chat-model", help="init_chat_model string"),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL"),
    config: Path | None = ConfigOption,
) -> None:
    """Run the agent over images and write a Markdown, HTML and JSON report."""
    from agent.report import build_report
    from litevlm.errors import ImageLoadError

    cfg = settings(config, **_overrides(chat_model, base_url))
    for p in inputs:  # before any model loads
        if not p.exists():
            raise ImageLoadError(p, "no such file or folder", "check the path")
    out = check_output_dir(out, "--out")
    result = build_report(
        inputs,
        out,
        cfg,
        questions=questions,
        options=_options(model, adapter, sources, similar_k),
    )
    typer.echo(
        f"{len(result.images)} image(s) reported, {len(result.bad)} could not be read: "
        f"{out / 'report.html'}"
    )
    if not result.images:
        raise typer.Exit(1)  # a report of nothing is a failure a script must see


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("report")(report)
