"""Progress of long work: the library says how far it is, whoever installed a handler shows it.

Reading a big input, the replay and the statistics report their progress
with :func:`track`.  Nothing is shown unless a handler was installed with
:func:`progress_to`: the command line installs Rich progress bars on stderr
when stderr is a terminal (``terminal.ProgressBars``); a program using the
API sees nothing, and pays one context-variable lookup per task.

    with track("replay", total=steps, unit="steps") as task:
        for block in blocks:
            ...
            task.advance(block.steps)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Protocol


class Task(Protocol):
    """One piece of work being tracked."""

    def advance(self, amount: int) -> None:
        """``amount`` more units are done."""

    def finish(self) -> None:
        """The work ended (done, failed or abandoned)."""


class ProgressHandler(Protocol):
    """Shows tasks: ``terminal.ProgressBars`` is the command line's."""

    def start(self, description: str, total: int | None, unit: str) -> Task:
        """A task of ``total`` units (None: not known in advance) begins."""
        ...


class _Silent:
    """The task of a run without a handler: does nothing."""

    def advance(self, amount: int) -> None:
        """Nothing to show."""

    def finish(self) -> None:
        """Nothing to close."""


_SILENT = _Silent()
_HANDLER: contextvars.ContextVar[ProgressHandler | None] = contextvars.ContextVar("lstm_inspect_progress", default=None)


@contextlib.contextmanager
def track(description: str, total: int | None, unit: str = "steps") -> Iterator[Task]:
    """A task for the current handler (a silent one without a handler), finished on leaving the block."""
    handler = _HANDLER.get()
    if handler is None:
        yield _SILENT
        return
    task = handler.start(description, total, unit)
    try:
        yield task
    finally:
        task.finish()


@contextlib.contextmanager
def progress_to(handler: ProgressHandler | None) -> Iterator[None]:
    """Within the block, show progress with ``handler`` (None: show nothing)."""
    token = _HANDLER.set(handler)
    try:
        yield
    finally:
        _HANDLER.reset(token)
