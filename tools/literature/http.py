"""Timeouts, retries with exponential backoff, Retry-After: one loop for every provider.

A provider's single attempt raises ``TransientError`` (429, 5xx, timeout, connection reset:
worth another try) or ``PermanentError`` (bad request, bad key, malformed answer: not worth
one). ``with_retries`` spaces attempts through the provider's rate limiter, waits
``backoff_s * 2**attempt`` (or what Retry-After asks, when the server says), and after the last
try raises ``ProviderUnavailable`` with a one-line reason.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from tools.literature.base import ProviderUnavailable

if TYPE_CHECKING:
    import httpx

    from litevlm.config import LiteratureConfig
    from tools.literature.ratelimit import RateLimiter

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class TransientError(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0
    timeout_s: float = 15.0

    @classmethod
    def from_settings(cls, settings: LiteratureConfig) -> RetryPolicy:
        return cls(
            retries=settings.retries,
            backoff_s=settings.backoff_s,
            max_backoff_s=settings.max_backoff_s,
            max_retry_after_s=settings.max_retry_after_s,
            timeout_s=settings.timeout_s,
        )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def raise_for_status(status: int, headers: Mapping[str, str], what: str) -> None:
    """Turn a non-2xx status into the right error; ``what`` names the service."""
    if 200 <= status < 300:
        return
    if status in RETRYABLE_STATUS:
        reason = "rate limited (HTTP 429)" if status == 429 else f"HTTP {status}"
        raise TransientError(f"{what}: {reason}", parse_retry_after(headers.get("Retry-After")))
    raise PermanentError(f"{what}: HTTP {status}")


def send(
    client: httpx.Client,
    method: str,
    url: str,
    what: str,
    *,
    timeout_s: float,
    **kwargs,
) -> httpx.Response:
    """One HTTP request with a timeout; errors mapped to Transient/PermanentError."""
    import httpx

    try:
        response = client.request(method, url, timeout=timeout_s, **kwargs)
    except httpx.TimeoutException:
        raise TransientError(f"{what}: timed out after {timeout_s:g} s") from None
    except httpx.TransportError as e:
        raise TransientError(f"{what}: connection failed ({type(e).__name__})") from None
    raise_for_status(response.status_code, response.headers, what)
    return response


def with_retries(
    attempt: Callable[[], T],
    *,
    policy: RetryPolicy,
    limiter: RateLimiter | None = None,
    name: str = "provider",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``attempt`` until it succeeds, retrying transient errors; see the module docstring."""
    for i in range(policy.retries + 1):
        if limiter is not None:
            limiter.acquire()
        try:
            return attempt()
        except PermanentError as e:
            raise ProviderUnavailable(e.reason) from None
        except TransientError as e:
            if i == policy.retries:
                tries = policy.retries + 1
                raise ProviderUnavailable(
                    f"{e.reason} (after {tries} tr{'y' if tries == 1 else 'ies'})"
                ) from None
            if e.retry_after is not None:
                if e.retry_after > policy.max_retry_after_s:
                    raise ProviderUnavailable(
                        f"{e.reason}; server asks to retry after {e.retry_after:.0f} s"
                    ) from None
                delay = e.retry_after
            else:
                # Jitter keeps many clients that failed together from retrying together.
                delay = policy.backoff_s * 2**i * random.uniform(0.9, 1.1)
                delay = min(delay, policy.max_backoff_s)
            log.info("%s: %s; retry %d/%d in %.2f s", name, e.reason, i + 1, policy.retries, delay)
            sleep(delay)
    raise AssertionError("unreachable")
