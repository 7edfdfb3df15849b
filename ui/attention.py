"""Attention per word in the chat: pick a word of the vision model's answer, see its map.

After an answer the vision model took part in, an action ("Where did the model look, per
word?") re-runs the vision model's answer with its attention read out (``tools.explain``,
through ``Toolbox.attention``: the code behind ``litevlm explain --word``) and offers a button
per content word; a word's button shows that word's map over the image with its
attention-on-objects score (share of the mass on the objects the measurement segments, and
whether the peak lands on one). A server vision backend has no attention to read: the chat
says so instead of offering the buttons.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

OPEN_ACTION = "attention_words"
WORD_ACTION = "attention_word"
MAX_WORDS = 12
DEFAULT_QUESTION = "What is shown in this image?"  # what the heat-map uses without a question
SERVER_NOTE = (
    "Attention per word: not available from a server backend ([vision] backend = "
    "'{backend}'); set [vision] backend = 'local' to see where the model looked."
)

# Words that carry no content of their own: no button for them.
# fmt: off
_STOP = frozenset({
    "a", "an", "the", "and", "or", "but", "of", "in", "on", "at", "to", "for", "with", "by",
    "from", "as", "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that",
    "these", "those", "there", "here", "which", "who", "what", "when", "where", "how", "not",
    "no", "yes", "do", "does", "did", "has", "have", "had", "can", "could", "may", "might",
    "will", "would", "shall", "should", "than", "then", "so", "such", "very",
})
# fmt: on


def content_words(words: list[str], limit: int = MAX_WORDS) -> list[str]:
    """The answer's words worth a map: in order, once each (case-insensitive), no stop words."""
    seen: set[str] = set()
    out: list[str] = []
    for w in words:
        key = w.lower()
        if key in seen or key in _STOP or not re.search(r"[^\W\d_]", w):
            continue
        seen.add(key)
        out.append(w)
    return out[:limit]


