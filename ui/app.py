"""The litevlm chat app (Chainlit). Start it with ``litevlm chat``.

A researcher uploads images (PNG, JPEG, TIFF, DICOM, NIfTI) and asks about them. Each upload is
loaded by ``tools.images`` (DICOM windowed, metadata de-identified) and shown back; questions go
to the agent (``agent.assistant.Assistant``, or ``[ui] assistant``), whose tool calls appear as
steps and whose answer streams in with its numbered sources and figures. Follow-ups are about the
latest image until another one is uploaded ("image 1", a file name or "both" pick others).

Threads, messages, uploads and feedback persist (``ui/data_layer.py``); ``ui/auth.py`` decides
who the user is. Research use only, not a medical device.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chainlit as cl
from chainlit.input_widget import Select, Slider, Switch, TextInput

from litevlm.config import Settings, load_settings
from litevlm.errors import ImageLoadError, LiteVLMError
from litevlm.types import DISCLAIMER
from ui import attention, auth, render, security, slides, stream
from ui.data_layer import FILES_ROUTE, LiteVLMDataLayer, is_session_upload, ui_dir

log = logging.getLogger("litevlm.ui")

WELCOME = (
    f"**{DISCLAIMER}**\n\n"
    "Upload a cell, histology or radiology image (PNG, JPEG, TIFF, DICOM or NIfTI) or a "
    "whole slide (SVS, NDPI, MRXS, OME-TIFF, DICOM WSI) with the paper clip, then ask about "
    "it. Every answer cites what the vision model saw, what was "
    "measured, similar annotated cases and papers; tool calls appear as steps."
)


class AppState:
    """What the app holds for its lifetime: settings, the data layer and the assistant.

    One object, created at import because Chainlit apps are modules; the assistant is built on
    first use (it may load models) and shared by all sessions.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_layer = LiteVLMDataLayer.from_settings(settings)
        self.uploads = ui_dir(settings) / "uploads"
        self._assistant: Any = None
        self._lock = asyncio.Lock()
        # Each thread's latest metadata write (_remember), awaited by a resume and at shutdown.
        self.writes: dict[str, asyncio.Task] = {}

    def _build_assistant(self) -> Any:
        module, _, name = self.settings.ui.assistant.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name or "Assistant")
        except (ImportError, AttributeError) as e:
            raise LiteVLMError(
                f"[ui] assistant = {self.settings.ui.assistant!r} cannot be imported: {e}",
                "use module:Class, e.g. agent.assistant:Assistant",
            ) from e
        return cls(self.settings)

    async def assistant(self) -> Any:
        async with self._lock:
            if self._assistant is None:
                self._assistant = await asyncio.to_thread(self._build_assistant)
        return self._assistant


STATE = AppState(load_settings())
auth.validate_users(STATE.settings.ui.auth, STATE.settings.ui.users)


@cl.data_layer
def _data_layer() -> LiteVLMDataLayer:
    return STATE.data_layer


@cl.on_app_startup
async def _startup() -> None:
    await STATE.data_layer.create_schema()


if STATE.settings.ui.auth:
    # Failed logins are throttled per user and client by ui/security.py's middleware.

    @cl.password_auth_callback
    async def _password_login(username: str, password: str) -> cl.User | None:
        if auth.check_password(STATE.settings.ui.users, username, password):
            return cl.User(identifier=username, metadata={"provider": "password"})
        return None

else:

    @cl.header_auth_callback
    async def _local_login(headers: Any) -> cl.User | None:
        # One local researcher; see ui/auth.py.
        return cl.User(identifier=auth.LOCAL_USER, metadata={"provider": "local"})


# ---------------------------------------------------------------- files of resumed threads


def _register_files_route() -> None:
    """Serve stored element files to the user who owns their thread, and nobody else."""
    from chainlit.auth import get_current_user
    from chainlit.server import app
    from fastapi import Depends, HTTPException
    from fastapi.responses import FileResponse
    from sqlalchemy import text

    async def serve_file(object_key: str, user: Any = Depends(get_current_user)) -> FileResponse:
        if user is None:
            raise HTTPException(status_code=401, detail="Unauthorized")
        await STATE.data_layer.written()  # an element sent a moment ago
        query = (
            'SELECT t."userIdentifier" AS owner, e."mime" AS mime FROM elements e '
            'JOIN threads t ON t."id" = e."threadId" WHERE e."objectKey" = :k'
        )
        async with STATE.data_layer.async_session() as session:
            row = (await session.execute(text(query), {"k": object_key})).mappings().first()
        if row is None or row["owner"] != user.identifier:
            raise HTTPException(status_code=404, detail="Not found")
        try:
            path = STATE.data_layer.storage.path(object_key)
        except ValueError as e:
            raise HTTPException(status_code=404, detail="Not found") from e
        if not path.is_file():
            raise HTTPException(status_code=404, detail="Not found")
        return FileResponse(path, media_type=row["mime"] or "application/octet-stream")

    app.add_api_route(FILES_ROUTE + "/{object_key:path}", serve_file, methods=["GET"])
    # Chainlit's catch-all UI route is already registered; ours must come before it.
    app.router.routes.insert(0, app.router.routes.pop())


