"""Input sequences: CSV (file or stdin), .npy and .npz -> a list of (id, array).

CSV rows are timesteps and columns are features.  The delimiter (comma, tab,
semicolon, pipe or whitespace) is detected from the first whole lines, and
the first row is a header only when one of its fields is text: a row of
numbers is always data (``header=True/False`` and ``delimiter`` override
both).  A detection a user may not expect (no header, another delimiter than
a comma, a header holding numbers) is reported as a note (``notes.py``).
``sequence_column`` splits the rows into several sequences, in the order
their ids first appear.  Every problem is reported as one line naming the
line number (1-based, as an editor shows it) and the column.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from .errors import InputDataError
from .notes import note
from .progress import Task, track

MAX_LINE_BYTES = 64 << 20  # one CSV line (in characters); anything longer is refused, not buffered forever


@dataclass(frozen=True)
class InputSequence:
    """One input sequence: its id and its (T, F) values."""

    id: object  # int, or the value of --sequence-column
    values: NDArray  # (T, F)


@dataclass(frozen=True)
class CsvOptions:
    """How to read a CSV input; None leaves each choice to detection."""

    header: bool | None = None  # None: detect
    columns: tuple[str, ...] | None = None  # names (or 1-based numbers) of the feature columns
    sequence_column: str | None = None
    delimiter: str | None = None  # None: detect (',', tab, ';', '|' or whitespace); WHITESPACE for runs of blanks


@dataclass(frozen=True)
class InputFiles:
    """A command's INPUT arguments and the options that say how to read and feed them.

    ``paths`` are files (``-`` for stdin), or ``NAME=PATH`` for a model with
    several inputs (``batching.name_inputs``); ``start`` is ``--from LAYER``;
    ``stateful`` None follows the model; ``initial_state`` is a file of
    initial states (``read_initial_state``).
    """

    paths: tuple[str, ...]
    csv: CsvOptions = CsvOptions()
    start: str | None = None
    stateful: bool | None = None
    sequence_length: int | None = None
    initial_state: str | None = None


def parse_delimiter(value: str | None) -> str | None:
    """A ``--delimiter`` value: one character, or ``tab``/``space``/``whitespace``; ValueError otherwise."""
    if value is None:
        return None
    value = {"\\t": "\t", "tab": "\t", "TAB": "\t", "space": " ", "whitespace": WHITESPACE}.get(value, value)
    if value == WHITESPACE:
        return value
    if len(value) != 1:
        raise ValueError("the delimiter must be one character (or 'tab', 'space', 'whitespace')")
    if value in "\r\n\"":
        raise ValueError("the delimiter cannot be a line break or the quote character")
    return value


def read_input(path: str, options: CsvOptions | None = None, *, dtype=np.float32, stdin: BinaryIO | None = None) -> list[InputSequence]:
    """Read input sequences from ``path`` (``-`` for standard input)."""
    options = options or CsvOptions()
    label = "stdin" if path == "-" else os.path.basename(path)
    if path != "-":
        if not os.path.exists(path):
            raise InputDataError(f"{path}: no such file")
        if os.path.isdir(path):
            raise InputDataError(f"{path}: is a directory")
        lower = path.lower()
        if lower.endswith((".npy", ".npz")):
            return _read_numpy(path, label, dtype)
        try:
            handle: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed in the finally below)
        except OSError as exc:
            raise InputDataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    else:
        handle = stdin if stdin is not None else sys.stdin.buffer
    try:
        head = handle.read(6)
        if head.startswith((b"\x93NUMPY", b"PK\x03\x04")):
            data = head + handle.read()
            return _read_numpy(io.BytesIO(data), label, dtype)
        size = os.path.getsize(path) if path != "-" and os.path.isfile(path) else None
        return _read_csv(_Prefixed(head, handle), label, options, dtype, size)
    finally:
        if path != "-":
            handle.close()


class _Prefixed(io.RawIOBase):
    """A binary stream with some already-read bytes put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# ------------------------------------------------------------------- numpy


