"""Who is using the UI.

With ``[ui] auth = true`` users log in with a password from ``[ui] users`` (or the environment,
``LITEVLM_UI__USERS='{"alice": "secret"}'``); threads belong to their user and nobody sees
another's. With auth off the app runs for one local researcher: every browser on the machine is
the same user ``local``, so that threads still persist and can be resumed from the sidebar.

Chainlit signs its session tokens with ``CHAINLIT_AUTH_SECRET``; when the environment has none a
random secret is created once in the data directory (mode 0600), so logins survive a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from litevlm.errors import ConfigError

LOCAL_USER = "local"
SECRET_ENV = "CHAINLIT_AUTH_SECRET"


def check_password(users: Mapping[str, SecretStr | str], username: str, password: str) -> bool:
    """True when ``username`` is configured and ``password`` matches (constant time)."""
    expected = users.get(username)
    if expected is None:
        # Compare anyway so that timing does not tell which usernames exist.
        hmac.compare_digest(_digest(password), _digest(secrets.token_hex(16)))
        return False
    value = expected.get_secret_value() if isinstance(expected, SecretStr) else expected
    # Digests have one length: the comparison time tells nothing about the password's length.
    return hmac.compare_digest(_digest(password), _digest(value))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def validate_users(auth: bool, users: Mapping[str, Any]) -> None:
    if auth and not users:
        raise ConfigError(
            "[ui] auth = true but [ui] users is empty: nobody could log in",
            'add users, e.g. LITEVLM_UI__USERS=\'{"alice": "a-long-password"}\'',
        )
    if LOCAL_USER in users:
        raise ConfigError(
            f"[ui] users: the name {LOCAL_USER!r} is reserved for the no-auth mode",
            "pick another username",
        )


def ensure_secret(data_dir: Path) -> str:
    """The JWT secret from the environment, or one kept in ``<data dir>/ui/auth_secret``."""
    if env := os.environ.get(SECRET_ENV):
        return env
    path = data_dir / "ui" / "auth_secret"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret
