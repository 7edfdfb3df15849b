"""Safe defaults for a chat server others can reach.

- ``check_exposure``: listening beyond loopback without a login is refused unless the user says
  ``--allow-anonymous`` (without a login every visitor is the shared local user and reads every
  thread).
- ``SameOriginMiddleware``: a request (HTTP or the chat's socket) that a browser sent from
  another origin is rejected, so that a page elsewhere cannot act as the logged-in user (or,
  without a login, as the local user). Requests without an ``Origin`` header (curl, scripts)
  pass: cross-site request forgery needs a browser, and browsers send one.
- ``LoginThrottle``: failed logins per user and client; after ``max_failures`` in ``window_s``
  the pair is locked out, for twice as long after each further failure.
"""

from __future__ import annotations

import ipaddress
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from litevlm.errors import ConfigError

LOGIN_HINT = (
    'set up a login: LITEVLM_UI__AUTH=true LITEVLM_UI__USERS=\'{"alice": "a-long-password"}\' '
    "(or [ui] auth and users in litevlm.toml), or pass --allow-anonymous"
)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, auth: bool, allow_anonymous: bool) -> None:
    """Refuse to serve beyond loopback without a login, unless explicitly allowed."""
    if auth or allow_anonymous or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to listen on {host} without a login: anyone who can reach it would be the "
        "shared local user and read every thread",
        LOGIN_HINT,
    )


# -- same origin ---------------------------------------------------------------------------


def _netloc(scheme: str, hostport: str) -> str:
    hostport = hostport.strip().lower()
    default = {"http": "80", "https": "443", "ws": "80", "wss": "443"}.get(scheme, "")
    if default and hostport.endswith(f":{default}"):
        hostport = hostport[: -len(default) - 1]
    return hostport


def origin_allowed(origin: str, host: str, allowed: Iterable[str] = ()) -> bool:
    """Is ``origin`` (a browser's Origin header) this server (``host`` header) or allowed?"""
    if origin in set(allowed):
        return True
    parts = urlsplit(origin)
    if not parts.scheme or not parts.netloc:
        return False  # "null" (sandboxed frames, file:// pages) is never ours
    scheme = parts.scheme.lower()
    host_scheme = "https" if scheme == "https" else "http"
    return _netloc(scheme, parts.netloc) == _netloc(host_scheme, host)


class SameOriginMiddleware:
    """ASGI middleware: 403 for HTTP requests, and a refused socket, from a foreign Origin."""

    def __init__(self, app: Any, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = tuple(allowed_origins)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        origin = headers.get("origin")
        if origin is not None and not origin_allowed(origin, headers.get("host", ""), self.allowed):
            if scope["type"] == "websocket":
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008})
                return
            return await _json(send, 403, "cross-origin request refused")
        return await self.app(scope, receive, send)


def _headers(scope: dict) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _json(send: Callable, status: int, detail: str, extra: dict[str, str] | None = None):
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LoginThrottleMiddleware:
    """ASGI middleware around the login endpoint: answers 429 (with Retry-After) while a user
    and client are locked out, and counts the endpoint's 401 answers as failures.

    Chainlit's login callback only gets the username and password, and an exception raised in
    it becomes a plain 401, so the throttle lives here where the client address is known.
    """

    def __init__(self, app: Any, throttle: LoginThrottle, path: str = "/login") -> None:
        self.app = app
        self.throttle = throttle
        self.path = path

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:  # the form is small; read it to know the username, then replay it
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False) and sum(map(len, chunks)) < 65536
        body = b"".join(chunks)
        user = _form_username(body, _headers(scope).get("content-type", ""))
        client = str((scope.get("client") or ("?", 0))[0])
        if wait := self.throttle.retry_after(user, client):
            detail = f"too many failed logins: try again in {wait} s"
            return await _json(send, 429, detail, {"Retry-After": str(wait)})
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 401:
                    self.throttle.failed(user, client)
                elif message["status"] < 400:
                    self.throttle.succeeded(user, client)
            await send(message)

        await self.app(scope, replay, watch)


def _form_username(body: bytes, content_type: str) -> str:
    from urllib.parse import parse_qs

    if "application/x-www-form-urlencoded" in content_type:
        values = parse_qs(body.decode("utf-8", "replace")).get("username") or [""]
        return values[0]
    if "multipart/form-data" in content_type:
        import re

        m = re.search(rb'name="username"\r\n\r\n([^\r]*)\r\n', body)
        return m.group(1).decode("utf-8", "replace") if m else ""
    return ""


# -- login throttling ----------------------------------------------------------------------


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    lockouts: int = 0


class LoginThrottle:
    """Failed logins per (user, client): ``max_failures`` within ``window_s`` lock the pair out
    for ``lockout_s``, doubled for each lockout in a row (capped at ``max_lockout_s``). A
    success clears the pair. ``clock`` is injectable so tests need no sleeps."""

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 300.0,
        lockout_s: float = 30.0,
        max_lockout_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self.clock = clock
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(user: str, client: str) -> tuple[str, str]:
        return (user.strip().lower(), client)

    def retry_after(self, user: str, client: str) -> int:
        """Seconds until ``user`` may try again from ``client`` (0: now)."""
        with self._lock:
            rec = self._records.get(self._key(user, client))
            if rec is None:
                return 0
            return max(0, math.ceil(rec.locked_until - self.clock()))

    def failed(self, user: str, client: str) -> None:
        now = self.clock()
        with self._lock:
            self._prune(now)
            rec = self._records.setdefault(self._key(user, client), _Record())
            rec.failures = [t for t in rec.failures if now - t < self.window_s] + [now]
            if len(rec.failures) >= self.max_failures:
                delay = min(self.lockout_s * 2**rec.lockouts, self.max_lockout_s)
                rec.locked_until = now + delay
                rec.lockouts += 1
                rec.failures = []

    def succeeded(self, user: str, client: str) -> None:
        with self._lock:
            self._records.pop(self._key(user, client), None)

    def _prune(self, now: float) -> None:
        # Bounded memory under a spray of usernames: forget pairs that are idle and unlocked.
        if len(self._records) < 10_000:
            return
        for key, rec in list(self._records.items()):
            if rec.locked_until < now and all(now - t >= self.window_s for t in rec.failures):
                del self._records[key]
