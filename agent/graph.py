"""The agent's graph: route -> tools in parallel -> synthesise -> verify.

```
          ┌──► vision ─────┐
route ────┼──► measure ────┼──► synthesise ──► verify ──► END
  │       ├──► similar ────┤
  │       └──► literature ─┘      (one Send per tool call: independent calls run at once)
  └────────────────────────────► synthesise   (everything reused from earlier turns)
```
``route`` picks the tools: the chat model through tool calls, or the rules in ``rule_plan``
when no chat model is configured (or it fails). Results the thread already has (same tool,
image and inputs) are reused instead of run again.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from agent.grounding import ground, tidy_warnings
from agent.sanitize import filter_answer, inert_output
from agent.state import ImageRecord, PlanItem, State, ToolInput, ToolRecord
from agent.toolcalls import read_calls
from agent.tools import SCHEMA_TO_TOOL, TOOL_SCHEMAS, normalise, sentences_for, sources_for
from litevlm.types import Answer, Source

COUNT = re.compile(
    r"\b(how many|count|number of|fraction|percent(age)?|proportion|ratio|density|"
    r"how (big|large|much)|size|area|diameter|measure\w*|quantif\w*|positiv\w*|intensity)\b",
    re.I,
)
LITERATURE = re.compile(
    r"\b(what is known|known about|literature|papers?|stud(y|ies)|publications?|evidence|"
    r"research on|references?|pubmed|arxiv|review|guidelines?|prognos\w*)\b",
    re.I,
)
DESCRIBE = re.compile(
    r"\b(describe|description|what (is|do you see|does .{0,40} show|'s) (in |on )?(this|the|it)"
    r"|what is shown|overview|summar\w+|tell me about (this|the) image)\b",
    re.I,
)
THIS_IMAGE = re.compile(r"\b(this|the|these) (image|picture|slide|scan|section|cell)s?\b", re.I)
SIMILAR = re.compile(
    r"\b(similar|resembl\w*|comparable|other cases|cases like|look(s)? like)\b", re.I
)
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
    if tool == "vision":
        model = ctx.toolbox.vision_model_id(ctx.vision_model)
        args = {
            **args,
            "model": model,
            "adapter": ctx.adapter or ctx.toolbox.settings.vision.adapter,
            "quantization": ctx.quantization or ctx.toolbox.settings.vision.quantization,
        }
        if ctx.heatmap:
            args["heatmap"] = True
        q = normalise(args.get("question") or "") or "describe"
        key = f"vision|{image}|{model}|{args['adapter']}|{args['quantization']}|{q}"
        key += "|heatmap" if ctx.heatmap else ""
    elif tool == "measure":
        key = f"measure|{image}|{ctx.toolbox.settings.measure.backend}"
    elif tool == "similar":
        key = f"similar|{image}|{args.get('k')}"
    else:
        srcs = ",".join(sorted(args.get("sources") or []))
        key = f"literature|{normalise(args['query'])}|{srcs}|{args.get('max_results')}"
    return {"key": key, "tool": tool, "image": image, "args": args}


def rule_plan(question: str, targets: list[ImageRecord], ctx: Context) -> list[PlanItem]:
    """Deterministic routing by question type."""
    wants_lit = bool(LITERATURE.search(question))
    wants_count = bool(COUNT.search(question))
    wants_similar = bool(SIMILAR.search(question))
    describe = bool(DESCRIBE.search(question)) or (
        not (wants_lit or wants_count or wants_similar) and not question.strip()
    )
    items: list[PlanItem] = []
    for rec in targets:
        i = rec["id"]
        if describe:
            items += [
                make_item("vision", i, {"question": None}, ctx),
                make_item("measure", i, {}, ctx),
            ]
            if ctx.similar_k:
                items.append(make_item("similar", i, {"k": ctx.similar_k}, ctx))
            continue
        if wants_count:  # measure first: the number comes from the measurement
            items.append(make_item("measure", i, {}, ctx))
        if wants_similar and ctx.similar_k:
            items.append(make_item("similar", i, {"k": ctx.similar_k}, ctx))
        if not wants_lit and not wants_similar:
            items.append(make_item("vision", i, {"question": question}, ctx))
    about_image = describe or wants_count or wants_similar or bool(THIS_IMAGE.search(question))
    if (wants_lit or not (targets or about_image)) and ctx.literature_max:
        items.append(
            make_item(
                "literature",
                None,
                {
                    "query": literature_query(question, targets),
                    "sources": ctx.literature_sources,
                    "max_results": ctx.literature_max,
                },
                ctx,
            )
        )
    return items


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
    msg = ctx.chat_model.bind_tools(TOOL_SCHEMAS).invoke(
        [SystemMessage(system), *history, HumanMessage(state["question"])]
    )
    calls, warnings = read_calls(msg, TOOL_SCHEMAS)
    items: list[PlanItem] = []
    for call in calls:
        tool = SCHEMA_TO_TOOL[call["name"]]
        args = dict(call["args"])
        if tool == "literature":
            items.append(
                make_item(
                    "literature",
                    None,
                    {
                        "query": str(args.get("query") or state["question"])[:200],
                        "sources": ctx.literature_sources,
                        "max_results": ctx.literature_max,
                    },
                    ctx,
                )
            )
            continue
        if not images:
            continue
        img = _resolve_image(args.get("image"), images, targets)
        if tool == "vision":
            items.append(make_item("vision", img, {"question": args.get("question")}, ctx))
        elif tool == "measure":
            items.append(make_item("measure", img, {}, ctx))
        else:
            k = int(args.get("k") or ctx.similar_k or 3)
            items.append(make_item("similar", img, {"k": max(1, min(k, 50))}, ctx))
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
    if ctx.chat_model is not None and not past_deadline(ctx):
        try:
            plan, warnings = model_plan(state, targets, images, ctx)
        except Exception as e:  # a chat model that is down must not fail the turn
            warnings.append(
                f"chat model failed while routing ({type(e).__name__}: {e}); "
                "used the rule-based routing"
            )
            plan = rule_plan(question, target_recs, ctx)
        else:
            if not plan and not new_ids and (earlier := previous_turn(state)):
                plan = earlier  # a follow-up the model answers from the thread's sources
            elif not plan:
                warnings.append("the chat model chose no usable tool; used the rule-based routing")
                plan = rule_plan(question, target_recs, ctx)
    else:
        plan = rule_plan(question, target_recs, ctx)
    seen: set[str] = set()
    plan = [p for p in plan if not (p["key"] in seen or seen.add(p["key"]))]
    results = state.get("results") or {}
    reused = [p["key"] for p in plan if p["key"] in results and not results[p["key"]]["error"]]
    return {
        "images": images,
        "new_images": [],
        "targets": targets,
        "plan": plan,
        "reused": reused,
        "turn": Overwrite(reused),
        "warnings": Overwrite(warnings),
        "timings": Overwrite({"route": time.perf_counter() - t0}),
        "draft": "",
        "sources": [],
    }


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
                "thread_images": list(images.values()) if p["tool"] == "literature" else [],
            },
        )
        for p in state.get("plan") or []
        if p["key"] not in reused
    ]
    return sends or "synthesise"


def _heatmap(tb: Any, loaded: Any, rec: Any, item: PlanItem) -> tuple[str | None, str | None]:
    """Where the vision model looked for this call; a failure is a warning, not an error."""
    args = item["args"]
    question = args.get("question") or "What is shown in this image?"
    digest = hashlib.sha256(item["key"].encode()).hexdigest()[:12]
    path = tb.settings.data_dir / "heatmaps" / f"{rec['id']}_{digest}.png"
    try:
        tb.heatmap(
            loaded,
            question,
            path,
            model=args.get("model"),
            adapter=args.get("adapter"),
            quantization=args.get("quantization"),
        )
    except Exception as e:
        return None, f"attention heat-map unavailable: {type(e).__name__}: {e}"
    return str(path), None


def _run_tool(payload: ToolInput, ctx: Context) -> dict[str, Any]:
    item, rec = payload["item"], payload["image"]
    tb = ctx.toolbox
    t0 = time.perf_counter()
    output: Any = None
    error: str | None = None
    try:
        loaded = tb.load(rec["path"]) if rec else None
        args = item["args"]
        if item["tool"] == "vision":
            output = tb.vision(
                loaded,
                args.get("question"),
                model=args.get("model"),
                adapter=args.get("adapter"),
                quantization=args.get("quantization"),
            ).model_dump(mode="json")
            if args.get("heatmap"):
                output["heatmap_path"], output["heatmap_error"] = _heatmap(tb, loaded, rec, item)
        elif item["tool"] == "measure":
            overlay = tb.settings.data_dir / "overlays" / f"{rec['id']}.png"
            # The per-object table stays out of the thread state: it can be thousands of rows.
            output = tb.measure(loaded, overlay_path=overlay).model_dump(
                mode="json", exclude={"objects"}
            )
        elif item["tool"] == "similar":
            text = (rec or {}).get("metadata", {}).get("caption")
            cases = tb.similar(loaded, text, int(args.get("k") or 3))
            output = {"cases": [c.model_dump(mode="json") for c in cases]}
        else:
            # Identifiers of the thread's images are removed from the query before it leaves.
            identifiers: dict[str, str] = {}
            for img in payload.get("thread_images") or []:
                with contextlib.suppress(Exception):
                    identifiers.update(tb.load(img["path"]).identifiers)
            res = tb.literature(
                args["query"],
                sources=args.get("sources"),
                max_results=int(args.get("max_results") or 3),
                identifiers=identifiers or None,
            )
            output = res.model_dump(mode="json")
    except Exception as e:  # one failing tool degrades the answer, it does not fail it
        error = f"{type(e).__name__}: {e}"
    output = inert_output(item["tool"], output)  # retrieved text is data: made inert once, here
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
    warnings = []
    if error:
        warnings.append(f"{label} unavailable: {error}")
    elif item["tool"] == "literature":
        warnings += [f"literature {k}: {v}" for k, v in (output.get("unavailable") or {}).items()]
    elif item["tool"] == "vision" and output.get("heatmap_error"):
        warnings.append(f"{label}: {output['heatmap_error']}")
    return {
        "results": {item["key"]: record},
        "turn": [item["key"]],
        "timings": {label: elapsed},
        "warnings": warnings,
    }


def vision(payload: ToolInput, runtime: Runtime[Context]) -> dict[str, Any]:
    return _run_tool(payload, runtime.context)


def measure(payload: ToolInput, runtime: Runtime[Context]) -> dict[str, Any]:
    return _run_tool(payload, runtime.context)


def similar(payload: ToolInput, runtime: Runtime[Context]) -> dict[str, Any]:
    return _run_tool(payload, runtime.context)


def literature(payload: ToolInput, runtime: Runtime[Context]) -> dict[str, Any]:
    return _run_tool(payload, runtime.context)


def turn_records(state: State) -> list[dict[str, Any]]:
    """This turn's successful tool records in plan order (measurement first when counting)."""
    results = state.get("results") or {}
    used = set(state.get("turn") or [])
    return [
        results[p["key"]]
        for p in state.get("plan") or []
        if p["key"] in used and p["key"] in results and not results[p["key"]]["error"]
    ]


