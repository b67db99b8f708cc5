"""Write column blocks as CSV, JSON, NDJSON or Parquet, to stdout or atomically to a file.

* The default format is a Rich table when stdout is a terminal and CSV when
  it is piped or redirected (``resolve_format``, which asks the
  :class:`~lstm_inspect.terminal.Terminal`); with ``-o FILE`` the file's
  extension decides (``.json``, ``.ndjson``/``.jsonl``, ``.parquet``,
  ``.txt`` a table, anything else CSV).
* ``write_output`` writes a command's :class:`~lstm_inspect.outputs.Output`:
  its terminal view (``--format table``), or its blocks in a data format.
* ``open_output`` writes ``-o FILE`` to a temporary file in the same folder
  and renames it over the target only when the command succeeds, so a failed
  run never leaves a partial file nor replaces a good one.
* Blocks are written as they arrive, so memory stays flat however many rows.
  Text and Parquet are made by polars' writers (shortest round-trip floats,
  formatted in polars' own threads while the next block is computed); an
  output of fewer than ``SMALL_OUTPUT_ROWS`` rows is formatted by
  ``smalltext`` instead, to the same bytes, without importing polars.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import numpy as np

from . import smalltext
from .columns import Block, coalesce
from .errors import Interrupted, PipeClosed, UsageProblem

if TYPE_CHECKING:
    from .outputs import FileOutput, FolderOutput, Output
    from .terminal import Terminal

FORMATS = ("table", "csv", "json", "ndjson", "parquet")
_EXTENSIONS = {".csv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson", ".parquet": "parquet", ".txt": "table"}


def resolve_format(requested: str | None, output: str | None, terminal: Terminal) -> str:
    """The output format: as requested, else by the -o file's extension, else a table on a terminal
    stdout and CSV when stdout is piped or redirected."""
    if requested:
        return requested
    if output and output != "-":
        return _EXTENSIONS.get(os.path.splitext(output)[1].lower(), "csv")
    return "table" if terminal.stdout_is_terminal else "csv"


def streams_to_stdout(requested: str | None, output: str | None, terminal: Terminal) -> bool:
    """Whether the data is written to stdout as it is made (a data format, no -o FILE): a progress bar
    would then share the screen with it when stdout is a terminal."""
    return output in (None, "-") and resolve_format(requested, output, terminal) != "table"


def write_output(output: Output | FolderOutput, requested: str | None, path: str | None, terminal: Terminal) -> None:
    """Write a command's output: the terminal view for ``table``, else its blocks; to stdout, or to
    ``path`` atomically (never over one of ``output.sources``).  A closed pipe raises PipeClosed.
    A :class:`FolderOutput` is written into the folder ``path``, and the files it wrote are named."""
    from .outputs import FolderOutput

    if isinstance(output, FolderOutput):
        terminal.say(output.write(path))
        return
    fmt = resolve_format(requested, path, terminal)
    if fmt == "parquet":
        check_parquet()
        refuse_binary_on_terminal(path, terminal, "--format parquet writes binary data")
    try:
        with open_output(path, protect=output.sources) as stream:
            if fmt == "table":
                _draw(output, stream if path not in (None, "-") else None, terminal)
            else:
                write_blocks(output.blocks, output.columns, fmt, stream)
    except BrokenPipeError:
        raise PipeClosed() from None


def write_file_output(output: FileOutput, path: str | None, terminal: Terminal) -> None:
    """Write a picture or exported weights to stdout or ``path`` (atomically); binary data is refused
    on a terminal stdout."""
    if output.binary:
        refuse_binary_on_terminal(path, terminal, "this writes binary data")
    try:
        for companion, write in output.companions:
            with open_output(companion, protect=output.sources) as stream:
                write(stream)
        with open_output(path, protect=output.sources) as stream:
            output.write(stream)
    except BrokenPipeError:
        raise PipeClosed() from None
    if output.summary is not None:
        terminal.say(f"wrote {path} ({output.summary})")


def refuse_binary_on_terminal(path: str | None, terminal: Terminal, what: str) -> None:
    """A UsageProblem when binary data would go to a terminal stdout."""
    if path in (None, "-") and terminal.stdout_is_terminal:
        raise UsageProblem(f"{what}: give -o FILE or redirect stdout")


def _draw(output: Output, stream: BinaryIO | None, terminal: Terminal) -> None:
    """The terminal view, on stdout (the terminal's console) or into a file (plain text)."""
    if stream is None:
        output.view(terminal.console())
        return
    import io

    text = io.TextIOWrapper(stream, encoding="utf-8", write_through=True)
    try:
        output.view(terminal.console(text))
    finally:
        text.detach()


def check_parquet() -> None:
    """Parquet is written by polars, a dependency of lstm-inspect: refuse early if it is missing."""
    try:
        import polars  # noqa: F401
    except ImportError:
        raise UsageProblem("--format parquet needs polars: pip install polars") from None


@contextlib.contextmanager
def open_output(path: str | None, protect: Sequence[str] = ()) -> Iterator[BinaryIO]:
    """A binary stream for the command's data: stdout, or ``path`` written atomically.

    ``protect`` lists files the output must not overwrite (the model and input).
    """
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = os.path.abspath(path)
    for other in protect:
        if other and other != "-" and os.path.exists(other) and os.path.exists(target) and os.path.samefile(other, target):
            raise UsageProblem(f"refusing to overwrite {path}: it is an input of this command")
    folder = os.path.dirname(target) or "."
    if not os.path.isdir(folder):
        raise UsageProblem(f"cannot write {path}: folder {folder} does not exist")
    if os.path.isdir(target):
        raise UsageProblem(f"cannot write {path}: it is a directory")
    try:
        fd, temp = tempfile.mkstemp(prefix=".lstm-inspect-", suffix=".part", dir=folder)
    except OSError as exc:
        raise UsageProblem(f"cannot write {path}: {exc.strerror or exc}") from None
    ok = False
    try:
        with os.fdopen(fd, "wb") as handle:
            try:
                yield handle
            except (Interrupted, KeyboardInterrupt) as stopped:  # removed below; the CLI names the file
                stopped.discarded = [*getattr(stopped, "discarded", []), path]  # type: ignore[union-attr]
                raise
        if os.path.exists(target):
            try:
                os.chmod(temp, os.stat(target).st_mode & 0o777)
            except OSError:
                pass
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, target)
        ok = True
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(temp)


