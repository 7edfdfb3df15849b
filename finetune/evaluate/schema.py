"""The report's typed pieces: what was compared, what each model answered, how it scored."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, Field

from finetune.metrics import MetricSummary

UNKNOWN = "unknown"


class ModelSpec(BaseModel):
    """One column of the comparison: a model (hub id or folder), an adapter, a prompt template."""

    model: str
    adapter: str | None = None
    prompt: str | None = None  # e.g. "answer en {question}", "caption en"; None: the default
    label: str = ""

    def name(self) -> str:
        if self.label:
            return self.label
        base = Path(self.model).name or self.model
        name = f"{base}+{Path(self.adapter).name}" if self.adapter else base
        return f"{name} [{self.prompt}]" if self.prompt else name


class Verdict(BaseModel):
    """An LLM judge's reading of one answer against the reference (see docs/evaluation.md)."""

    verdict: str  # correct | partially_correct | incorrect
    score: float | None  # 1, 0.5, 0; None when the reply could not be read
    errors: int = 0  # clinically significant errors (LLaVA-Rad's G-Rad style count)
    reasons: str = ""


class Prediction(BaseModel):
    id: str
    question: str
    answer: str
    prediction: str
    answer_type: str
    question_type: str | None = None
    modality: str = UNKNOWN
    options: list[str] | None = None
    correct: bool | None = None
    token_recall: float = 0.0
    token_f1: float = 0.0
    exact_match: float = 0.0
    latency_s: float = 0.0
    tokens: int = 0
    judge: Verdict | None = None


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


class JudgeSummary(BaseModel):
    """The judge's figures and how often it agrees with the token metric of the same rows."""

    model: str
    n: int
    mean_score: float | None = None
    correct: int = 0
    errors: int = 0
    agreement: float | None = None  # judge correct (score >= 0.5) == token metric correct
    n_compared: int = 0


class ModelReport(BaseModel):
    spec: ModelSpec
    overall: MetricSummary
    by_question_type: dict[str, MetricSummary] = Field(default_factory=dict)
    by_modality: dict[str, MetricSummary] = Field(default_factory=dict)
    timing: Timing | None = None
    predictions: list[Prediction] = Field(default_factory=list)
    judge: JudgeSummary | None = None


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
    scoring: str = "strict"
    models: list[ModelReport] = Field(default_factory=list)
    satisfaction: list[Satisfaction] = Field(default_factory=list)
    created: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
