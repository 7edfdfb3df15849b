"""Evaluate one or several model/adapter pairs on a test set, side by side.

``evaluate(data, [ModelSpec(...), ...])`` answers every test question with each model (greedy,
batched), scores the answers with ``finetune.metrics`` overall, per question type and per
modality, measures generation time (p50/p95 latency per example, tokens/s, peak memory, the batch
size used) and returns an ``EvalReport``; ``write_report`` saves it as JSON, Markdown and HTML
with matplotlib plots. ``litevlm eval`` is the command line.

Test data: JSONL/JSON/CSV rows with ``image`` (path, relative to the file), ``question``,
``answer`` and optionally ``question_type`` (closed/open/description or the dataset's own),
``answer_type``, ``modality``, ``keywords`` (list or ";"-separated) and ``options``; or any
layout ``finetune.data`` reads (VQA-RAD, SLAKE, PathVQA, ROCO, a saved HF dataset).

Also here: ``make_compute_metrics`` for the trainer's evaluation step and
``feedback_satisfaction`` for the UI's thumbs up/down (``litevlm feedback export`` CSV).
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from finetune.metrics import MetricSummary, infer_answer_type, score_example, summarize
from litevlm.errors import LiteVLMError

UNKNOWN = "unknown"


class EvalDataError(LiteVLMError):
    """The test set is missing, malformed or has unusable rows."""


class EvalExample(BaseModel):
    model_config = {"arbitrary_types_allowed": True}

    id: str
    image: Any = Field(description="path or PIL image")
    question: str
    answer: str
    question_type: str | None = None
    modality: str = UNKNOWN
    keywords: list[str] | None = None
    options: list[str] | None = None

    @property
    def answer_type(self) -> str:
        return infer_answer_type(self.answer, self.question_type)


class ModelSpec(BaseModel):
    """One column of the comparison: a model (hub id or folder) and an optional adapter."""

    model: str
    adapter: str | None = None
    label: str = ""

    def name(self) -> str:
        if self.label:
            return self.label
        base = Path(self.model).name or self.model
        return f"{base}+{Path(self.adapter).name}" if self.adapter else base


class Prediction(BaseModel):
    id: str
    question: str
    answer: str
    prediction: str
    answer_type: str
    question_type: str | None = None
    modality: str = UNKNOWN
    correct: bool | None = None
    token_f1: float = 0.0
    latency_s: float = 0.0
    tokens: int = 0


class Timing(BaseModel):
    batch_size: int
    n: int
    total_s: float
    latency_p50_s: float
    latency_p95_s: float
    tokens_per_s: float
    examples_per_s: float
    peak_memory_mb: float | None = None
    memory_kind: str = "rss"  # "cuda" (allocated on the GPU) or "rss" (process peak)
    device: str = "cpu"


class ModelReport(BaseModel):
    spec: ModelSpec
    overall: MetricSummary
    by_question_type: dict[str, MetricSummary] = Field(default_factory=dict)
    by_modality: dict[str, MetricSummary] = Field(default_factory=dict)
    timing: Timing | None = None
    predictions: list[Prediction] = Field(default_factory=list)


class Satisfaction(BaseModel):
    vision_model: str
    adapter: str
    n: int
    up: int
    down: int
    satisfaction: float | None
    comments: int


class EvalReport(BaseModel):
    data: str
    n_examples: int
    models: list[ModelReport] = Field(default_factory=list)
    satisfaction: list[Satisfaction] = Field(default_factory=list)
    created: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


# ---------------------------------------------------------------- data


def load_test_set(path: str | Path, limit: int | None = None) -> list[EvalExample]:
    """Read a test set; raise ``EvalDataError`` naming the file, row and field on bad input."""
    p = Path(path).expanduser()
    if not p.exists():
        raise EvalDataError(f"{p}: test set not found", "pass --data a JSONL/CSV file or folder")
    rows = _read_rows(p) if p.is_file() and p.suffix.lower() in (".jsonl", ".json", ".csv") else []
    if rows and isinstance(rows[0], dict) and "image" in rows[0]:
        examples = [_row_to_example(r, i, p) for i, r in enumerate(rows, 1)]
    else:  # dataset layouts (VQA-RAD's image_name, SLAKE's img_name, folders)
        examples = _from_finetune_loader(p)
    if not examples:
        raise EvalDataError(f"{p}: no examples", "the file has no rows")
    return examples[:limit] if limit else examples


def _read_rows(p: Path) -> list[dict[str, Any]]:
    from finetune.data import DataError, read_rows

    try:
        return read_rows(p)
    except DataError as e:
        raise EvalDataError(e.message, e.hint) from None


def _listish(v: Any) -> list[str] | None:
    if v in (None, ""):
        return None
    if isinstance(v, list):
        return [str(x) for x in v]
    return [s.strip() for s in str(v).split(";") if s.strip()]


def _row_to_example(row: Any, i: int, source: Path) -> EvalExample:
    if not isinstance(row, dict):
        raise EvalDataError(f"{source}: row {i} is not an object")
    missing = [k for k in ("image", "question", "answer") if row.get(k) in (None, "")]
    if missing:
        raise EvalDataError(
            f"{source}: row {i} has no {', '.join(missing)}",
            "each row needs image, question and answer",
        )
    image = Path(str(row["image"])).expanduser()
    if not image.is_absolute():
        image = source.parent / image
    if not image.is_file():
        raise EvalDataError(f"{source}: row {i}: image not found: {image}")
    qt = row.get("question_type") or row.get("answer_type") or row.get("type")
    return EvalExample(
        id=str(row.get("id", i)),
        image=str(image),
        question=str(row["question"]).strip(),
        answer=str(row["answer"]).strip(),
        question_type=str(qt).strip().lower() if qt else None,
        modality=str(row.get("modality") or UNKNOWN),
        keywords=_listish(row.get("keywords")),
        options=_listish(row.get("options")),
    )


def _from_finetune_loader(p: Path) -> list[EvalExample]:
    """Dataset layouts (VQA-RAD, SLAKE, ...) through the fine-tuning data loader."""
    from finetune.config import DataConfig
    from finetune.data import load_examples

    out = []
    for i, e in enumerate(load_examples(DataConfig(path=str(p))), 1):
        meta = e.meta or {}
        qt = meta.get("question_type") or meta.get("answer_type")
        if e.kind == "caption":
            qt = qt or "description"
        out.append(
            EvalExample(
                id=str(meta.get("id", i)),
                image=e.image,
                question=e.question or "",  # caption rows: the model is asked for a caption
                answer=e.answer,
                question_type=str(qt).lower() if qt else None,
                modality=str(meta.get("modality") or UNKNOWN),
            )
        )
    return out


# ---------------------------------------------------------------- scoring


def score_predictions(
    examples: Sequence[EvalExample],
    predictions: Sequence[str],
    latencies: Sequence[float] | None = None,
    tokens: Sequence[int] | None = None,
) -> tuple[MetricSummary, dict[str, MetricSummary], dict[str, MetricSummary], list[Prediction]]:
    """Overall, per question type (closed/open/description or as labelled) and per modality."""
    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
    n = len(examples)
    lat = list(latencies) if latencies is not None else [0.0] * n
    tok = list(tokens) if tokens is not None else [0] * n
    preds = []
    for e, p, dt, nt in zip(examples, predictions, lat, tok, strict=True):
        s = score_example(p, e.answer, e.question_type, e.keywords, e.options)
        preds.append(
            Prediction(
                id=e.id,
                question=e.question,
                answer=e.answer,
                prediction=p,
                answer_type=s.answer_type,
                question_type=e.question_type,
                modality=e.modality,
                correct=s.closed_correct,
                token_f1=s.token_f1,
                latency_s=dt,
                tokens=nt,
            )
        )

    def group(key: Callable[[EvalExample], str]) -> dict[str, MetricSummary]:
        idx: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(examples):
            idx[key(e)].append(i)
        return {k: _summary(examples, predictions, v) for k, v in sorted(idx.items())}

    overall = _summary(examples, predictions, list(range(n)))
    by_type = group(lambda e: e.question_type or e.answer_type)
    by_modality = group(lambda e: e.modality or UNKNOWN)
    return overall, by_type, by_modality, preds


def _summary(
    examples: Sequence[EvalExample], predictions: Sequence[str], idx: Sequence[int]
) -> MetricSummary:
    return summarize(
        [predictions[i] for i in idx],
        [examples[i].answer for i in idx],
        [examples[i].question_type for i in idx],
        [examples[i].keywords for i in idx],
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return 0.0
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---------------------------------------------------------------- generation


def generate_answers(
    vision_model: Any,
    examples: Sequence[EvalExample],
    *,
    adapter: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "",
    warmup: bool = True,
) -> tuple[list[str], list[float], list[int], Timing]:
    """Greedy answers for every example; per-example latency is its batch's time / batch size."""
    from finetune.data import open_image

    texts: list[str] = []
    lat: list[float] = []
    toks: list[int] = []
    device = _device(vision_model)
    if warmup and examples:
        # First calls pay one-off costs (allocator, kernels); keep them out of the timings.
        _answer_batch(
            vision_model, [open_image(examples[0].image)], [examples[0].question], adapter
        )
    _reset_peak(device)
    start = time.perf_counter()
    batches = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
    bar = _progress(len(examples), desc, progress)
    for batch in batches:
        images = [open_image(e.image) for e in batch]
        questions = [e.question for e in batch]
        t0 = time.perf_counter()
        results = _answer_batch(vision_model, images, questions, adapter)
        dt = (time.perf_counter() - t0) / len(batch)
        for r in results:
            texts.append(r.text)
            toks.append(int(getattr(r, "tokens", 0) or 0))
            lat.append(dt)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    total = time.perf_counter() - start
    peak, kind = _peak_memory_mb(device)
    timing = Timing(
        batch_size=batch_size,
        n=len(examples),
        total_s=total,
        latency_p50_s=percentile(lat, 50),
        latency_p95_s=percentile(lat, 95),
        tokens_per_s=sum(toks) / total if total > 0 else 0.0,
        examples_per_s=len(examples) / total if total > 0 else 0.0,
        peak_memory_mb=peak,
        memory_kind=kind,
        device=device,
    )
    return texts, lat, toks, timing


