"""Robust tool calling: what the chat model asked for, however it wrote it.

Servers differ: OpenAI and vLLM with a tool parser return ``tool_calls``; raw llama.cpp, and
small models behind any server, write the call as JSON in the message content -
``{"name": "measure", "arguments": {...}}``, a list of those, inside a ```json fence or
``<tool_call>`` tags (Qwen's template), sometimes with ``"parameters"`` for ``"arguments"`` or
the arguments as a JSON string. ``read_calls`` reads all of these, the way Ollama's and vLLM's
lenient parsers do, keeps only arguments the schema knows, and says in warnings what it could
not use: LangChain's ``invalid_tool_calls`` (truncated or malformed JSON), unknown tool names,
JSON that is cut off. An empty result means "no usable tool call": the graph then reuses the
thread's earlier sources for a follow-up, or falls back to the rule-based routing.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"```(?:json|tool_call|tool)?\s*(.*?)\s*(?:```|$)", re.S)
_ARG_KEYS = ("arguments", "parameters", "args", "input", "tool_input")
_NAME_KEYS = ("name", "tool", "tool_name", "function")


def _objects(text: str) -> tuple[list[Any], bool]:
    """Every top-level JSON value in ``text`` (objects and lists), and whether one was cut off."""
    decoder = json.JSONDecoder()
    out: list[Any] = []
    cut = False
    i = 0
    while True:
        starts = [j for j in (text.find("{", i), text.find("[", i)) if j >= 0]
        if not starts:
            break
        j = min(starts)
        try:
            value, end = decoder.raw_decode(text, j)
        except json.JSONDecodeError:
            # an object whose braces never close was truncated (max_tokens)
            rest = text[j:]
            if rest.count("{") > rest.count("}") and '"' in rest:
                cut = True
            i = j + 1
            continue
        out.append(value)
        i = end
    return out, cut


def _as_call(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # OpenAI's shape pasted into the content
        obj = {**obj["function"], **{k: v for k, v in obj.items() if k != "function"}}
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if not name:
        return None
    args: Any = next((obj[k] for k in _ARG_KEYS if k in obj), {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return {"name": name, "args": None}
    return {"name": name, "args": args if isinstance(args, dict) else {}}


def calls_in_text(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Tool calls written as JSON in a message's content, and warnings about broken ones."""
    if not text or ("{" not in text and "[" not in text):
        return [], []
    pieces = _TAGGED.findall(text) or _FENCED.findall(text) or [text]
    calls: list[dict[str, Any]] = []
    warnings: list[str] = []
    for piece in pieces:
        values, cut = _objects(piece)
        if cut:
            warnings.append("the chat model's tool call was cut off (not valid JSON); ignored")
        for value in values:
            for item in value if isinstance(value, list) else [value]:
                call = _as_call(item)
                if call is not None:
                    calls.append(call)
    return calls, warnings


def _schema_properties(schemas: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        s["function"]["name"]: s["function"].get("parameters", {}).get("properties", {})
        for s in schemas
    }


def _coerce(value: Any, spec: dict[str, Any]) -> Any:
    kind = spec.get("type")
    if kind == "integer":
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return None
    if kind == "string":
        if isinstance(value, list | dict):
            return None
        return None if value is None else str(value)
    return value


def read_calls(message: Any, schemas: list[dict[str, Any]]) -> tuple[list[dict], list[str]]:
    """``[{"name", "args"}]`` the model asked for (known tools, known arguments), and warnings."""
    props = _schema_properties(schemas)
    raw: list[dict[str, Any]] = [
        {"name": c.get("name") or "", "args": c.get("args")}
        for c in getattr(message, "tool_calls", None) or []
    ]
    warnings: list[str] = []
    for bad in getattr(message, "invalid_tool_calls", None) or []:
        name = bad.get("name") or "?"
        why = " ".join(str(bad.get("error") or "arguments are not valid JSON").split())[:120]
        warnings.append(f"the chat model made an invalid call of {name!r} ({why}); ignored")
    if not raw:
        content = message.content if isinstance(message.content, str) else str(message.content)
        raw, more = calls_in_text(content)
        warnings += more
    calls: list[dict[str, Any]] = []
    for call in raw:
        name = call["name"]
        if name not in props:
            warnings.append(f"the chat model called an unknown tool {name[:40]!r}; ignored")
            continue
        if call["args"] is None:
            warnings.append(f"the chat model's arguments for {name!r} are not valid JSON; ignored")
            continue
        args = {
            k: _coerce(v, props[name][k])
            for k, v in call["args"].items()
            if k in props[name] and v is not None
        }
        calls.append({"name": name, "args": {k: v for k, v in args.items() if v is not None}})
    return calls, warnings
