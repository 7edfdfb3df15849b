"""Request spacing shared by threads and asyncio tasks.

A limiter hands out time slots: each caller reserves the next free slot under a short lock and
then sleeps outside it (``time.sleep`` in a thread, ``asyncio.sleep`` in a task), so a thread pool
and an event loop drawing on the same limiter never exceed its rate and never block each other
while waiting.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit


class RateLimiter:
    """At most one request per ``interval_s`` seconds, across threads and async tasks."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}")
        self.interval_s = interval_s
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book the next free slot; return its time on this limiter's clock."""
        with self._lock:
            slot = max(self._clock(), self._next)
            self._next = slot + self.interval_s
            return slot

    def acquire(self) -> float:
        """Wait (sleeping this thread) until a slot is ours; return the slot time."""
        slot = self.reserve()
        while (wait := slot - self._clock()) > 0:
            time.sleep(wait)
        return slot

    async def aacquire(self) -> float:
        """Wait (yielding to the event loop) until a slot is ours; return the slot time."""
        slot = self.reserve()
        while (wait := slot - self._clock()) > 0:
            await asyncio.sleep(wait)
        return slot


class LimiterRegistry:
    """One limiter per (provider, host): every caller of a service shares its rate.

    A service's limit applies to this machine, not to one call, so the agent, the UI and the CLI
    must share a limiter; ``shared_limiters`` is the process-wide instance for that reason.
    Tests and benchmarks may pass their own registry.
    """

    def __init__(self) -> None:
        self._limiters: dict[tuple[str, str], RateLimiter] = {}
        self._lock = threading.Lock()

    def get(self, provider: str, url: str, interval_s: float) -> RateLimiter:
        parts = urlsplit(url)
        key = (provider, f"{parts.scheme}://{parts.netloc}")
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._limiters[key] = RateLimiter(interval_s)
            else:
                # A stricter setting wins; a looser one never relaxes a running limiter.
                limiter.interval_s = max(limiter.interval_s, interval_s)
            return limiter


shared_limiters = LimiterRegistry()
