"""The terminal a command runs in: one object that answers every question about the screen.

Whether stdout and stderr are terminals, how wide the screen is, how many
colours it shows, whether the user asked for no colour (``NO_COLOR``) or for
silence (``--quiet``).  The command line makes one :class:`Terminal` per run
(:meth:`Terminal.detect`) and passes it down: writers pick the default format
from it, the views draw on the consoles it makes, and progress bars, notes and
warnings go through it.  Tests construct one with the answers they want, as
httpie's tests construct its ``Environment``.

This is the only module that asks a stream whether it is a terminal.  Rich is
imported inside the methods that draw, so ``--help`` stays fast.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from .progress import Task

# Width of a table written to a file or a pipe (``--format table``), unless COLUMNS says otherwise.
FILE_WIDTH = 160
# Progress appears only for work that has already taken this long (seconds): short runs stay quiet.
PROGRESS_DELAY = 1.0
COLOR_SYSTEMS = ("standard", "256", "truecolor")


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is connected to a terminal (False for anything without a usable ``isatty``)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def detect_color_system(environ: Mapping[str, str], terminal: bool) -> str | None:
    """The colours a terminal shows, from its environment: ``truecolor``, ``256``, ``standard`` or None.

    None when the stream is not a terminal, when ``NO_COLOR`` is set to
    anything (https://no-color.org) or when ``TERM`` is ``dumb``; truecolor
    when ``COLORTERM`` says so; 256 when ``TERM`` ends in ``256color``;
    otherwise the 16 standard colours.  Rich reads the same variables.
    """
    if not terminal or environ.get("NO_COLOR"):
        return None
    term = environ.get("TERM", "").lower()
    if term in ("dumb", "unknown"):
        return None
    if environ.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return "truecolor"
    if term.endswith(("256color", "256")):
        return "256"
    return "standard"


def _columns(environ: Mapping[str, str]) -> int | None:
    value = environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _terminal_width(*streams: Any) -> int | None:
    for stream in streams:
        try:
            return os.get_terminal_size(stream.fileno()).columns or None
        except (AttributeError, ValueError, OSError):
            continue
    return None


@dataclass(frozen=True)
class Terminal:
    """Where the output goes and what the screen can show.

    ``width`` is the screen's width in columns (``COLUMNS`` overrides it, as
    the shell and Python's ``shutil`` have it), or None when neither stream is
    a terminal and ``COLUMNS`` is not set.  ``color_system`` is that of
    stdout: ``truecolor``, ``256``, ``standard`` (16 colours) or None (no
    colour).  ``quiet`` silences notes and progress, never errors or warnings.
    """

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdout_is_terminal: bool = False
    stderr_is_terminal: bool = False
    width: int | None = None
    color_system: str | None = None
    quiet: bool = False
    file_width: int = FILE_WIDTH
    # The progress bars on screen, if any: messages are printed above them, not through them.
    live: list[ProgressBars] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def detect(cls, *, quiet: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None,
               environ: Mapping[str, str] | None = None) -> Terminal:
        """The terminal of this process: ``sys.stdout``/``sys.stderr`` (or the streams given) and ``os.environ``."""
        stdout = stdout if stdout is not None else sys.stdout
        stderr = stderr if stderr is not None else sys.stderr
        environ = os.environ if environ is None else environ
        out_tty, err_tty = is_terminal(stdout), is_terminal(stderr)
        columns = _columns(environ)
        width = columns or _terminal_width(*([stdout] if out_tty else []), *([stderr] if err_tty else []))
        return cls(stdout=stdout, stderr=stderr, stdout_is_terminal=out_tty, stderr_is_terminal=err_tty,
                   width=width, color_system=detect_color_system(environ, out_tty), quiet=quiet,
                   file_width=columns or FILE_WIDTH)

    # -- consoles -----------------------------------------------------------------------------

    def console(self, stream: TextIO | None = None) -> Console:
        """A Rich console for a terminal view.

        Without ``stream``, on stdout: the screen's width and colours when stdout
        is a terminal.  A ``stream`` that is not stdout (``-o FILE --format
        table``), or stdout sent to a pipe, gets plain text ``file_width``
        columns wide: the views then show numbers, never colour alone.
        """
        on_screen = stream is None and self.stdout_is_terminal
        target = self.stdout if stream is None else stream
        if on_screen:
            return make_console(target, width=self.width or 80, color_system=self.color_system, terminal=True)
        return make_console(target, width=self.file_width, color_system=None, terminal=False)

    def error_console(self) -> Console:
        """A Rich console on stderr (progress bars): the screen's width, colours as detected for stdout."""
        return make_console(self.stderr, width=self.width or 80, color_system=self.color_system if self.stderr_is_terminal else None,
                            terminal=self.stderr_is_terminal)

    # -- messages -----------------------------------------------------------------------------

    def note(self, message: str) -> None:
        """A note on stderr (``lstm-inspect: note: ...``), unless ``quiet``."""
        if not self.quiet:
            self._message(f"lstm-inspect: note: {message}")

    def say(self, message: str) -> None:
        """What a command did (``lstm-inspect: wrote report.html (1.2 MB)``) on stderr, unless ``quiet``."""
        if not self.quiet:
            self._message(f"lstm-inspect: {message}")

    def warn(self, message: str) -> None:
        """A warning on stderr (``lstm-inspect: warning: ...``), also when ``quiet``."""
        self._message(f"lstm-inspect: warning: {message}")

    def error(self, message: str) -> None:
        """An error line on stderr, as it is given (the caller adds ``lstm-inspect: error:``)."""
        self._message(message)

    def _message(self, line: str) -> None:
        try:
            if self.live:
                self.live[-1].print(line)
                return
            self.stderr.write(line + "\n")
            self.stderr.flush()
        except (OSError, ValueError):  # stderr closed or gone (a hung-up terminal)
            pass

    # -- progress -----------------------------------------------------------------------------

    def shows_progress(self, streams_to_stdout: bool = False) -> bool:
        """Whether long work shows a progress bar: stderr is a terminal, not ``quiet``, and the
        data does not stream onto the same screen (text written to a terminal stdout as it is made)."""
        return self.stderr_is_terminal and not self.quiet and not (streams_to_stdout and self.stdout_is_terminal)

    def progress(self, streams_to_stdout: bool = False) -> ProgressBars | None:
        """A progress handler for :func:`lstm_inspect.progress.progress_to`, or None when none is shown."""
        return ProgressBars(self) if self.shows_progress(streams_to_stdout) else None


def make_console(stream: TextIO, *, width: int, color_system: str | None, terminal: bool) -> Console:
    """A Rich console on ``stream`` that never guesses: width, colours and terminal-ness as given.

    Markup and highlighting are off (the views build styled Text, so a layer
    named ``[x]`` prints as it is), and a closed pipe raises BrokenPipeError
    instead of Rich's own exit with status 1.
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console(file=stream, width=width, color_system=color_system,  # type: ignore[arg-type]
                    force_terminal=terminal, force_interactive=terminal, no_color=color_system is None,
                    highlight=False, markup=False, emoji=False, soft_wrap=False, legacy_windows=False)


class ProgressBars:
    """Rich progress bars on stderr for :mod:`lstm_inspect.progress`: shown only once a task has run
    for ``PROGRESS_DELAY`` seconds, and erased when the last task ends."""

    def __init__(self, terminal: Terminal, delay: float = PROGRESS_DELAY) -> None:
        self.terminal = terminal
        self.delay = delay
        self._bars: Any = None  # rich.progress.Progress, once shown
        self._open = 0

    def start(self, description: str, total: int | None, unit: str) -> Task:
        """A new task: ``total`` units to do (None: unknown)."""
        self._open += 1
        return _BarTask(self, description, total, unit)

    def _show(self, task: _BarTask) -> Any:
        if self._bars is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bars = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]}"),
                TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                console=self.terminal.error_console(), transient=True, refresh_per_second=5,
                redirect_stdout=False, redirect_stderr=False,
            )
            self._bars.start()
            self.terminal.live.append(self)
        return self._bars.add_task(task.description, total=task.total, completed=task.done, **task.fields())

    def print(self, line: str) -> None:
        """A message line, printed above the bars."""
        from rich.text import Text

        self._bars.console.print(Text(line))

    def _finish(self) -> None:
        self._open -= 1
        if self._open <= 0 and self._bars is not None:
            self._bars.stop()
            self._bars = None
            if self in self.terminal.live:
                self.terminal.live.remove(self)


class _BarTask:
    """One task of :class:`ProgressBars`."""

    def __init__(self, bars: ProgressBars, description: str, total: int | None, unit: str) -> None:
        self.bars = bars
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        self.id: Any = None

    def advance(self, amount: int) -> None:
        """``amount`` more units done; the bar appears once the task has run for the delay."""
        self.done += amount
        elapsed = time.monotonic() - self.started
        if self.id is None:
            if elapsed < self.bars.delay or self.bars._bars is None and self.total is not None and self.done >= self.total:
                return
            self.id = self.bars._show(self)
        self.bars._bars.update(self.id, completed=self.done, **self.fields())

    def fields(self) -> dict[str, str]:
        """The bar's texts: units done (of the total) and the rate."""
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return {"done": _done_text(self.done, self.total, self.unit), "rate": f"{_count(rate, self.unit)}/s"}

    def finish(self) -> None:
        """The task is over (done or abandoned)."""
        if self.id is not None and self.bars._bars is not None:
            self.bars._bars.remove_task(self.id)
        self.bars._finish()


def _done_text(done: int, total: int | None, unit: str) -> str:
    """``1,234/10,000 steps``, ``12.5 MB of 100.0 MB``, or ``1,234 steps`` when the total is unknown."""
    if total is None:
        return _count(done, unit)
    if unit == "bytes":
        return f"{_count(done, unit)} of {_count(total, unit)}"
    return f"{done:,}/{_count(total, unit)}"


def _count(value: float, unit: str) -> str:
    """``1,234 steps`` or ``12.5 MB``."""
    if unit == "bytes":
        for size, name in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB")):
            if value >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    return f"{value:,.0f} {unit}"
