"""Vectorised text formatting: NumPy column blocks -> CSV / JSON / NDJSON bytes.

Formatting numbers one row at a time in Python costs about 9 µs per row
(pandas ``to_csv``, measured on a 2-core machine), which would make the text
writer the bottleneck of a trace.  Here every field of a block is formatted
at once with array arithmetic into a fixed-width byte matrix padded with NUL
bytes, the rows are laid side by side with their separators, and the NUL
padding is dropped in one pass.

Float format: the shortest decimal of 7, 8 or 9 significant digits that reads
back to the same float32 (trailing zeros dropped), in positional notation for
decimal exponents -4..8 and as ``d.ddde±XX`` outside, much like Python's
``repr``.  float64 values use NumPy's own shortest round-trip repr (slower).
NaN is an empty field in CSV and ``null`` in JSON; infinities are ``inf`` /
``-inf`` in CSV and ``null`` in JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.typing import NDArray

_POW10 = 10.0 ** np.arange(-80, 81)  # exact for |k| <= 22, correctly rounded otherwise
_INT_POW = 10 ** np.arange(18, -1, -1, dtype=np.int64)  # 10^18 .. 10^0
_ZERO = ord("0")


def _pow10(k: NDArray[np.int64]) -> NDArray[np.float64]:
    return _POW10[np.clip(k, -80, 80) + 80]


FLOAT_WIDTH = 15  # sign + "0.000" + 9 digits, or sign + d.dddddddde-XX
# Two ASCII digits for each of 0..99, as one uint16 (little- or big-endian alike via a byte view).
_PAIRS = np.array([f"{k:02d}".encode() for k in range(100)], dtype="S2").view(np.uint16)


def _digits9(mant: NDArray[np.int64]) -> NDArray[np.uint8]:
    """A 9-digit mantissa as ASCII digits, (M, 9), most significant first."""
    m = mant.astype(np.int32)  # < 10**9 fits
    out = np.empty((m.shape[0], 10), dtype=np.uint8)
    pairs = out[:, 2:].view(np.uint16)  # (M, 4) two digits each
    rest = m % 100_000_000
    out[:, 1] = (m // 100_000_000).astype(np.uint8) + _ZERO
    pairs[:, 0] = _PAIRS[rest // 1_000_000]
    pairs[:, 1] = _PAIRS[(rest // 10_000) % 100]
    pairs[:, 2] = _PAIRS[(rest // 100) % 100]
    pairs[:, 3] = _PAIRS[rest % 100]
    return out[:, 1:]


def format_float32(values: NDArray, nan: bytes = b"", inf: tuple[bytes, bytes] = (b"inf", b"-inf")) -> NDArray[np.uint8]:
    """Format float32 values into a (M, FLOAT_WIDTH) uint8 matrix, NUL-padded.

    Each value is written with the fewest of 7, 8 or 9 significant digits
    that parse back to the same float32, trailing zeros dropped.
    """
    v = np.asarray(values, dtype=np.float32).ravel()
    count = v.shape[0]
    out = np.zeros((count, FLOAT_WIDTH), dtype=np.uint8)
    if count == 0:
        return out
    finite = np.isfinite(v)
    a32 = np.abs(v)
    nonzero = finite & (a32 > 0)
    if not nonzero.all():
        a32 = np.where(nonzero, a32, np.float32(1))
    a = a32.astype(np.float64)
    e = np.floor(np.log10(a)).astype(np.int64)
    e += a >= _pow10(e + 1)  # log10 can be off by one next to powers of ten
    e -= a < _pow10(e)
    mant = np.rint(a * _pow10(8 - e)).astype(np.int64)  # 9 significant digits
    carry = mant >= 1_000_000_000
    if carry.any():
        mant[carry] //= 10
        e[carry] += 1
    # Fewer digits where they read back exactly: 7 first, then 8.
    for digits in (8, 7):
        step = 10 ** (9 - digits)
        m = (mant + step // 2) // step  # the 9-digit mantissa rounded to `digits`
        k = digits - 1 - e  # value = m / 10**k
        back = np.where(k >= 0, m / _pow10(np.maximum(k, 0)), m * _pow10(np.maximum(-k, 0)))
        hit = back.astype(np.float32) == a32
        up = hit & (m >= 10**digits)  # rounding carried into one more digit
        mant = np.where(hit, np.where(up, m // 10, m) * step, mant)
        e = np.where(up, e + 1, e)
    digit_chars = _digits9(mant)
    is_digit = digit_chars != _ZERO
    significant = 9 - np.argmax(is_digit[:, ::-1], axis=1)  # digits before the trailing zeros
    fixed = (e >= -4) & (e <= 8)
    keep = np.where(fixed, np.maximum(significant, e + 1), significant)
    digit_chars = np.where(np.arange(9)[None, :] < keep[:, None], digit_chars, np.uint8(0))
    minus = np.where(np.signbit(v) & nonzero, np.uint8(ord("-")), np.uint8(0))
    cls = np.where(fixed, e, 99)
    present = np.bincount(np.where(fixed, e + 4, 13), minlength=14).nonzero()[0]
    for index in present:
        rows = None if len(present) == 1 else (cls == (index - 4 if index < 13 else 99))
        sub = digit_chars if rows is None else digit_chars[rows]
        block = np.zeros((sub.shape[0], FLOAT_WIDTH), dtype=np.uint8)
        block[:, 0] = minus if rows is None else minus[rows]
        if index < 13:
            exp = index - 4
            if exp < 0:
                block[:, 1] = _ZERO
                block[:, 2] = ord(".")
                block[:, 3 : 2 - exp] = _ZERO
                block[:, 2 - exp : 11 - exp] = sub
            else:
                block[:, 1 : exp + 2] = sub[:, : exp + 1]
                frac = sub[:, exp + 1 :]
                if frac.shape[1]:
                    block[:, exp + 2] = np.where(frac[:, 0] != 0, np.uint8(ord(".")), np.uint8(0))
                    block[:, exp + 3 : 11] = frac
        else:
            exps = e if rows is None else e[rows]
            block[:, 1] = sub[:, 0]
            block[:, 2] = np.where(sub[:, 1] != 0, np.uint8(ord(".")), np.uint8(0))
            block[:, 3:11] = sub[:, 1:]
            tail = np.zeros((sub.shape[0], 4), dtype=np.uint8)
            tail[:, 0] = ord("e")
            tail[:, 1] = np.where(exps < 0, ord("-"), ord("+"))
            tail[:, 2] = _ZERO + (np.abs(exps) // 10) % 10
            tail[:, 3] = _ZERO + np.abs(exps) % 10
            block[:, 11:15] = tail
        if rows is None:
            out = block
        else:
            out[rows] = block
    # Zeros and non-finite values.
    zero = finite & ~nonzero
    if zero.any():
        out[zero] = 0
        out[zero, 0] = _ZERO
    if not finite.all():
        _fill(out, np.isnan(v), nan)
        _fill(out, np.isposinf(v), inf[0])
        _fill(out, np.isneginf(v), inf[1])
    return out


def _widen(cells: NDArray[np.uint8], width: int) -> NDArray[np.uint8]:
    if cells.shape[1] >= width:
        return cells
    wider = np.zeros((cells.shape[0], width), dtype=np.uint8)
    wider[:, : cells.shape[1]] = cells
    return wider


def _fill(out: NDArray[np.uint8], where: NDArray[np.bool_], token: bytes) -> None:
    """Replace the cells at ``where`` with ``token`` (``out`` must be wide enough)."""
    if where.any():
        out[where] = 0
        if token:
            out[where, : len(token)] = np.frombuffer(token, dtype=np.uint8)


def format_float64(values: NDArray, nan: bytes = b"", inf: tuple[bytes, bytes] = (b"inf", b"-inf")) -> NDArray[np.uint8]:
    """float64 values as NumPy's shortest round-trip repr (exact but slower)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    text = np.char.mod("%r", v.tolist()) if v.size else np.array([], dtype="U1")
    width = max(int(np.char.str_len(text).max()) if v.size else 1, 4)
    out = np.zeros((v.shape[0], width), dtype=np.uint8)
    if v.size:
        encoded = np.char.encode(text, "ascii").astype(f"S{width}")
        out[...] = encoded.view(np.uint8).reshape(v.shape[0], width)
        zero = v == 0
        out[zero] = 0
        out[zero, 0] = _ZERO
        _fill(out, np.isnan(v), nan)
        _fill(out, np.isposinf(v), inf[0])
        _fill(out, np.isneginf(v), inf[1])
    return out


