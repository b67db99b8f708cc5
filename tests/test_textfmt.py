"""The text formatter's contract: every float32 reads back to the same float32, near-shortest.

Expected values come from Python's own parsers (``float``, ``csv``, ``json``),
libc's ``strtof`` and NumPy's shortest repr, never from the formatter itself.
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import io
import json
import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lstm_inspect import textfmt
from lstm_inspect.frames import Block
from lstm_inspect.textfmt import BlockFormatter, RowStyle, format_float32, format_rows
from lstm_inspect.writers import write_blocks

FLOAT32 = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)
FINITE32 = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)


def _strtof():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    fn = libc.strtof
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    return lambda text: np.float32(fn(text, None))


STRTOF = _strtof()


def cells(values: np.ndarray, style: str = "csv") -> list[bytes]:
    """One float32 per line, as written by the CSV formatter."""
    text = format_rows(["v"], [np.asarray(values, dtype=np.float32)], RowStyle(style))
    lines = text.split(b"\n")
    assert lines[-1] == b""
    return lines[:-1]


def same_float32(a, b) -> bool:
    return np.float32(a).view(np.uint32) == np.float32(b).view(np.uint32)


def numpy_shortest(x: np.float32) -> str:
    """NumPy's shortest repr, in the formatter's notation (positional for exponents -4..8)."""
    if x == 0:
        return "-0" if np.signbit(x) else "0"
    if 1e-4 <= abs(x) < 1e9:
        return np.format_float_positional(x, unique=True, trim="-")
    return np.format_float_scientific(x, unique=True, trim="-", exp_digits=2)


def check_text(cell: bytes, x: np.float32) -> None:
    """Round trip, significant digits and notation of one formatted float32."""
    text = cell.decode()
    if np.isnan(x):
        assert text == ""
        return
    if np.isinf(x):
        assert text == ("inf" if x > 0 else "-inf")
        return
    assert same_float32(float(text), x), (text, x)
    if STRTOF is not None:
        assert same_float32(STRTOF(cell), x), (text, x)
    mantissa, _, exponent = text.lstrip("-").partition("e")
    digits = mantissa.replace(".", "").lstrip("0")
    assert len(digits) <= 9, text
    assert not mantissa.endswith(".") and not ("." in mantissa and mantissa.endswith("0")), text
    if x != 0:
        if exponent:  # d.ddde±XX, only outside -4..8
            assert not (-4 <= int(exponent) <= 8), text
            assert len(exponent) == 3 and exponent[0] in "+-", text
            assert len(mantissa.split(".")[0]) == 1, text
        else:
            assert -4 <= Decimal(text).adjusted() <= 8, text


# ------------------------------------------------------------------ float32 properties


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(np.float32, st.integers(1, 300), elements=FLOAT32))
def test_float32_round_trip_and_notation(values):
    for cell, x in zip(cells(values), values):
        check_text(cell, x)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_every_bit_pattern_round_trips(bits):
    x = np.array([bits], dtype=np.uint32).view(np.float32)
    check_text(cells(x)[0], x[0])


@pytest.mark.parametrize(
    "value,text",
    [
        (0.0, "0"), (-0.0, "-0"), (1.0, "1"), (-1.0, "-1"), (0.5, "0.5"), (0.1, "0.1"), (100.0, "100"),
        (1200.5, "1200.5"), (0.0001, "0.0001"), (1.5e-5, "1.5e-05"), (123456790.0, "123456790"),
        (1e9, "1e+09"), (3.4028235e38, "3.4028235e+38"), (-2.5e-30, "-2.5e-30"), (1e-45, "1e-45"),
        (float("inf"), "inf"), (float("-inf"), "-inf"), (float("nan"), ""),
    ],
)
def test_float32_known_texts(value, text):
    assert cells(np.array([value], dtype=np.float32))[0].decode() == text


def test_float32_extremes_and_subnormals():
    info = np.finfo(np.float32)
    values = np.array(
        [info.max, -info.max, info.tiny, -info.tiny, info.smallest_subnormal, -info.smallest_subnormal,
         np.nextafter(info.tiny, 0), np.nextafter(np.float32(1), 2), np.nextafter(np.float32(1), 0),
         np.float32(2**-126 * 1.5), np.float32(16777216), np.float32(16777217), 9.999999e-5, 99999.99, 999999.94],
        dtype=np.float32,
    )
    for cell, x in zip(cells(values), values):
        check_text(cell, x)


def test_powers_of_two_and_ten_round_trip():
    """The exponent table and the narrower gap below powers of two."""
    exponents = np.arange(-149, 128)
    twos = np.ldexp(np.float32(1), exponents).astype(np.float32)
    near = [np.nextafter(twos, np.float32(0)), twos, np.nextafter(twos, np.float32(np.inf))]
    tens = [np.float32(10.0**k) for k in range(-45, 39)]
    tens_near = [np.nextafter(t, d) for t in tens for d in (np.float32(0), np.float32(np.inf))]
    values = np.concatenate(near + [np.array(tens + tens_near, dtype=np.float32)])
    values = values[np.isfinite(values)]
    for cell, x in zip(cells(values), values):
        check_text(cell, x)


def test_million_values_round_trip_near_shortest():
    """~1e6 values from several distributions: no round-trip failure; nearly always NumPy's shortest text."""
    rng = np.random.default_rng(2024)
    n = 200_000
    sets = {
        "sigmoid": 1 / (1 + np.exp(-rng.normal(0, 3, n))),
        "tanh": np.tanh(rng.normal(0, 2, n)),
        "cell": rng.normal(0, 3, n),
        "log-uniform": np.exp(rng.uniform(np.log(1e-7), np.log(1e7), n)) * rng.choice([-1, 1], n),
        "bits": rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32),
    }
    for name, raw in sets.items():
        values = np.asarray(raw).astype(np.float32)
        values = values[np.isfinite(values)]
        text = format_rows(["v"], [values], RowStyle("csv"))
        parsed = np.array(text.split(b"\n")[:-1]).astype(np.float64).astype(np.float32)
        failures = np.flatnonzero(parsed.view(np.uint32) != values.view(np.uint32))
        assert failures.size == 0, (name, values[failures[:5]])
        sample = values[:: max(1, values.size // 5000)]
        lines = cells(sample)
        same = np.mean([line.decode() == numpy_shortest(x) for line, x in zip(lines, sample)])
        if STRTOF is not None:
            assert all(same_float32(STRTOF(line), x) for line, x in zip(lines, sample))
        assert same >= (0.99 if name != "bits" else 0.98), (name, same)


# ------------------------------------------------------------------ tables round-trip


ROWS = st.integers(1, 40)


@st.composite
def blocks(draw):
    rows = draw(ROWS)
    texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
    data = {
        "f32": draw(hnp.arrays(np.float32, rows, elements=FLOAT32)),
        "f64": draw(hnp.arrays(np.float64, rows, elements=st.floats(allow_nan=True, allow_infinity=True))),
        "i64": draw(hnp.arrays(np.int64, rows, elements=st.integers(-(2**62), 2**62))),
        "small": draw(hnp.arrays(np.int64, rows, elements=st.integers(-3, 40))),
        "flag": draw(hnp.arrays(np.bool_, rows)),
        "name": np.array(draw(st.lists(texts, min_size=rows, max_size=rows)), dtype=object),
        "const": draw(st.one_of(st.integers(-5, 10**6), texts)),
    }
    return rows, data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(), st.integers(1, 7))
def test_csv_parses_back(block, chunk_rows):
    rows, data = block
    columns = list(data)
    formatter = BlockFormatter(columns, RowStyle("csv"), chunk_rows=chunk_rows)
    text = b"".join(formatter.format(list(data.values()))).decode()
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert len(parsed) == rows
    for r, line in enumerate(parsed):
        row = dict(zip(columns, line))
        assert len(line) == len(columns)
        for name in ("f32", "f64"):
            x = data[name][r]
            if np.isnan(x):
                assert row[name] == ""
            else:
                assert float(row[name]) == x and math.copysign(1, float(row[name])) == math.copysign(1, x)
                if name == "f32":
                    assert same_float32(float(row[name]), x)
        assert int(row["i64"]) == data["i64"][r]
        assert int(row["small"]) == data["small"][r]
        assert int(row["flag"]) == int(data["flag"][r])
        assert row["name"] == data["name"][r]
        assert row["const"] == str(data["const"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks(), st.sampled_from(["json", "ndjson"]), st.integers(1, 7))
def test_json_parses_back(block, fmt, chunk_rows):
    rows, data = block
    columns = list(data)
    stream = io.BytesIO()
    original = textfmt.CHUNK_ROWS
    textfmt.CHUNK_ROWS = chunk_rows
    try:
        written = write_blocks([Block(columns, list(data.values()))], columns, fmt, stream)
    finally:
        textfmt.CHUNK_ROWS = original
    assert written == rows
    text = stream.getvalue().decode()
    objects = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.split("\n")[:-1]]
    assert len(objects) == rows
    for r, obj in enumerate(objects):
        assert list(obj) == columns
        for name in ("f32", "f64"):
            x = data[name][r]
            if not np.isfinite(x):
                assert obj[name] is None
            elif name == "f32":  # JSON reads "-0" as 0: equal, not the same bits
                assert same_float32(obj[name], x) or obj[name] == x == 0
            else:
                assert obj[name] == x
        assert obj["i64"] == data["i64"][r]
        assert obj["small"] == data["small"][r]
        assert obj["flag"] == int(data["flag"][r])
        assert obj["name"] == data["name"][r]
        assert obj["const"] == data["const"]


def test_masked_integers_are_empty_or_null():
    source = np.ma.masked_array([3, 0, 7], mask=[False, True, False])
    assert format_rows(["s"], [source], RowStyle("csv")) == b"3\n\n7\n"
    assert format_rows(["s"], [source], RowStyle("ndjson")) == b'{"s":3}\n{"s":null}\n{"s":7}\n'


def test_many_chunks_and_layout_changes():
    """Buffers are reused across blocks and chunks; a new layout (wider ints, other scalars) must not leak."""
    formatter = BlockFormatter(["sequence", "layer", "t", "v"], RowStyle("csv"), chunk_rows=5)
    out = []
    for seq, layer, start in ((0, "a", 0), (1, "bb", 95), (2, "a", 99_995)):
        t = np.arange(start, start + 12)
        v = (t * 0.25).astype(np.float32)
        out.append(b"".join(formatter.format([seq, layer, t, v])))
    lines = b"".join(out).decode().splitlines()
    assert len(lines) == 36
    assert lines[0] == "0,a,0,0" and lines[12] == "1,bb,95,23.75" and lines[-1] == "2,a,100006,25001.5"


def test_format_float32_matrix_is_left_aligned():
    matrix = format_float32(np.array([1.5, -0.25, np.nan], dtype=np.float32))
    assert matrix.shape == (3, textfmt.FLOAT_WIDTH)
    assert [bytes(row).rstrip(b"\0") for row in matrix] == [b"1.5", b"-0.25", b""]
