"""The real local model used by the ``llm`` tests answers, and makes tool calls the way raw
llama.cpp does (bare JSON in the content), which is what the agent has to read."""

from __future__ import annotations

import json
import re

import pytest
from llm_fixtures import LLMServer

pytestmark = [pytest.mark.llm, pytest.mark.slow]


def test_server_answers_and_calls_tools(llm_server: LLMServer) -> None:
    import httpx

    tool = {
        "type": "function",
        "function": {
            "name": "measure",
            "description": "Count and measure cells or nuclei in an image",
            "parameters": {"type": "object", "properties": {"image": {"type": "string"}}},
        },
    }
    body = {
        "model": llm_server.model,
        "temperature": 0,
        "seed": 0,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Count the nuclei in image cell.png"}],
        "tools": [tool],
    }
    r = httpx.post(f"{llm_server.base_url}/chat/completions", json=body, timeout=300)
    r.raise_for_status()
    msg = r.json()["choices"][0]["message"]
    calls = msg.get("tool_calls") or []
    if not calls:  # raw llama.cpp: a JSON object in the content, often in a ```json fence
        m = re.search(r"\{.*\}", msg.get("content") or "", re.S)
        assert m, msg
        calls = [{"function": json.loads(m.group(0))}]
    assert calls[0]["function"]["name"] == "measure"