_register_files_route()


def _add_security_middleware() -> None:
    """Refuse what a browser sent from another origin; throttle failed logins (security.py)."""
    from chainlit.config import config
    from chainlit.server import app

    app.add_middleware(
        security.LoginThrottleMiddleware,
        throttle=security.LoginThrottle(),
        path=f"{config.run.root_path}/login",
    )
    # Added last, so it runs first: a foreign request is refused before anything else.
    app.add_middleware(
        security.SameOriginMiddleware, allowed_origins=STATE.settings.ui.allowed_origins
    )


_add_security_middleware()
slides.register(
    lambda: list(cl.user_session.get("images") or []),
    lambda: STATE.uploads / _safe_name(cl.context.session.thread_id),
    STATE.settings,
)
attention.register(
    STATE.assistant,
    lambda: list(cl.user_session.get("images") or []),
    STATE.settings.data_dir / "heatmaps" / "words",
)


# ---------------------------------------------------------------- settings panel


def _settings_widgets(values: dict[str, Any]) -> list[Any]:
    s = STATE.settings
    enabled = values.get("sources")
    widgets: list[Any] = [
        Switch(
            id=f"source_{key}",
            label=f"Search {label}",
            initial=values.get(f"source_{key}", key in (enabled or s.literature.sources)),
        )
        for key, label in render.SOURCE_NAMES.items()
    ]
    adapters = [render.NO_ADAPTER, *s.vision.adapters]
    widgets += [
        TextInput(
            id="vision_model",
            label="Vision model (hub id or local directory)",
            initial=values.get("vision_model", s.vision.model),
        ),
        Select(
            id="adapter",
            label="Adapter",
            values=adapters,
            initial_value=values.get("adapter", s.vision.adapter or render.NO_ADAPTER),
        ),
        Select(
            id="quantization",
            label="Quantization",
            values=["none", "8bit", "4bit"],
            initial_value=values.get("quantization", s.vision.quantization),
        ),
        Switch(
            id="heatmap",
            label="Show where the vision model looked (attention heat-map)",
            initial=values.get("heatmap", s.ui.heatmap),
        ),
        Slider(
            id="similar_k",
            label="Similar cases",
            initial=values.get("similar_k", s.agent.similar_k),
            min=0,
            max=20,
            step=1,
        ),
    ]
    return widgets


@cl.on_chat_start
async def _start() -> None:
    cl.user_session.set("images", [])
    cl.user_session.set("pending", [])
    values = await cl.ChatSettings(_settings_widgets({})).send()
    cl.user_session.set("options", render.turn_options(values))
    await cl.Message(content=WELCOME, author="litevlm").send()


@cl.on_settings_update
async def _settings_update(values: dict[str, Any]) -> None:
    cl.user_session.set("options", render.turn_options(values))


@cl.on_chat_resume
async def _resume(thread: dict[str, Any]) -> None:
    if await _written(thread["id"]):  # the last turn's write was still under way: read it
        thread = await STATE.data_layer.get_thread(thread["id"]) or thread
    metadata = thread.get("metadata") or {}
    if isinstance(metadata, str):
        import json

        metadata = json.loads(metadata)
    images = [im for im in metadata.get("images", []) if Path(im["path"]).is_file()]
    cl.user_session.set("images", images)
    cl.user_session.set("pending", list(metadata.get("pending") or []))
    values = metadata.get("chat_settings") or {}
    await cl.ChatSettings(_settings_widgets(values)).send()
    cl.user_session.set("options", render.turn_options(values or None))


# ---------------------------------------------------------------- uploads


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120] or "image"


