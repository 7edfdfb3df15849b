"""Run model/adapter/prompt combinations over a test set and collect the report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from finetune.data import Example
from finetune.evaluate.data import load_test_set
from finetune.evaluate.satisfaction import feedback_satisfaction
from finetune.evaluate.schema import EvalReport, ModelReport, ModelSpec
from finetune.evaluate.scoring import check_scoring, score_predictions
from finetune.evaluate.timing import generate_answers
from finetune.evaluate.vision import adapter_name, load_vision_model
from litevlm.errors import LiteVLMError


def evaluate(
    data: str | Path | Sequence[Example],
    specs: Sequence[ModelSpec],
    *,
    settings: Any = None,
    batch_size: int | None = None,
    limit: int | None = None,
    progress: bool = True,
    loader: Callable[[str], Any] | None = None,
    feedback: str | Path | None = None,
    scoring: str = "strict",
    judge: Any = None,
) -> EvalReport:
    """Run every spec over the test set; one base model is loaded once for all its specs.

    ``judge``: a ``finetune.evaluate.judge.Judge`` that grades every answer too.
    """
    check_scoring(scoring)
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
    report = EvalReport(data=source, n_examples=len(examples), scoring=scoring)
    for spec in specs:
        if spec.model not in loaded:
            loaded[spec.model] = load(spec.model)
        vm = loaded[spec.model]
        texts, lat, toks, timing = generate_answers(
            vm,
            examples,
            adapter=adapter_name(vm, spec.adapter),
            prompt=spec.prompt,
            batch_size=bs,
            progress=progress,
            desc=spec.name(),
        )
        overall, by_type, by_mod, preds = score_predictions(
            examples, texts, lat, toks, scoring=scoring
        )
        m = ModelReport(
            spec=spec,
            overall=overall,
            by_question_type=by_type,
            by_modality=by_mod,
            timing=timing,
            predictions=preds,
        )
        if judge is not None:
            m.judge = judge.grade_predictions(m.predictions, progress=progress)
        report.models.append(m)
    if feedback:
        report.satisfaction = feedback_satisfaction(feedback)
    return report


def pair_specs(
    models: Sequence[str],
    adapters: Sequence[str],
    labels: Sequence[str] = (),
    prompts: Sequence[str] = (),
) -> list[ModelSpec]:
    """Pair ``--model``/``--adapter`` options: equal counts zip; one model takes every adapter.

    An adapter written ``none`` (or ``base``) means the model without adapter, so
    ``--model M --adapter none --adapter runs/sft`` compares the base with the fine-tune.
    Each ``--prompt`` template is tried with every pair (``default`` = the model's own prompt);
    labels name the resulting columns in order.
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
    temps: list[str | None] = [None if p in ("default", "") else p for p in prompts] or [None]
    combos = [(m, a, p) for m, a in pairs for p in temps]
    if labels and len(labels) != len(combos):
        raise LiteVLMError(
            f"{len(labels)} --label for {len(combos)} model/adapter/prompt columns",
            "one label per column",
        )
    labs = list(labels) or [""] * len(combos)
    return [
        ModelSpec(model=m, adapter=a, prompt=p, label=lab)
        for (m, a, p), lab in zip(combos, labs, strict=True)
    ]
