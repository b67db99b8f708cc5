"""Notes: one-line messages about a choice the library made on the user's behalf.

How a CSV was read (a detected header row or delimiter), how a stateful
model's input was cut into samples: things that are not errors, that the
user may want to override, and that must not be silent.  The library never
prints them.  It hands each one to the handler installed with
:func:`notes_to` (the command line prints them on stderr, and can silence
them); without a handler, a note is issued as a Python warning of category
:class:`Note`, so a program using the API sees it and can filter it like any
other warning.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterator

NoteHandler = Callable[[str], None]

_HANDLER: contextvars.ContextVar[NoteHandler | None] = contextvars.ContextVar("lstm_inspect_notes", default=None)


class Note(UserWarning):
    """Category of the warnings that carry lstm-inspect's notes when no handler is installed."""


def note(message: str) -> None:
    """Report ``message`` (one line) to the current handler, or as a :class:`Note` warning."""
    message = " ".join(str(message).split())
    handler = _HANDLER.get()
    if handler is None:
        warnings.warn(message, Note, stacklevel=3)
    else:
        handler(message)


@contextlib.contextmanager
def notes_to(handler: NoteHandler | None) -> Iterator[None]:
    """Within the block, send notes to ``handler`` (``lambda message: None`` drops them)."""
    token = _HANDLER.set(handler)
    try:
        yield
    finally:
        _HANDLER.reset(token)
