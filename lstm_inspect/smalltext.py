"""The text of small outputs, made without importing polars: the same bytes polars writes.

Importing polars costs about 0.2 s of CPU, more than a short command's whole
budget (``trace`` of ten rows, ``weights`` or ``layers`` of a small model), so
``writers.write_blocks`` formats an output of fewer than
``writers.SMALL_OUTPUT_ROWS`` rows here, one value at a time, and everything
longer with polars.  Both give identical text; ``tests/test_text_output.py``
writes the same blocks both ways and compares the bytes.

The one text format (see the README, "Output formats"):

* float32 and float64: the shortest digits that read back to the same value
  (NumPy's Dragon4 for float32, Python's ``repr`` for float64), laid out as
  polars does: positional with at least one decimal (``1.0``, ``0.000125``,
  ``9000000000.0``) when the decimal point falls within -5..13 digits of the
  first digit for float32 (-4..16 for float64), else ``d.ddde+XX``/``d.ddde-X``
  (``1e+28``, ``1.25e-7``);
* NaN and missing values: an empty CSV cell, JSON ``null``; infinities
  ``inf``/``-inf`` in CSV, ``null`` in JSON;
* integers (NumPy integer and bool arrays, int scalars) as plain digits;
  Python ``bool`` values in object columns as ``true``/``false``;
* strings: CSV-quoted only when they contain a comma, a quote or a line break,
  or are empty (``""``, so that they differ from a missing value); JSON
  strings escaped as ``json.dumps(..., ensure_ascii=False)`` does.

An object column (``layers``, ``verify``) takes one type for all its values:
bool, int, float or string, in that order of preference, with ``None`` as
missing; a column that mixes others is written as strings.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np

# Where the decimal point may fall for positional notation, by float width:
# value = 0.d1d2...dn x 10**point; positional when low < point <= high.
_POSITIONAL = {4: (-6, 13), 8: (-5, 16)}


def is_scalar(value) -> bool:
    """True for a value repeated on every row of a block (not a 1-D array)."""
    return not (isinstance(value, np.ndarray) and value.ndim)


def is_masked(value) -> bool:
    """True for a NumPy masked array, without importing ``numpy.ma`` (15 ms) when nothing has."""
    ma = sys.modules.get("numpy.ma")
    return ma is not None and isinstance(value, ma.MaskedArray)


def object_kind(values: Sequence) -> str:
    """The one type an object column is written as: "bool", "int", "float" or "str"."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return "str"
    if kinds == {bool}:
        return "bool"
    if kinds <= {int} and all(-(2**63) <= v < 2**63 for v in values if v is not None):
        return "int"
    if kinds <= {int, float}:
        return "float"
    return "str"


def float_text(text: str, width: int) -> str:
    """A shortest round-trip repr (``'1.25e-07'``, ``'123.0'``) in the layout polars writes."""
    negative = text.startswith("-")
    body = text[1:] if negative else text
    mantissa, _, exponent = body.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    sign = "-" if negative else ""
    if not digits:
        return sign + "0.0"
    low, high = _POSITIONAL[width]
    n = len(digits)
    if n <= point <= high:
        return sign + digits + "0" * (point - n) + ".0"
    if 0 < point <= high:
        return sign + digits[:point] + "." + digits[point:]
    if low < point <= 0:
        return sign + "0." + "0" * (-point) + digits
    power = point - 1
    head = digits[0] + ("." + digits[1:] if n > 1 else "")
    return f"{sign}{head}e{'+' if power > 0 else '-'}{abs(power)}"


def _float_cells(array: np.ndarray, json_style: bool) -> list[str]:
    null = "null" if json_style else ""
    width = 4 if array.dtype.itemsize <= 4 else 8
    if width == 4:
        reprs = np.asarray(array, dtype=np.float32).astype(str).tolist()  # NumPy's shortest float32 digits
    else:
        reprs = [repr(v) for v in array.astype(np.float64).tolist()]
    out = []
    for text in reprs:
        if text == "nan":
            out.append(null)
        elif text in ("inf", "-inf"):
            out.append(null if json_style else text)
        else:
            out.append(float_text(text, width))
    return out


