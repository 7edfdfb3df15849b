"""Start the chat app: a runtime folder for Chainlit, then Chainlit's own server.

Chainlit reads its config, its first-screen Markdown and public files from an "app root" (the
working directory, or ``CHAINLIT_APP_ROOT``) and keeps uploads in ``<app root>/.files``. The
package's ``ui/`` folder may be read-only once installed, so the root is a folder in the data
directory (``<data dir>/ui/app``) refreshed from the package on every start.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from litevlm.config import Settings

UI_PACKAGE = Path(__file__).resolve().parent
APP_FILE = UI_PACKAGE / "app.py"


def prepare_app_root(settings: Settings) -> Path:
    """Copy config, Markdown and public files to ``<data dir>/ui/app``; return that folder."""
    root = settings.data_dir / "ui" / "app"
    (root / ".chainlit").mkdir(parents=True, exist_ok=True)
    config = (UI_PACKAGE / ".chainlit" / "config.toml").read_text()
    config = re.sub(
        r"(?m)^(\s*max_size_mb\s*=\s*)\d+", rf"\g<1>{settings.ui.max_upload_mb}", config
    )
    (root / ".chainlit" / "config.toml").write_text(config)
    shutil.copyfile(UI_PACKAGE / "chainlit.md", root / "chainlit.md")
    if (UI_PACKAGE / "public").is_dir():
        shutil.copytree(UI_PACKAGE / "public", root / "public", dirs_exist_ok=True)
    return root


def serve(settings: Settings, host: str, port: int, *, allow_anonymous: bool = False) -> None:
    """Run the app in this process until interrupted (Chainlit's server, uvicorn inside)."""
    from ui import auth, security

    auth.validate_users(settings.ui.auth, settings.ui.users)
    security.check_exposure(host, settings.ui.auth, allow_anonymous)
    root = prepare_app_root(settings)
    # Chainlit reads these at import time, so they are set before the first chainlit import.
    os.environ["CHAINLIT_APP_ROOT"] = str(root)
    os.environ["CHAINLIT_HOST"] = host
    os.environ["CHAINLIT_PORT"] = str(port)
    os.environ[auth.SECRET_ENV] = auth.ensure_secret(settings.data_dir)
    # The app module loads its own settings; hand it the same data directory.
    os.environ["LITEVLM_DATA_DIR"] = str(settings.data_dir)

    from chainlit.cli import run_chainlit
    from chainlit.config import config

    config.run.headless = True
    run_chainlit(str(APP_FILE))