def _answer_batch(vm: Any, images: list[Any], questions: list[str], adapter: str | None) -> list:
    """Answers; an empty question (caption-only rows) asks for a caption instead."""
    if len(images) > 1 and all(questions) and hasattr(vm, "answer_batch"):
        return list(vm.answer_batch(images, questions, adapter=adapter))
    if len(images) > 1 and not any(questions) and hasattr(vm, "describe_batch"):
        return list(vm.describe_batch(images, task="caption", adapter=adapter))
    return [
        vm.answer(im, q, adapter=adapter) if q else vm.describe(im, task="caption", adapter=adapter)
        for im, q in zip(images, questions, strict=True)
    ]


def _device(vm: Any) -> str:
    model = getattr(vm, "model", None)
    try:
        return str(next(model.parameters()).device.type)
    except (AttributeError, StopIteration, TypeError):
        return "cpu"


def _reset_peak(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def _peak_memory_mb(device: str) -> tuple[float | None, str]:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20, "cuda"
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss"  # KiB on Linux
    except ImportError:  # Windows
        return None, "rss"


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc or "eval", unit="q", leave=False)


def _adapter_name(vm: Any, adapter: str | None) -> str | None:
    """A loaded adapter's name; a directory or hub id is loaded on first use."""
    if adapter is None or adapter in getattr(vm, "adapters", {}):
        return adapter
    for name, path in getattr(vm, "adapters", {}).items():
        if path == adapter:
            return name
    return vm.load_adapter(adapter)


