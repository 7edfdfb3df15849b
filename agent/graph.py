"""The agent's graph: route -> tools in parallel -> synthesise -> verify.

```
          ┌──► header ─────┐
          ├──► vision ─────┤
route ────┼──► measure ────┼──► synthesise ──► verify ──► END
  │       ├──► similar ────┤
  │       └──► literature ─┘      (one Send per tool call: independent calls run at once)
  └────────────────────────────► synthesise   (everything reused from earlier turns)
```
``route`` picks the tools: the chat model through tool calls, or the rules in ``rule_plan``
when no chat model is configured (or it fails). Results the thread already has (same tool,
image and inputs) are reused instead of run again. The tools are the registry's
(``agent.tools.TOOLS``, one module each); the rule-based answer leads with the facts the
question asks for. A question for a patient identifier runs no tool and is answered with the
note that identifiers are withheld.
"""

from __future__ import annotations

import re
import time
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send

from agent import prompts
from agent.citations import number_sources, verify
from agent.context import Context, past_deadline
from agent.grounding import complete, ground, tidy_warnings
from agent.questions import (
    FACT_TOOL,
    LITERATURE,
    POINTS_AT_IMAGE,
    WITHHELD_FACTS,
    WITHHELD_NOTE,
    asked_facts,
    asks_identifier,
    facts_for,
)
from agent.routing import Route
from agent.sanitize import filter_answer, inert_output
from agent.state import ImageRecord, PlanItem, State, ToolInput, ToolRecord
from agent.toolcalls import read_calls
from agent.tools import SCHEMA_TO_TOOL, TOOL_SCHEMAS, TOOLS, AnswerContext, PixelSize
from agent.tools.base import pick
from litevlm.types import Answer, Source

THIS_IMAGE = re.compile(r"\b(this|the|these) (image|picture|slide|scan|section|cell)s?\b", re.I)
ALL_IMAGES = re.compile(
    r"\b(all|both|every|each) (of the )?(images?|pictures?|scans?|slides?)\b|"
    r"\bcompare\b",
    re.I,
)
NTH_IMAGE = re.compile(r"\b(?:image|picture|scan) #?(\d+)\b|\b(first|second|third|last)\b", re.I)
_ORDINAL = {"first": 1, "second": 2, "third": 3}
_TOPIC_PREFIX = re.compile(
    r"^\s*(what( else)? is (known|published|the literature) (about|on)|what do (papers|studies) "
    r"say about|find (papers|literature|studies) (on|about)|(search|look up)( the)? literature "
    r"(on|for)|tell me about)\s+",
    re.I,
)


# -- choosing images and tools -------------------------------------------------------------


def pick_targets(question: str, images: dict[str, ImageRecord], new: list[str]) -> list[str]:
    """Which of the thread's images a question is about: the ones given with it, an image
    named or numbered in it, all of them ("compare", "both images"), else the latest."""
    order = list(images)
    if new:
        return new
    if not order:
        return []
    named = [i for i, rec in images.items() if rec["name"].lower() in question.lower()]
    if named:
        return named
    if ALL_IMAGES.search(question):
        return order
    m = NTH_IMAGE.search(question)
    if m and len(order) > 1:
        if m.group(1):
            idx = int(m.group(1))
            if 1 <= idx <= len(order):
                return [order[idx - 1]]
        elif m.group(2):
            word = m.group(2).lower()
            return [order[-1]] if word == "last" else [order[_ORDINAL[word] - 1]]
    return [order[-1]]


def literature_query(question: str, images: list[ImageRecord]) -> str:
    """A short topic query: the question minus its framing, plus the image's modality when the
    question points at the image ("this staining")."""
    q = _TOPIC_PREFIX.sub("", question).strip().rstrip("?.! ")
    q = re.sub(r"\b(this|these|the|that) (image|picture|slide|scan)s?\b", "", q, flags=re.I)
    if images and re.search(r"\b(this|these|that|it)\b", question, re.I):
        rec = images[0]
        hint = " ".join(
            str(v)
            for v in (rec["metadata"].get("stain"), rec["metadata"].get("organ"), rec["modality"])
            if v and v != "unknown"
        )
        q = f"{q} {hint}".strip()
    return " ".join(q.split())[:200]


def make_item(tool: str, image: str | None, args: dict[str, Any], ctx: Context) -> PlanItem:
    """A plan item with its cache key: same tool, image and inputs -> same key."""
    return TOOLS[tool].item(image, args, ctx)