def _load_and_store(
    src: Path | list[tuple[Path, str]], name: str, dest_dir: Path, n: int
) -> tuple[dict, Any]:
    """Load an upload and keep it (once); return the image record and the load.

    The upload is hard-linked out of Chainlit's session folder (which Chainlit empties when
    the session ends), or moved where links do not work: one file on disk per image, not a
    copy. A file that does not load is deleted.
    """
    from tools.images import load_image

    dest_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(src, list):  # the instances of one DICOM WSI
        stored = slides.store_dicom_slide(src, dest_dir / f"{n}-dicom-slide")
    else:
        # Keep the original name's suffix: the loader and the agent go by it. A DICOM file
        # gets a folder of its own: a DICOM WSI reader opens the instances beside it.
        folder = dest_dir / f"{n}-dicom" if name.lower().endswith((".dcm", ".dicom")) else dest_dir
        folder.mkdir(exist_ok=True)
        stored = folder / f"{n}-{_safe_name(name)}"
        stored.unlink(missing_ok=True)
        try:
            os.link(src, stored)
        except OSError:  # another file system, or no hard links: move it
            shutil.move(src, stored)
    try:
        loaded = load_image(stored, max_pixels=STATE.settings.measure.max_pixels)
    except BaseException:
        if stored.is_dir():
            shutil.rmtree(stored, ignore_errors=True)
        for p in (stored, *([] if isinstance(src, list) else [src])):
            if p == src and not is_session_upload(p):
                continue
            if p.is_file():
                p.unlink(missing_ok=True)
        raise
    record = {"n": n, "name": name, "path": str(stored)}
    return record, loaded


def _discard(path: Path | None) -> None:
    """Delete a rejected upload: a refused 150 MB file must not stay on disk."""
    if path is not None and is_session_upload(path):
        path.unlink(missing_ok=True)


async def _accept_uploads(
    elements: list[Any], images: list[dict]
) -> tuple[list[int], asyncio.Task | None]:
    """Check, load and show each attachment; return the numbers of the images added and the
    task sending their messages (in order): the agent need not wait for it (ui/stream.py)."""
    from tools.images import SUPPORTED_SUFFIXES
    from tools.privacy import display_name

    limit_mb = STATE.settings.ui.max_upload_mb
    thread_dir = STATE.uploads / _safe_name(cl.context.session.thread_id)
    added: list[int] = []
    # The instances of a DICOM WSI uploaded together are one slide.
    wsi = [
        (Path(el.path), el.name or "")
        for el in elements
        if getattr(el, "path", None) and Path(el.path).is_file()
        and slides.is_dicom_slide_file(Path(el.path), el.name or "")
    ]  # fmt: skip
    grouped: set[Path] = set()
    # This turn's messages about its uploads, in order, each with what to write before it.
    outbox: list[tuple[cl.Message, Callable[[], Any] | None]] = []

    def notice(text: str) -> None:
        outbox.append((cl.Message(content=f"⚠ {text}", author="litevlm"), None))

    for el in elements:
        name = el.name or "upload"
        path = Path(el.path) if getattr(el, "path", None) else None
        if path is None or not path.is_file():
            notice(f"**{name}**: the upload did not arrive; please attach it again.")
            continue
        size_mb = path.stat().st_size / 2**20
        if size_mb > limit_mb:
            _discard(path)
            notice(
                f"**{name}** is {size_mb:.0f} MB, over the {limit_mb} MB upload limit "
                "(`[ui] max_upload_mb`). Crop or downsample it, or raise the limit."
            )
            continue
        if not name.lower().endswith(SUPPORTED_SUFFIXES):
            _discard(path)
            notice(
                f"**{name}**: unsupported file type. Upload PNG, JPEG, TIFF, BMP, WebP, "
                "DICOM (.dcm), NIfTI (.nii, .nii.gz) or a slide (SVS, NDPI, MRXS, OME-TIFF, "
                "DICOM WSI)."
            )
            continue
        n = max((im["n"] for im in images), default=0) + 1
        src: Any = path
        if slides.is_dicom_slide_file(path, name):
            if path in grouped:
                continue  # stored with the first instance of its slide
            src = [(p, nm) for p, nm in wsi if p not in grouped]
            grouped.update(p for p, _ in src)
        try:
            record, loaded = await asyncio.to_thread(_load_and_store, src, name, thread_dir, n)
        except ImageLoadError as e:
            notice(f"**{name}** could not be read: {e.cause}" + _hint(e))
            continue
        except Exception as e:  # a decoder bug must not end the session
            log.exception("loading upload %s", name)
            notice(f"**{name}** could not be read: {type(e).__name__}: {e}")
            continue
        # A file name can carry the patient's name or ID: shown and kept without them.
        name = record["name"] = display_name(name, loaded.identifiers)
        images.append(record)
        added.append(n)
        meta = dict(loaded.metadata)
        if slides.is_slide(loaded):
            await _send_all(outbox)
            await slides.show_slide(record, loaded, name, render.metadata_table)
            continue
        table = f"metadata-{n}"
        # The chat's PNG preview, written by _send_all beside the agent's start.
        record["preview"] = str(thread_dir / f"{n}-preview.png")
        text = render.image_summary(name, n, loaded.modality, loaded.size, meta)
        text += f". De-identified metadata: {table}"
        elements = [
            cl.Image(path=record["preview"], name=f"image-{n}", display="inline"),
            # Chainlit gathers a thread's "side" elements in a panel beside the chat.
            cl.Text(
                name=table,
                content=f"Metadata of image {n} ({name})\n\n{render.metadata_table(meta)}",
                display="side",
            ),
        ]
        write_preview = functools.partial(render.save_preview, loaded.image, record["preview"])
        message = cl.Message(content=text, elements=elements, author="litevlm")
        outbox.append((message, write_preview))
    if added:
        await _remember(images, [*(cl.user_session.get("pending") or []), *added])
    return added, (asyncio.create_task(_send_all(outbox)) if outbox else None)