def _read_numpy(source, label: str, dtype) -> list[InputSequence]:
    try:
        loaded = np.load(source, allow_pickle=False)  # pickles would run code: refused
    except ValueError as exc:
        raise InputDataError(f"{label}: cannot be read as a NumPy array ({exc})") from None
    except Exception as exc:
        raise InputDataError(f"{label}: not a valid .npy/.npz file ({type(exc).__name__})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if not keys:
                raise InputDataError(f"{label}: the .npz archive holds no arrays")
            key = "x" if "x" in keys else keys[0]
            try:
                array = loaded[key]
            except ValueError as exc:
                raise InputDataError(f"{label}: array '{key}' cannot be read ({exc})") from None
    else:
        array = loaded
    if array.dtype.kind not in "fiub":
        raise InputDataError(f"{label}: array of dtype {array.dtype}; expected numbers")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim == 2:
        arrays = [array]
    elif 3 <= array.ndim <= 6:  # (N, T, F); (N, T, *positions, C) for convolutional recurrent layers
        arrays = list(array)
    else:
        raise InputDataError(f"{label}: array of shape {array.shape}; expected (T, F) or (N, T, F)")
    if not arrays:
        raise InputDataError(f"{label}: array of shape {array.shape} holds no sequences")
    sequences = []
    for index, values in enumerate(arrays):
        if values.shape[0] == 0:
            raise InputDataError(f"{label}: sequence {index} has no timesteps")
        values = values.astype(dtype) if values.dtype.kind == "f" else values.astype(np.float64)
        _check_finite(values.reshape(values.shape[0], -1), label,
                      lambda row, col, index=index, shape=values.shape[1:]: f"sequence {index}, step {row}, {_where_in_step(shape, col)}")
        sequences.append(InputSequence(index, values))
    return sequences


def _where_in_step(shape: tuple[int, ...], flat: int) -> str:
    """Where value ``flat`` of a step of ``shape`` sits: ``feature 2``, or ``value [1, 0, 2]`` (positions, channel)."""
    if len(shape) == 1:
        return f"feature {flat}"
    return f"value [{', '.join(str(int(i)) for i in np.unravel_index(flat, shape))}]"


def _check_finite(values: NDArray, label: str, where) -> None:
    if values.dtype.kind != "f":
        return
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise InputDataError(f"{label}: {where(row, col)} is {values[row, col]}: inputs must be finite numbers")


# ------------------------------------------------------------------- CSV
#
# The CSV is decoded as UTF-8 (a byte-order mark is dropped; CR, LF and CRLF all end
# a line) and read in chunks of whole lines.  Each chunk goes first through NumPy's C
# parser (``np.loadtxt``); anything it refuses, and any value that is not a finite
# number, is read again line by line in Python, which finds the first problem and
# names its line and column.  So the common case is fast and every error is exact.

CHUNK_CHARS = 1 << 23  # characters read at once (whole lines are parsed together)
WHITESPACE = "whitespace"  # the --delimiter value for runs of spaces and tabs
DETECTED_DELIMITERS = (",", "\t", ";", "|")  # tried in this order, then whitespace
DETECTION_LINES = 5  # the first non-blank lines that decide the delimiter


def _is_number(cell: str) -> bool:
    """A decimal number as NumPy's parser reads it (Python's float() less '1_000' and non-ASCII digits)."""
    try:
        float(cell)
    except ValueError:
        return False
    return cell.isascii() and "_" not in cell


def delimiter_name(delimiter: str) -> str:
    """How notes and errors spell a delimiter: ',', ';', tab, whitespace."""
    return {"\t": "tab", WHITESPACE: "whitespace"}.get(delimiter, repr(delimiter))


@dataclass(frozen=True)
class CsvLayout:
    """What was decided about a CSV before its data rows are read."""

    delimiter: str  # one character, or WHITESPACE
    header: bool
    names: tuple[str, ...]  # the header's fields (stripped), or () without a header
    width: int  # fields per row
    first_line: int  # 1-based line number of the first row (header or data)
    detected_delimiter: bool  # decided by detection, not by --delimiter
    detected_header: bool  # decided by detection, not by --header/--no-header

    @property
    def labels(self) -> list[str]:
        """Column labels for messages and --columns: header names, else 1-based numbers."""
        if not self.header:
            return [str(k + 1) for k in range(self.width)]
        return [name if name else str(k + 1) for k, name in enumerate(self.names)]

    def note(self, label: str) -> str | None:
        """The one-line note for decisions a user may not expect; None for a plain comma CSV with a header."""
        odd_delimiter = self.detected_delimiter and self.delimiter != ","
        odd_header = self.detected_header and (not self.header or any(_is_number(n) for n in self.names))
        if not (odd_delimiter or odd_header):
            return None
        if self.header:
            shown = ", ".join(_clip(n, 20) for n in self.names[:8]) + (", …" if len(self.names) > 8 else "")
            about = f"header row ({shown})"
        else:
            about = f"no header row (line {self.first_line} is numbers; --header if it names the columns)"
        return f"reading {label}: {about}, delimiter {delimiter_name(self.delimiter)}"


def _split_fields(line: str, delimiter: str, label: str, number: int) -> list[str]:
    """The fields of one line (quotes as in CSV: "a,b" is one field, "" inside is a quote)."""
    if delimiter == WHITESPACE:
        return line.split()
    if '"' not in line:
        return line.split(delimiter)
    try:
        return next(csv.reader([line], delimiter=delimiter, quotechar='"', strict=True))
    except csv.Error as exc:
        detail = "unterminated quote (EOF inside string)" if "end of data" in str(exc) else str(exc)
        raise InputDataError(f"{label}: line {number}: {detail}") from None


def _detect_delimiter(lines: list[str]) -> str:
    """The delimiter that splits the first lines into the same number (> 1) of fields.

    Tried in order: comma, tab, semicolon, pipe, whitespace.  When none is
    consistent, the first one found in the first line (so that the error about
    a ragged row names it); a line with none of them is one column.
    """
    first = lines[0]
    for candidate in DETECTED_DELIMITERS + (WHITESPACE,):
        counts = set()
        for line in lines:
            try:
                counts.add(len(_split_fields(line, candidate, "", 0)))
            except InputDataError:
                counts.add(-1)
        if len(counts) == 1 and counts.pop() > 1:
            return candidate
    for candidate in DETECTED_DELIMITERS:
        if candidate in first:
            return candidate
    return ","


def _line_chunks(text: io.TextIOBase, label: str, task: Task | None = None) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines without their line end) for consecutive chunks of the text;
    ``task`` is told how many characters were read (about the bytes, for progress)."""
    carry = ""
    number = 1
    while True:
        block = text.read(CHUNK_CHARS)
        if task is not None:
            task.advance(len(block))
        if not block:
            if carry:
                yield number, [carry]
            return
        lines = (carry + block).split("\n")
        carry = lines.pop()
        if len(carry) > MAX_LINE_BYTES:
            raise InputDataError(f"{label}: line {number + len(lines)} is longer than {MAX_LINE_BYTES >> 20} MB")
        if lines:
            yield number, lines
            number += len(lines)


def _read_csv(stream: io.RawIOBase, label: str, options: CsvOptions, dtype: Any, size: int | None = None
              ) -> list[InputSequence]:
    """The sequences of a CSV stream (``size`` bytes, when known, for the progress bar)."""
    text = io.TextIOWrapper(io.BufferedReader(stream, buffer_size=1 << 20), encoding="utf-8-sig", newline=None)
    try:
        with track(f"reading {label}", total=size, unit="bytes") as task:
            return _parse_csv(_line_chunks(text, label, task), label, options, np.dtype(dtype))
    except UnicodeDecodeError:
        raise InputDataError(f"{label}: not UTF-8 text (is it a CSV file?)") from None
    finally:
        text.detach()


def _parse_csv(chunks: Iterator[tuple[int, list[str]]], label: str, options: CsvOptions, dtype: np.dtype) -> list[InputSequence]:
    # Skip leading blank lines; the first non-blank lines decide the delimiter and the header.
    for start, lines in chunks:
        first = next((k for k, line in enumerate(lines) if line.strip()), None)
        if first is not None:
            break
    else:
        raise InputDataError(f"{label}: the input is empty")
    layout = _layout(lines[first:], start + first, label, options)
    reader = _RowReader(layout, label, options, dtype)
    skip = first + (1 if layout.header else 0)
    reader.read(start + skip, lines[skip:])
    for start, lines in chunks:
        reader.read(start, lines)
    if reader.rows == 0:
        if layout.header:
            raise InputDataError(f"{label}: only a header row, no data rows")
        raise InputDataError(f"{label}: the input is empty")
    message = layout.note(label)
    if message:
        note(message)
    return reader.sequences()


def _layout(lines: list[str], first_line: int, label: str, options: CsvOptions) -> CsvLayout:
    sample = [line for line in lines[: DETECTION_LINES * 4] if line.strip()][:DETECTION_LINES]
    delimiter = options.delimiter or _detect_delimiter(sample)
    fields = [field.strip() for field in _split_fields(sample[0], delimiter, label, first_line)]
    header = options.header
    if header is None:
        # A header names columns: one field that is text (not a number, not empty) makes one.
        header = any(field and not _is_number(field) for field in fields)
    return CsvLayout(
        delimiter=delimiter,
        header=header,
        names=tuple(fields) if header else (),
        width=len(fields),
        first_line=first_line,
        detected_delimiter=options.delimiter is None,
        detected_header=options.header is None,
    )


class _RowReader:
    """Reads the data rows of a CSV chunk by chunk into ``dtype`` arrays (and sequence ids)."""

    def __init__(self, layout: CsvLayout, label: str, options: CsvOptions, dtype: np.dtype) -> None:
        self.layout = layout
        self.label = label
        self.dtype = dtype
        labels = layout.labels
        self.labels = labels
        self.seq_index = _column_index(options.sequence_column, labels, label) if options.sequence_column else None
        if options.columns:
            self.features = [_column_index(name, labels, label) for name in options.columns]
        else:
            self.features = [k for k in range(layout.width) if k != self.seq_index]
        if not self.features:
            raise InputDataError(f"{label}: no feature columns")
        self.parts: list[NDArray] = []
        self.id_parts: list[list[str]] = []
        self.rows = 0
        self.first_data_line: int | None = None

    # ---------------------------------------------------------------- per chunk

    def read(self, start: int, lines: list[str]) -> None:
        if not lines:
            return
        if self.first_data_line is None:
            self.first_data_line = start
        values, ids = self._fast(lines)
        if values is None:
            values, ids = self._slow(start, lines)
        self.parts.append(values)
        if ids is not None:
            self.id_parts.append(ids)
        self.rows += len(values)

    def _fast(self, lines: list[str]) -> tuple[NDArray | None, list[str] | None]:
        """NumPy's C parser; (None, None) whenever the chunk needs a closer look."""
        layout = self.layout
        delimiter = None if layout.delimiter == WHITESPACE else layout.delimiter
        everything = self.seq_index is None and self.features == list(range(layout.width))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data" for a chunk of blank lines
                if everything:
                    array = np.loadtxt(lines, delimiter=delimiter, comments=None, quotechar='"', ndmin=2, dtype=self.dtype)
                    if array.size and array.shape[1] != layout.width:
                        return None, None
                else:
                    if delimiter is None or not self._uniform(lines, delimiter):
                        return None, None
                    array = np.loadtxt(lines, delimiter=delimiter, comments=None, quotechar='"', ndmin=2,
                                       dtype=self.dtype, usecols=self.features)
        except ValueError:
            return None, None
        if len(array) == 0:
            if any(line.strip() for line in lines):
                return None, None
            return np.empty((0, len(self.features)), dtype=self.dtype), [] if self.seq_index is not None else None
        values = array  # parsed straight to float32 / float64: each number rounded once, as float(text) would be
        if not np.isfinite(values).all():
            return None, None
        ids = None
        if self.seq_index is not None:
            ids = [line.split(delimiter)[self.seq_index] for line in lines if line]
            if len(ids) != len(values) or not all(i.strip() for i in ids):
                return None, None
        return values, ids

    def _uniform(self, lines: list[str], delimiter: str) -> bool:
        """Every line has the header's number of fields (checked by counting, so no quotes)."""
        expected = self.layout.width - 1
        for line in lines:
            if '"' in line or (line.count(delimiter) != expected and line):
                return False
        return True

    def _slow(self, start: int, lines: list[str]) -> tuple[NDArray, list[str] | None]:
        """Line by line in Python: the first problem raises, naming its line and column."""
        layout, label = self.layout, self.label
        out = np.empty((len(lines), len(self.features)), dtype=self.dtype)
        ids: list[str] | None = [] if self.seq_index is not None else None
        limit = np.finfo(self.dtype).max
        row = 0
        for offset, line in enumerate(lines):
            if not line.strip():
                continue  # a blank line
            number = start + offset
            fields = _split_fields(line, layout.delimiter, label, number)
            if len(fields) > layout.width:
                if layout.header:
                    raise InputDataError(f"{label}: ragged rows: line {number} has {len(fields)} fields, "
                                         f"more fields than the header ({layout.width}){self._delimiter_hint()}")
                raise InputDataError(f"{label}: ragged rows: line {number} has {len(fields)} fields, "
                                     f"line {layout.first_line} has {layout.width}{self._delimiter_hint()}")
            for j, index in enumerate(self.features):
                cell = fields[index].strip() if index < len(fields) else ""
                where = f"{label}: line {number}, column '{self.labels[index]}'"
                if not cell:
                    raise InputDataError(f"{where} is empty (missing value or a short row)")
                if not _is_number(cell):
                    raise InputDataError(f"{where}: '{_clip(cell)}' is not a number{self._text_hint(cell)}")
                value = float(cell)
                if not math.isfinite(value):
                    raise InputDataError(f"{where} is {value}: inputs must be finite numbers")
                if abs(value) > limit:
                    raise InputDataError(f"{where} is {_clip(cell)}: beyond the range of {self.dtype} "
                                         "(--dtype float64 reads it): inputs must be finite numbers")
                out[row, j] = value
            if ids is not None and self.seq_index is not None:
                key = fields[self.seq_index] if self.seq_index < len(fields) else ""
                if not key.strip():
                    raise InputDataError(f"{label}: line {number}, column '{self.labels[self.seq_index]}': empty sequence id")
                ids.append(key)
            row += 1
        return out[:row], ids

    def _delimiter_hint(self) -> str:
        return " (a different delimiter? --delimiter sets it)" if self.layout.detected_delimiter else ""

    def _text_hint(self, cell: str) -> str:
        """What to do about a cell that is not a number: another delimiter, or a text column."""
        others = [d for d in DETECTED_DELIMITERS if d in cell and d != self.layout.delimiter]
        if others or (self.layout.delimiter != WHITESPACE and len(cell.split()) > 1):
            found = others[0] if others else WHITESPACE
            spelled = {"\t": "tab", WHITESPACE: "whitespace"}.get(found, f"'{found}'")
            return f" (fields separated by {delimiter_name(found)}? --delimiter {spelled})"
        return " (a text column? --columns picks the features, --sequence-column the ids)"

    # ---------------------------------------------------------------- the result

    def sequences(self) -> list[InputSequence]:
        values = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        self.parts = []
        if self.seq_index is None:
            return [InputSequence(0, values)]
        ids = np.array([key for part in self.id_parts for key in part], dtype=object)
        uniques, first_seen, codes = np.unique(ids.astype(str), return_index=True, return_inverse=True)
        order_of_appearance = np.argsort(first_seen, kind="stable")
        rank = np.empty_like(order_of_appearance)
        rank[order_of_appearance] = np.arange(len(uniques))
        codes = rank[codes.reshape(-1)]
        names = _maybe_ints([str(ids[first_seen[k]]) for k in order_of_appearance])
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
        return [InputSequence(names[k], values[order[bounds[k] : bounds[k + 1]]]) for k in range(len(uniques))]