def load_vision_model(model: str, settings: Any = None, **overrides: Any) -> Any:
    """A ``tools.vision.VisionModel`` for ``model`` with the [vision] settings as defaults."""
    from litevlm.config import load_settings
    from tools.vision import VisionModel

    settings = settings or load_settings()
    cfg = settings.vision.model_copy(update={"model": model, **overrides})
    return VisionModel(cfg)


def evaluate(
    data: str | Path | Sequence[EvalExample],
    specs: Sequence[ModelSpec],
    *,
    settings: Any = None,
    batch_size: int | None = None,
    limit: int | None = None,
    progress: bool = True,
    loader: Callable[[str], Any] | None = None,
    feedback: str | Path | None = None,
) -> EvalReport:
    """Run every model/adapter pair over the test set; one base model is loaded once."""
    if isinstance(data, str | Path):
        examples = load_test_set(data, limit)
        source = str(data)
    else:
        examples = list(data)[:limit] if limit else list(data)
        source = "<examples>"
    if settings is None:
        from litevlm.config import load_settings

        settings = load_settings()
    bs = batch_size or settings.vision.batch_size
    load = loader or (lambda m: load_vision_model(m, settings, batch_size=bs))
    loaded: dict[str, Any] = {}
    report = EvalReport(data=source, n_examples=len(examples))
    for spec in specs:
        if spec.model not in loaded:
            loaded[spec.model] = load(spec.model)
        vm = loaded[spec.model]
        texts, lat, toks, timing = generate_answers(
            vm,
            examples,
            adapter=_adapter_name(vm, spec.adapter),
            batch_size=bs,
            progress=progress,
            desc=spec.name(),
        )
        overall, by_type, by_mod, preds = score_predictions(examples, texts, lat, toks)
        report.models.append(
            ModelReport(
                spec=spec,
                overall=overall,
                by_question_type=by_type,
                by_modality=by_mod,
                timing=timing,
                predictions=preds,
            )
        )
    if feedback:
        report.satisfaction = feedback_satisfaction(feedback)
    return report


