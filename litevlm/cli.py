"""The ``litevlm`` command line. Each area registers its commands from ``litevlm.commands``.

Only typer and the standard library are imported here: heavy libraries (torch, transformers,
chainlit, lancedb) are imported inside the commands so that ``litevlm --help`` is instant.
"""

from __future__ import annotations

import sys

import typer

from litevlm.commands import (
    agent,
    evaluate,
    finetune,
    literature,
    measure,
    retrieval,
    system,
    ui,
    vision,
)

app = typer.Typer(
    name="litevlm",
    help="Grounded vision-language assistant for medical and life-science images. "
    "Research use only, not a medical device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Grounded vision-language assistant for medical and life-science images.

    Research use only, not a medical device.
    """


for module in (system, vision, measure, literature, retrieval, agent, ui, finetune, evaluate):
    module.register(app)


def main() -> None:
    """Entry point: typed errors become one clear line and a non-zero exit, no traceback."""
    import logging

    from litevlm.errors import LiteVLMError

    # bitsandbytes warns on every import that it cannot fetch an optional CPU kernel from the
    # Hub; the built-in kernel is used instead, so the line is noise in a command's output.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        # Without standalone mode click returns typer.Exit's code instead of exiting with it.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except LiteVLMError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(1)
    except OSError as e:
        if not e.filename:
            raise
        # A path the user gave that cannot be read or written: one line, not a traceback.
        typer.secho(f"error: {e.filename}: {e.strerror or e}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except Exception as e:
        # Usage errors from typer's bundled click: show them the way click does.
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
