"""Asking the agent: one thread per image, the questions in order, then the report's files."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.assistant import Assistant, TurnOptions
from agent.report.collect import copy_figure, fill_sections, safe_name
from agent.report.inputs import collect_images, load_questions
from agent.report.render import write_html, write_json, write_markdown
from agent.report.schema import QA, BadImage, ImageReport, Report
from litevlm.config import Settings
from litevlm.errors import ConfigError, LiteVLMError

DESCRIBE = "Describe this image."
THUMB_PX = 768


def build_report(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    settings: Settings,
    *,
    questions: str | Path | None = None,
    options: TurnOptions | None = None,
    assistant: Assistant | None = None,
    progress: bool = True,
) -> Report:
    """Run the agent over the images and write report.md, report.html and report.json."""
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    default_qs, per_image = load_questions(questions)
    paths = collect_images(inputs)
    if not paths:
        raise ConfigError(f"no images found in {', '.join(map(str, inputs))}")
    report = Report(created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    own = assistant is None
    assistant = assistant or Assistant(settings)
    try:
        for path in _progress(paths, progress):
            qs = [DESCRIBE, *default_qs, *per_image.get(path.name, [])]
            try:
                item = _image_report(assistant, path, qs, options, out)
            except LiteVLMError as e:
                report.bad.append(BadImage(path=str(path), error=str(e)))
                continue
            report.images.append(item)
            for qa in item.answers:
                report.models.update({k: v for k, v in qa.answer.models.items() if v})
    finally:
        if own:
            assistant.close()
    report.models.setdefault("chat", assistant.chat_model_name)
    if any(it.description_error for it in report.images):
        report.models.setdefault("vision", f"{settings.vision.model} (not available)")
    write_json(report, out / "report.json")
    write_markdown(report, out / "report.md")
    write_html(report, out, out / "report.html")
    return report


def _progress(paths: list[Path], enabled: bool):
    if not enabled:
        yield from paths
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("report", total=len(paths))
        for p in paths:
            bar.update(task, description=f"report {p.name}")
            yield p
            bar.advance(task)


def _image_report(
    assistant: Assistant, path: Path, questions: list[str], options: TurnOptions | None, out: Path
) -> ImageReport:
    from tools import privacy

    loaded = assistant.toolbox.load(path)  # ImageLoadError: listed as a bad image
    ids = privacy.redactor(loaded.identifiers)
    name = privacy.display_name(path.name, ids)
    stem = safe_name(name)
    if name != path.name:  # two patients' "scan.dcm" must not share figures
        stem += "-" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    image_file = f"figures/{stem}.png"
    thumb = loaded.image.copy()
    thumb.thumbnail((THUMB_PX, THUMB_PX))
    thumb.save(out / image_file)
    item = ImageReport(
        name=name,
        path=privacy.display_path(path, ids),
        modality=loaded.modality,
        metadata={k: v for k, v in loaded.metadata.items() if _short(v)},
        image_file=image_file,
    )
    thread: str | None = None
    for i, q in enumerate(questions):
        answer = assistant.ask(q, [path] if i == 0 else (), thread_id=thread, options=options)
        thread = answer.thread_id
        item.answers.append(QA(question=q, answer=answer))
        for k, v in answer.timings.items():
            item.timings[k] = item.timings.get(k, 0.0) + v
    item.thread_id = thread
    fill_sections(item, assistant.thread_state(thread or ""), out, stem)
    if item.description is not None:
        item.heatmap_file = _heatmap(
            assistant, loaded, options, out / "figures" / f"{stem}_heat.png"
        )
    # Questions may name the patient; the report never repeats them (nor any other text) raw.
    return privacy.redact_model(item, ids)


def _heatmap(
    assistant: Assistant, loaded: Any, options: TurnOptions | None, dest: Path
) -> str | None:
    """The attention heat-map of the description; optional, so a failure only leaves it out."""
    opts = options or TurnOptions()
    try:
        path = assistant.toolbox.heatmap(
            loaded,
            "What is shown in this image?",
            dest,
            model=opts.vision_model,
            adapter=opts.adapter or assistant.settings.vision.adapter,
            quantization=opts.quantization,
        )
        copy_figure(Path(path), dest)
    except Exception:
        return None
    return f"figures/{dest.name}"


def _short(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) and len(str(v)) <= 120