def _maybe_ints(values: list) -> list:
    try:
        ints = [int(v) for v in values]
    except (TypeError, ValueError):
        return values
    if all(str(i) == str(v).strip() for i, v in zip(ints, values)):
        return ints
    return values


def _clip(text: str, limit: int = 40) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _column_index(name: str, labels: list[str], label: str) -> int:
    if name in labels:
        return labels.index(name)
    if name.isdigit() and 1 <= int(name) <= len(labels):
        return int(name) - 1
    known = ", ".join(labels[:20]) + (" …" if len(labels) > 20 else "")
    raise InputDataError(f"{label}: no column '{name}' (columns: {known})")


def read_initial_state(path: str) -> dict[str, list[NDArray]]:
    """Initial states per recurrent layer: ``{layer: [h, c]}`` (``[h]`` for GRU/SimpleRNN).

    Accepts ``.npz`` with keys ``<layer>/h`` and ``<layer>/c`` (``bi/forward/h``
    for a Bidirectional direction), or JSON ``{"<layer>": {"h": [...], "c": [...]}}``.
    Each array is (U,) for every sequence, or (N, U) one row per sequence.
    """
    import json

    label = os.path.basename(path)
    if not os.path.isfile(path):
        raise InputDataError(f"{path}: no such file (--initial-state)")
    parts: dict[str, dict[str, NDArray]] = {}
    if path.lower().endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as archive:
                for key in archive.files:
                    layer, _, which = key.rpartition("/")
                    if which not in ("h", "c") or not layer:
                        raise InputDataError(f"{label}: key '{key}' is not '<layer>/h' or '<layer>/c'")
                    parts.setdefault(layer, {})[which] = np.asarray(archive[key], dtype=np.float64)
        except InputDataError:
            raise
        except Exception as exc:
            raise InputDataError(f"{label}: not a readable .npz file ({type(exc).__name__})") from None
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise InputDataError(f"{label}: not valid JSON ({str(exc)[:120]})") from None
        if not isinstance(data, dict):
            raise InputDataError(f"{label}: expected a JSON object mapping layer names to {{h, c}}")
        for layer, value in data.items():
            if not isinstance(value, dict) or "h" not in value:
                raise InputDataError(f"{label}: layer '{layer}' needs an object with 'h' (and 'c' for LSTM)")
            for which in ("h", "c"):
                if which in value:
                    try:
                        parts.setdefault(layer, {})[which] = np.asarray(value[which], dtype=np.float64)
                    except (TypeError, ValueError):
                        raise InputDataError(f"{label}: '{layer}'.{which} is not a list of numbers") from None
    states = {}
    for layer, arrays in parts.items():
        if "h" not in arrays:
            raise InputDataError(f"{label}: layer '{layer}' has no 'h'")
        for which, array in arrays.items():
            if array.ndim not in (1, 2) or not np.all(np.isfinite(array)):
                raise InputDataError(f"{label}: '{layer}' {which} must be finite numbers of shape (U,) or (N, U)")
        states[layer] = [arrays["h"]] + ([arrays["c"]] if "c" in arrays else [])
    return states


def split_sequences(sequences: Sequence[InputSequence], length: int) -> list[InputSequence]:
    """Cut every sequence into consecutive pieces of ``length`` steps (the last may be shorter).

    With ``--stateful`` this replays a stateful Keras model fed its input
    ``length`` steps at a time (``length=1``: one step per call).
    """
    if length < 1:
        raise InputDataError("--sequence-length must be at least 1")
    pieces = []
    multiple = len(sequences) > 1
    for sequence in sequences:
        steps = sequence.values.shape[0]
        for index, start in enumerate(range(0, steps, length)):
            piece_id = f"{sequence.id}:{index}" if multiple else index
            pieces.append(InputSequence(piece_id, sequence.values[start : start + length]))
    return pieces
