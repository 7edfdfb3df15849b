"""The assistant: one object the CLI, the report and the UI talk to.

``Assistant(settings)`` compiles the graph with a checkpointer (SQLite file in the data
directory by default, PostgreSQL by URL), loads tools on first use and keeps them for later
turns. ``ask`` runs one turn; ``astream`` runs the same turn and yields step, token and answer
events as they happen. Threads are resumed by id, also from another process.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from litevlm.config import Settings
from litevlm.errors import ConfigError, ImageLoadError
from litevlm.types import Answer

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from agent.tools import Toolbox

DURABILITY = "exit"  # checkpoint once per turn (LangGraph's default writes after every step)


class TurnOptions(BaseModel):
    """Per-turn choices; None means "as configured"."""

    sources: list[str] | None = None  # literature providers for this turn
    similar_k: int | None = None
    vision_model: str | None = None
    adapter: str | None = None
    quantization: str | None = None
    heatmap: bool = False  # also compute where the vision model looked (attention map)
    pixel_size_um: float | None = None  # the user's pixel size (um): sizes and densities use it
    region: str | None = None  # whole-slide images: x,y,w,h or x,y,w,h@level (level-0 px)


class AgentEvent(BaseModel):
    """One streamed event: a step starting or ending, a token, the answer, an error."""

    type: Literal["step_start", "step_end", "draft", "token", "answer", "error"]
    name: str = ""  # node: route, a tool of agent.tools.TOOLS, synthesise, verify
    input: dict[str, Any] | None = None
    output: Any = None  # short JSON-able summary
    # For a tool's step_end: the figures it drew (kind -> path), shown before the answer is
    figures: dict[str, str] = Field(default_factory=dict)
    elapsed_s: float | None = None
    text: str = ""  # for draft, token and error events
    answer: Answer | None = None  # for the final event


def open_checkpointer(settings: Settings) -> tuple[Any, Any]:
    """(checkpointer, connection): SQLite file by default, PostgreSQL for a postgresql:// URL."""
    uri = settings.agent.checkpointer
    if uri and uri.startswith(("postgres://", "postgresql://")):
        from agent.postgres import open_postgres_saver

        return open_postgres_saver(uri)  # a pool: survives server restarts and dropped links
    from langgraph.checkpoint.sqlite import SqliteSaver

    if uri == ":memory:":
        path = ":memory:"
    else:
        p = Path(uri).expanduser() if uri else settings.data_dir / "threads" / "threads.sqlite"
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"[agent] checkpointer = {str(p)!r}: cannot create its folder ({e})",
                "set [agent] checkpointer to a writable path",
            ) from e
        path = str(p)
    # Tool nodes run in worker threads; SqliteSaver serialises access with its own lock.
    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver, conn


