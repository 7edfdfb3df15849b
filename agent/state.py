"""The agent's state: what a thread holds between turns and what one turn adds.

Everything here is checkpointed (SQLite by default), so it holds plain JSON-able values only:
image *paths* and de-identified metadata, never pixels or patient identifiers. ``results``
keeps every tool output of the thread by a key that names the tool, the image and the inputs,
which is how a follow-up reuses earlier work, also in a new process.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages


def merge(old: dict | None, new: dict | None) -> dict:
    """Reducer: later keys win. Parallel tool nodes each add their own keys."""
    return {**(old or {}), **(new or {})}


def extend(old: list | None, new: list | None) -> list:
    """Reducer: append. A turn starts by overwriting with ``Overwrite([])``."""
    return [*(old or []), *(new or [])]


class ImageRecord(TypedDict):
    id: str  # content hash: the same file under another name is the same image
    path: str
    name: str
    modality: str
    metadata: dict[str, Any]  # de-identified
    pixel_size_mm: list[float] | None


class PlanItem(TypedDict):
    key: str  # cache key in ``results``
    tool: str  # a name in agent.tools.TOOLS: header | vision | measure | similar | literature
    image: str | None  # image id
    args: dict[str, Any]


class ToolRecord(TypedDict):
    key: str
    tool: str
    image: str | None
    args: dict[str, Any]
    # model_dump(mode="json") of the tool's typed output (None on error); read it back with
    # agent.tools.read(record), which validates it into the tool's output model.
    output: dict[str, Any] | None
    error: str | None
    elapsed_s: float


class ToolInput(TypedDict):
    """What a tool node receives (through ``Send``) when the route fans out."""

    item: PlanItem
    image: ImageRecord | None
    question: str
    thread_images: list[ImageRecord]  # for redacting their identifiers from queries


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    question: str
    new_images: list[ImageRecord]  # images given with this turn (input only)
    images: dict[str, ImageRecord]  # the thread's images, oldest first
    targets: list[str]  # ids of the images this turn is about
    plan: list[PlanItem]
    route: dict[str, Any]  # agent.routing.Route of this turn (a follow-up may inherit it)
    asked: list[str]  # fact names the question asks for (agent.questions)
    describe: bool  # an open request for a description
    withheld: bool  # the question asks for a patient identifier: answered with a refusal
    pixel_size: dict[str, Any] | None  # {"um", "source"} stated by the user; kept for the thread
    results: Annotated[dict[str, ToolRecord], merge]  # the thread's tool outputs, by key
    turn: Annotated[list[str], extend]  # keys of ``results`` this turn uses, in plan order
    reused: list[str]  # keys taken from earlier turns instead of running the tool again
    warnings: Annotated[list[str], extend]
    timings: Annotated[dict[str, float], merge]
    draft: str
    sources: list[dict[str, Any]]  # numbered Source dumps for the draft
    answer: dict[str, Any]  # the turn's Answer, dumped
