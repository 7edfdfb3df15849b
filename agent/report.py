"""Scripted runs: the agent over a folder of images, written as Markdown, HTML and JSON.

For each image: the image, the vision model's description (or why it is unavailable), the
measurements with their overlay, similar cases, literature, the answers to the questions with
their citations, and the time each tool took. One thread per image, so the questions after
the first reuse its results. An image that cannot be read is listed and the run goes on.

Questions file (YAML)::

    default:                 # asked about every image, after "Describe this image."
      - How many cells are there, and how large are they?
    images:                  # extra questions for one image (file name)
      ihc_colon.png:
        - What is known about FHL2 immunohistochemistry in the colon?
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.assistant import Assistant, TurnOptions
from litevlm.config import Settings
from litevlm.errors import ConfigError, LiteVLMError
from litevlm.types import DISCLAIMER, Answer, Fact, Source

DESCRIBE = "Describe this image."
THUMB_PX = 768


class QA(BaseModel):
    question: str
    answer: Answer


class ImageReport(BaseModel):
    name: str
    path: str
    thread_id: str | None = None
    modality: str = "unknown"
    metadata: dict[str, Any] = Field(default_factory=dict)
    image_file: str | None = None  # relative to the report folder
    facts: list[Fact] = Field(default_factory=list)  # from the image header, de-identified
    description: str | None = None
    description_model: str | None = None
    description_error: str | None = None
    measurement: dict[str, Any] | None = None
    measurement_error: str | None = None
    overlay_file: str | None = None
    heatmap_file: str | None = None  # where the vision model looked (attention map)
    similar: list[dict[str, Any]] = Field(default_factory=list)
    similar_error: str | None = None
    literature: list[Source] = Field(default_factory=list)
    literature_unavailable: dict[str, str] = Field(default_factory=dict)
    answers: list[QA] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)


class BadImage(BaseModel):
    path: str
    error: str


class Report(BaseModel):
    title: str = "litevlm report"
    created: str
    disclaimer: str = DISCLAIMER
    models: dict[str, str] = Field(default_factory=dict)
    images: list[ImageReport] = Field(default_factory=list)
    bad: list[BadImage] = Field(default_factory=list)


def load_questions(path: str | Path | None) -> tuple[list[str], dict[str, list[str]]]:
    """(default questions, per-image questions) from a YAML file; a plain list is defaults."""
    if path is None:
        return [], {}
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"{p}: questions file not found", "check the --questions path") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}", "fix the syntax") from e
    if isinstance(data, list):
        data = {"default": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping with 'default' and 'images'")
    default = data.get("default") or []
    per_image = data.get("images") or {}
    if not isinstance(default, list) or not all(isinstance(q, str) for q in default):
        raise ConfigError(f"{p}: 'default' must be a list of questions")
    if not isinstance(per_image, dict) or not all(
        isinstance(v, list) and all(isinstance(q, str) for q in v) for v in per_image.values()
    ):
        raise ConfigError(f"{p}: 'images' must map file names to lists of questions")
    return list(default), {str(k): list(v) for k, v in per_image.items()}


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, and the supported images inside folders (sorted)."""
    from tools.images import is_supported, iter_images
    from tools.slides import group_slide_files

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():  # a DICOM WSI's instances are one slide: its folder
            out += group_slide_files([f for f in iter_images(p) if is_supported(f)])
        else:
            out.append(p)  # a missing or unsupported file is reported as bad, not skipped
    return out


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
    stem = _safe(name)
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
    _fill_sections(item, assistant.thread_state(thread or ""), out, stem)
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
        _copy_figure(Path(path), dest)
    except Exception:
        return None
    return f"figures/{dest.name}"


def _fill_sections(item: ImageReport, state: dict[str, Any], out: Path, stem: str) -> None:
    """Image facts, description, measurement, similar cases and literature from the thread's
    tool results, each read back as its tool's typed output."""
    from agent.tools import read

    images = state.get("images") or {}
    mine = {i for i, rec in images.items() if rec["name"] == item.name}
    for rec in (state.get("results") or {}).values():
        tool, error = rec["tool"], rec.get("error")
        if rec.get("image") and rec["image"] not in mine:
            continue
        output: Any = read(rec)
        if tool == "header" and output is not None:
            item.facts = list(output.facts)
        elif tool == "vision" and not rec["args"].get("question"):
            item.description = output.text if output is not None else None
            item.description_error = error
            if output is not None:
                item.description_model = f"{output.model_id} ({output.adapter or 'no adapter'})"
        elif tool == "measure":
            item.measurement = rec.get("output") if output is not None else None
            item.measurement_error = error
            overlay = output.overlay_path if output is not None else None
            if overlay and Path(overlay).is_file():
                dest = out / "figures" / f"{stem}_overlay.png"
                _copy_figure(Path(overlay), dest)
                item.overlay_file = f"figures/{dest.name}"
        elif tool == "similar":
            item.similar = [c.model_dump(mode="json") for c in output.cases] if output else []
            item.similar_error = error
        elif tool == "literature":
            if output is None:
                item.literature_unavailable["all"] = error or "failed"
                continue
            seen = {(s.kind, s.id) for s in item.literature}
            for src in output.sources:
                if (src.kind, src.id) not in seen:
                    item.literature.append(src.model_copy(update={"n": len(item.literature) + 1}))
            item.literature_unavailable.update(output.unavailable)


