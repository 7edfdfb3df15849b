"""Typed errors. Each names the thing that failed and says what to do about it.

The CLI prints ``str(error)`` on one line and exits non-zero, no traceback.
"""

from __future__ import annotations

from pathlib import Path


def one_line(text: str) -> str:
    """Text from a damaged file (a DICOM UID, a TIFF tag) may hold newlines or control bytes:
    an error stays one printable line."""
    text = " ".join(str(text).split())
    return "".join(c if c.isprintable() else "?" for c in text)


class LiteVLMError(Exception):
    """Base class: ``message`` says what failed, ``hint`` what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        message = one_line(message)
        super().__init__(message)
        self.message = message
        self.hint = one_line(hint) if hint else hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(LiteVLMError):
    exit_code = 2


class ImageLoadError(LiteVLMError):
    """An image file could not be turned into a ``LoadedImage``."""

    def __init__(self, path: str | Path, cause: str, hint: str | None = None) -> None:
        self.path = Path(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}", hint)


class ModelLoadError(LiteVLMError):
    """A model, processor or adapter could not be loaded."""


class ServiceUnavailable(LiteVLMError):
    """A remote service (literature provider, vector store, chat model) did not answer."""


class MeasurementError(LiteVLMError):
    pass
