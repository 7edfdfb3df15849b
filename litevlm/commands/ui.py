"""``litevlm chat`` (the browser UI) and ``litevlm feedback export``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from litevlm.commands.common import ConfigOption, settings

feedback_app = typer.Typer(help="Feedback given in the chat UI.", no_args_is_help=True)


def chat(
    host: str = typer.Option(None, help="Address to listen on (default [ui] host, 127.0.0.1)"),
    port: int = typer.Option(None, help="Port (default [ui] port, 8000)"),
    allow_anonymous: bool = typer.Option(
        False,
        "--allow-anonymous",
        help="serve beyond loopback without a login: every visitor reads every thread",
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Start the chat UI in the browser: upload images, ask, follow up, give feedback.

    Research use only, not a medical device.
    """
    s = settings(config)
    host = host or s.ui.host
    port = port or s.ui.port
    if config is not None:
        # The app loads its settings itself; it must read the same file.
        os.environ["LITEVLM_CONFIG"] = str(Path(config).expanduser().resolve())
    from ui.security import check_exposure, is_loopback

    check_exposure(host, s.ui.auth, allow_anonymous)  # one line and exit 2 when unsafe
    if not s.ui.auth and not is_loopback(host):
        typer.secho(
            f"warning: --allow-anonymous: anyone who can reach {host} reads every thread",
            fg=typer.colors.YELLOW,
            err=True,
        )
    from ui.launch import serve

    typer.echo(f"litevlm chat on http://{host}:{port} (data in {s.data_dir / 'ui'})", err=True)
    serve(s, host, port, allow_anonymous=allow_anonymous)


@feedback_app.command("export")
def export(
    out: Path | None = typer.Option(None, "--out", "-o", help="CSV file (default: stdout)"),
    config: Path | None = ConfigOption,
) -> None:
    """Write the UI's feedback as CSV: one row per rated answer, with the models that made it.

    Columns: thread_id, message_id, user, value (1 up, 0 down), comment, vision_model, adapter,
    chat_model, created_at.
    """
    s = settings(config)
    # Importing chainlit writes a .chainlit folder into its app root: keep it out of the cwd.
    root = s.data_dir / "ui" / "app"
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CHAINLIT_APP_ROOT", str(root))
    from ui.data_layer import database_url
    from ui.feedback import export_feedback

    n = export_feedback(database_url(s), out)
    if out is not None:
        typer.echo(f"{n} feedback rows -> {out}", err=True)


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
    app.add_typer(feedback_app, name="feedback")
