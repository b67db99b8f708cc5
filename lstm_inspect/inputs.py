"""Input sequences: CSV (file or stdin), .npy and .npz -> a list of (id, array).

CSV rows are timesteps and columns are features.  A header is detected when
the first row is not all numbers (or declared with ``header=True/False``).
``sequence_column`` splits the rows into several sequences, in the order
their ids first appear.  Every problem is reported as one line naming the
line number (1-based, as an editor shows it) and the column.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from .errors import InputDataError

MAX_LINE_BYTES = 64 << 20  # one CSV line; anything longer is refused, not buffered forever
CHUNK_ROWS = 1 << 18


@dataclass(frozen=True)
class InputSequence:
    """One input sequence: its id and its (T, F) values."""

    id: object  # int, or the value of --sequence-column
    values: NDArray  # (T, F)


@dataclass(frozen=True)
class CsvOptions:
    header: bool | None = None  # None: detect
    columns: tuple[str, ...] | None = None  # names (or 1-based numbers) of the feature columns
    sequence_column: str | None = None
    delimiter: str | None = None  # None: ',' unless the file is obviously tab/semicolon separated


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
        return _read_csv(_Prefixed(head, handle), label, options, dtype)
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
    elif array.ndim == 3:
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
        _check_finite(values, label, lambda row, col, index=index: f"sequence {index}, step {row}, feature {col}")
        sequences.append(InputSequence(index, values))
    return sequences


def _check_finite(values: NDArray, label: str, where) -> None:
    if values.dtype.kind != "f":
        return
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise InputDataError(f"{label}: {where(row, col)} is {values[row, col]}: inputs must be finite numbers")


# ------------------------------------------------------------------- CSV


def _read_csv(stream: io.RawIOBase, label: str, options: CsvOptions, dtype) -> list[InputSequence]:
    import pandas as pd

    buffered = io.BufferedReader(stream, buffer_size=1 << 20)
    first_line = buffered.peek(1 << 16)[: 1 << 16]
    if not first_line.strip(b"\xef\xbb\xbf \t\r\n"):
        # peek returns what is buffered; an empty file or blank lines only
        rest = buffered.read()
        if not rest.strip(b"\xef\xbb\xbf \t\r\n"):
            raise InputDataError(f"{label}: the input is empty")
        buffered = io.BufferedReader(io.BytesIO(rest))
        first_line = rest[: 1 << 16]
    text_head = first_line.decode("utf-8", errors="replace").lstrip("\ufeff")
    delimiter = options.delimiter or _sniff_delimiter(text_head)
    first_row = next(csv.reader([text_head.splitlines()[0] if text_head.splitlines() else ""], delimiter=delimiter), [])
    header = options.header
    if header is None:
        header = any(not _is_number(cell) for cell in first_row)
    try:
        # A row longer than the header must not become a silent index column (pandas'
        # default) nor lose its extra field (index_col=False warns): it is an error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            reader = pd.read_csv(
                buffered,
                sep=delimiter,
                header=0 if header else None,
                index_col=False,
                encoding="utf-8-sig",
                dtype=str if options.sequence_column else None,
                chunksize=CHUNK_ROWS,
                skip_blank_lines=True,
                engine="c",
                na_filter=True,
                keep_default_na=False,
                na_values=[""],
                low_memory=False,
            )
            # Each chunk of rows is converted to `dtype` as it is read, so that a long input is
            # never held as float64 (nor twice): the parsed text of one chunk at a time.
            parts: list[NDArray] = []
            id_parts: list = []
            line_offset = 2 if header else 1  # file line of the first data row
            names: list[str] | None = None
            rows_read = 0
            for chunk in reader:
                if names is None:
                    names = [str(c) for c in chunk.columns]
                    column_labels = names if header else [str(i + 1) for i in range(len(names))]
                    seq_index, feature_idx = _column_roles(options, column_labels, label, header, chunk.shape[1])
                chunk.columns = list(range(chunk.shape[1]))
                parts.append(_numeric_block(chunk, feature_idx, column_labels, label, line_offset + rows_read, dtype))
                if seq_index is not None:
                    id_parts.append(chunk[seq_index])
                rows_read += len(chunk)
                del chunk
    except pd.errors.EmptyDataError:
        raise InputDataError(f"{label}: the input is empty") from None
    except pd.errors.ParserError as exc:
        raise InputDataError(f"{label}: {_parser_message(exc)}") from None
    except pd.errors.ParserWarning as exc:
        if "Length of header" not in str(exc):
            raise InputDataError(f"{label}: cannot be parsed as CSV ({' '.join(str(exc).split())[:160]})") from None
        raise InputDataError(f"{label}: ragged rows: a row has more fields than the header ({len(first_row)})") from None
    except UnicodeDecodeError:
        raise InputDataError(f"{label}: not UTF-8 text (is it a CSV file?)") from None
    except (ValueError, MemoryError, OverflowError) as exc:
        raise InputDataError(f"{label}: cannot be parsed as CSV ({str(exc).splitlines()[0][:160]})") from None
    if rows_read == 0:
        if header:
            raise InputDataError(f"{label}: only a header row, no data rows")
        raise InputDataError(f"{label}: the input is empty")
    values = parts[0] if len(parts) == 1 else np.concatenate(parts)
    del parts
    if seq_index is None:
        return [InputSequence(0, values)]
    ids = id_parts[0] if len(id_parts) == 1 else pd.concat(id_parts, ignore_index=True)
    missing = ids.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise InputDataError(
            f"{label}: line {row + line_offset}, column '{column_labels[seq_index]}': empty sequence id"
        )
    codes, uniques = pd.factorize(ids, sort=False)
    converted = _maybe_ints(list(uniques))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return [
        InputSequence(converted[k], values[order[bounds[k] : bounds[k + 1]]]) for k in range(len(uniques))
    ]


def _column_roles(options: CsvOptions, column_labels: list[str], label: str, header: bool, count: int):
    """(index of the sequence-id column or None, indices of the feature columns)."""
    seq_index = None
    if options.sequence_column:
        seq_index = _column_index(options.sequence_column, column_labels, label, header)
    if options.columns:
        feature_idx = [_column_index(name, column_labels, label, header) for name in options.columns]
    else:
        feature_idx = [i for i in range(count) if i != seq_index]
    if not feature_idx:
        raise InputDataError(f"{label}: no feature columns")
    return seq_index, feature_idx


def _maybe_ints(values: list) -> list:
    try:
        ints = [int(v) for v in values]
    except (TypeError, ValueError):
        return values
    if all(str(i) == str(v).strip() for i, v in zip(ints, values)):
        return ints
    return values


def _numeric_block(frame, indices: list[int], labels: list[str], label: str, line_offset: int, dtype) -> NDArray:
    import pandas as pd

    out = np.empty((len(frame), len(indices)), dtype=dtype)
    for j, index in enumerate(indices):
        column = frame[index]
        name = labels[index] if index < len(labels) else str(index + 1)
        if column.dtype.kind in "fiub":
            numeric = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            numeric = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isnan(numeric) & ~column.isna().to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                cell = str(column.iloc[row])
                if cell.strip().lower() not in ("nan", "+nan", "-nan"):
                    raise InputDataError(
                        f"{label}: line {row + line_offset}, column '{name}': '{_clip(cell)}' is not a number"
                    )
        bad = ~np.isfinite(numeric)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raw = column.iloc[row]
            what = "is empty (missing value or a short row)" if _is_missing(raw) else f"is {_clip(str(raw))}: inputs must be finite numbers"
            raise InputDataError(f"{label}: line {row + line_offset}, column '{name}' {what}")
        out[:, j] = numeric
    return out


def _is_missing(value) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _clip(text: str, limit: int = 40) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _column_index(name: str, labels: list[str], label: str, header: bool) -> int:
    if name in labels:
        return labels.index(name)
    if name.isdigit() and 1 <= int(name) <= len(labels):
        return int(name) - 1
    known = ", ".join(labels[:20]) + (" …" if len(labels) > 20 else "")
    raise InputDataError(f"{label}: no column '{name}' (columns: {known})")


def _parser_message(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    # pandas: "Error tokenizing data. C error: Expected 3 fields in line 5, saw 4"
    if "Expected" in text and "fields in line" in text:
        detail = text.split("C error:", 1)[-1].strip()
        return f"ragged rows: {detail}"
    if "Buffer overflow" in text or "out of memory" in text:
        return "a line is too long to parse"
    return text[:200]


def _sniff_delimiter(head: str) -> str:
    line = head.splitlines()[0] if head.splitlines() else ""
    if "," in line:
        return ","
    for candidate in ("\t", ";", "|"):
        if candidate in line:
            return candidate
    return ","


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def stack_sequences(sequences: Sequence[InputSequence]) -> NDArray:
    """Equal-length sequences as one (N, T, F) batch."""
    return np.stack([s.values for s in sequences])


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
