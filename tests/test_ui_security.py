"""Safe UI defaults: no anonymous server beyond loopback, same-origin requests only, login
throttling. Unit tests, then HTTP requests against the real app started as a user would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest
from ui_fixtures import REPO, UIServer

from litevlm.errors import ConfigError
from ui import auth, security


def test_beyond_loopback_without_a_login_is_refused_unless_allowed():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        security.check_exposure(host, auth=False, allow_anonymous=False)
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):
        with pytest.raises(ConfigError, match="--allow-anonymous"):
            security.check_exposure(host, auth=False, allow_anonymous=False)
        security.check_exposure(host, auth=True, allow_anonymous=False)
        security.check_exposure(host, auth=False, allow_anonymous=True)


def test_chat_on_all_interfaces_without_a_login_exits_with_one_line(tmp_path):
    env = {**os.environ, "LITEVLM_DATA_DIR": str(tmp_path)}
    env.pop("LITEVLM_UI__AUTH", None)
    r = subprocess.run(
        [sys.executable, "-m", "litevlm", "chat", "--host", "0.0.0.0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0" in lines[0]
    assert "LITEVLM_UI__USERS" in lines[0] and "--allow-anonymous" in lines[0]


def test_origin_must_be_the_servers_own():
    ok = security.origin_allowed
    assert ok("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert ok("https://chat.example.org", "chat.example.org:443")
    assert ok("http://Chat.Example.org:80", "chat.example.org")
    assert not ok("http://127.0.0.1:9999", "127.0.0.1:8000")  # same site, other origin
    assert not ok("https://evil.example", "127.0.0.1:8000")
    assert not ok("null", "127.0.0.1:8000")
    assert ok("https://proxy.example.org", "10.0.0.5:8000", ["https://proxy.example.org"])


def test_foreign_socket_is_closed_before_it_opens():
    events: list[dict] = []

    async def app(scope, receive, send):  # pragma: no cover - must not be reached
        raise AssertionError("reached the app")

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        events.append(message)

    mw = security.SameOriginMiddleware(app)
    scope = {
        "type": "websocket",
        "path": "/ws/socket.io/",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"origin", b"https://evil.example")],
        "client": ("127.0.0.1", 5555),
    }
    asyncio.run(mw(scope, receive, send))
    assert events == [{"type": "websocket.close", "code": 1008}]


def test_throttle_locks_out_with_exponential_backoff_and_a_success_clears_it():
    now = [0.0]
    t = security.LoginThrottle(max_failures=3, window_s=60, lockout_s=10, clock=lambda: now[0])
    for _ in range(3):
        assert t.retry_after("alice", "1.2.3.4") == 0
        t.failed("Alice", "1.2.3.4")
    assert t.retry_after("alice", "1.2.3.4") == 10
    assert t.retry_after("alice", "5.6.7.8") == 0  # per user and client
    assert t.retry_after("bob", "1.2.3.4") == 0
    now[0] = 11
    for _ in range(3):
        t.failed("alice", "1.2.3.4")
    assert t.retry_after("alice", "1.2.3.4") == 20  # doubled
    now[0] = 40
    t.succeeded("alice", "1.2.3.4")
    assert t.retry_after("alice", "1.2.3.4") == 0
    # Failures spread beyond the window do not add up.
    for i in range(5):
        now[0] = 100 + 61 * i
        t.failed("carol", "1.2.3.4")
    assert t.retry_after("carol", "1.2.3.4") == 0


def test_password_check_is_constant_time_over_lengths():
    users = {"alice": "a-long-password"}
    assert auth.check_password(users, "alice", "a-long-password")
    for wrong in ("", "a", "a-long-passwor", "a-long-password-and-more", "A-long-password"):
        assert not auth.check_password(users, "alice", wrong)
    assert not auth.check_password(users, "mallory", "a-long-password")


# -- the real server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("ui_security")
    env = {"LITEVLM_UI__AUTH": "true", "LITEVLM_UI__USERS": '{"alice": "a-long-password"}'}
    with UIServer(data, env=env) as s:
        yield s


def _login(server, user: str, password: str, origin: str | None = None) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    return httpx.post(
        server.url + "/login",
        data={"username": user, "password": password},
        headers=headers,
        timeout=30,
    )


def test_server_refuses_foreign_origins_for_requests_and_sockets(server):
    evil = "https://evil.example"
    assert _login(server, "alice", "a-long-password", origin=evil).status_code == 403
    socket = server.url + "/ws/socket.io/?EIO=4&transport=polling"
    assert httpx.get(socket, headers={"Origin": evil}, timeout=30).status_code == 403
    assert httpx.get(socket, headers={"Origin": server.url}, timeout=30).status_code != 403
    r = httpx.post(server.url + "/auth/header", headers={"Origin": evil}, timeout=30)
    assert r.status_code == 403
    # Same origin, and clients that send no Origin (curl, scripts), are served.
    good = _login(server, "alice", "a-long-password", origin=server.url)
    assert good.status_code == 200 and "access_token" in good.cookies
    assert httpx.get(server.url + "/health", timeout=30).status_code == 200


def test_server_throttles_wrong_passwords(server):
    codes = [_login(server, "alice ", f"guess{i}").status_code for i in range(5)]
    assert all(c == 401 for c in codes), codes
    locked = _login(server, "alice", "a-long-password")  # even the right one, while locked
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert "too many failed logins" in locked.text


def test_docker_compose_keeps_weaviate_local_and_behind_a_key():
    import yaml

    weaviate = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["weaviate"]
    assert all(p.startswith("127.0.0.1:") for p in weaviate["ports"])
    env = weaviate["environment"]
    assert env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
    assert env["AUTHENTICATION_APIKEY_ENABLED"] == "true"
    assert env["AUTHENTICATION_APIKEY_ALLOWED_KEYS"].startswith("${WEAVIATE_API_KEY:?")