# ---------------------------------------------------------------- trainer hook


def preprocess_logits_for_metrics(logits: Any, labels: Any) -> Any:
    """Keep only the argmax ids so the trainer does not hold vocabulary-sized logits."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(-1)


def _metric_values(s: Any) -> dict[str, float]:
    """The scores of a ``MetricSummary`` (not its counts), as the trainer logs them."""
    return {
        k: float(v)
        for k, v in s.model_dump(exclude={"extra"}).items()
        if v is not None and not k.startswith("n")
    }


def make_compute_metrics(tokenizer: Any) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics`` for ``transformers.Trainer``: decode and score the answer span.

    Accepts argmax ids (with ``preprocess_logits_for_metrics``), raw logits, or generated ids.
    Ids shaped like the labels are teacher-forced next-token predictions: position t predicts
    label t+1, so they are shifted before the answer tokens (labels != -100) are decoded. The
    answer type comes from the reference (yes/no -> closed, long -> description).
    """
    tok = getattr(tokenizer, "tokenizer", tokenizer)

    def compute(eval_pred: Any) -> dict[str, float]:
        import numpy as np

        preds, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(preds, tuple):
            preds = preds[0]
        preds, labels = np.asarray(preds), np.asarray(labels)
        if preds.ndim == 3:
            preds = preds.argmax(-1)
        shifted = preds.shape == labels.shape
        hyps, refs = [], []
        for p, lab in zip(preds, labels, strict=True):
            mask = lab != -100
            ref_ids = lab[mask]
            if shifted:
                hyp_ids = p[:-1][mask[1:]]
                ref_ids = lab[1:][mask[1:]]
            else:
                hyp_ids = p[p >= 0]
            hyps.append(tok.decode(hyp_ids.tolist(), skip_special_tokens=True).strip())
            refs.append(tok.decode(ref_ids.tolist(), skip_special_tokens=True).strip())
        return _metric_values(summarize(hyps, refs))

    return compute