# Below this many rows an output is formatted by ``smalltext`` rather than polars.  Measured on a 2-core
# machine: importing polars costs 0.1-0.25 s of CPU (more than a ten-row `trace` takes in all); smalltext
# spends 4-7 µs on a trace row of ten values (1.5 µs on a `weights` row), so at most 0.04-0.07 s here.
SMALL_OUTPUT_ROWS = 10_000
# Frames waiting for the writer thread: one being formatted, one ready (about 5 MB each for a trace).
QUEUE_DEPTH = 2


def write_blocks(blocks: Iterable[Block], columns: Sequence[str], fmt: str, stream: BinaryIO) -> int:
    """Write blocks in ``fmt`` (csv, json, ndjson, parquet); return the number of rows.

    Small blocks are merged first (``columns.coalesce``).  The first
    ``SMALL_OUTPUT_ROWS`` rows are read before anything is written: a text
    output that ends within them is formatted by ``smalltext``; any longer one,
    and all Parquet, by polars in a second thread, so that the next block is
    computed (by whatever ``blocks`` runs) while the last one is formatted.
    """
    if fmt not in ("csv", "json", "ndjson", "parquet"):
        raise UsageProblem(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    merged = iter(coalesce(blocks))
    head: list[Block] = []
    rows = 0
    for block in merged:
        if fmt == "csv":
            _check_columns(block, columns)
        head.append(block)
        rows += block.rows
        if rows >= SMALL_OUTPUT_ROWS:
            break
    else:
        if fmt != "parquet":
            return _write_small(head, columns, fmt, stream)
    return _write_large(itertools.chain(head, merged), columns, fmt, stream)


def json_numbers(values: np.ndarray) -> list[bytes]:
    """Float values as JSON numbers, in the text format of every output; NaN and infinities as ``null``."""
    flat = np.asarray(values).reshape(-1)
    if flat.size < SMALL_OUTPUT_ROWS:
        return [cell.encode() for cell in smalltext.column_cells(flat, flat.size, json_style=True)]
    import polars as pl

    text = pl.DataFrame([pl.Series("v", flat, nan_to_null=True)]).write_csv(include_header=False)
    return [cell if cell not in (b"", b"inf", b"-inf") else b"null" for cell in text.encode().split(b"\n")[:-1]]


def _check_columns(block: Block, columns: Sequence[str]) -> None:
    if list(block.columns) != list(columns):
        raise AssertionError(f"block columns {block.columns} differ from the header {list(columns)}")


def _write_small(blocks: list[Block], columns: Sequence[str], fmt: str, stream: BinaryIO) -> int:
    rows = 0
    if fmt == "csv":
        stream.write(smalltext.csv_header(columns))
        for block in blocks:
            stream.write(smalltext.csv_rows(block.data, block.rows))
            rows += block.rows
        return rows
    array = smalltext.JsonArray(stream) if fmt == "json" else None
    if array is not None:
        array.start()
    for block in blocks:
        text = smalltext.ndjson_rows(block.columns, block.data, block.rows)
        if array is not None:
            array.write(text)
        else:
            stream.write(text)
        rows += block.rows
    if array is not None:
        array.end()
    return rows


# ------------------------------------------------------------------ polars


def _write_large(blocks: Iterator[Block], columns: Sequence[str], fmt: str, stream: BinaryIO) -> int:
    """Blocks -> polars frames in this thread; frames -> ``stream`` in the writer thread."""
    if fmt == "parquet":
        def consume(frames: Iterator) -> None:
            _write_parquet(frames, columns, stream)
    else:
        def consume(frames: Iterator) -> None:
            _write_text(frames, fmt, stream)
    rows = 0
    repeated: dict[tuple, Any] = {}  # the constant columns, made once (most blocks have the same length)
    with _WriterThread(consume) as writer:
        for block in blocks:
            if fmt == "csv":
                _check_columns(block, columns)
            writer.put(_frame(block, text=fmt != "parquet", repeated=repeated))
            rows += block.rows
    return rows


def _write_text(frames: Iterator, fmt: str, stream: BinaryIO) -> None:
    """Format each frame with polars (in its own threads, without the GIL) straight into ``stream``;
    JSON goes through a buffer, to join the objects into one array."""
    import io

    target = _RaisingWriter(stream)
    array = smalltext.JsonArray(stream) if fmt == "json" else None
    buffer = io.BytesIO()  # reused: only the first frames make it grow
    if array is not None:
        array.start()
    first = True
    for frame in frames:
        if fmt == "csv":
            target.call(lambda frame=frame, header=first: frame.write_csv(target, include_header=header))
        elif array is None:
            target.call(lambda frame=frame: frame.write_ndjson(target))
        else:
            buffer.seek(0)
            frame.write_ndjson(buffer)
            with buffer.getbuffer() as view:
                array.write(view[: buffer.tell()])
        first = False
    if array is not None:
        array.end()


def _write_parquet(frames: Iterator, columns: Sequence[str], stream: BinaryIO) -> None:
    """One Parquet file, a row group per frame or so, streamed by polars' engine from ``frames``."""
    import polars as pl
    from polars.io.plugins import register_io_source

    target = _RaisingWriter(stream)
    first = next(frames, None)
    if first is None:
        empty = pl.DataFrame([pl.Series(name, [], dtype=pl.String) for name in columns])
        target.call(lambda: empty.write_parquet(target))
        return
    schema = first.schema

    def source(with_columns, predicate, n_rows, batch_size) -> Iterator:
        for frame in itertools.chain([first], frames):
            yield frame if frame.schema == schema else frame.cast(dict(schema))

    lazy = register_io_source(source, schema=schema)
    target.call(lambda: lazy.sink_parquet(target))


class _RaisingWriter:
    """A file object for polars: the stream's own exception (BrokenPipeError, a full disk) is raised
    as itself, not as the generic OSError polars turns it into."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.error: BaseException | None = None

    def write(self, data) -> int:
        try:
            return self.stream.write(data)
        except BaseException as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.stream.flush()

    def call(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except BaseException:
            if self.error is not None:
                raise self.error from None
            raise


_END = object()


class _WriterThread:
    """Runs ``consume(frames)`` in a second thread, fed by ``put`` with at most ``QUEUE_DEPTH`` waiting.

    An error in the writer (a closed pipe, a full disk) is raised by the next
    ``put`` and at the end; an error in the caller stops the writer after the
    frame it is on, and is not masked.
    """

    def __init__(self, consume: Callable[[Iterator], None]) -> None:
        import queue

        self._queue: queue.Queue = queue.Queue(QUEUE_DEPTH)
        self._full = queue.Full
        self._error: BaseException | None = None
        self._cancel = False
        self._thread = threading.Thread(target=self._run, args=(consume,), name="lstm-inspect-writer", daemon=True)

    def __enter__(self) -> _WriterThread:  # noqa: PYI034 (a private class, never subclassed)
        self._thread.start()
        return self

    def put(self, frame) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(frame, timeout=0.05)
                return
            except self._full:
                continue

    def _frames(self) -> Iterator:
        while True:
            item = self._queue.get()
            if item is _END or self._cancel:
                return
            yield item

    def _run(self, consume: Callable[[Iterator], None]) -> None:
        try:
            consume(self._frames())
        except BaseException as exc:
            self._error = exc

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc_type is not None:
            self._cancel = True
        while self._thread.is_alive():
            try:
                self._queue.put(_END, timeout=0.05)
                break
            except self._full:
                continue
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error
        return False


def _frame(block: Block, text: bool, repeated: dict[tuple, Any] | None = None):
    """A block as a polars DataFrame; for text, NaN becomes null (an empty CSV cell, JSON null).
    ``repeated`` keeps the constant columns made so far, to be shared by the next blocks."""
    import polars as pl

    rows = block.rows
    cache = {} if repeated is None else repeated
    return pl.DataFrame([_series(name, column, rows, text, cache) for name, column in zip(block.columns, block.data)])


def _series(name: str, column, rows: int, text: bool, repeated: dict[tuple, Any]):
    import polars as pl

    if smalltext.is_scalar(column):
        value = column[()] if isinstance(column, np.ndarray) else column
        key = (name, type(value), repr(value), rows, text)  # repr: -0.0 is not 0.0 here
        series = repeated.get(key)
        if series is None:
            series = _scalar_series(name, value, rows)
            series = series.fill_nan(None) if text and series.dtype.is_float() else series
            if len(repeated) > 64:
                repeated.clear()
            repeated[key] = series
        return series
    array = column
    kind = array.dtype.kind
    if kind == "b":
        array = array.astype(np.int8)  # NumPy bools are written as 0/1, as integers
    elif kind == "f" and array.dtype.itemsize != 4 and array.dtype.itemsize != 8:
        array = array.astype(np.float32 if array.dtype.itemsize < 4 else np.float64)
    elif kind not in "iuf":
        values = array.tolist()  # a masked value becomes None
        kind = smalltext.object_kind(values)
        if kind == "str":
            values = [None if v is None else str(v) for v in values]
        dtype = {"bool": pl.Boolean, "int": pl.Int64, "float": pl.Float64, "str": pl.String}[kind]
        series = pl.Series(name, values, dtype=dtype, strict=False)
        return series.fill_nan(None) if text and kind == "float" else series
    return pl.Series(name, array, nan_to_null=text)


def _scalar_series(name: str, value: Any, rows: int) -> Any:
    import polars as pl

    dtype: Any
    if value is None:
        value, dtype = None, pl.String
    elif isinstance(value, (bool, np.bool_, int, np.integer)):
        value = int(value)
        dtype = pl.Int64 if value < 2**63 else pl.UInt64
    elif isinstance(value, (np.float16, np.float32)):
        value, dtype = float(value), pl.Float32
    elif isinstance(value, (float, np.floating)):
        value, dtype = float(value), pl.Float64
    else:
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        dtype = pl.String
    # One value repeated, without a lazy query: polars' thread pool is busy formatting the last block.
    one = pl.Series(name, [value], dtype=dtype)
    return one.new_from_index(0, rows) if rows else one.clear()