async def _send_all(messages: list[tuple[cl.Message, Callable[[], Any] | None]]) -> None:
    """Send ``messages`` in order, each once what it shows is written; empties the list."""
    while messages:
        msg, prepare = messages.pop(0)
        if prepare is not None:
            try:
                await asyncio.to_thread(prepare)
            except Exception:  # the image itself loaded: its message goes without the preview
                log.exception("writing a preview")
                msg.elements = [el for el in msg.elements if not isinstance(el, cl.Image)]
        await msg.send()


async def _remember(images: list[dict], pending: list[int]) -> None:
    """Keep the thread's images and those the assistant has not seen yet, in the session and
    in the thread's metadata (Chainlit writes the session only on disconnect).

    The write runs beside the turn, one after the other per thread, as Chainlit persists the
    turn's messages: the turn's end (the browser's stop button) does not wait for it; a resume
    (``_resume``) and the server's shutdown (``_shutdown``) do, so nothing is lost. A write
    that fails is said in the chat.
    """
    cl.user_session.set("images", images)
    cl.user_session.set("pending", pending)
    thread_id = cl.context.session.thread_id
    previous = STATE.writes.get(thread_id)
    metadata = {"images": list(images), "pending": list(pending)}

    async def write() -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])
            await STATE.data_layer.update_thread(thread_id, metadata=metadata)
        except LiteVLMError as e:
            log.error("thread %s: %s", thread_id, e)
            await _notice(f"{e}" + _hint(e))
        except Exception as e:
            log.exception("writing the metadata of thread %s", thread_id)
            await _notice(f"the thread's images could not be saved ({type(e).__name__}: {e})")
        finally:
            if STATE.writes.get(thread_id) is task:
                del STATE.writes[thread_id]

    task = STATE.writes[thread_id] = asyncio.create_task(write())


async def _written(thread_id: str) -> bool:
    """Wait for a thread's metadata writes (``_remember``); whether there were any."""
    task = STATE.writes.get(thread_id)
    if task is not None:
        await asyncio.wait([task])
    return task is not None


@cl.on_app_shutdown
async def _shutdown() -> None:
    if STATE.writes:
        await asyncio.wait(list(STATE.writes.values()))
    await STATE.data_layer.written()


def _hint(e: LiteVLMError) -> str:
    return f" ({e.hint})" if e.hint else ""


async def _notice(text: str) -> None:
    await cl.Message(content=f"⚠ {text}", author="litevlm").send()


# ---------------------------------------------------------------- questions


@cl.on_message
async def _on_message(message: cl.Message) -> None:
    images: list[dict] = list(cl.user_session.get("images") or [])
    added, shown = await _accept_uploads(list(message.elements or []), images)
    question = (message.content or "").strip()
    if shown and (not question or not added or slides.parse_command(question)):
        await asyncio.wait([shown])  # what follows is said after it
    if message.elements and not added:
        return  # the question was about attachments that could not be used: said so above
    if command := slides.parse_command(question):  # typed, or a click on a slide thumbnail
        thread_dir = STATE.uploads / _safe_name(cl.context.session.thread_id)
        got = await slides.choose_region(command, images, thread_dir, STATE.settings)
        if isinstance(got, str):
            await _notice(got)
            return
        images.append(got)
        pending = slides.pending_with_region(images, cl.user_session.get("pending") or [], got)
        await _remember(images, pending)
        question = command.question
        if not question:
            return
    if not question:
        if added:
            await cl.Message(
                content=f"Image {', '.join(map(str, added))} loaded. Ask a question about it.",
                author="litevlm",
            ).send()
        elif not message.elements:
            await _notice("Type a question, or attach an image with the paper clip.")
        return
    await _answer(question, images, shown)