def format_int(values: NDArray) -> NDArray[np.uint8]:
    """Integers as decimal digits, (M, width) NUL-padded."""
    v = np.asarray(values).astype(np.int64, copy=False).ravel()
    if v.size == 0:
        return np.zeros((0, 1), dtype=np.uint8)
    neg = v < 0
    a = np.abs(v)
    top = int(a.max())
    ndig = max(len(str(top)), 1)
    digits = (a[:, None] // _INT_POW[-ndig:][None, :]) % 10
    lead = np.arange(ndig)[None, :] < (ndig - _digit_count(a))[:, None]
    body = np.where(lead, 0, digits + _ZERO).astype(np.uint8)
    out = np.zeros((v.shape[0], ndig + 1), dtype=np.uint8)
    out[:, 1:] = body
    out[:, 0] = np.where(neg, ord("-"), 0)
    return out


def _digit_count(a: NDArray[np.int64]) -> NDArray[np.int64]:
    count = np.ones(a.shape, dtype=np.int64)
    for k in range(1, 19):
        count += a >= 10**k
    return count


def format_text(values: Sequence | NDArray, style: str) -> NDArray[np.uint8]:
    """Python values (str, int, float, bool, None) as CSV cells or JSON values; (M, width) NUL-padded."""
    items = list(np.asarray(values, dtype=object).ravel())
    cache: dict = {}
    encoded = []
    for item in items:
        key = (type(item), item) if _hashable(item) else None
        if key is None or key not in cache:
            text = _quote(item, style)
            if key is None:
                encoded.append(text)
                continue
            cache[key] = text
        encoded.append(cache[key])
    width = max((len(b) for b in encoded), default=1) or 1
    array = np.array(encoded, dtype=f"S{width}")
    return array.view(np.uint8).reshape(len(items), width)


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _quote(value, style: str) -> bytes:
    """One value as a CSV cell (quoted when needed) or as JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if style == "json":
        if isinstance(value, float) and not np.isfinite(value):
            return b"null"
        if not isinstance(value, (str, int, float, bool, type(None))):
            value = str(value)
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return b""
    if isinstance(value, bool):
        return b"true" if value else b"false"
    text = repr(value) if isinstance(value, float) else str(value)
    if any(ch in text for ch in ',"\n\r') or text != text.strip():
        return ('"' + text.replace('"', '""') + '"').encode("utf-8")
    return text.encode("utf-8")


@dataclass(frozen=True)
class RowStyle:
    """Separators around fields: CSV, NDJSON objects, or the items of a JSON array."""

    name: str  # "csv" | "ndjson" | "json"

    def prefixes(self, columns: Sequence[str]) -> list[bytes]:
        if self.name == "csv":
            return [b""] + [b","] * (len(columns) - 1)
        keys = [json.dumps(c).encode() + b":" for c in columns]
        return [b"{" + keys[0]] + [b"," + k for k in keys[1:]]

    @property
    def end(self) -> bytes:
        return b"\n" if self.name == "csv" else b"}\n"


def format_field(column: NDArray | str | int | float, rows: int, style: str) -> NDArray[np.uint8]:
    """One column of a block as a (rows, width) NUL-padded byte matrix; scalars are repeated."""
    nan = b"" if style == "csv" else b"null"
    inf = (b"inf", b"-inf") if style == "csv" else (b"null", b"null")
    if np.isscalar(column) or isinstance(column, (str, bytes)):
        if isinstance(column, (bool, np.bool_)):
            cell = format_int(np.array([int(column)]))
        elif isinstance(column, (int, np.integer)):
            cell = format_int(np.array([column]))
        elif isinstance(column, (float, np.floating)):
            cell = format_float64(np.array([column]), nan, inf)
        else:
            cell = format_text([column], "json" if style != "csv" else "csv")
        return np.broadcast_to(cell, (rows, cell.shape[1]))
    if column is None:
        cell = format_text([None], "json" if style != "csv" else "csv")
        return np.broadcast_to(cell, (rows, cell.shape[1]))
    if isinstance(column, np.ma.MaskedArray):
        missing = np.ma.getmaskarray(column)
        cells = _widen(format_field(column.filled(0), rows, style).copy(), len(nan))
        if missing.any():
            _fill(cells, missing, nan)
        return cells
    array = np.asarray(column)
    if array.dtype == np.bool_:
        return format_int(array.astype(np.int64))
    if array.dtype.kind in "iu":
        return format_int(array)
    if array.dtype == np.float32 or array.dtype == np.float16:
        return format_float32(array, nan, inf)
    if array.dtype.kind == "f":
        return format_float64(array, nan, inf)
    return format_text(array, "json" if style != "csv" else "csv")


def format_rows(columns: Sequence[str], data: Sequence[NDArray | str | int | float], style: RowStyle) -> bytes:
    """A block of rows as bytes: each column formatted at once, NUL padding dropped."""
    rows = _row_count(data)
    if rows == 0:
        return b""
    pieces: list[NDArray[np.uint8] | bytes] = []
    for prefix, column in zip(style.prefixes(columns), data):
        if prefix:
            pieces.append(prefix)
        pieces.append(format_field(column, rows, style.name))
    pieces.append(style.end)
    width = sum(len(p) if isinstance(p, bytes) else p.shape[1] for p in pieces)
    matrix = np.zeros((rows, width), dtype=np.uint8)
    offset = 0
    for piece in pieces:
        if isinstance(piece, bytes):
            matrix[:, offset : offset + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
            offset += len(piece)
        else:
            matrix[:, offset : offset + piece.shape[1]] = piece
            offset += piece.shape[1]
    flat = matrix.ravel()
    return flat[flat != 0].tobytes()


def _row_count(data: Sequence) -> int:
    for column in data:
        if not (np.isscalar(column) or isinstance(column, (str, bytes))):
            return int(np.asarray(column).shape[0])
    return 1 if data else 0


def csv_header(columns: Sequence[str]) -> bytes:
    return b",".join(_quote(c, "csv") for c in columns) + b"\n"
