"""The exceptions lstm-inspect raises, and its exit codes.

Every error message is a single line that names what is wrong: the file, the
layer, or the row and column of the input.  The CLI turns these into exit
status 2 in one place (``cli.main``); nothing here imports Click.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes, documented in the README and in ``--help``."""

    OK = 0
    MISMATCH = 1  # `verify` found a difference above the tolerance
    ERROR = 2  # usage errors, unreadable files, bad input data
    INTERNAL = 3  # a bug: one line, and the traceback with --debug
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); SIGTERM and SIGHUP end a run with 143 and 129


SIGNAL_STATUS_BASE = 128  # a run stopped by a signal exits with 128 + the signal's number, as a shell reports it


class LstmInspectError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    def __init__(self, message: str) -> None:
        # Keep messages on one line whatever the caller passed in.
        super().__init__(" ".join(str(message).split()))


class ModelFileError(LstmInspectError):
    """The model file is missing, unreadable, corrupt or refused."""


class UnsupportedLayer(LstmInspectError):
    """A layer cannot be replayed or labelled.

    ``problem`` is the message without its way forward; ``resume_from`` names the layer whose
    input ``--from`` can feed to replay past this one (None when there is none).
    """

    def __init__(self, message: str, *, problem: str | None = None, resume_from: str | None = None) -> None:
        super().__init__(message)
        self.problem = problem if problem is not None else message
        self.resume_from = resume_from


class InputDataError(LstmInspectError):
    """The input sequences are malformed (names the row and column)."""


class UsageProblem(LstmInspectError):
    """Options that do not fit the model or each other (unknown --layer, ...)."""


class PipeClosed(Exception):
    """The reader of stdout went away (``| head``): the run stops quietly with status 0.

    Writers raise it instead of BrokenPipeError, which Click would turn into
    exit status 1.
    """


class Interrupted(BaseException):
    """A signal (Ctrl-C, SIGTERM, SIGHUP) stopped the run.

    A ``BaseException``, as ``KeyboardInterrupt`` is, so that no ``except
    Exception`` swallows it.  ``discarded`` collects the ``-o`` files whose
    temporary output was removed on the way out; the CLI exits with 128 +
    ``signum``, the status a shell reports for a process the signal ended.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.discarded: list[str] = []