def collect_sources(state: State) -> tuple[list[Source], list[tuple[dict, list[int]]]]:
    """Numbered sources for this turn, and for each record the numbers of its sources."""
    images = state.get("images") or {}
    items: list[dict[str, Any]] = []
    spans: list[tuple[dict, list[dict]]] = []
    for rec in turn_records(state):
        name = images.get(rec["image"] or "", {}).get("name")
        srcs = sources_for(rec, name)
        spans.append((rec, srcs))
        items += srcs
    sources = number_sources(items)
    index = {(s.kind, s.id): s.n for s in sources}
    numbered = [(rec, [index[(s["kind"], str(s["id"]))] for s in srcs]) for rec, srcs in spans]
    return sources, numbered


def synthesise(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    t0 = time.perf_counter()
    ctx = runtime.context
    sources, numbered = collect_sources(state)
    images = state.get("images") or {}
    warnings: list[str] = []
    draft = ""
    if ctx.chat_model is not None and sources and past_deadline(ctx):
        warnings.append(
            "the turn's deadline ([agent] turn_deadline_s) passed; gave the rule-based answer"
        )
    elif ctx.chat_model is not None and sources:
        blocks = "\n".join(
            prompts.source_block(s.n or 0, s.kind, s.title, s.snippet or s.title) for s in sources
        )
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
    multi = len({rec["image"] for rec, _ in numbered if rec["image"]}) > 1
    lines: list[str] = []
    for rec, nums in numbered:
        name = images.get(rec["image"] or "", {}).get("name")
        lines += sentences_for(rec, nums, name, multi, state["question"])
    if not lines:
        needs_image = not state.get("targets") and not any(
            p["tool"] == "literature" for p in state.get("plan") or []
        )
        lines = [prompts.NO_IMAGE_NOTE if needs_image else prompts.NO_RESULT_NOTE]
    extractive = "\n".join(lines)  # also what replaces the model's unsupported sentences
    draft = draft or extractive
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
    text, cited, warnings = verify(draft, sources)
    if not _has_claim(text) and extractive and draft.strip() != extractive.strip():
        warnings.append("no cited claim of the model's answer survived; gave the rule-based answer")
        text, cited, _ = verify(extractive, sources)
    warnings = [*clinical, *grounded, *warnings]
    if not text.strip():
        text = prompts.ALL_REMOVED_NOTE
    results = state.get("results") or {}
    used = [results[k] for k in state.get("turn") or [] if k in results]
    figures: dict[str, str] = {}
    models: dict[str, str] = {"chat": ctx.chat_model_name}
    images = state.get("images") or {}
    for rec in used:
        out = rec.get("output") or {}
        if rec["tool"] == "measure" and out.get("overlay_path"):
            name = images.get(rec["image"] or "", {}).get("name", "")
            key = "overlay" if "overlay" not in figures else f"overlay:{name}"
            figures[key] = out["overlay_path"]
        if rec["tool"] == "vision" and out:
            models["vision"] = out.get("model_id", "")
            models["adapter"] = out.get("adapter") or "none"
            if out.get("heatmap_path"):
                name = images.get(rec["image"] or "", {}).get("name", "")
                key = "attention" if "attention" not in figures else f"attention:{name}"
                figures[key] = out["heatmap_path"]
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
    for name, fn in (
        ("vision", vision),
        ("measure", measure),
        ("similar", similar),
        ("literature", literature),
    ):
        g.add_node(name, fn, input_schema=ToolInput)
        g.add_edge(name, "synthesise")
    g.add_node("synthesise", synthesise)
    g.add_node("verify", verify_citations)
    g.add_edge(START, "route")
    g.add_conditional_edges(
        "route", fan_out, ["vision", "measure", "similar", "literature", "synthesise"]
    )
    g.add_edge("synthesise", "verify")
    g.add_edge("verify", END)
    return g.compile(checkpointer=checkpointer, name="litevlm")
