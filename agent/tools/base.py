"""What every agent tool is: one class per module, the same few methods.

A tool has a name (its graph node), an OpenAI-format schema for the chat model (or none), a
cache key, ``run`` (calls the ``Toolbox`` and returns its typed output), ``facts`` (the typed
facts it found), ``sources`` (numbered-citation records carrying those facts) and
``sentences`` (the rule-based answer's cited sentences). The registry (``agent.tools``) lists
them; the graph, the report and the UI iterate it.

Outputs are pydantic models. The checkpoint holds their ``model_dump(mode="json")`` (plain
JSON, no pickled classes) and ``Tool.read`` validates it back into the model: the one typed
accessor every consumer uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from litevlm.types import Fact, Source

if TYPE_CHECKING:
    from agent.context import Context
    from agent.state import ImageRecord, PlanItem, ToolInput, ToolRecord


@dataclass(frozen=True)
class PixelSize:
    """A pixel size the user stated (question or ``--pixel-size``), in micrometres."""

    um: float
    source: str  # "stated in the question", "given with --pixel-size"


@dataclass
class AnswerContext:
    """What a tool needs to word its part of the rule-based answer."""

    question: str = ""
    asked: list[str] = field(default_factory=list)  # fact names asked for, most wanted first
    describe: bool = False
    image_name: str | None = None
    multi: bool = False  # several images: sentences name theirs
    pixel: PixelSize | None = None
    image: ImageRecord | None = None

    @property
    def prefix(self) -> str:
        return f"In {self.image_name}, " if self.multi and self.image_name else ""


def num(v: float | int, digits: int = 3) -> str:
    """A number as a researcher writes it: 242, 57.1, 0.0123, 1.2e+04."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e9):
        return str(int(v))
    if abs(v) >= 1000:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def quote(text: str) -> str:
    """Tool text quoted inside a sentence: one line, no double quotes of its own."""
    return " ".join(str(text).split()).replace('"', "'")


def pick(facts: list[Fact], asked: list[str]) -> list[Fact]:
    """The facts named in ``asked``, in the order asked."""
    out: list[Fact] = []
    for name in asked:
        out += [f for f in facts if f.name == name and f not in out]
    return out


class Tool:
    """Base of the agent's tools (see the module docstring)."""

    name: ClassVar[str]
    call_name: ClassVar[str | None] = None  # the chat model's name for it; None: not offered
    description: ClassVar[str] = ""
    parameters: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}
    per_image: ClassVar[bool] = True
    output_type: ClassVar[type[BaseModel]]

    # -- planning ---------------------------------------------------------------------------
    @property
    def schema(self) -> dict[str, Any] | None:
        if not self.call_name:
            return None
        return {
            "type": "function",
            "function": {
                "name": self.call_name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def prepare(self, args: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """The arguments as planned, with the turn's options that change the result."""
        return dict(args)

    def key(self, image: str | None, args: dict[str, Any], ctx: Context) -> str:
        raise NotImplementedError

    def item(self, image: str | None, args: dict[str, Any], ctx: Context) -> PlanItem:
        args = self.prepare(args, ctx)
        return {"key": self.key(image, args, ctx), "tool": self.name, "image": image, "args": args}

    def from_call(
        self, args: dict[str, Any], image: str | None, question: str, ctx: Context
    ) -> PlanItem | None:
        """A plan item from the chat model's tool call (None: not applicable)."""
        return self.item(image, {}, ctx)

    # -- running ----------------------------------------------------------------------------
    def run(self, payload: ToolInput, ctx: Context) -> tuple[BaseModel, list[str]]:
        """Call the toolbox; return (typed output, warnings). Exceptions become the error."""
        raise NotImplementedError

    def dump(self, output: BaseModel) -> dict[str, Any]:
        return output.model_dump(mode="json")

    def read(self, record: ToolRecord | dict[str, Any]) -> Any:
        """The record's output as its typed model (None when the tool failed)."""
        out = record.get("output")
        if record.get("error") or out is None:
            return None
        return self.output_type.model_validate(out)

    # -- citing -----------------------------------------------------------------------------
    def facts(self, output: Any, actx: AnswerContext) -> list[Fact]:
        return []

    def sources(self, record: ToolRecord, actx: AnswerContext) -> list[Source]:
        return []

    def sentences(self, record: ToolRecord, numbers: list[int], actx: AnswerContext) -> list[str]:
        return []

    def summary(self, output: Any) -> dict[str, Any]:
        """A short JSON-able summary for the streamed step panel."""
        return {}

    def figures(self, output: Any) -> dict[str, str]:
        """Figure files the answer shows (name -> path): overlay, attention map."""
        return {}

    def models(self, output: Any) -> dict[str, str]:
        """What produced the output, for ``Answer.models``."""
        return {}

    def label(self, record: ToolRecord) -> str:
        return self.name


_WS = re.compile(r"\s+")


def one_line(text: str, limit: int = 300) -> str:
    t = _WS.sub(" ", text).strip()
    return t if len(t) <= limit else t[: limit - 3] + "..."
