"""The agent's tools: one module per tool, and the registry the graph, report and UI iterate.

Adding a tool is one module here (a ``Tool`` subclass: schema, cache key, run, facts,
sources, sentences) and one line in ``TOOLS``.
"""

from __future__ import annotations

from agent.tools.base import AnswerContext, PixelSize, Tool
from agent.tools.header import TOOL as HEADER
from agent.tools.literature import TOOL as LITERATURE
from agent.tools.measure import TOOL as MEASURE
from agent.tools.similar import TOOL as SIMILAR
from agent.tools.toolbox import Toolbox, image_id, normalise
from agent.tools.vision import TOOL as VISION

TOOLS: dict[str, Tool] = {t.name: t for t in (HEADER, VISION, MEASURE, SIMILAR, LITERATURE)}
TOOL_SCHEMAS = [t.schema for t in TOOLS.values() if t.schema]
SCHEMA_TO_TOOL = {t.call_name: t.name for t in TOOLS.values() if t.call_name}


def tool(name: str) -> Tool:
    return TOOLS[name]


def read(record: dict) -> object:
    """A tool record's output as its typed model (None when the tool failed)."""
    return TOOLS[record["tool"]].read(record)


__all__ = [
    "SCHEMA_TO_TOOL",
    "TOOLS",
    "TOOL_SCHEMAS",
    "AnswerContext",
    "PixelSize",
    "Tool",
    "Toolbox",
    "image_id",
    "normalise",
    "read",
    "tool",
]