def generation_metrics(max_examples: int = 32, max_new_tokens: int = 24) -> Callable[..., dict]:
    """The trainer's evaluation step (``finetune.trainer.MetricsFn``): greedy answers for the
    first ``max_examples`` validation examples, scored by ``summarize`` as ``litevlm eval`` does,
    so training curves and evaluation reports use the same numbers."""

    def compute(model: Any, processor: Any, examples: list[Any]) -> dict[str, float]:
        import torch

        from finetune.data import open_image
        from finetune.formatting import chat_messages

        tok = getattr(processor, "tokenizer", processor)
        paligemma = getattr(model.config, "model_type", "") == "paligemma"
        first = next(model.parameters())
        hyps, refs = [], []
        was_training = model.training
        model.eval()
        try:
            for ex in examples[:max_examples]:
                image = open_image(ex.image)
                if paligemma:
                    text = ex.prompt
                else:
                    text = processor.apply_chat_template(
                        chat_messages(ex, with_answer=False),
                        tokenize=False,
                        add_generation_prompt=True,
                    )
                inputs = processor(images=[image], text=[text], return_tensors="pt")
                inputs = {k: v.to(first.device) for k, v in inputs.items()}
                if "pixel_values" in inputs and first.dtype.is_floating_point:
                    inputs["pixel_values"] = inputs["pixel_values"].to(first.dtype)
                with torch.no_grad():
                    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
                new = out[0, inputs["input_ids"].shape[1] :]
                hyps.append(tok.decode(new, skip_special_tokens=True).strip())
                refs.append(ex.answer)
        finally:
            model.train(was_training)
        return _metric_values(summarize(hyps, refs))

    return compute


# ---------------------------------------------------------------- user satisfaction

_UP = {"1", "up", "+1", "true", "yes", "thumbs_up", "thumbsup", "👍", "positive", "good"}
_DOWN = {"0", "down", "-1", "false", "no", "thumbs_down", "thumbsdown", "👎", "negative", "bad"}


def feedback_satisfaction(path: str | Path) -> list[Satisfaction]:
    """Thumbs up/down from the UI's CSV export, per vision model and adapter version."""
    p = Path(path).expanduser()
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise EvalDataError(
            f"{p}: cannot read feedback: {e}", "export it with `litevlm feedback export`"
        ) from None
    if rows and "value" not in rows[0]:
        raise EvalDataError(
            f"{p}: no 'value' column (columns: {list(rows[0])})",
            "export it with `litevlm feedback export`",
        )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        key = ((row.get("vision_model") or "").strip(), (row.get("adapter") or "").strip())
        groups[key].append(row)
    out = []
    for (model, adapter), rs in sorted(groups.items()):
        votes = [_vote(r.get("value")) for r in rs]
        up = sum(v is True for v in votes)
        down = sum(v is False for v in votes)
        out.append(
            Satisfaction(
                vision_model=model or UNKNOWN,
                adapter=adapter or "none",
                n=len(rs),
                up=up,
                down=down,
                satisfaction=up / (up + down) if up + down else None,
                comments=sum(bool((r.get("comment") or "").strip()) for r in rs),
            )
        )
    return out


def _vote(value: Any) -> bool | None:
    v = str(value or "").strip().lower()
    if v in _UP:
        return True
    if v in _DOWN:
        return False
    try:
        return float(v) > 0
    except ValueError:
        return None


# ---------------------------------------------------------------- reports

