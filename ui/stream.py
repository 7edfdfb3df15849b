"""A turn's agent events in the chat, in as few socket messages as the display allows.

Every message the app emits (a step opened, a step closed, a streamed token) makes the browser
re-render the chat. On a loaded machine each costs it tens of milliseconds and they queue: a
warm turn's forty-odd messages kept the finished answer from the screen for about a second
after the server had sent it (``benchmarks/ui.py``). So:

- a tool step is shown once it has run ``STEP_SHOW_S``, or when it ends: a fast step (route,
  header, verify) is one message that carries its input, output and time, not two;
- a step's end waits up to ``STEP_HOLD_S`` for the messages after it: the last tool's end,
  synthesise, verify and the answer travel together;
- streamed tokens go out at most every ``TOKEN_FLUSH_S``. The agent streams only verified text,
  all at once after verify, so its answer reaches the browser as one message, with its sources;
- figures (and a measurement's downloads) go out as their tool step ends, while the agent
  works on, not after the answer (``Figures``);
- the agent does not wait for the upload's own message to be sent (``after`` keeps the order);
- the browser hands the messages that arrived while it was busy to the chat together, one
  re-render for all (``ui/public/socket_batch.js``).

What is shown and stored is the same as before: every step with its input, output and time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import chainlit as cl
from chainlit.utils import utc_now

from ui import render

log = logging.getLogger(__name__)

# Below what a person notices as a delay; above what the fast steps take.
STEP_SHOW_S = 0.25
TOKEN_FLUSH_S = 0.1
# How long a step's end may wait for the messages after it (see TurnSteps).
STEP_HOLD_S = 0.1


async def after(before: asyncio.Task | None, aw: Awaitable[Any]) -> Any:
    """``aw`` once ``before`` (the upload's own message, still being sent) is done: the chat
    keeps its order although the agent started without waiting for it."""
    if before is not None:
        await asyncio.wait([before])
    return await aw


async def _queued_after(previous: asyncio.Task | None, before: asyncio.Task | None) -> None:
    """Wait for the send queued before this one, and for the upload's own message."""
    if previous is not None:
        await previous
    if before is not None:
        await asyncio.wait([before])


class _Open:
    """A step that has started: shown by ``show`` once its timer fires."""

    def __init__(self, step: cl.Step, show_after_s: float, show: Callable[[_Open], None]) -> None:
        self.step = step
        self.shown = False
        self.timer = asyncio.get_running_loop().call_later(show_after_s, show, self)


class TurnSteps:
    """The tool steps of one turn, nested in Chainlit's run step ``parent_id``.

    Their messages go out in order through one outbox. A step shown while it runs goes at
    once; a step's end waits up to ``hold_s`` for the messages that follow it, so that the
    last tool's end, the synthesise and verify steps and the answer (the app calls ``close``
    just before sending it) leave together, and the browser re-renders the chat once for them
    (``ui/public/socket_batch.js``), not four times.
    """

    def __init__(
        self,
        parent_id: str | None,
        show_after_s: float = STEP_SHOW_S,
        before: asyncio.Task | None = None,
        hold_s: float = STEP_HOLD_S,
    ) -> None:
        self.parent_id = parent_id
        self.show_after_s = show_after_s
        self.hold_s = hold_s
        self.before = before
        # Steps by name, oldest first: one tool may run on two images at once.
        self._open: dict[str, list[_Open]] = {}
        self._outbox: list[Callable[[], Awaitable[Any]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task | None = None

    def start(self, ev: Any) -> None:
        step = cl.Step(name=ev.name, type="tool", parent_id=self.parent_id, show_input="json")
        step.input = render.step_text(ev.input) if ev.input is not None else ""
        step.start = utc_now()
        self._open.setdefault(ev.name, []).append(_Open(step, self.show_after_s, self._show))

    def _show(self, entry: _Open) -> None:
        entry.shown = True
        self._post(entry.step.send, hold=False)

    def _post(self, send: Callable[[], Awaitable[Any]], hold: bool) -> None:
        self._outbox.append(send)
        if not hold:
            self._send_soon()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.hold_s, self._send_soon)

    def _send_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        previous = self._sending

        async def send_all() -> None:
            await _queued_after(previous, self.before)
            while self._outbox:
                send = self._outbox.pop(0)
                try:
                    await send()
                except Exception:  # one step not shown must not keep the answer back
                    log.exception("sending a step to the chat")

        self._sending = asyncio.create_task(send_all())

    async def flush(self) -> None:
        """Send what is held now, and wait until it is sent."""
        if self._outbox or self._timer is not None:
            self._send_soon()
        if self._sending is not None:
            await self._sending

    def _take(self, name: str) -> _Open | None:
        """The step, once its timer cannot fire any more."""
        entries = self._open.get(name)
        if not entries:
            return None
        entry = entries.pop(0)
        if not entries:
            del self._open[name]
        entry.timer.cancel()
        return entry

    def end(self, ev: Any) -> None:
        entry = self._take(ev.name)
        if entry is not None:
            step, shown = entry.step, entry.shown
        else:  # an end without a start
            step, shown = cl.Step(name=ev.name, type="tool", parent_id=self.parent_id), False
            step.start = utc_now()
        step.output = render.step_text(ev.output)
        step.language = None if isinstance(ev.output, str) else "json"
        if ev.elapsed_s is not None:
            step.metadata = {"elapsed_s": round(ev.elapsed_s, 3)}
            step.name = f"{ev.name} · {ev.elapsed_s:.2f} s"
        step.end = utc_now()
        self._post(step.update if shown else step.send, hold=True)

    async def close(self) -> None:
        """End the steps that never reported their end (a tool that failed mid-way), and
        send everything held."""
        while self._open:
            entry = self._take(next(iter(self._open)))
            if entry is not None:
                entry.step.end = utc_now()
                self._post(entry.step.update if entry.shown else entry.step.send, hold=True)
        await self.flush()


class Tokens:
    """Streamed text for ``msg``, sent in batches at most every ``flush_after_s``."""

    def __init__(
        self,
        msg: cl.Message,
        flush_after_s: float = TOKEN_FLUSH_S,
        before: asyncio.Task | None = None,
    ) -> None:
        self.msg = msg
        self.before = before
        self.flush_after_s = flush_after_s
        self._buffer: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None

    def add(self, text: str) -> None:
        self._buffer.append(text)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.flush_after_s, self._flush_soon)

    def _flush_soon(self) -> None:
        self._timer = None
        previous = self._task

        async def flush() -> None:
            await _queued_after(previous, self.before)
            text, self._buffer = "".join(self._buffer), []
            if text:
                self.msg.created_at = self.msg.created_at or utc_now()
                await self.msg.stream_token(text)

        self._task = asyncio.create_task(flush())

    async def finish(self) -> str:
        """Stop streaming; the text not sent yet is added to ``msg.content`` (unsent), so
        that the final send or update carries it. Returns the whole text."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            await self._task
            self._task = None
        self.msg.content = (self.msg.content or "") + "".join(self._buffer)
        self._buffer = []
        return self.msg.content


class Figures:
    """The answer's figures, sent for its message ``for_id`` as each tool step ends.

    Each element is a socket message, and one the browser renders while the agent still works
    costs the reader nothing: sent after the answer, a measurement's overlay and its three
    downloads kept it waiting about 200 ms more (``benchmarks/ui.py``). The browser keeps
    elements by the message they are for, so they show once the answer arrives. A figure the
    answer does not show in the end (its tool's result was not used) is removed again.
    ``elements_for(name, path)`` makes the elements of one figure.
    """

    def __init__(self, for_id: str, elements_for: Callable[[str, str], list[Any]]) -> None:
        self.for_id = for_id
        self.elements_for = elements_for
        self.sent: dict[str, list[Any]] = {}  # by path
        self._tasks: list[asyncio.Task] = []

    def add(self, figures: dict[str, Any]) -> None:
        for name, path in ((k, str(v)) for k, v in figures.items()):
            if path in self.sent or not Path(path).is_file():
                continue
            self.sent[path] = self.elements_for(name, path)
            for el in self.sent[path]:
                self._tasks.append(asyncio.create_task(el.send(for_id=self.for_id)))

    async def finish(self, figures: dict[str, Any]) -> list[Any]:
        """The elements still to send with the answer for ``figures``; the early ones that
        are not among them are removed."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        figures = {k: str(v) for k, v in figures.items()}
        shown = set(figures.values())
        for path, elements in self.sent.items():
            if path not in shown:
                for el in elements:
                    await el.remove()
        return [
            el
            for name, path in figures.items()
            if path not in self.sent and Path(path).is_file()
            for el in self.elements_for(name, path)
        ]
