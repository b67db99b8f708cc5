"""Vectorised text formatting: NumPy column blocks -> CSV / JSON / NDJSON bytes.

Formatting numbers one row at a time in Python costs about 9 µs per row
(pandas ``to_csv``, measured on a 2-core machine), which would make the text
writer the bottleneck of a trace.  Here a block is formatted a few thousand
rows at a time with whole-array integer arithmetic:

* every field of a row gets one or more 16-byte *units* (two uint64 words):
  its text left-aligned, preceded by its separator, and its length; constant
  text (separators, JSON keys, scalar columns) is written once per layout;
* a float32 is turned into decimal digits with float64 arithmetic and into
  characters with lookup tables of four digits at a time, eight characters per
  uint64 word, without a Python loop;
* the units of all rows are then concatenated by one NumPy assignment through
  an overlapping 16-byte view of the output buffer (unit ``k`` is written at
  the sum of the lengths before it; the next unit overwrites its padding).

The work buffers are reused from one chunk of rows to the next, so the
formatter allocates almost nothing.

Float format (float32): the shortest decimal of 7, 8 or 9 significant digits
that reads back to exactly the same float32 (trailing zeros dropped), in
positional notation for decimal exponents -4..8 and as ``d.ddde±XX``
outside, like Python's ``repr``: NumPy's shortest repr gives the same text for
all but a few values in a thousand.  "Reads back" is checked against half an
ulp of the value with a margin, so it holds for a correctly rounded
``strtof`` and for parsing as a double then rounding alike.  Zero is ``0``
(``-0`` for negative zero).  float64 values use NumPy's own shortest
round-trip repr (slower).  Integers are plain digits.  NaN is an empty field
in CSV and ``null`` in JSON; infinities are ``inf`` / ``-inf`` in CSV and
``null`` in JSON.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

FLOAT_WIDTH = 16  # a float32 unit: separator + up to 15 characters
CHUNK_ROWS = 4096  # rows formatted at once: the work buffers stay in the CPU caches
FLOAT_BATCH = 6 * CHUNK_ROWS  # float32 values formatted at once (neighbouring columns together)
UNIT = 16  # bytes per unit
_ZERO = ord("0")
_U64 = np.uint64
_TEXT_BITS = 0x2020202020202020  # bit 5 is set in every character a number or token is written with


# ------------------------------------------------------------------ tables


def _four_digits() -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """"0000".."9999" as uint64 words (first digit in the low byte), and the same with trailing zeros as NUL."""
    k = np.arange(10000, dtype=np.uint64)
    full = np.zeros(10000, dtype=np.uint64)
    for position, power in enumerate((1000, 100, 10, 1)):
        full |= ((k // _U64(power)) % _U64(10) + _U64(_ZERO)) << _U64(8 * position)
    stripped = full.copy()
    for modulus, keep in ((10, 3), (100, 2), (1000, 1), (10000, 0)):
        stripped[k % _U64(modulus) == 0] &= _U64((1 << (8 * keep)) - 1)
    return full, stripped


def _pow10(k: int) -> float:
    """10**k as the nearest double (Python's int division is correctly rounded)."""
    return float(10**k) if k >= 0 else 1 / 10 ** (-k)


def _pow10_le_pow2(k: int, p: int) -> bool:
    """Exactly: 10**k <= 2**p."""
    left_num, left_den = (10**k, 1) if k >= 0 else (1, 10 ** (-k))
    right_num, right_den = (2**p, 1) if p >= 0 else (1, 2 ** (-p))
    return left_num * right_den <= right_num * left_den


def _build_tables() -> dict[str, NDArray]:
    full, stripped = _four_digits()
    t: dict[str, NDArray] = {
        "digits": full,
        "digits_high": full << _U64(32),
        # d1..d4 of the digit word: trailing zeros stripped only when d5..d8 are all zero
        "low_half": np.concatenate([full, stripped]),
        "high_half": stripped << _U64(32),
    }
    # By the float32 exponent field x (1..254): floor(log10(2**(x-127))), 10**(that+1), half an ulp.
    exponent_low = np.zeros(256, dtype=np.int64)
    next_power = np.full(256, np.inf)
    half_ulp = np.zeros(256)
    for x in range(1, 255):
        p = x - 127
        k = int(np.floor(p * 0.3010299956639812))
        while _pow10_le_pow2(k + 1, p):
            k += 1
        while not _pow10_le_pow2(k, p):
            k -= 1
        exponent_low[x] = k
        next_power[x] = _pow10(k + 1)
        # A little under half an ulp: a decimal accepted here also reads back through a double.
        half_ulp[x] = 2.0 ** (p - 24) * (1 - 2.0**-20)
    t.update(exponent_low=exponent_low, next_power=next_power, half_ulp=half_ulp)

    # By decimal exponent e, at index e + 64.
    def by_exponent(fn, dtype=np.uint64):
        return np.array([fn(i - 64) for i in range(128)], dtype=dtype)

    t["scale"] = by_exponent(lambda e: _pow10(8 - e), np.float64)
    # The main layout, for e in -4..4, before left-alignment (byte 0 is the separator):
    #   e < 0:  ["0." and zeros, ending at byte 6][d0 at byte 7] [d1..d8 at bytes 8..15]
    #   e >= 0: [d0 and e integer digits, ending at byte 6]["." at byte 7] [fraction at bytes 8..15]
    # with the sign just before; it is then shifted left to start at byte 1.
    # Scientific notation is laid out as e = 0 (d0, ".", d1..d8), and "e±XX" is appended after.
    # e in 5..8 is written one value at a time (a float32 trace rarely holds values that large).
    def scientific(e):
        return e < -4 or e > 8

    def head_start(e):
        if scientific(e):
            e = 0
        return 6 - e if 0 <= e <= 4 else (6 + e if -4 <= e < 0 else 1)

    def positional(e):
        return 0 <= e <= 4 or scientific(e)

    t["int_mask"] = by_exponent(lambda e: (1 << (8 * e)) - 1 if 0 <= e <= 4 else 0)
    t["head_shift"] = by_exponent(lambda e: 8 * head_start(e) if positional(e) else 56)
    t["tail_shift"] = by_exponent(lambda e: 8 * e if 0 <= e <= 4 else 0)
    t["point"] = by_exponent(lambda e: ord(".") << 56 if positional(e) else 0)
    t["prefix"] = by_exponent(
        lambda e: int.from_bytes(b"0." + b"0" * (-e - 1), "little") << (8 * head_start(e)) if -4 <= e < 0 else 0
    )
    t["sign_shift"] = by_exponent(lambda e: 8 * (head_start(e) - 1))
    # The same, one row per exponent, gathered at once.
    t["layout"] = np.stack([t[name] for name in _LAYOUT], axis=1)
    t["suffix"] = by_exponent(
        lambda e: int.from_bytes(f"e{'-' if e < 0 else '+'}{abs(e):02d}".encode(), "little") if scientific(e) else 0
    )
    return t


_LAYOUT = ("tail_shift", "int_mask", "head_shift", "prefix", "point", "sign_shift")
_T: dict[str, NDArray] | None = None


def _tables() -> dict[str, NDArray]:
    global _T
    if _T is None:
        _T = _build_tables()
    return _T


# ------------------------------------------------------------------ float32


class _Float32Writer:
    """Formats float32 values into units (two uint64 words and a length), reusing its work arrays."""

    def __init__(self, size: int) -> None:
        self.size = size
        f64, i64, u64, u32 = np.float64, np.int64, np.uint64, np.uint32
        self.absb, self.u32 = np.empty(size, u32), np.empty(size, u32)
        self.a64, self.s, self.scale, self.hu, self.mant, self.c = (np.empty(size, f64) for _ in range(6))
        self.hit = np.empty(size, np.bool_)
        self.ex, self.e, self.ie, self.i1, self.i2, self.i3 = (np.empty(size, i64) for _ in range(6))
        self.w1, self.w2, self.w3 = (np.empty(size, u64) for _ in range(3))
        self.n1, self.n2 = np.empty(size, np.uint8), np.empty(size, np.uint8)
        self.layout = np.empty((size, len(_LAYOUT)), u64)

    def write(self, values: NDArray[np.float32], lo: NDArray[np.uint64], hi: NDArray[np.uint64],
              length: NDArray | None, sep: int, nan: bytes, inf: tuple[bytes, bytes]) -> None:
        """Write ``values`` (contiguous float32, at most ``size``) as text into ``lo``/``hi`` (any strides).

        The text starts at byte 0 with ``sep`` (when not 0), unused bytes are
        NUL, and ``length`` (if given) receives the number of bytes used.
        """
        m = values.shape[0]
        if m == 0:
            return
        T = _tables()
        bits = values.view(np.uint32)
        absb = self.absb[:m]
        np.bitwise_and(bits, 0x7FFFFFFF, out=absb)
        special = None
        # Zero, subnormals, the smallest normal (its half ulp below is smaller), inf and NaN.
        if absb.min() <= 0x00800000 or absb.max() >= 0x7F800000:
            special = (absb <= 0x00800000) | (absb >= 0x7F800000)
            absb[special] = 0x3F800000  # 1.0 stands in; patched below
        e = self._decimal(absb, m)
        low, high = e.min(), e.max()
        large = None  # positional with 6..9 integer digits
        if high >= 5 and low <= 8:
            large = np.flatnonzero((e >= 5) & (e <= 8))
        scientific = low < -4 or high > 8
        ie, d0, r4, lo4 = self.ie[:m], self.i3[:m], self.i2[:m], self.i1[:m]
        hit, ex = self.hit[:m], self.ex[:m]
        w1, w2, w3 = self.w1[:m], self.w2[:m], self.w3[:m]
        # The digit word d1..d8 (d1 in the low byte), trailing zeros as NUL.
        np.equal(lo4, 0, out=hit)
        np.multiply(hit, 10000, out=ex)
        np.add(ex, r4, out=ex)
        np.take(T["low_half"], ex, out=w1, mode="clip")
        np.take(T["high_half"], lo4, out=w2, mode="clip")
        np.bitwise_or(w1, w2, out=w1)
        layout = self.layout[:m]
        np.take(T["layout"], ie, axis=0, out=layout, mode="clip")
        tail_shift, int_mask, head_shift, prefix, point, sign_shift = (layout[:, k] for k in range(6))
        # w3: the digits after the point (all of d1..d8 when e < 0).
        np.right_shift(w1, tail_shift, out=w3)
        # w1: d0 with the integer digits (zeros kept), ending at byte 6 (e >= 0) or at byte 7 (e < 0).
        np.bitwise_or(w1, 0x30303030, out=w1)
        np.bitwise_and(w1, int_mask, out=w1)
        np.left_shift(w1, 8, out=w1)
        np.bitwise_or(d0, _ZERO, out=d0)
        np.bitwise_or(w1, d0.view(np.uint64), out=w1)
        np.left_shift(w1, head_shift, out=w1)
        np.bitwise_or(w1, prefix, out=w1)
        np.not_equal(w3, 0, out=hit)
        np.multiply(point, hit, out=w2)
        np.bitwise_or(w1, w2, out=w1)
        # The sign just before the text, then everything shifted left to start at byte 1 (0 without sep).
        neg = self.i1[:m]
        np.right_shift(bits, 31, out=neg)
        np.multiply(neg, ord("-"), out=ex)
        np.left_shift(ex.view(np.uint64), sign_shift, out=ex.view(np.uint64))
        np.bitwise_or(w1, ex.view(np.uint64), out=w1)
        np.left_shift(neg, 3, out=neg)
        np.subtract(sign_shift, neg.view(np.uint64), out=w2)
        if not sep:
            np.add(w2, 8, out=w2)
        np.right_shift(w1, w2, out=w1)
        np.subtract(64, w2, out=w2)
        np.left_shift(w3, w2, out=ex.view(np.uint64))
        np.bitwise_or(w1, ex.view(np.uint64), out=w1)
        np.subtract(64, w2, out=w2)
        np.right_shift(w3, w2, out=hi)
        if sep:
            np.bitwise_or(w1, sep, out=lo)
        else:
            np.copyto(lo, w1)
        if scientific:  # "e±XX" after the text
            self._count(lo, hi, ex, m)
            np.left_shift(ex, 3, out=ex)
            np.take(T["suffix"], ie, out=w2, mode="clip")
            np.left_shift(w2, ex.view(np.uint64), out=w1)
            np.bitwise_or(lo, w1, out=lo)
            np.subtract(64, ex, out=d0)
            np.right_shift(w2, d0.view(np.uint64), out=w1)
            np.bitwise_or(hi, w1, out=hi)
            np.subtract(ex, 64, out=d0)
            np.left_shift(w2, d0.view(np.uint64), out=w1)
            np.bitwise_or(hi, w1, out=hi)
        if large is not None:
            _write_large(values[large], e[large], self.mant[:m][large], large, lo, hi, sep)
        if special is not None:
            _patch_special(values, np.flatnonzero(special), lo, hi, sep, nan, inf)
        if length is not None:
            self._count(lo, hi, length, m)

    def _count(self, lo, hi, out, m) -> None:
        """The number of bytes used in each unit (every character written has bit 5 set)."""
        w1 = self.w1[:m]
        np.bitwise_and(lo, _TEXT_BITS, out=w1)
        np.bitwise_count(w1, out=self.n1[:m])
        np.bitwise_and(hi, _TEXT_BITS, out=w1)
        np.bitwise_count(w1, out=self.n2[:m])
        np.add(self.n1[:m], self.n2[:m], out=out)

    def _decimal(self, absb: NDArray[np.uint32], m: int) -> NDArray[np.int64]:
        """For positive normal values: e (decimal exponent), ie = e + 64, and the nine digits as
        d0 (i3), d1..d4 (i2), d5..d8 (i1)."""
        T = _tables()
        a64, s, scale, hu, mant, c = self.a64[:m], self.s[:m], self.scale[:m], self.hu[:m], self.mant[:m], self.c[:m]
        hit, ex, e, ie = self.hit[:m], self.ex[:m], self.e[:m], self.ie[:m]
        np.copyto(a64, absb.view(np.float32))
        np.right_shift(absb, 23, out=ex)
        np.take(T["next_power"], ex, out=scale, mode="clip")
        np.greater_equal(a64, scale, out=hit)
        np.take(T["exponent_low"], ex, out=e, mode="clip")
        np.add(e, hit, out=e)
        np.add(e, 64, out=ie)
        np.take(T["scale"], ie, out=scale, mode="clip")
        np.multiply(a64, scale, out=s)  # the value * 10**(8-e): nine digits before the point
        # Half an ulp, in the same units (the gap below a power of two is half as wide).
        np.subtract(absb, 1, out=self.u32[:m])
        np.right_shift(self.u32[:m], 23, out=ex)
        np.take(T["half_ulp"], ex, out=hu, mode="clip")
        np.multiply(hu, scale, out=hu)
        np.rint(s, out=mant)
        for step in (10.0, 100.0):  # 8 digits, then 7, where the value reads back from them
            np.multiply(s, 1 / step, out=c)
            np.rint(c, out=c)
            np.multiply(c, step, out=c)
            np.subtract(c, mant, out=a64)
            np.subtract(c, s, out=c)
            np.abs(c, out=c)
            np.less(c, hu, out=hit)
            np.multiply(a64, hit, out=a64)
            np.add(mant, a64, out=mant)
        if mant.max() >= 1e9:  # rounded up to 1000000000
            big = mant >= 1e9
            mant[big] = 1e8
            e[big] += 1
            ie[big] += 1
        i1, i2, i3 = self.i1[:m], self.i2[:m], self.i3[:m]
        np.copyto(i1, mant, casting="unsafe")
        np.floor_divide(i1, 10000, out=i2)  # d0..d4
        np.multiply(i2, 10000, out=i3)
        np.subtract(i1, i3, out=i1)  # d5..d8
        np.floor_divide(i2, 10000, out=i3)  # d0
        np.multiply(i3, 10000, out=ex)
        np.subtract(i2, ex, out=i2)  # d1..d4
        return e


def _write_large(values, exponents, mantissas, index, lo, hi, sep: int) -> None:
    """Values from 1e5 to 1e9 (positional, six to nine integer digits), one at a time: they are rare."""
    for value, e, mant, i in zip(values.tolist(), exponents.tolist(), mantissas.tolist(), index.tolist()):
        digits = f"{int(mant):09d}"
        fraction = digits[e + 1 :].rstrip("0")
        text = ("-" if value < 0 else "") + digits[: e + 1] + ("." + fraction if fraction else "")
        lo[i], hi[i] = _unit_words(text.encode(), sep)


def _left_align(cells: NDArray[np.uint8], keep_first: bool = False) -> NDArray[np.uint8]:
    """Move the NUL bytes of each row to its end, keeping the order of the others (and column 0 if asked)."""
    cells = np.ascontiguousarray(cells)
    if keep_first:
        rest = _left_align(cells[:, 1:])
        return np.concatenate([cells[:, :1], rest], axis=1)
    order = np.argsort(cells == 0, axis=1, kind="stable")
    return np.take_along_axis(cells, order, axis=1)


def _unit_words(text: bytes, sep: int = 0) -> tuple[np.uint64, np.uint64]:
    raw = (bytes([sep]) if sep else b"") + text
    raw = raw[:UNIT].ljust(UNIT, b"\0")
    return _U64(int.from_bytes(raw[:8], "little")), _U64(int.from_bytes(raw[8:], "little"))


def _patch_special(values, index, lo, hi, sep, nan, inf) -> None:
    """Zeros, infinities and NaN as tokens; subnormals one at a time (they are rare)."""
    sub = values[index]
    zero = sub == 0
    negative = np.signbit(sub)
    rest = np.ones(index.shape[0], dtype=bool)
    for where, text in ((zero & ~negative, b"0"), (zero & negative, b"-0"), (np.isnan(sub), nan),
                        (np.isposinf(sub), inf[0]), (np.isneginf(sub), inf[1])):
        if where.any():
            lo[index[where]], hi[index[where]] = _unit_words(text, sep)
            rest &= ~where
    for i in index[rest].tolist():  # subnormals, and the smallest normal
        text = np.format_float_scientific(values[i], unique=True, trim="-", exp_digits=2).encode()
        lo[i], hi[i] = _unit_words(text, sep)


_LOCAL = threading.local()  # work arrays per thread


def _float_writer(size: int) -> _Float32Writer:
    size = max(size, 1)
    writers = getattr(_LOCAL, "writers", None)
    if writers is None:
        writers = _LOCAL.writers = {}
    writer = writers.get(size)
    if writer is None:
        if len(writers) > 4:
            writers.clear()
        writer = writers[size] = _Float32Writer(size)
    return writer


def _write_float32(values: NDArray, lo, hi, length, sep: int, nan: bytes, inf: tuple[bytes, bytes]) -> None:
    """Write float32 text into the unit words ``lo`` / ``hi`` (and ``length``), CHUNK_ROWS values at a time."""
    values = np.ascontiguousarray(values, dtype=np.float32).ravel()
    writer = _float_writer(min(values.shape[0], FLOAT_BATCH))
    for start in range(0, values.shape[0], writer.size):
        stop = start + writer.size
        writer.write(values[start:stop], lo[start:stop], hi[start:stop],
                     None if length is None else length[start:stop], sep, nan, inf)


def format_float32(values: NDArray, nan: bytes = b"", inf: tuple[bytes, bytes] = (b"inf", b"-inf")) -> NDArray[np.uint8]:
    """Format float32 values into a (M, FLOAT_WIDTH) uint8 matrix, left-aligned and NUL-padded.

    Each value is written with the fewest of 7, 8 or 9 significant digits
    that parse back to the same float32, trailing zeros dropped.
    """
    v = np.asarray(values, dtype=np.float32).ravel()
    words = np.zeros((v.shape[0], 2), dtype=np.uint64)
    _write_float32(v, words[:, 0], words[:, 1], None, 0, nan, inf)
    return words.view(np.uint8).reshape(v.shape[0], FLOAT_WIDTH)


# ------------------------------------------------------------------ integers


_POW10_INT = 10 ** np.arange(1, 19, dtype=np.int64)  # 10 .. 10^18


def _int_units(values: NDArray[np.int64], prefix: bytes) -> tuple[NDArray[np.uint64], NDArray[np.int64]] | None:
    """``prefix`` + decimal digits of each value as a unit (two words) and its length; None if too long."""
    v = np.asarray(values, dtype=np.int64)
    if v.size and (v.max() >= 10**8 or v.min() <= -(10**8)):
        return None
    if len(prefix) > UNIT - 9:
        return None
    T = _tables()
    a = np.abs(v)
    digits = np.searchsorted(_POW10_INT[:8], a, side="right") + 1  # 1..8
    word = np.take(T["digits"], a // 10000) | np.take(T["digits_high"], a % 10000)  # 8 digits, zero-filled
    word >>= (_U64(8) * (_U64(8) - digits.astype(np.uint64)))
    neg = (v < 0).astype(np.uint64)
    shift = _U64(8) * (_U64(len(prefix)) + neg)
    lo = _U64(int.from_bytes(prefix, "little") if prefix else 0) | neg * (_U64(ord("-")) << (_U64(8) * _U64(len(prefix))))
    lo = lo | (word << shift)
    hi = np.where(shift > 0, word >> (_U64(64) - shift), _U64(0))
    units = np.stack([lo, hi], axis=1)
    return units, len(prefix) + neg.astype(np.int64) + digits


# ------------------------------------------------------------------ other types


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
    """float64 values with the shortest digits that round-trip (Python's repr), in the float32 notation."""
    v = np.asarray(values, dtype=np.float64).ravel()
    cache: dict[float, bytes] = {}
    texts = []
    for x in v.tolist():
        text = cache.get(x) if x else None  # 0.0 == -0.0: zeros are not cached
        if text is None:
            text = cache[x] = _float64_text(x, nan, inf)
        texts.append(text)
    width = max((len(t) for t in texts), default=1) or 1
    return np.array(texts, dtype=f"S{width}").view(np.uint8).reshape(v.shape[0], width)


def _float64_text(x: float, nan: bytes, inf: tuple[bytes, bytes]) -> bytes:
    if math.isnan(x):
        return nan
    if x in (float("inf"), float("-inf")):
        return inf[0] if x > 0 else inf[1]
    text = repr(x)
    sign = "-" if text.startswith("-") else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return (sign + "0").encode()
    # decimal exponent of the first significant digit
    e = int(exponent or 0) + (len(whole.lstrip("0")) - 1 if whole.strip("0") else len(fraction.lstrip("0")) - len(fraction) - 1)
    digits = digits.rstrip("0")
    if -4 <= e <= 8:
        if e < 0:
            body = "0." + "0" * (-e - 1) + digits
        else:
            body = digits[: e + 1].ljust(e + 1, "0") + ("." + digits[e + 1 :] if len(digits) > e + 1 else "")
    else:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + f"e{'-' if e < 0 else '+'}{abs(e):02d}"
    return (sign + body).encode()


_INT_POW = 10 ** np.arange(18, -1, -1, dtype=np.int64)  # 10^18 .. 10^0


def format_int(values: NDArray) -> NDArray[np.uint8]:
    """Integers as decimal digits, (M, width) left-aligned and NUL-padded."""
    v = np.asarray(values).ravel()
    if v.size == 0:
        return np.zeros((0, 1), dtype=np.uint8)
    if (v.dtype == np.uint64 and v.max() > np.iinfo(np.int64).max) or (v.dtype == np.int64 and v.min() == np.iinfo(np.int64).min):
        # Beyond what the int64 digit arithmetic below holds (integer tensors in a crafted file).
        return format_text(v.astype(object), "csv")
    v = v.astype(np.int64, copy=False)
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
    return _left_align(out)


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


# ------------------------------------------------------------------ rows


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


def _tokens(style: str) -> tuple[bytes, tuple[bytes, bytes]]:
    if style == "csv":
        return b"", (b"inf", b"-inf")
    return b"null", (b"null", b"null")


def _is_scalar(column) -> bool:
    return column is None or np.isscalar(column) or isinstance(column, (str, bytes))


def _scalar_text(column, style: str) -> bytes:
    cells = format_field(column, 1, style)
    return bytes(cells[0]).rstrip(b"\0")


def format_field(column: NDArray | str | float, rows: int, style: str) -> NDArray[np.uint8]:
    """One column of a block as a (rows, width) byte matrix, left-aligned and NUL-padded; scalars are repeated."""
    nan, inf = _tokens(style)
    text_style = "json" if style != "csv" else "csv"
    if _is_scalar(column):
        if isinstance(column, (bool, np.bool_)):
            cell = format_int(np.array([int(column)]))
        elif isinstance(column, (int, np.integer)):
            cell = format_int(np.array([column]))
        elif isinstance(column, np.float32):
            cell = format_float32(np.array([column]), nan, inf)
        elif isinstance(column, (float, np.floating)):
            cell = format_float64(np.array([column]), nan, inf)
        else:
            cell = format_text([column], text_style)
        return np.broadcast_to(cell, (rows, cell.shape[1]))
    if isinstance(column, np.ma.MaskedArray):
        missing = np.ma.getmaskarray(column)
        cells = _widen(format_field(column.filled(0), rows, style).copy(), max(len(nan), 1))
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
    return format_text(array, text_style)


class BlockFormatter:
    """Formats the blocks of one table (same columns, same style) into bytes, reusing its buffers.

    ``format(data)`` yields the text of a block a chunk of rows at a time;
    ``write(stream, data)`` writes it.  ``data`` holds one entry per column:
    an array (all of the same length) or a scalar repeated on every row.
    """

    def __init__(self, columns: Sequence[str], style: RowStyle, chunk_rows: int | None = None) -> None:
        self.columns = list(columns)
        self.style = style
        self.chunk_rows = max(1, int(chunk_rows or CHUNK_ROWS))
        self.prefixes = style.prefixes(self.columns)
        self.nan, self.inf = _tokens(style.name)
        self._key = None
        self._units: NDArray[np.uint64] | None = None  # (rows, units, 2)
        self._lengths: NDArray[np.int64] | None = None  # (rows, units)
        self._out: NDArray[np.uint8] | None = None
        self._floats: tuple | None = None  # float text before it goes into the units
        self._scalars: dict = {}  # scalar column value -> its text
        self._tables: dict = {}  # (low, high, prefix, token) -> integer units

    def format(self, data: Sequence) -> Iterator[bytes]:
        """The text of one block, a chunk of rows at a time."""
        for view in self._chunks(data):
            yield view.tobytes()

    def write(self, stream: BinaryIO, data: Sequence) -> None:
        """Write the text of one block to ``stream``."""
        stream.writelines(view.data for view in self._chunks(data))

    def _chunks(self, data: Sequence) -> Iterator[NDArray[np.uint8]]:
        rows = _row_count(data)
        for start in range(0, rows, self.chunk_rows):
            stop = min(rows, start + self.chunk_rows)
            part = [column if _is_scalar(column) else column[start:stop] for column in data]
            yield self._format_chunk(part, stop - start)

    # -- one chunk ----------------------------------------------------------------

    def _plan(self, data: Sequence, rows: int) -> list[tuple]:
        """The units of a row: ("const", text) | ("f32", values, sep) | ("table", units, lengths, index) |
        ("cells", cells, lengths)."""
        style = self.style.name
        plan: list[tuple] = []
        pending = b""
        for prefix, column in zip(self.prefixes, data):
            if _is_scalar(column):
                key = (type(column), column)
                text = self._scalars.get(key)
                if text is None:
                    text = _scalar_text(column, style)
                    if len(self._scalars) < 256:
                        self._scalars[key] = text
                pending += prefix + text
                continue
            pending += prefix
            array = column if isinstance(column, np.ma.MaskedArray) else np.asarray(column)
            if array.dtype in (np.float32, np.float16) and not isinstance(array, np.ma.MaskedArray):
                sep = pending[-1] if pending else 0
                self._add_const(plan, pending[:-1])
                if plan and plan[-1][0] == "f32" and plan[-1][2] == sep:  # neighbours: formatted in one go
                    plan[-1][1].append(array)
                else:
                    plan.append(("f32", [array], sep))
                pending = b""
                continue
            if array.dtype == np.bool_ or array.dtype.kind in "iu":
                keep = max(0, len(pending) - (UNIT - 9))
                table = _int_table(array, pending[keep:], self.nan, self._tables)
                if table is not None:
                    self._add_const(plan, pending[:keep])
                    plan.append(("table",) + table)
                    pending = b""
                    continue
            cells = format_field(array, rows, style)
            if pending:
                head = np.broadcast_to(np.frombuffer(pending, dtype=np.uint8), (rows, len(pending)))
                cells = np.concatenate([head, cells], axis=1)
                pending = b""
            width = -(-cells.shape[1] // UNIT) * UNIT
            cells = np.ascontiguousarray(_widen(cells, width))
            plan.append(("cells", cells, np.count_nonzero(cells, axis=1)))
        pending += self.style.end
        self._add_const(plan, pending)
        return plan

    def _float_buffers(self, size: int) -> tuple[NDArray[np.uint64], NDArray[np.uint64], NDArray[np.int64]]:
        if self._floats is None or self._floats[0].shape[0] < size:
            self._floats = (np.empty(size, np.uint64), np.empty(size, np.uint64), np.empty(size, np.int64))
        return tuple(buffer[:size] for buffer in self._floats)

    @staticmethod
    def _add_const(plan: list, text: bytes) -> None:
        for start in range(0, len(text), UNIT):
            plan.append(("const", text[start : start + UNIT]))

    def _format_chunk(self, data: Sequence, rows: int) -> NDArray[np.uint8]:
        plan = self._plan(data, rows)
        count = sum(_unit_count(p) for p in plan)
        key = (tuple(p[1] if p[0] == "const" else (p[0], _unit_count(p)) for p in plan), self.chunk_rows)
        if key != self._key:
            size = max(rows, self.chunk_rows)
            self._units = np.zeros((size, count, 2), dtype=np.uint64)
            self._lengths = np.zeros((size, count), dtype=np.int64)
            self._out = np.zeros(size * count * UNIT + UNIT, dtype=np.uint8)
            u = 0
            for p in plan:
                if p[0] == "const":
                    self._units[:, u] = _unit_words(p[1])
                    self._lengths[:, u] = len(p[1])
                u += _unit_count(p)
            self._key = key
        units, lengths = self._units[:rows], self._lengths[:rows]
        u = 0
        for p in plan:
            kind = p[0]
            if kind == "f32":
                k = len(p[1])
                values = p[1][0] if k == 1 else np.stack(p[1])  # (k, rows)
                lo, hi, length = self._float_buffers(k * rows)
                _write_float32(values, lo, hi, length, p[2], self.nan, self.inf)
                units[:, u : u + k, 0] = lo.reshape(k, rows).T
                units[:, u : u + k, 1] = hi.reshape(k, rows).T
                lengths[:, u : u + k] = length.reshape(k, rows).T
                u += k
                continue
            elif kind == "table":
                _, table, table_lengths, index = p
                np.take(table, index, axis=0, out=units[:, u], mode="clip")
                np.take(table_lengths, index, out=lengths[:, u], mode="clip")
            elif kind == "cells":
                cells, cell_lengths = p[1], p[2]
                n = cells.shape[1] // UNIT
                units[:, u : u + n] = cells.view(np.uint64).reshape(rows, n, 2)
                for k in range(n):
                    np.clip(cell_lengths - UNIT * k, 0, UNIT, out=lengths[:, u + k])
                u += n
                continue
            u += 1
        # Concatenate: unit k goes to the sum of the lengths before it; the next unit overwrites its padding.
        flat_lengths = lengths.reshape(-1)
        ends = np.cumsum(flat_lengths)
        total = int(ends[-1])
        starts = np.subtract(ends, flat_lengths, out=ends)
        out = self._out
        target = np.ndarray((out.shape[0] - UNIT + 1,), dtype="V16", buffer=out, strides=(1,))
        target[starts] = units.reshape(-1, 2).view("V16").reshape(-1)
        return out[:total]


def _unit_count(p: tuple) -> int:
    if p[0] == "cells":
        return p[1].shape[1] // UNIT
    if p[0] == "f32":
        return len(p[1])
    return 1


INT_WINDOW = 4096  # integer texts are made for aligned windows of values, kept from one chunk to the next


def _int_table(array, prefix: bytes, nan: bytes, cache: dict | None = None):
    """Integers with a small range: (units, lengths, index) with each distinct value's text once; else None."""
    masked = isinstance(array, np.ma.MaskedArray)
    missing = np.ma.getmaskarray(array) if masked else None
    raw = (array.filled(0) if masked else array).ravel()
    if raw.size == 0 or (raw.dtype == np.uint64 and raw.max() > np.iinfo(np.int64).max):
        return None
    v = raw.astype(np.int64, copy=False)
    low, high = int(v.min()), int(v.max())
    if low < -(1 << 62) or high > 1 << 62:  # near the int64 limits (integer tensors in a crafted file)
        return None
    if high - low > max(4096, 2 * v.shape[0]):
        return None
    with_token = missing is not None and bool(missing.any())
    if high - low < INT_WINDOW:  # a table for the one or two windows around, reused by the next chunks
        low = low // INT_WINDOW * INT_WINDOW
        high = max(high, low + 2 * INT_WINDOW - 1)
    key = (low, high, prefix, nan if with_token else None)
    made = cache.get(key) if cache is not None else None
    if made is None:
        made = _int_units(np.arange(low, high + 1, dtype=np.int64), prefix)
        if made is None:
            return None
        if with_token:
            token_lo, token_hi = _unit_words(prefix + nan)
            made = (np.concatenate([made[0], np.array([[token_lo, token_hi]], dtype=np.uint64)]),
                    np.concatenate([made[1], [len(prefix) + len(nan)]]))
        if cache is not None:
            if len(cache) > 16:
                cache.clear()
            cache[key] = made
    units, lengths = made
    index = v - low
    if with_token:
        index = np.where(missing.ravel(), units.shape[0] - 1, index)
    return units, lengths, index


def format_rows(columns: Sequence[str], data: Sequence[NDArray | str | int | float], style: RowStyle) -> bytes:
    """A block of rows as bytes."""
    return b"".join(BlockFormatter(columns, style).format(data))


def _row_count(data: Sequence) -> int:
    for column in data:
        if not _is_scalar(column):
            return int(np.asarray(column).shape[0])
    return 1 if data else 0


def csv_header(columns: Sequence[str]) -> bytes:
    return b",".join(_quote(c, "csv") for c in columns) + b"\n"