def _string_cell(text: str, json_style: bool) -> str:
    if json_style:
        return json.dumps(text, ensure_ascii=False)
    if not text or any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _object_cells(values: list, json_style: bool) -> list[str]:
    null = "null" if json_style else ""
    kind = object_kind(values)
    if kind == "bool":
        return [null if v is None else ("true" if v else "false") for v in values]
    if kind == "int":
        return [null if v is None else str(v) for v in values]
    if kind == "float":
        floats = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        cells = _float_cells(floats, json_style)
        return [null if v is None else cell for v, cell in zip(values, cells)]
    return [null if v is None else _string_cell(str(v), json_style) for v in values]


def _scalar_cells(value, rows: int, json_style: bool) -> list[str]:
    if value is None:
        cell = "null" if json_style else ""
    elif isinstance(value, (bool, np.bool_, int, np.integer)):
        cell = str(int(value))
    elif isinstance(value, (np.float16, np.float32)):
        cell = _float_cells(np.array([value], dtype=np.float32), json_style)[0]
    elif isinstance(value, (float, np.floating)):
        cell = _float_cells(np.array([value], dtype=np.float64), json_style)[0]
    else:
        cell = _string_cell(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value), json_style)
    return [cell] * rows


def column_cells(column, rows: int, json_style: bool) -> list[str]:
    """One column of a block as ``rows`` cells of text (CSV, or JSON values with ``json_style``)."""
    if is_scalar(column):
        return _scalar_cells(column[()] if isinstance(column, np.ndarray) else column, rows, json_style)
    if is_masked(column):
        missing = np.ma.getmaskarray(column).tolist()
        cells = column_cells(column.filled(0 if column.dtype.kind != "O" else None), rows, json_style)
        null = "null" if json_style else ""
        return [null if gone else cell for gone, cell in zip(missing, cells)]
    array = np.asarray(column)
    if array.dtype.kind in "biu":
        return [str(v) for v in array.astype(np.int64 if array.dtype.kind == "b" else array.dtype).tolist()]
    if array.dtype.kind == "f":
        return _float_cells(array, json_style)
    return _object_cells(array.tolist(), json_style)


def csv_header(columns: Sequence[str]) -> bytes:
    return (",".join(_string_cell(str(c), False) for c in columns) + "\n").encode("utf-8")


def csv_rows(data: Sequence, rows: int) -> bytes:
    """A block's rows as CSV lines."""
    cells = [column_cells(column, rows, False) for column in data]
    return "".join(",".join(row) + "\n" for row in zip(*cells)).encode("utf-8")


def ndjson_rows(columns: Sequence[str], data: Sequence, rows: int) -> bytes:
    """A block's rows as JSON objects, one a line."""
    keys = [json.dumps(str(c), ensure_ascii=False) + ":" for c in columns]
    cells = [column_cells(column, rows, True) for column in data]
    lines = ("{" + ",".join(k + v for k, v in zip(keys, row)) + "}\n" for row in zip(*cells))
    return "".join(lines).encode("utf-8")


class JsonArray:
    """Turns NDJSON text into one streamed JSON array: ``[`` rows joined by ``,\\n`` ``\\n]``."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.started = False

    def start(self) -> None:
        self.stream.write(b"[")

    def write(self, ndjson: bytes | memoryview) -> None:
        """Add the objects of an NDJSON text (each line ends with ``\\n``; strings escape theirs)."""
        text = bytes(ndjson)
        if not text:
            return
        body = text[:-1].replace(b"\n", b",\n")
        self.stream.write((b",\n" if self.started else b"\n") + body)
        self.started = True

    def end(self) -> None:
        self.stream.write(b"\n]\n" if self.started else b"]\n")