class VisionCalls:
    """The vision calls of one turn, read from the agent's step events."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def see(self, ev: Any) -> None:
        if getattr(ev, "type", "") == "step_start" and ev.name == "vision" and ev.input:
            self.calls.append(dict(ev.input))


def _image_for(call: dict[str, Any], images: list[dict]) -> dict | None:
    """The thread image a vision call was about (by its shown name; else the latest)."""
    name = call.get("image")
    for im in reversed(images):
        if name and im.get("name") == name:
            return im
    return images[-1] if images else None


def payload_for(call: dict[str, Any], image: dict) -> dict[str, Any]:
    return {
        "image": image["n"],
        "question": call.get("question") or DEFAULT_QUESTION,
        "model": call.get("model"),
        "adapter": call.get("adapter"),
        "quantization": call.get("quantization"),
    }


def _clean(text: str, loaded: Any) -> str:
    """The model's text without the image's identifiers (it can read burned-in text)."""
    from tools.privacy import clean

    return clean(text, loaded.identifiers)


def _key(p: dict[str, Any]) -> str:
    fields = ("image", "question", "model", "adapter", "quantization")
    return "|".join(str(p.get(k)) for k in fields)


# ---------------------------------------------------------------- the chat side (Chainlit)


def offer(msg: Any, calls: VisionCalls, images: list[dict], backend: str, sent: Any = None) -> None:
    """On an answer the vision model took part in: the per-word action (for its last vision
    call), or, from a server backend, the line saying why there is none. ``sent``: the action
    already sent for ``msg`` while the agent ran (``early``); it is not sent twice."""
    if not calls.calls:
        return
    if backend != "local":
        msg.content += "\n\n" + SERVER_NOTE.format(backend=backend)
        return
    act = action(calls, images)
    if act is not None and (sent is None or sent.payload != act.payload):
        msg.actions = [*(msg.actions or []), act]


def action(calls: VisionCalls, images: list[dict]) -> Any:
    """The per-word action for the last vision call, or None."""
    import chainlit as cl

    call = calls.calls[-1] if calls.calls else None
    image = _image_for(call, images) if call else None
    if image is None:
        return None
    return cl.Action(
        name=OPEN_ACTION,
        payload=payload_for(call, image),
        label="Where did the model look, per word?",
        tooltip="re-run the vision model's answer with its attention read, then pick a word",
        icon="eye",
    )


async def early(
    for_id: str, calls: VisionCalls, images: list[dict], backend: str, sent: Any
) -> Any:
    """When a vision step ends: send its action for the answer ``for_id`` now, while the
    agent works on (one socket message less after the answer, ui/stream.py); an earlier one
    for another call is taken back. Returns the action the browser has."""
    act = action(calls, images) if backend == "local" else None
    if act is None or (sent is not None and sent.payload == act.payload):
        return sent
    if sent is not None:
        await sent.remove()
    await act.send(for_id=for_id)
    return act


def register(
    assistant: Callable[[], Awaitable[Any]], images: Callable[[], list[dict]], out_dir: Path
) -> None:
    """Add the two action callbacks; ``assistant()`` gives the app's shared assistant."""
    import chainlit as cl

    async def full_map(p: dict[str, Any]) -> tuple[Any, Any, Any]:
        """The map of the whole answer, its per-token maps and the object mask (cached)."""
        cache = cl.user_session.get("attention") or {}
        if cache.get("key") == _key(p):
            return cache["map"], cache["mask"], cache["loaded"]
        image = next((im for im in images() if im["n"] == p["image"]), None)
        if image is None:
            raise LookupError(f"image {p['image']} is no longer in this thread")
        tb = (await assistant()).toolbox

        def compute() -> tuple[Any, Any, Any]:
            from tools.explain import object_mask

            loaded = tb.load(image["path"])
            full = tb.attention(
                loaded,
                p["question"],
                model=p.get("model"),
                adapter=p.get("adapter"),
                quantization=p.get("quantization"),
                max_new_tokens=tb.settings.vision.max_new_tokens,
            )
            return full, object_mask(loaded), loaded

        full, mask, loaded = await asyncio.to_thread(compute)
        cl.user_session.set(
            "attention", {"key": _key(p), "map": full, "mask": mask, "loaded": loaded}
        )
        return full, mask, loaded

    async def failed(e: Exception) -> None:
        await cl.Message(content=f"⚠ Attention per word: {e}", author="litevlm").send()

    @cl.action_callback(OPEN_ACTION)
    async def _open(action: cl.Action) -> None:
        p = dict(action.payload)
        try:
            async with cl.Step(name="attention", type="tool") as step:
                step.input = f"image {p['image']}: {p['question']}"
                full, _, loaded = await full_map(p)
                answer = _clean(full.answer, loaded)
                step.output = answer
        except Exception as e:  # a model error must not end the session
            await failed(e)
            return
        raw = set(full.words())
        shown = replace(full, answer=answer).words()  # the words of the cleaned answer
        words = [w for w in content_words(shown) if w in raw]
        if not words:
            await cl.Message(
                content=f"The vision model's answer “{answer}” has no word to map.",
                author="litevlm",
            ).send()
            return
        actions = [
            cl.Action(name=WORD_ACTION, payload={**p, "word": w}, label=w, tooltip=f"map “{w}”")
            for w in words
        ]
        await cl.Message(
            content=f"The vision model answers “{p['question']}” with “{answer}” "
            "(re-run with its attention read). Pick a word:",
            actions=actions,
            author="litevlm",
        ).send()

    @cl.action_callback(WORD_ACTION)
    async def _word(action: cl.Action) -> None:
        from tools.explain import objects_sentence, word_attention

        p = dict(action.payload)
        word = str(p.pop("word", ""))
        try:
            full, (mask, n_objects), _ = await full_map(p)
            amap, score = word_attention(full, word, mask, n_objects)
            digest = hashlib.sha256(f"{_key(p)}|{word}".encode()).hexdigest()[:12]
            path = await asyncio.to_thread(amap.save_overlay, out_dir / f"word-{digest}.png")
        except Exception as e:
            await failed(e)
            return
        line = objects_sentence(score.as_dict()) if score else "no objects to score against"
        await cl.Message(
            content=f"**“{word}”**: where the vision model looked for this word "
            f"(peak patch {amap.peak()}); {line}. Attention shows where information flowed, "
            "not proof of what the answer rests on.",
            elements=[cl.Image(path=str(path), name=f"attention-{word}", display="inline")],
            author="litevlm",
        ).send()
