"""The project's own exception types (they live in the lowest package, so every layer can raise them).

Every error a user can cause (a bad file, a bad override, a bad request) is raised as a
:class:`TandemError` subclass whose message names *what* was wrong and *where*.
Command-line entry points catch :class:`TandemError`, print the message and exit non-zero.
"""

from __future__ import annotations

from pathlib import Path


class TandemError(Exception):
    """Base class of every error a user of tandem can cause."""


class ConfigError(TandemError):
    """An invalid configuration value or override."""


class DataError(TandemError):
    """Malformed, missing or inconsistent data.

    Parameters
    ----------
    message:
        What was wrong and what was expected.
    path:
        The file (or directory) being read, if any.
    line:
        1-based line number in ``path``, if known.
    column:
        Column name or header field, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class EncoderError(TandemError):
    """A model or checkpoint that cannot be loaded, or input an encoder cannot embed."""