COLUMNS = [
    ("closed_accuracy", "closed acc."),
    ("open_recall", "open recall"),
    ("open_f1", "open F1"),
    ("open_exact_match", "open EM"),
    ("bleu4", "BLEU-4"),
    ("rouge_l", "ROUGE-L"),
    ("keyword_recall", "keyword rec."),
]


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def markdown_table(report: EvalReport) -> str:
    """The side-by-side table: one row per model, metrics then generation time."""
    head = ["model", "n", *(c[1] for c in COLUMNS), "p50 s", "p95 s", "tok/s", "peak MB", "batch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in report.models:
        t = m.timing
        cells = [m.spec.name(), str(m.overall.n)]
        cells += [_fmt(getattr(m.overall, k)) for k, _ in COLUMNS]
        if t:
            mem = _fmt(t.peak_memory_mb, 0) + (" (GPU)" if t.memory_kind == "cuda" else "")
            cells += [_fmt(t.latency_p50_s), _fmt(t.latency_p95_s), _fmt(t.tokens_per_s, 1), mem]
            cells.append(str(t.batch_size))
        else:
            cells += ["–"] * 5
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _breakdown_table(report: EvalReport, attr: str) -> str:
    keys = sorted({k for m in report.models for k in getattr(m, attr)})
    head = ["group", "model", "n", *(c[1] for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in keys:
        for m in report.models:
            s = getattr(m, attr).get(k)
            if s is None:
                continue
            cells = [k, m.spec.name(), str(s.n), *(_fmt(getattr(s, c)) for c, _ in COLUMNS)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _satisfaction_table(rows: Sequence[Satisfaction]) -> str:
    lines = [
        "| vision model | adapter | n | 👍 | 👎 | satisfaction | comments |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.vision_model} | {r.adapter} | {r.n} | {r.up} | {r.down} | "
            f"{_fmt(r.satisfaction, 2)} | {r.comments} |"
        )
    return "\n".join(lines)


def to_markdown(report: EvalReport, plots: dict[str, str] | None = None) -> str:
    parts = [
        "# litevlm evaluation",
        f"Data: `{report.data}` ({report.n_examples} examples), {report.created}. "
        "Research use only, not a medical device.",
    ]
    if report.models:
        parts += ["## Side by side", markdown_table(report)]
        parts += [
            "Closed accuracy: first yes/no (or option) named, after normalisation. Open: token "
            "recall (LLaVA-Med), token F1 (SQuAD/MedGemma), exact match. Descriptions: corpus "
            "BLEU-4 (sacrebleu), ROUGE-L F (rouge-score), keyword recall. Latency per example = "
            "batch time / batch size; peak memory is the GPU's allocation on CUDA, the "
            "process's peak RSS on CPU."
        ]
        parts += ["## Per question type", _breakdown_table(report, "by_question_type")]
        parts += ["## Per modality", _breakdown_table(report, "by_modality")]
    for name, file in (plots or {}).items():
        parts.append(f"![{name}]({file})")
    if report.satisfaction:
        parts += ["## User satisfaction (UI feedback)", _satisfaction_table(report.satisfaction)]
    return "\n\n".join(parts) + "\n"


def to_html(report: EvalReport, plots: dict[str, str] | None = None) -> str:
    import html

    def table(md: str) -> str:
        rows = [r.strip("|").split("|") for r in md.splitlines() if not r.startswith("|---")]
        head, body = rows[0], rows[1:]
        th = "".join(f"<th>{html.escape(c.strip())}</th>" for c in head)
        trs = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>"
            for r in body
        )
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"

    sections = [
        f"<h1>litevlm evaluation</h1><p>Data: <code>{html.escape(report.data)}</code> "
        f"({report.n_examples} examples), {report.created}. Research use only, not a medical "
        "device.</p>"
    ]
    if report.models:
        sections.append("<h2>Side by side</h2>" + table(markdown_table(report)))
        sections.append(
            "<h2>Per question type</h2>" + table(_breakdown_table(report, "by_question_type"))
        )
        sections.append("<h2>Per modality</h2>" + table(_breakdown_table(report, "by_modality")))
    for name, file in (plots or {}).items():
        sections.append(
            f'<figure><img src="{html.escape(file)}" alt="{html.escape(name)}"></figure>'
        )
    if report.satisfaction:
        sections.append(
            "<h2>User satisfaction</h2>" + table(_satisfaction_table(report.satisfaction))
        )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
        "th{background:#f3f3f3}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>litevlm evaluation</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n"
    )


def make_plots(report: EvalReport, out_dir: Path) -> dict[str, str]:
    """metrics.png (bars per metric and model) and latency.png (per-example latency boxes)."""
    if not report.models:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [m.spec.name() for m in report.models]
    keys = [
        (k, label)
        for k, label in COLUMNS
        if any(getattr(m.overall, k) is not None for m in report.models)
    ]
    files = {}
    if keys:
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(keys) * max(1, len(names)) ** 0.5), 4))
        width = 0.8 / len(names)
        x = np.arange(len(keys))
        for j, m in enumerate(report.models):
            vals = [getattr(m.overall, k) or 0.0 for k, _ in keys]
            ax.bar(x + j * width - 0.4 + width / 2, vals, width, label=names[j])
        ax.set_xticks(x, [label for _, label in keys], rotation=20)
        ax.set_ylim(0, 1)
        ax.set_ylabel("score")
        ax.legend(fontsize="small")
        ax.set_title("Metrics per model")
        fig.tight_layout()
        fig.savefig(out_dir / "metrics.png", dpi=110)
        plt.close(fig)
        files["metrics per model"] = "metrics.png"
    lat = [[p.latency_s for p in m.predictions] for m in report.models]
    if any(lat):
        fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(names)), 3.5))
        ax.boxplot(lat, showfliers=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=15)
        ax.set_ylabel("seconds per example")
        ax.set_title("Generation latency")
        fig.tight_layout()
        fig.savefig(out_dir / "latency.png", dpi=110)
        plt.close(fig)
        files["latency distribution"] = "latency.png"
    return files


