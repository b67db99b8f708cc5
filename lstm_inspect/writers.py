"""Write column blocks as CSV, JSON, NDJSON or Parquet, to stdout or atomically to a file.

* The default format is a Rich table when stdout is a terminal and CSV when
  it is piped or redirected (``resolve_format``); with ``-o FILE`` the
  file's extension decides (``.json``, ``.ndjson``/``.jsonl``,
  ``.parquet``, anything else CSV).
* ``open_output`` writes ``-o FILE`` to a temporary file in the same folder
  and renames it over the target only when the command succeeds, so a failed
  run never leaves a partial file nor replaces a good one.
* Blocks are written as they arrive, so memory stays flat however many rows.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

import numpy as np

from .errors import UsageProblem
from .frames import Block, coalesce
from .textfmt import BlockFormatter, RowStyle, csv_header

FORMATS = ("table", "csv", "json", "ndjson", "parquet")
_EXTENSIONS = {".csv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson", ".parquet": "parquet", ".txt": "table"}


def resolve_format(requested: str | None, output: str | None, stream=None) -> str:
    """The output format: as requested, else by the -o file's extension, else by the terminal."""
    if requested:
        return requested
    if output and output != "-":
        return _EXTENSIONS.get(os.path.splitext(output)[1].lower(), "csv")
    stream = stream if stream is not None else sys.stdout
    try:
        return "table" if stream.isatty() else "csv"
    except (AttributeError, ValueError):
        return "csv"


def check_parquet() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageProblem("--format parquet needs pyarrow: pip install 'lstm-inspect[parquet]'") from None


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
            yield handle
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


def write_blocks(blocks: Iterable[Block], columns: Sequence[str], fmt: str, stream: BinaryIO) -> int:
    """Write blocks in ``fmt`` (csv, json, ndjson, parquet); return the number of rows."""
    if fmt == "parquet":
        return _write_parquet(blocks, columns, stream)
    blocks = coalesce(blocks)
    rows = 0
    if fmt == "csv":
        stream.write(csv_header(columns))
        formatter = BlockFormatter(columns, RowStyle("csv"))
        for block in blocks:
            _check_columns(block, columns)
            formatter.write(stream, block.data)
            rows += block.rows
        return rows
    if fmt == "ndjson":
        formatter = BlockFormatter(columns, RowStyle("ndjson"))
        for block in blocks:
            formatter = _for_block(formatter, block)
            formatter.write(stream, block.data)
            rows += block.rows
        return rows
    if fmt == "json":
        # A streamed array: "[" then rows separated by ",\n", then "]".
        stream.write(b"[")
        formatter = BlockFormatter(columns, _JsonArrayStyle("json"))
        first = True
        for block in blocks:
            formatter = _for_block(formatter, block)
            for text in formatter.format(block.data):
                if first:
                    text = text[1:]  # drop the leading comma
                    first = False
                stream.write(text)
            rows += block.rows
        stream.write(b"\n]\n" if rows else b"]\n")
        return rows
    raise UsageProblem(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")


def _for_block(formatter: BlockFormatter, block: Block) -> BlockFormatter:
    """The formatter for a block's columns (JSON keys come from them)."""
    if list(block.columns) == formatter.columns:
        return formatter
    return BlockFormatter(block.columns, formatter.style)


class _JsonArrayStyle(RowStyle):
    def prefixes(self, columns):
        prefixes = super().prefixes(columns)
        prefixes[0] = b",\n" + prefixes[0]
        return prefixes

    @property
    def end(self) -> bytes:
        return b"}"


def _check_columns(block: Block, columns: Sequence[str]) -> None:
    if list(block.columns) != list(columns):
        raise AssertionError(f"block columns {block.columns} differ from the header {list(columns)}")


def _write_parquet(blocks: Iterable[Block], columns: Sequence[str], stream: BinaryIO) -> int:
    check_parquet()
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    rows = 0
    try:
        for block in blocks:
            arrays = []
            for column in block.data:
                arrays.append(_arrow_array(column, block.rows))
            table = pa.Table.from_arrays(arrays, names=list(block.columns))
            if writer is None:
                writer = pq.ParquetWriter(stream, table.schema)
            elif table.schema != writer.schema:
                table = table.cast(writer.schema)
            writer.write_table(table)
            rows += block.rows
        if writer is None:
            empty = pa.table({name: pa.array([], type=pa.string()) for name in columns})
            writer = pq.ParquetWriter(stream, empty.schema)
            writer.write_table(empty)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _arrow_array(column, rows: int):
    import pyarrow as pa

    if isinstance(column, np.ma.MaskedArray):
        return pa.array(column.filled(0), mask=np.ma.getmaskarray(column))
    if isinstance(column, np.ndarray) and column.ndim:
        if column.dtype == object:
            return pa.array([None if v is None else str(v) for v in column])
        return pa.array(column)
    if isinstance(column, (str, bytes)):
        return pa.array([column] * rows, type=pa.string())
    return pa.array(np.full(rows, column))
