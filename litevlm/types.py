"""Core types shared by every package: one place, imported everywhere.

Pydantic models are the boundary format: the CLI's ``--json``, reports, the agent's state and
the UI all serialise these. ``LoadedImage`` is the one exception that holds a live PIL image; its
``identifiers`` never serialise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Modality = Literal[
    "microscopy", "histology", "fluorescence", "photo", "CT", "MR", "CR", "DX", "US", "XA",
    "PT", "NM", "MG", "OT", "unknown",
]  # fmt: skip

SourceKind = Literal[
    "vision", "measurement", "header", "case", "pubmed", "arxiv", "web", "wikipedia"
]


class LoadedImage(BaseModel):
    """An image ready for every tool: RGB pixels plus de-identified metadata.

    ``identifiers`` holds patient identifiers from a DICOM header (name, IDs, birth date,
    accession, institution, ...). It exists only so that outgoing text can be redacted; it is
    excluded from ``model_dump``/``model_dump_json`` and from ``repr``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    image: Any = Field(exclude=True, repr=False, description="PIL.Image.Image in RGB mode")
    source_path: Path | None = None
    modality: str = "unknown"
    pixel_size_mm: tuple[float, float] | None = Field(
        default=None, description="(row, column) spacing in millimetres, when known"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    identifiers: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)
    # Data in stored units (e.g. HU for CT) for measurement; not serialised.
    raw: Any = Field(default=None, exclude=True, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


class VisionResult(BaseModel):
    text: str
    model_id: str
    adapter: str | None = None
    prompt: str
    tokens: int = 0
    latency_s: float = 0.0
    tokens_per_s: float = 0.0


class Measurement(BaseModel):
    """What was measured in an image; filled by ``tools.measure``."""

    kind: Literal["cells", "nuclei", "ihc", "he", "radiology", "fundus", "unknown"]
    count: int | None = None
    units: str = "px"
    pixel_size_um: float | None = None
    summary: dict[str, Any] = Field(default_factory=dict)
    distributions: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    overlay_path: Path | None = None
    objects: list[dict[str, Any]] = Field(
        default_factory=list, description="per-object table; ids match the overlay numbers"
    )


class SimilarCase(BaseModel):
    id: str
    score: float
    caption: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    image_uri: str | None = None
    embedder: str = Field(default="", description="model whose vectors produced the score")
    match: str = Field(default="", description="image, text, hybrid or a fusion like image+text")


class Fact(BaseModel):
    """One citable fact a tool produced, typed: "242 nuclei", "tube voltage 150 kV".

    Every tool's result is a list of these (besides its full typed output); the answer picks
    the ones a question asks for and the verify step checks a sentence's numbers against the
    facts of the sources it cites. Identifiers are never facts.
    """

    name: str = Field(description="machine name, e.g. count, kvp, pixel_spacing, h_score")
    label: str = Field(default="", description="researcher's words, e.g. 'tube voltage'")
    value: float | int | str | bool | list[float] | None = None
    unit: str = Field(default="", description="kV, mm, um, um^2, per mm^2, %, ms, T, ...")
    provenance: str = Field(
        default="", description="where it comes from: image header, measurement, question, ..."
    )
    text: str = Field(default="", description="the fact in words: 'tube voltage 150 kV'")


class Source(BaseModel):
    """One citable thing: a paper, a web page, a similar case, a tool's output."""

    n: int | None = Field(default=None, description="citation number in an answer")
    kind: SourceKind
    id: str = Field(description="stable id: PMID, DOI, arXiv id, URL, case id, tool run id")
    title: str = ""
    authors: list[str] = Field(default_factory=list)
    year: int | None = None
    venue: str | None = None
    doi: str | None = None
    url: str | None = None
    snippet: str = ""
    facts: list[Fact] = Field(default_factory=list, description="typed facts this source gives")


class Answer(BaseModel):
    text: str
    sources: list[Source] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    thread_id: str | None = None
    figures: dict[str, Path] = Field(
        default_factory=dict, description="name -> image file: measurement overlay, heat-map"
    )
    models: dict[str, str] = Field(
        default_factory=dict, description="what produced it: vision model, adapter, chat model"
    )


DISCLAIMER = (
    "Research use only. litevlm is not a medical device and must not be used for diagnosis "
    "or treatment decisions."
)