def _copy_figure(src: Path, dest: Path, max_px: int = 1024) -> None:
    """Copy a figure, downscaled: the HTML inlines it, and a 4k overlay would bloat the page."""
    from PIL import Image

    try:
        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((max_px, max_px))
            im.save(dest)
    except OSError:
        shutil.copyfile(src, dest)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _short(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) and len(str(v)) <= 120


# -- writers ---------------------------------------------------------------------------------


def write_json(report: Report, path: Path) -> None:
    path.write_text(report.model_dump_json(indent=2), encoding="utf-8")


def _value(v: Any) -> str:
    """A summary value for a table cell: statistics as mean ± sd (median, n) unit."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict) and isinstance(v.get("mean"), int | float):
        text = f"{v['mean']:.4g}"
        if isinstance(v.get("std"), int | float):
            text += f" ± {v['std']:.3g}"
        extra = [
            f"median {v['median']:.4g}" if isinstance(v.get("median"), int | float) else "",
            f"n = {v['n']}" if v.get("n") is not None else "",
        ]
        extra = [e for e in extra if e]
        if extra:
            text += f" ({', '.join(extra)})"
        return text + (f" {v['unit']}" if v.get("unit") else "")
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_value(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return " × ".join(_value(x) for x in v) if len(v) <= 4 else str(len(v)) + " values"
    return str(v)


def _measure_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("kind", str(m.get("kind"))),
        ("count", "—" if m.get("count") is None else str(m["count"])),
        ("units", str(m.get("units"))),
    ]
    if m.get("pixel_size_um"):
        rows.append(("pixel size (um)", _value(m["pixel_size_um"])))
    shown = {"kind", "count", "units"}
    for k, v in (m.get("summary") or {}).items():
        if k not in shown:
            rows.append((k.replace("_", " "), _value(v)))
    return rows


def write_markdown(report: Report, path: Path) -> None:
    from agent.citations import format_source, format_sources

    lines = [f"# {report.title}", "", f"> {report.disclaimer}", "", f"Created {report.created}."]
    lines += ["Models: " + ", ".join(f"{k}: {v}" for k, v in report.models.items()), ""]
    if report.bad:
        lines += ["## Images that could not be read", ""]
        lines += [f"- `{b.path}`: {b.error}" for b in report.bad] + [""]
    for it in report.images:
        lines += [f"## {it.name}", "", f"![{it.name}]({it.image_file})", ""]
        lines += [f"Modality: {it.modality}. Thread: `{it.thread_id}`.", ""]
        if it.facts:
            lines += ["### Image facts (header)", ""]
            lines += [f"- {f.text}" for f in it.facts] + [""]
        lines += ["### Description", ""]
        if it.description is not None:
            lines += [f"{it.description}", "", f"_{it.description_model}_", ""]
            if it.heatmap_file:
                lines += [f"![where the model looked]({it.heatmap_file})", ""]
        else:
            lines += [f"Vision model not available: {it.description_error}", ""]
        lines += ["### Measurements", ""]
        if it.measurement:
            lines += ["| quantity | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in _measure_rows(it.measurement)]
            lines += [f"- warning: {w}" for w in it.measurement.get("warnings", [])]
            if it.overlay_file:
                lines += ["", f"![overlay]({it.overlay_file})"]
            lines.append("")
        else:
            lines += [f"Measurement not available: {it.measurement_error}", ""]
        lines += ["### Similar cases", ""]
        if it.similar:
            lines += [
                f"- {c.get('id')} (similarity {c.get('score', 0):.3f}): {c.get('caption')}"
                for c in it.similar
            ]
        else:
            lines.append(f"Similar cases not available: {it.similar_error or 'none found'}")
        lines += ["", "### Literature", ""]
        lines += [f"- {format_source(s)}" for s in it.literature]
        if not it.literature:
            lines.append("No literature results.")
        lines += [f"- {k}: {v}" for k, v in it.literature_unavailable.items()]
        lines += ["", "### Questions and answers", ""]
        for qa in it.answers:
            lines += [f"**Q: {qa.question}**", "", qa.answer.text, ""]
            if qa.answer.sources:
                lines += ["Sources:", "", format_sources(qa.answer.sources), ""]
            lines += [f"- warning: {w}" for w in qa.answer.warnings]
            lines.append("")
        lines += ["### Timings (seconds)", "", "| step | s |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in it.timings.items()]
        lines.append("")
    lines += ["---", "", report.disclaimer, ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    from PIL import Image

    with Image.open(path) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ r.title }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
.disclaimer { background: #fff4e5; border-left: 4px solid #f0a020; padding: .6em 1em; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 1em 1.2em; margin: 1.5em 0; }
.figs img { width: 48%; height: auto; margin-right: 1%; border: 1px solid #ccc;
            vertical-align: top; image-rendering: pixelated; }
.na { color: #a33; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ddd; padding: .2em .6em; text-align: left; }
.src { font-size: .9em; color: #444; }
.warn { color: #8a5a00; font-size: .9em; }
</style>
</head>
<body>
<h1>{{ r.title }}</h1>
<p class="disclaimer"><strong>{{ r.disclaimer }}</strong></p>
<p>Created {{ r.created }}. Models:
{% for k, v in r.models.items() %}{{ k }}: {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}.
</p>
{% if r.bad %}
<section class="card">
<h2>Images that could not be read</h2>
<ul>{% for b in r.bad %}<li><code>{{ b.path }}</code>: {{ b.error }}</li>{% endfor %}</ul>
</section>
{% endif %}
{% for it in r.images %}
<section class="card" id="img-{{ loop.index }}">
<h2>{{ it.name }}</h2>
<p>Modality: {{ it.modality }}. Thread: <code>{{ it.thread_id }}</code>.</p>
{% set i = loop.index0 %}{% set u = uris[i] %}
<div class="figs">
{% if u.image %}<img src="{{ u.image }}" alt="{{ it.name }}">{% endif %}
{% if u.overlay %}<img src="{{ u.overlay }}" alt="measurement overlay">{% endif %}
</div>
{% if it.facts %}<h3>Image facts (header)</h3>
<ul>{% for f in it.facts %}<li>{{ f.text }}</li>{% endfor %}</ul>{% endif %}
<h3>Description</h3>
{% if it.description is not none %}
<p>{{ it.description }}</p><p class="src"><em>{{ it.description_model }}</em></p>
{% if u.heatmap %}<div class="figs"><img src="{{ u.heatmap }}" alt="attention heat-map">
<p class="src">Where the vision model looked (attention map).</p></div>{% endif %}
{% else %}
<p class="na">Vision model not available: {{ it.description_error }}</p>
{% endif %}
<h3>Measurements</h3>
{% if it.measurement %}
<table>
{% for k, v in rows[i] %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
</table>
{% for w in it.measurement.get("warnings", []) %}<p class="warn">{{ w }}</p>{% endfor %}
{% else %}
<p class="na">Measurement not available: {{ it.measurement_error }}</p>
{% endif %}
<h3>Similar cases</h3>
{% if it.similar %}
<ul>{% for c in it.similar %}
<li>{{ c.id }} (similarity {{ "%.3f"|format(c.score or 0) }}): {{ c.caption }}</li>
{% endfor %}</ul>
{% else %}
<p class="na">Similar cases not available: {{ it.similar_error or "none found" }}</p>
{% endif %}
<h3>Literature</h3>
{% if it.literature %}
<ul class="src">{% for s in it.literature %}<li>{{ fmt(s) }}</li>{% endfor %}</ul>
{% else %}<p>No literature results.</p>{% endif %}
{% for k, v in it.literature_unavailable.items() %}<p class="warn">{{ k }}: {{ v }}</p>
{% endfor %}
<h3>Questions and answers</h3>
{% for qa in it.answers %}
<h4>{{ qa.question }}</h4>
{% for line in qa.answer.text.splitlines() %}<p>{{ line }}</p>{% endfor %}
{% if qa.answer.sources %}
<ol class="src">{% for s in qa.answer.sources %}<li value="{{ s.n }}">{{ fmt(s) }}</li>{% endfor %}
</ol>
{% endif %}
{% for w in qa.answer.warnings %}<p class="warn">warning: {{ w }}</p>{% endfor %}
{% endfor %}
<h3>Timings (seconds)</h3>
<table>{% for k, v in it.timings.items() %}
<tr><th>{{ k }}</th><td>{{ "%.3f"|format(v) }}</td></tr>{% endfor %}</table>
</section>
{% endfor %}
<footer><p class="disclaimer">{{ r.disclaimer }}</p></footer>
</body>
</html>
"""


def write_html(report: Report, out_dir: Path, path: Path) -> None:
    """A single self-contained page: images are inlined as base64, no external files."""
    from jinja2 import Environment

    from agent.citations import format_source

    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    uris = [
        {
            "image": _data_uri(out_dir / it.image_file) if it.image_file else None,
            "overlay": _data_uri(out_dir / it.overlay_file) if it.overlay_file else None,
            "heatmap": _data_uri(out_dir / it.heatmap_file) if it.heatmap_file else None,
        }
        for it in report.images
    ]
    rows = [_measure_rows(it.measurement) if it.measurement else [] for it in report.images]

    def fmt(s: Source) -> str:
        return format_source(s)[len(f"[{s.n}] ") :]

    html = env.from_string(_HTML).render(r=report, uris=uris, rows=rows, fmt=fmt)
    path.write_text(html, encoding="utf-8")