def rule_plan(
    question: str, targets: list[ImageRecord], ctx: Context, route: Route | None = None
) -> list[PlanItem]:
    """Deterministic routing by what the question asks (``agent.routing``: by meaning)."""
    r = route or ctx.toolbox.router.route(question)
    if r.identifier:
        return []
    tools = chosen_tools(r, question, bool(targets))
    if r.describe:
        tools = ["header", "vision", "measure", *(["similar"] if ctx.similar_k else [])]
    elif targets and not tools:
        tools = ["vision"]  # nothing else asked: what only looking can tell
    items: list[PlanItem] = []
    for rec in targets:
        for name in tools:
            if name == "literature" or (name == "similar" and not ctx.similar_k):
                continue
            args = {"k": ctx.similar_k} if name == "similar" else {}
            if name == "vision":
                args = {"question": None if r.describe else question}
            items.append(make_item(name, rec["id"], args, ctx))
    about_image = bool(set(tools) - {"literature"}) or bool(THIS_IMAGE.search(question))
    if ("literature" in tools or not (targets or about_image)) and ctx.literature_max:
        query = literature_query(question, targets)
        items.append(make_item("literature", None, {"query": query}, ctx))
    return items


def with_needed_tools(
    plan: list[PlanItem], rules: list[PlanItem], r: Route
) -> tuple[list[PlanItem], list[str]]:
    """The model's plan, plus the rule plan's calls of the tools that give the facts asked
    (the header for a slice thickness, the header and measurement for a description) that
    the model did not call: a small model often asks only the vision model, or measures when
    the header has the answer. Returns (plan, the tools added)."""
    needed = {"header", "measure"} if r.describe else {i["tool"] for i in rules} - {"vision"}
    have = {(i["tool"], i["image"]) for i in plan}
    extra = [i for i in rules if i["tool"] in needed and (i["tool"], i["image"]) not in have]
    return plan + extra, list(dict.fromkeys(i["tool"] for i in extra))


def chosen_tools(r: Route, question: str, has_images: bool) -> list[str]:
    """The router's tools, plus the tool of any fact the question names in so many words
    ("kilovoltage", "covered by tissue"): a safety net under routing by meaning."""
    if LITERATURE.search(question) and not POINTS_AT_IMAGE.search(question):
        return ["literature"]  # "what is known about X" asks the papers, whatever X sounds like
    tools = list(r.tools)
    if has_images and not r.describe:
        tools += [t for t in dict.fromkeys(FACT_TOOL[f] for f in asked_facts(question))]
    return list(dict.fromkeys(tools))


def question_route(question: str, state: State, ctx: Context) -> Route:
    """The router's reading of the question; a follow-up may inherit the last turn's."""
    previous = state.get("route")
    return ctx.toolbox.router.route(
        question, previous=Route.model_validate(previous) if previous else None
    )


def _resolve_image(name: str | None, images: dict[str, ImageRecord], targets: list[str]) -> str:
    if name:
        for i, rec in images.items():
            if name.lower() in (rec["name"].lower(), rec["id"], rec["path"].lower()):
                return i
    return targets[0] if targets else (list(images)[-1] if images else "")


def model_plan(
    state: State, targets: list[str], images: dict[str, ImageRecord], ctx: Context
) -> tuple[list[PlanItem], list[str]]:
    """Routing by the chat model's tool calls (also those written as JSON in its text)."""
    names = ", ".join(f"{r['name']} ({r['modality']})" for r in images.values()) or "none"
    available = sorted(
        {k.split("|")[0] for k, r in state.get("results", {}).items() if not r.get("error")}
    ) or ["none"]
    system = prompts.ROUTE_SYSTEM.format(images=names, available=", ".join(available))
    history = list(state.get("messages", []))[:-1][-ctx.history_messages :]
    messages = [SystemMessage(system), *history, HumanMessage(state["question"])]
    if ctx.redactor is not None:  # earlier turns' text, cleaned of this turn's images' ids too
        from tools.privacy import clean

        messages = [
            m.model_copy(update={"content": clean(m.content, ctx.redactor)})
            if isinstance(m.content, str)
            else m
            for m in messages
        ]
    msg = ctx.chat_model.bind_tools(TOOL_SCHEMAS).invoke(messages)
    calls, warnings = read_calls(msg, TOOL_SCHEMAS)
    items: list[PlanItem] = []
    for call in calls:
        tool = TOOLS[SCHEMA_TO_TOOL[call["name"]]]
        if tool.per_image and not images:
            continue
        args = dict(call["args"])
        img = _resolve_image(args.get("image"), images, targets) if tool.per_image else None
        item = tool.from_call(args, img, state["question"], ctx)
        if item is not None:
            items.append(item)
    return items, warnings


