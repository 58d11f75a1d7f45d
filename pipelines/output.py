"""What the command line writes to a terminal: text that cannot drive the terminal, and logs without passwords.

A corpus is data from anywhere: an id, a title or a passage can carry ``ESC [2J`` (clear the screen), colour
codes, OSC sequences (set the window title, write the clipboard, make links) or bidirectional overrides that
reorder what the reader sees. :func:`terminal_safe` shows each such character as a visible escape (``\\x1b``)
instead of sending it. ``--json`` output needs none of this: JSON escapes control characters itself.

Credentials are handled by :func:`indexers.credentials.redact`; :class:`RedactingFormatter` applies it to
every log line (and traceback) the CLI writes.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import TextIO

from indexers.credentials import redact

#: C0 controls, DEL, C1 controls, and the Unicode format characters that reorder or hide text
#: (bidirectional embeddings, overrides and isolates; zero-width marks stay: they only join or split).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_KEEP_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: object, *, keep_newlines: bool = False) -> str:
    r"""``text`` with every character that could control a terminal shown as a visible escape.

    Args:
        text: anything; it is turned into a string first.
        keep_newlines: keep ``\n`` and ``\t`` (multi-line messages); otherwise they are escaped too, so that
            one field stays on one line and cannot forge the lines after it.

    Example:
        >>> terminal_safe("doc\x1b]0;owned\x07 1\n")
        'doc\\x1b]0;owned\\x07 1\\x0a'
        >>> terminal_safe("line 1\nline 2", keep_newlines=True)
        'line 1\nline 2'
    """
    pattern = _UNSAFE_KEEP_LINES if keep_newlines else _UNSAFE
    return pattern.sub(_visible, str(text))


def error_line(error: BaseException | str) -> str:
    """``error: …`` for stderr: no password, no terminal control."""
    return f"error: {terminal_safe(redact(error), keep_newlines=True)}"


class RedactingFormatter(logging.Formatter):
    """A log formatter whose lines (tracebacks included) carry no password and no terminal control."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal_safe(redact(super().format(record)), keep_newlines=True)


def use_redacting_formatter(logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (default: the root logger) a :class:`RedactingFormatter`, same format."""
    for handler in (logger or logging.getLogger()).handlers:
        fmt = handler.formatter._fmt if handler.formatter is not None else None  # noqa: SLF001
        handler.setFormatter(RedactingFormatter(fmt))


def print_traceback(error: BaseException, stream: TextIO) -> None:
    """An unexpected error's traceback, as Python would print it, with passwords masked."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    stream.write(terminal_safe(redact(text), keep_newlines=True))
