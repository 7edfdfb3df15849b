"""Hugging Face Hub reachability: fail in seconds, not minutes, on a machine without network.

Without this check huggingface_hub retries every file of a model that is not cached for over a
minute before transformers or open_clip give up.
"""

from __future__ import annotations

import os
from pathlib import Path

from litevlm.errors import ModelLoadError


def offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(f.lower() in {"1", "true", "yes", "on"} for f in flags)


def fail_fast_if_unreachable(
    repo: str, filename: str, hint: str, *, cache_dir: str | None = None, timeout_s: float = 3.0
) -> None:
    """Raise ``ModelLoadError`` at once when ``repo`` is not cached and the Hub cannot be reached.

    A local directory, offline mode (the loaders then read the cache only and fail fast on
    their own) and a cached ``filename`` all pass without touching the network.
    """
    if offline() or Path(repo).expanduser().is_dir():
        return
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, filename, cache_dir=cache_dir), str):
        return
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    try:
        socket.create_connection((host, url.port or 443), timeout=timeout_s).close()
    except OSError as e:
        raise ModelLoadError(
            f"{repo} is not in the local Hugging Face cache and {host} cannot be reached ({e})",
            hint,
        ) from e