class Assistant:
    """Grounded question answering about images, with threads that persist."""

    def __init__(
        self,
        settings: Settings,
        *,
        chat_model: BaseChatModel | None = None,
        toolbox: Toolbox | None = None,
        checkpointer: Any = None,
    ) -> None:
        self.settings = settings
        self._chat_model = chat_model
        self._chat_loaded = chat_model is not None
        self._toolbox = toolbox
        self._checkpointer = checkpointer
        self._conn: Any = None
        self._graph: Any = None
        self._lock = threading.Lock()
        self._thread_locks: dict[str, threading.Lock] = {}

    # -- lazily built parts ---------------------------------------------------------------
    @property
    def toolbox(self) -> Toolbox:
        if self._toolbox is None:
            from agent.tools import Toolbox

            self._toolbox = Toolbox(self.settings)
        return self._toolbox

    @property
    def chat_model(self) -> BaseChatModel | None:
        if not self._chat_loaded:
            from agent.context import load_chat_model

            self._chat_model = load_chat_model(self.settings.agent)
            self._chat_loaded = True
        return self._chat_model

    @property
    def chat_model_name(self) -> str:
        if self.chat_model is None:
            return "rules"
        return self.settings.agent.chat_model or type(self.chat_model).__name__

    @property
    def graph(self) -> Any:
        with self._lock:
            if self._graph is None:
                from agent.graph import build_graph

                if self._checkpointer is None:
                    self._checkpointer, self._conn = open_checkpointer(self.settings)
                self._graph = build_graph(self._checkpointer)
        return self._graph

    def close(self) -> None:
        if self._toolbox is not None:
            self._toolbox.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._graph = None
            self._checkpointer = None

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one turn -------------------------------------------------------------------------
    @contextmanager
    def _one_turn_at_a_time(self, thread_id: str) -> Iterator[None]:
        """Serialise turns on one thread, within this process (UI sessions) and across
        processes (`litevlm ask --thread T` run four times at once kept one turn of four: each
        read the same checkpoint and the last write won)."""
        from filelock import FileLock

        with self._lock:
            local = self._thread_locks.setdefault(thread_id, threading.Lock())
        folder = self.settings.data_dir / "threads" / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(thread_id.encode()).hexdigest()[:32]
        with local, FileLock(str(folder / f"{name}.lock")):
            yield

    def _locked(self, thread_id: str, events: Iterator[Any]) -> Iterator[Any]:
        # graph.stream is lazy: the turn starts at the first next(), inside the lock.
        with self._one_turn_at_a_time(thread_id):
            yield from events

    def _prepare(
        self,
        question: str,
        images: Sequence[str | Path],
        thread_id: str | None,
        options: TurnOptions | None,
    ) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
        from langchain_core.messages import HumanMessage

        from agent.context import Context
        from agent.tools import image_id
        from tools import privacy

        if not question.strip() and not images:
            raise ConfigError("empty question", "ask something, or attach an image")
        opts = options or TurnOptions()
        loads = []
        for path in images:
            p = Path(path)
            loaded = self.toolbox.load(p)  # raises ImageLoadError naming the file
            if not (p.is_file() or "slide" in loaded.metadata):  # a DICOM WSI is a folder
                raise ImageLoadError(p, "not a file")
            loads.append((p, loaded))
        if opts.region:
            _check_region(opts.region, loads)
        # The identifiers of every image of the thread: the question, the image names the chat
        # model sees and the answer are cleaned of them before anything leaves this process.
        ids = privacy.merge(
            *(loaded.identifiers for _, loaded in loads), self._thread_identifiers(thread_id)
        )
        privacy.remember(ids)
        redactor = privacy.redactor(ids)
        question = privacy.clean(question, redactor)
        records = []
        for p, loaded in loads:
            records.append(
                {
                    "id": image_id(p),
                    "path": str(p.resolve()),
                    "name": privacy.display_name(p.name, redactor),
                    "modality": loaded.modality,
                    "metadata": _plain(loaded.metadata),
                    "pixel_size_mm": list(loaded.pixel_size_mm) if loaded.pixel_size_mm else None,
                }
            )
        agent_cfg = self.settings.agent
        ctx = Context(
            toolbox=self.toolbox,
            chat_model=self.chat_model,
            chat_model_name=self.chat_model_name,
            similar_k=agent_cfg.similar_k if opts.similar_k is None else opts.similar_k,
            literature_sources=opts.sources,
            literature_max=agent_cfg.literature_max,
            vision_model=opts.vision_model,
            adapter=opts.adapter,
            quantization=opts.quantization,
            heatmap=opts.heatmap,
            deadline=time.monotonic() + agent_cfg.turn_deadline_s,
            pixel_size_um=opts.pixel_size_um,
            region=opts.region,
            redactor=redactor,
        )
        thread = thread_id or uuid.uuid4().hex[:12]
        inputs = {
            "question": question.strip() or "Describe this image.",
            "new_images": records,
            "messages": [HumanMessage(question.strip() or "Describe this image.")],
        }
        config = {"configurable": {"thread_id": thread}}
        return inputs, config, ctx, redactor

    def _thread_identifiers(self, thread_id: str | None) -> dict[str, str]:
        from tools import privacy

        if not thread_id:
            return {}
        ids: list[dict[str, str]] = []
        for rec in (self.thread_state(thread_id).get("images") or {}).values():
            try:
                ids.append(self.toolbox.load(rec["path"]).identifiers)
            except Exception:  # a moved file: its identifiers were cleaned from the state
                continue
        return privacy.merge(*ids)

    def ask(
        self,
        question: str,
        images: Sequence[str | Path] = (),
        thread_id: str | None = None,
        options: TurnOptions | None = None,
    ) -> Answer:
        t0 = time.perf_counter()
        inputs, config, ctx, redactor = self._prepare(question, images, thread_id, options)
        # One checkpoint write per turn, at its end: a crash mid-turn loses that turn only, and
        # the turn costs a quarter of the per-step writes (see benchmarks/agent.py).
        with self._one_turn_at_a_time(config["configurable"]["thread_id"]):
            out = self.graph.invoke(inputs, config=config, context=ctx, durability=DURABILITY)
        return self._answer(out, config, t0, redactor)

    def _answer(
        self, out: dict[str, Any], config: dict[str, Any], t0: float, redactor: Any = None
    ) -> Answer:
        from tools.privacy import redact_data

        # The vision model may read a name burned into the pixels; a paper may repeat one.
        data = dict(out["answer"])
        kept = {k: data.pop(k) for k in ("figures", "models", "timings") if k in data}
        answer = Answer.model_validate({**redact_data(data, redactor), **kept})
        answer.thread_id = config["configurable"]["thread_id"]
        answer.timings["total"] = time.perf_counter() - t0
        return answer

    def stream(
        self,
        question: str,
        images: Sequence[str | Path] = (),
        thread_id: str | None = None,
        options: TurnOptions | None = None,
    ) -> Iterator[AgentEvent]:
        """The events of one turn, synchronously (``astream`` wraps this); every event is
        cleaned of the thread's images' identifiers."""
        from tools.privacy import redact_model

        t0 = time.perf_counter()
        try:
            inputs, config, ctx, redactor = self._prepare(question, images, thread_id, options)
        except Exception as e:
            yield AgentEvent(type="error", name="input", text=str(e))
            return
        for event in self._events(inputs, config, ctx, redactor, t0):
            if event.type != "answer":  # the answer is redacted already
                event = redact_model(event, redactor)
            yield event

    def _events(
        self, inputs: dict[str, Any], config: dict[str, Any], ctx: Any, redactor: Any, t0: float
    ) -> Iterator[AgentEvent]:
        started: dict[str, float] = {}
        final: dict[str, Any] | None = None
        try:
            for mode, chunk in self._locked(
                config["configurable"]["thread_id"],
                self.graph.stream(
                    inputs,
                    config=config,
                    context=ctx,
                    stream_mode=["tasks", "messages", "values"],
                    durability=DURABILITY,
                ),
            ):
                if mode == "tasks":
                    if "result" not in chunk and "error" not in chunk:
                        started[chunk["id"]] = time.perf_counter()
                        yield AgentEvent(
                            type="step_start",
                            name=chunk["name"],
                            input=_summarise_input(chunk["name"], chunk.get("input")),
                        )
                    else:
                        t = started.pop(chunk["id"], None)
                        err = chunk.get("error")
                        yield AgentEvent(
                            type="step_end" if not err else "error",
                            name=chunk["name"],
                            output=_summarise_output(chunk["name"], chunk.get("result")),
                            figures=_step_figures(chunk["name"], chunk.get("result")),
                            elapsed_s=(time.perf_counter() - t) if t else None,
                            text=str(err) if err else "",
                        )
                elif mode == "messages":
                    message, meta = chunk
                    text = getattr(message, "content", "")
                    if (
                        meta.get("langgraph_node") == "synthesise"
                        and isinstance(text, str)
                        and text
                    ):
                        # The chat model's draft is not verified yet: a "draft" event, never
                        # a "token" of the answer (verify may drop or replace its sentences).
                        yield AgentEvent(type="draft", name="synthesise", text=text)
                elif mode == "values":
                    final = chunk
        except Exception as e:
            yield AgentEvent(type="error", name="agent", text=f"{type(e).__name__}: {e}")
            return
        if final and final.get("answer"):
            answer = self._answer(final, config, t0, redactor)
            # Only verified text is streamed as the answer, line by line.
            for line in answer.text.splitlines(keepends=True):
                yield AgentEvent(type="token", name="verify", text=line)
            yield AgentEvent(type="answer", name="verify", answer=answer)

    async def astream(
        self,
        question: str,
        images: Sequence[str | Path] = (),
        thread_id: str | None = None,
        options: TurnOptions | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Stream a turn's events to an asyncio caller (the UI); the graph runs in a thread."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[AgentEvent | None] = asyncio.Queue()

        def produce() -> None:
            try:
                for event in self.stream(question, images, thread_id, options):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        task = loop.run_in_executor(None, produce)
        while (event := await queue.get()) is not None:
            yield event
        await task

    # -- threads --------------------------------------------------------------------------
    def thread_state(self, thread_id: str) -> dict[str, Any]:
        """The thread's checkpointed state: images, tool results, messages (empty if new)."""
        snap = self.graph.get_state({"configurable": {"thread_id": thread_id}})
        return dict(snap.values or {})

    def thread_exists(self, thread_id: str) -> bool:
        return bool(self.thread_state(thread_id))


def _plain(obj: Any) -> Any:
    """JSON-able copy of metadata (DICOM values may be exotic types)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)


def _summarise_input(name: str, payload: Any) -> dict[str, Any] | None:
    from agent.tools import TOOLS

    if not isinstance(payload, dict):
        return None
    if name in TOOLS and "item" in payload:
        item = payload["item"]
        img = payload.get("image") or {}
        args = {k: v for k, v in item["args"].items() if v is not None}
        return {"image": img.get("name"), **args}
    if name == "route":
        return {"question": payload.get("question")}
    return None


def _step_figures(name: str, result: Any) -> dict[str, str]:
    """The figures a tool step drew (the answer's ``figures`` gives them again, named)."""
    from agent.tools import TOOLS

    if name not in TOOLS or not isinstance(result, dict):
        return {}
    figures: dict[str, str] = {}
    for rec in (result.get("results") or {}).values():
        out = TOOLS[name].read(rec) if not rec.get("error") else None
        for fig, path in (TOOLS[name].figures(out) if out is not None else {}).items():
            figures[fig if fig not in figures else f"{fig}-{len(figures) + 1}"] = path
    return figures


def _summarise_output(name: str, result: Any) -> Any:
    from agent.tools import TOOLS

    if not isinstance(result, dict):
        return None
    if name in TOOLS:
        records = list((result.get("results") or {}).values())
        if not records:
            return None
        rec = records[0]
        if rec.get("error"):
            return {"error": rec["error"]}
        out = TOOLS[name].read(rec)
        return TOOLS[name].summary(out) if out is not None else None
    if name == "route":
        plan = result.get("plan") or []
        return {"plan": [p["tool"] for p in plan], "reused": len(result.get("reused") or [])}
    if name == "verify":
        ans = result.get("answer") or {}
        return {"sources": len(ans.get("sources") or []), "warnings": ans.get("warnings")}
    return None


def _check_region(region: str, loads: list[tuple[Path, Any]]) -> None:
    """A region is for slides: one line when it is malformed, outside a slide, or when no
    image of the turn is a slide."""
    from tools.slides import open_slide, parse_region

    try:
        reg = parse_region(region)
    except ValueError as e:
        raise ConfigError(
            f"--region: {e}", "give x,y,w,h in level-0 pixels, or x,y,w,h@level"
        ) from e
    slides = [p for p, loaded in loads if "slide" in loaded.metadata]
    if loads and not slides:
        raise ConfigError(
            f"--region {region}: none of the images is a whole-slide image",
            "leave out --region, or give a slide (.svs, pyramidal TIFF, DICOM WSI folder)",
        )
    for p in slides:
        with open_slide(p) as slide:
            slide.check_inside(reg)