def previous_turn(state: State) -> list[PlanItem]:
    """The last turn's successful tool calls, as plan items: what a follow-up may reuse."""
    results = state.get("results") or {}
    return [
        {"key": k, "tool": r["tool"], "image": r["image"], "args": r["args"]}
        for k in state.get("turn") or []
        if (r := results.get(k)) and not r["error"]
    ]


# -- nodes ---------------------------------------------------------------------------------


def route(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    t0 = time.perf_counter()
    ctx = runtime.context
    images = dict(state.get("images") or {})
    new_ids: list[str] = []
    for rec in state.get("new_images") or []:
        images.pop(rec["id"], None)  # re-sent image becomes the latest
        images[rec["id"]] = rec
        new_ids.append(rec["id"])
    question = state["question"]
    targets = pick_targets(question, images, new_ids)
    target_recs = [images[i] for i in targets]
    warnings: list[str] = []
    r = question_route(question, state, ctx)
    withheld = r.identifier or bool(set(r.facts) & WITHHELD_FACTS) or asks_identifier(question)
    asked = facts_for(r.facts, question, chosen_tools(r, question, bool(targets)))
    if withheld:  # identifiers are never answered, in any mode: no tool runs
        plan: list[PlanItem] = []
    elif ctx.chat_model is not None and not past_deadline(ctx):
        try:
            plan, warnings = model_plan(state, targets, images, ctx)
        except Exception as e:  # a chat model that is down must not fail the turn
            warnings.append(
                f"chat model failed while routing ({type(e).__name__}: {e}); "
                "used the rule-based routing"
            )
            plan = rule_plan(question, target_recs, ctx, r)
        else:
            if not plan and not new_ids and (earlier := previous_turn(state)):
                plan = earlier  # a follow-up the model answers from the thread's sources
            elif not plan:
                warnings.append("the chat model chose no usable tool; used the rule-based routing")
                plan = rule_plan(question, target_recs, ctx, r)
            else:
                plan, added = with_needed_tools(plan, rule_plan(question, target_recs, ctx, r), r)
                if added:
                    warnings.append(
                        f"added {', '.join(added)} from the rule-based routing: the fact asked "
                        "comes from there"
                    )
    else:
        plan = rule_plan(question, target_recs, ctx, r)
    seen: set[str] = set()
    plan = [p for p in plan if not (p["key"] in seen or seen.add(p["key"]))]
    results = state.get("results") or {}
    reused = [p["key"] for p in plan if p["key"] in results and not results[p["key"]]["error"]]
    return {
        "images": images,
        "new_images": [],
        "targets": targets,
        "plan": plan,
        "asked": asked,
        "route": r.model_dump(mode="json"),
        "describe": not withheld and r.describe,
        "withheld": withheld,
        "pixel_size": _pixel_size(r, ctx, state),
        "reused": reused,
        "turn": Overwrite(reused),
        "warnings": Overwrite(warnings),
        "timings": Overwrite({"route": time.perf_counter() - t0}),
        "draft": "",
        "sources": [],
    }


def _pixel_size(r: Route, ctx: Context, state: State) -> dict[str, Any] | None:
    """The pixel size the user stated: this question, ``--pixel-size``, or earlier in the thread."""
    stated = None
    if r.pixel_size_um:
        stated = PixelSize(um=r.pixel_size_um, source="stated in the question")
    elif ctx.pixel_size_um:
        stated = PixelSize(um=float(ctx.pixel_size_um), source="given with --pixel-size")
    if stated is None:
        earlier = state.get("pixel_size")
        return {**earlier, "source": "stated earlier in this thread"} if earlier else None
    return {"um": stated.um, "source": stated.source}


def fan_out(state: State) -> list[Send] | str:
    """One Send per tool call not answered by earlier turns; they run in parallel."""
    images = state.get("images") or {}
    reused = set(state.get("reused") or [])
    sends = [
        Send(
            p["tool"],
            {
                "item": p,
                "image": images.get(p["image"] or ""),
                "question": state["question"],
                "thread_images": [] if TOOLS[p["tool"]].per_image else list(images.values()),
            },
        )
        for p in state.get("plan") or []
        if p["key"] not in reused
    ]
    return sends or "synthesise"


def run_tool(payload: ToolInput, runtime: Runtime[Context]) -> dict[str, Any]:
    """The node of every tool: run it, keep its typed output (as JSON) under its cache key."""
    item, rec = payload["item"], payload["image"]
    tool = TOOLS[item["tool"]]
    t0 = time.perf_counter()
    output: dict[str, Any] | None = None
    error: str | None = None
    warnings: list[str] = []
    try:
        result, warnings = tool.run(payload, runtime.context)
        output = inert_output(item["tool"], tool.dump(result))  # retrieved text is data
    except Exception as e:  # one failing tool degrades the answer, it does not fail it
        error = f"{type(e).__name__}: {e}"
    elapsed = time.perf_counter() - t0
    record: ToolRecord = {
        "key": item["key"],
        "tool": item["tool"],
        "image": item["image"],
        "args": item["args"],
        "output": output,
        "error": error,
        "elapsed_s": elapsed,
    }
    label = item["tool"] + (f":{rec['name']}" if rec else "")
    if error:
        warnings = [f"{label} unavailable: {error}"]
    return {
        "results": {item["key"]: record},
        "turn": [item["key"]],
        "timings": {label: elapsed},
        "warnings": warnings,
    }


def turn_records(state: State) -> list[ToolRecord]:
    """This turn's successful tool records in plan order (measurement first when counting)."""
    results = state.get("results") or {}
    used = set(state.get("turn") or [])
    return [
        results[p["key"]]
        for p in state.get("plan") or []
        if p["key"] in used and p["key"] in results and not results[p["key"]]["error"]
    ]


def answer_context(state: State, rec: ToolRecord | None = None) -> AnswerContext:
    """How the tools word this turn's answer: what was asked, the pixel size, the image."""
    images = state.get("images") or {}
    image = images.get((rec or {}).get("image") or "")
    multi = len({r["image"] for r in turn_records(state) if r["image"]}) > 1
    ps = state.get("pixel_size")
    return AnswerContext(
        question=state.get("question", ""),
        asked=list(state.get("asked") or []),
        describe=bool(state.get("describe")),
        image_name=image["name"] if image else None,
        multi=multi,
        pixel=PixelSize(um=float(ps["um"]), source=str(ps["source"])) if ps else None,
        image=image,
    )


def collect_sources(state: State) -> tuple[list[Source], list[tuple[ToolRecord, list[int]]]]:
    """Numbered sources for this turn, and for each record the numbers of its sources."""
    spans: list[tuple[ToolRecord, list[Source]]] = []
    for rec in turn_records(state):
        spans.append((rec, TOOLS[rec["tool"]].sources(rec, answer_context(state, rec))))
    sources = number_sources([s.model_dump(mode="json") for _, srcs in spans for s in srcs])
    index = {(s.kind, s.id): s.n for s in sources}
    numbered = [(rec, [index[(s.kind, str(s.id))] for s in srcs]) for rec, srcs in spans]
    return sources, numbered


# Describing: what the image is, what was measured, what the model saw, similar cases.
_DESCRIBE_ORDER = {"header": 0, "measure": 1, "vision": 2, "similar": 3, "literature": 4}


def rule_answer(state: State, numbered: list[tuple[ToolRecord, list[int]]]) -> list[str]:
    """The extractive answer: the tools' sentences, the ones carrying asked facts first."""
    blocks: list[tuple[int, int, list[str]]] = []
    for pos, (rec, nums) in enumerate(numbered):
        tool, actx = TOOLS[rec["tool"]], answer_context(state, rec)
        lines = tool.sentences(rec, nums, actx)
        if actx.describe:
            rank = _DESCRIBE_ORDER.get(rec["tool"], 9)
        else:
            out = tool.read(rec)
            rank = 0 if out is not None and pick(tool.facts(out, actx), actx.asked) else 1
        blocks.append((rank, pos, lines))
    return [line for _, _, lines in sorted(blocks, key=lambda b: b[:2]) for line in lines]


def synthesise(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    t0 = time.perf_counter()
    ctx = runtime.context
    sources, numbered = collect_sources(state)
    warnings: list[str] = []
    draft = ""
    if state.get("withheld"):
        draft = WITHHELD_NOTE
    elif ctx.chat_model is not None and sources and past_deadline(ctx):
        warnings.append(
            "the turn's deadline ([agent] turn_deadline_s) passed; gave the rule-based answer"
        )
    elif ctx.chat_model is not None and sources:
        blocks = "\n".join(
            prompts.source_block(s.n or 0, s.kind, s.title, s.snippet or s.title) for s in sources
        )
        if ctx.redactor is not None:  # the chat model may be remote: identifiers stay here
            from tools.privacy import clean

            blocks = clean(blocks, ctx.redactor)
        try:
            msg = ctx.chat_model.invoke(
                [
                    SystemMessage(prompts.SYNTHESISE_SYSTEM),
                    HumanMessage(
                        prompts.SYNTHESISE_USER.format(question=state["question"], sources=blocks)
                    ),
                ]
            )
            draft = msg.content if isinstance(msg.content, str) else str(msg.content)
        except Exception as e:
            warnings.append(
                f"chat model failed while answering ({type(e).__name__}: {e}); "
                "gave the extractive answer"
            )
    lines = rule_answer(state, numbered)
    if not lines:
        needs_image = not state.get("targets") and not any(
            p["tool"] == "literature" for p in state.get("plan") or []
        )
        lines = [prompts.NO_IMAGE_NOTE if needs_image else prompts.NO_RESULT_NOTE]
    extractive = WITHHELD_NOTE if state.get("withheld") else "\n".join(lines)
    draft = draft or extractive  # the extractive answer also replaces unsupported sentences
    return {
        "draft": draft,
        "extractive": extractive,
        "sources": [s.model_dump(mode="json") for s in sources],
        "warnings": warnings,
        "timings": {"synthesise": time.perf_counter() - t0},
    }


def verify_citations(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    t0 = time.perf_counter()
    ctx = runtime.context
    sources = [Source.model_validate(s) for s in state.get("sources") or []]
    # Claims are checked against what they cite; no diagnosis or advice survives either way.
    draft, clinical = filter_answer(state.get("draft") or "")
    extractive, _ = filter_answer(state.get("extractive") or "")
    draft, grounded = ground(draft, sources, question=state["question"], extractive=extractive)
    if extractive.strip() != (state.get("draft") or "").strip():  # the model wrote it
        draft, added = complete(draft, extractive)
        if added:
            grounded.append(
                f"added {added} sentence(s) of the tools' own answer for facts the model's "
                "answer left out"
            )
    text, cited, warnings = verify(draft, sources)
    if not _has_claim(text) and extractive and draft.strip() != extractive.strip():
        warnings.append("no cited claim of the model's answer survived; gave the rule-based answer")
        text, cited, _ = verify(extractive, sources)
    warnings = [*clinical, *grounded, *warnings]
    if not text.strip():
        text = prompts.ALL_REMOVED_NOTE
    results = state.get("results") or {}
    images = state.get("images") or {}
    figures: dict[str, str] = {}
    models: dict[str, str] = {"chat": ctx.chat_model_name}
    for key in state.get("turn") or []:
        rec = results.get(key)
        out = TOOLS[rec["tool"]].read(rec) if rec else None
        if out is None:
            continue
        name = images.get(rec["image"] or "", {}).get("name", "")
        for fig, path in TOOLS[rec["tool"]].figures(out).items():
            figures[fig if fig not in figures else f"{fig}:{name}"] = path
        models.update(TOOLS[rec["tool"]].models(out))
    timings = dict(state.get("timings") or {})
    timings["verify"] = time.perf_counter() - t0
    for key in state.get("reused") or []:
        rec = results.get(key)
        if rec:
            name = images.get(rec["image"] or "", {}).get("name")
            timings[f"{rec['tool']}{':' + name if name else ''} (reused)"] = 0.0
    answer = Answer(
        text=text,
        sources=cited,
        timings=timings,
        warnings=tidy_warnings([*(state.get("warnings") or []), *warnings]),
        figures=figures,
        models=models,
    )
    return {
        "answer": answer.model_dump(mode="json"),
        "messages": [AIMessage(text)],
        "timings": {"verify": timings["verify"]},
        "warnings": warnings,
    }


def _has_claim(text: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("Note:") for line in text.splitlines())


def build_graph(checkpointer: Any = None) -> Any:
    """Compile the agent; ``checkpointer`` keeps threads (SqliteSaver, PostgresSaver)."""
    g = StateGraph(State, context_schema=Context)
    g.add_node("route", route)
    for name in TOOLS:  # one node per registered tool, all running ``run_tool``
        g.add_node(name, run_tool, input_schema=ToolInput)
        g.add_edge(name, "synthesise")
    g.add_node("synthesise", synthesise)
    g.add_node("verify", verify_citations)
    g.add_edge(START, "route")
    g.add_conditional_edges("route", fan_out, [*TOOLS, "synthesise"])
    g.add_edge("synthesise", "verify")
    g.add_edge("verify", END)
    return g.compile(checkpointer=checkpointer, name="litevlm")