async def _answer(question: str, images: list[dict], shown: asyncio.Task | None = None) -> None:
    # The assistant keeps the thread's images (and picks which one a follow-up is about:
    # the latest, "image 1", a file name, "both"); it is given each image once.
    pending = set(cl.user_session.get("pending") or [])
    paths = [Path(im["path"]) for im in images if im["n"] in pending]
    thread_id = cl.context.session.thread_id
    msg = cl.Message(content="", author="litevlm")
    figures = stream.Figures(msg.id, _figure_elements)
    action = None  # the per-word attention action the browser has (sent when vision ends)
    # Few socket messages per turn: each one costs the browser a re-render (ui/stream.py).
    steps = stream.TurnSteps(_run_id(), before=shown)
    try:
        assistant = await STATE.assistant()
        options = _options_for(assistant)
        tokens = stream.Tokens(msg, before=shown)
        answer = None
        errors: list[str] = []
        vision_calls = attention.VisionCalls()
        try:
            async for ev in assistant.astream(
                question, images=paths, thread_id=thread_id, options=options
            ):
                vision_calls.see(ev)
                if ev.type == "step_start":
                    steps.start(ev)
                elif ev.type == "step_end":
                    steps.end(ev)
                    figures.add(ev.figures)
                    if ev.name == "vision":
                        backend = STATE.settings.vision.backend
                        action = await attention.early(
                            msg.id, vision_calls, images, backend, action
                        )
                elif ev.type == "token":
                    tokens.add(ev.text)
                elif ev.type == "answer":
                    answer = ev.answer
                elif ev.type == "error":
                    errors.append(ev.text or ev.name)
        finally:
            await tokens.finish()
    except LiteVLMError as e:
        msg.content = f"⚠ The assistant could not answer: {e}"
        await _finish(msg, figures, steps, {}, action)
        return
    except Exception as e:
        log.exception("answering %r", question[:80])
        msg.content = f"⚠ The assistant failed ({type(e).__name__}: {e}). Try again or rephrase."
        await _finish(msg, figures, steps, {}, action)
        return
    if answer is None:
        text = msg.content or "No answer was produced."
        msg.content = render.answer_markdown(text, [], errors)
        await _finish(msg, figures, steps, {}, action)
        return
    if pending:
        await _remember(images, [])
    msg.content = render.answer_markdown(answer.text, answer.sources, answer.warnings + errors)
    msg.metadata = {"models": answer.models, "timings": answer.timings}
    attention.offer(msg, vision_calls, images, STATE.settings.vision.backend, action)
    await _finish(msg, figures, steps, answer.figures)


def _figure_elements(name: str, path: str) -> list[Any]:
    """A figure of the answer, inline, with a measurement's downloads beside its overlay."""
    return [cl.Image(path=path, name=name, display="inline"), *_measurement_downloads(path)]


def _measurement_downloads(figure: str) -> list[cl.File]:
    """The object table, label TIFF and QuPath GeoJSON written beside a measurement overlay."""
    from tools.measure.exports import sidecar_paths

    return [
        cl.File(path=str(path), name=path.name, display="inline")
        for path in sidecar_paths(figure).values()
        if path.is_file()
    ]


async def _finish(
    msg: cl.Message,
    figures: stream.Figures,
    steps: stream.TurnSteps,
    shown_figures: dict[str, str],
    retract: Any = None,
) -> None:
    """End the answer: update it when tokens were streamed, else send it whole, with the
    figures not sent yet (and without the early ones it does not show); ``retract``: an
    action sent early that a failed answer does not offer. The steps' held ends go just
    before it, once the figures are out: the browser takes the turn's end in one re-render."""
    msg.elements = await figures.finish(shown_figures)
    if retract is not None:
        await retract.remove()
    await steps.close()  # also ends a step whose tool never reported its end
    # After the upload's own message (``steps.before``), as the steps are.
    await stream.after(steps.before, msg.update() if msg.created_at else msg.send())


def _options_for(assistant: Any) -> Any:
    values = cl.user_session.get("options") or {}
    module = importlib.import_module(type(assistant).__module__)
    options_cls = getattr(module, "TurnOptions", None)
    return options_cls(**values) if options_cls else values


def _run_id() -> str | None:
    # Chainlit wraps on_message in a "run" step; messages nest in it, so must the tool steps,
    # or the chat shows them after the answer.
    run = cl.context.current_step
    return run.id if run else None
