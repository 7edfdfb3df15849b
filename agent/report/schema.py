"""The report's types: what report.json holds, and what the renderer reads."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from litevlm.types import DISCLAIMER, Answer, Fact, Source


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
