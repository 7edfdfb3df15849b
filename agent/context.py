"""Run-scoped context handed to every node (LangGraph's runtime context), and the chat model.

The context carries live objects that must not go into a checkpoint: the toolbox (loaded
vision model, retriever), the chat model, and this turn's options. The thread's state (what
was asked, what the tools returned) is in ``agent.state`` and is checkpointed.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from litevlm.errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from agent.tools import Toolbox
    from litevlm.config import AgentConfig


@dataclass
class Context:
    """What a node may use besides the state. Built by the assistant for every turn."""

    toolbox: Toolbox
    chat_model: BaseChatModel | None = None  # None: rule-based routing, extractive answer
    chat_model_name: str = "rules"
    similar_k: int = 3
    literature_sources: list[str] | None = None  # None: the [literature] section's sources
    literature_max: int = 3
    vision_model: str | None = None  # None: the [vision] section's model
    adapter: str | None = None
    quantization: str | None = None
    heatmap: bool = False  # vision calls also save an attention heat-map (a figure)
    pixel_size_um: float | None = None  # stated by the user (--pixel-size): px -> um in answers
    region: str | None = None  # whole-slide images: x,y,w,h[@level] to measure and describe
    history_messages: int = 6  # earlier messages the chat model sees
    deadline: float | None = None  # time.monotonic() after which no chat-model call starts
    # the thread's identifiers (tools.privacy.Redactor): whatever a chat model is sent is
    # cleaned of them first, tool outputs included (a VLM may read a name burned into pixels)
    redactor: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _limits(provider: str, config: AgentConfig) -> dict[str, Any]:
    """Timeout and reply length in each provider's own words: a hung server or a looping
    model must not hang the CLI or the UI."""
    if provider == "ollama":
        return {"num_predict": config.max_tokens, "client_kwargs": {"timeout": config.timeout_s}}
    if provider in {"anthropic", "openai", "azure_openai", "mistralai", "groq", "deepseek", ""}:
        return {"max_tokens": config.max_tokens, "timeout": config.timeout_s, "max_retries": 1}
    return {"max_tokens": config.max_tokens, "timeout": config.timeout_s}


def past_deadline(ctx: Context) -> bool:
    return ctx.deadline is not None and time.monotonic() > ctx.deadline


def load_chat_model(config: AgentConfig) -> BaseChatModel | None:
    """The configured LangChain chat model, or None for the deterministic mode.

    ``chat_model`` is an ``init_chat_model`` string (``openai:gpt-4o-mini``,
    ``ollama:qwen2.5``, ``anthropic:...``). With ``base_url`` set, the model is served by an
    OpenAI-compatible server (vLLM, llama.cpp, LM Studio): the provider defaults to ``openai``
    and the API key comes from ``api_key_env`` (local servers accept any key).
    """
    name = config.chat_model
    if not name or name.lower() in {"none", "rules"}:
        if not config.base_url:
            return None
        raise ConfigError(
            "[agent] base_url is set but chat_model is not",
            "set [agent] chat_model to the served model's name, e.g. 'openai:qwen2.5-7b'",
        )
    if re.match(r"^(https?|wss?)://", name, re.I) or re.match(r"^[\w.-]+:\d+(/|$)", name):
        raise ConfigError(
            f"[agent] chat_model = {name!r} is a URL, not a model name",
            f"set [agent] base_url = {name!r} and chat_model to the model the server serves "
            "(e.g. 'qwen2.5-7b-instruct'; GET <base_url>/models lists them)",
        )
    from langchain.chat_models import init_chat_model

    kwargs: dict[str, Any] = {"temperature": config.temperature}
    if config.base_url:
        if ":" not in name:
            name = f"openai:{name}"
        kwargs["base_url"] = config.base_url
        kwargs["api_key"] = os.environ.get(config.api_key_env) or "not-needed"
    limits = _limits(name.split(":", 1)[0] if ":" in name else "", config)
    try:
        try:
            return init_chat_model(name, **kwargs, **limits)
        except (TypeError, ValueError):  # a provider that names its limits otherwise
            return init_chat_model(name, **kwargs)
    except ImportError as e:
        raise ConfigError(
            f"[agent] chat_model = {config.chat_model!r}: the provider's package is missing ({e})",
            "install it, e.g. pip install 'litevlm[openai]' or 'litevlm[ollama]'",
        ) from e
    except ValueError as e:
        raise ConfigError(
            f"[agent] chat_model = {config.chat_model!r}: {e}",
            "use an init_chat_model string such as 'openai:gpt-4o-mini' or 'ollama:qwen2.5'",
        ) from e
    except Exception as e:  # provider clients raise their own types, e.g. for a missing key
        raise ConfigError(
            f"[agent] chat_model = {config.chat_model!r} could not be created: {e}",
            "set the provider's API key in the environment, or unset chat_model for rules",
        ) from e