def write_report(report: EvalReport, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """report.json, report.md, report.html (+ metrics.png, latency.png) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = make_plots(report, out) if plots else {}
    paths = {
        "json": out / "report.json",
        "markdown": out / "report.md",
        "html": out / "report.html",
    }
    paths["json"].write_text(report.model_dump_json(indent=2), encoding="utf-8")
    paths["markdown"].write_text(to_markdown(report, figs), encoding="utf-8")
    paths["html"].write_text(to_html(report, figs), encoding="utf-8")
    for f in figs.values():
        paths[f.removesuffix(".png")] = out / f
    return paths


def pair_specs(
    models: Sequence[str], adapters: Sequence[str], labels: Sequence[str] = ()
) -> list[ModelSpec]:
    """Pair ``--model``/``--adapter`` options: equal counts zip; one model takes every adapter.

    An adapter written ``none`` (or ``base``) means the model without adapter, so
    ``--model M --adapter none --adapter runs/sft`` compares the base with the fine-tune.
    """
    if not models:
        raise LiteVLMError("no model to evaluate", "pass --model (a hub id or a local directory)")
    ads: list[str | None] = [None if a.lower() in ("none", "base", "") else a for a in adapters]
    if not ads:
        pairs = [(m, None) for m in models]
    elif len(models) == 1:
        pairs = [(models[0], a) for a in ads]
    elif len(models) == len(ads):
        pairs = list(zip(models, ads, strict=True))
    else:
        raise LiteVLMError(
            f"{len(models)} --model but {len(ads)} --adapter options",
            "give one --adapter per --model (use 'none' for no adapter), or one --model",
        )
    if labels and len(labels) != len(pairs):
        raise LiteVLMError(f"{len(labels)} --label for {len(pairs)} models", "one label per model")
    labs = list(labels) or [""] * len(pairs)
    return [
        ModelSpec(model=m, adapter=a, label=lab) for (m, a), lab in zip(pairs, labs, strict=True)
    ]
