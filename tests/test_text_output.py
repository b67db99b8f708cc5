"""The text of CSV / JSON / NDJSON output, through both writers (polars, and smalltext for short outputs).

* Every float32 and float64 written reads back to exactly the same value,
  checked with exact rational arithmetic (``fractions``) for float32 and
  Python's correctly rounded ``float()`` for float64, and has the fewest
  significant digits that can: no decimal with one digit fewer rounds to the
  same value (checked exactly as well), for random bit patterns, subnormals,
  the extremes and the exact ties (9e9 and 1e28 as float32).
* The two writers give the same bytes for the same blocks.
* The output contracts: NaN is an empty CSV cell and JSON null, integers are
  integers (int64 extremes included), JSON parses back with the same keys.
"""

from __future__ import annotations

import csv
import io
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lstm_inspect import writers
from lstm_inspect.columns import Block

PATHS = ["small", "polars"]


def write(blocks, columns, fmt, path, monkeypatch) -> bytes:
    """``write_blocks`` forced onto one writer: smalltext ("small") or polars."""
    monkeypatch.setattr(writers, "SMALL_OUTPUT_ROWS", 10**12 if path == "small" else 0)
    stream = io.BytesIO()
    writers.write_blocks(list(blocks), columns, fmt, stream)
    return stream.getvalue()


def csv_column(values: np.ndarray, path: str, monkeypatch) -> list[str]:
    text = write([Block(["v"], [values])], ["v"], "csv", path, monkeypatch).decode()
    lines = text.split("\n")
    assert lines[0] == "v" and lines[-1] == ""
    return lines[1:-1]


# ------------------------------------------------------------------ exact checks


def nearest_float32(q: Fraction) -> np.float32:
    """The float32 nearest to the rational ``q`` (ties to even), by exact comparison."""
    if abs(q) >= 2**128 - 2**103:  # half an ulp above the largest float32 (2**128 - 2**104) and beyond
        return np.float32(np.inf if q > 0 else -np.inf)
    with np.errstate(over="ignore"):
        guess = np.float32(float(q))
        if np.isinf(guess):
            guess = np.copysign(np.finfo(np.float32).max, guess)
        candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    candidates = [c for c in candidates if np.isfinite(c)]

    def key(c):
        return abs(Fraction(float(c)) - q), int(np.array(c, dtype=np.float32).view(np.uint32)) & 1

    return min(candidates, key=key)


def significant_digits(text: str) -> str:
    mantissa = text.lstrip("-").partition("e")[0]
    return mantissa.replace(".", "").lstrip("0").rstrip("0")


def shorter_exists(x: float, digits: int, round_fn) -> bool:
    """Whether a decimal with ``digits - 1`` significant digits rounds (by ``round_fn``) to ``x``.

    The two such decimals either side of |x| in its decade are enough: any other one that rounded
    to x would make one of them round to x too (rounding is monotonic), and the decade's bounds
    10**e and 10**(e+1) are on the same grid.
    """
    if digits <= 1:
        return False
    v = abs(Fraction(x))
    e = len(str(v.numerator)) - len(str(v.denominator))  # then adjust to floor(log10(v))
    while Fraction(10) ** e > v:
        e -= 1
    while Fraction(10) ** (e + 1) <= v:
        e += 1
    unit = Fraction(10) ** (e - (digits - 1) + 1)
    below = math.floor(v / unit) * unit
    for candidate in (below, below + unit):
        if candidate > 0 and round_fn(candidate) == abs(x):
            return True
    return False


def check_float32(text: str, x: np.float32) -> None:
    if np.isnan(x):
        assert text == ""
        return
    if np.isinf(x):
        assert text == ("inf" if x > 0 else "-inf")
        return
    back = nearest_float32(Fraction(text))
    if x == 0:
        assert back == 0 and text.startswith("-") == bool(np.signbit(x)), text
        return
    assert np.float32(back).view(np.uint32) == np.float32(x).view(np.uint32), (text, x)
    digits = significant_digits(text)
    assert not shorter_exists(float(x), len(digits), lambda q: nearest_float32(q)), (text, x)


def check_float64(text: str, x: float) -> None:
    if math.isnan(x):
        assert text == ""
        return
    if math.isinf(x):
        assert text == ("inf" if x > 0 else "-inf")
        return
    assert float(text) == x and math.copysign(1, float(text)) == math.copysign(1, x), (text, x)
    # Python's repr is the shortest round-trip text (David Gay's algorithm): the same number of digits.
    assert len(significant_digits(text)) == len(significant_digits(repr(abs(x)))), (text, x)
    assert not shorter_exists(x, len(significant_digits(text)), to_float64), (text, x)


def to_float64(q: Fraction) -> float:
    """``q`` correctly rounded to a double (``float()`` of a Fraction is), inf past the largest."""
    try:
        return float(q)
    except OverflowError:
        return math.inf


def float32_samples() -> np.ndarray:
    rng = np.random.default_rng(14)
    info = np.finfo(np.float32)
    special = np.array(
        [9e9, 1e28, 0.1, 1.0, -1.0, 0.0, -0.0, info.max, -info.max, info.tiny, info.smallest_subnormal,
         -info.smallest_subnormal, np.nextafter(info.tiny, 0), 16777216, 16777217, 123456789, 1e-6, 1e-7,
         9.5e12, 1e13, 3.4e38, 1e-45, 1e-40],
        dtype=np.float32,
    )
    bits = rng.integers(0, 2**32, 6000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    subnormal = (rng.integers(1, 2**23, 500, dtype=np.uint32) | (rng.integers(0, 2, 500, dtype=np.uint32) << 31)).view(np.float32)
    twos = np.ldexp(np.float32(1), np.arange(-149, 128)).astype(np.float32)
    tens = np.array([10.0**k for k in range(-45, 39)], dtype=np.float32)
    near = [np.nextafter(t, d) for t in (twos, tens) for d in (np.float32(0), np.float32(np.inf))]
    gates = np.tanh(rng.normal(0, 2, 2000)).astype(np.float32)
    odd = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    return np.concatenate([special, bits, subnormal, twos, tens, *near, gates, odd])


def float64_samples() -> np.ndarray:
    rng = np.random.default_rng(64)
    special = np.array([0.1, 1.0, -0.0, 0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e23, 9e15,
                        1e16, 1e-5, 1e-6, 0.30000000000000004, 2**53, 2**53 + 2])
    bits = rng.integers(0, 2**64, 20000, dtype=np.uint64).view(np.float64)
    subnormal = rng.integers(1, 2**52, 1000, dtype=np.int64).view(np.float64)
    tens = np.array([10.0**k for k in range(-320, 309)])
    twos = np.ldexp(1.0, np.arange(-1074, 1024))
    return np.concatenate([special, bits, subnormal, tens, twos, [np.nan, np.inf, -np.inf]])


@pytest.mark.parametrize("path", PATHS)
def test_every_float32_reads_back_exactly_and_is_shortest(path, monkeypatch):
    values = float32_samples()
    texts = csv_column(values, path, monkeypatch)
    assert len(texts) == values.size
    for text, x in zip(texts, values):
        check_float32(text, x)


@pytest.mark.parametrize("path", PATHS)
def test_every_float64_reads_back_exactly_and_is_shortest(path, monkeypatch):
    values = float64_samples()
    texts = csv_column(values, path, monkeypatch)
    assert len(texts) == values.size
    for text, x in zip(texts, values.tolist()):
        check_float64(text, x)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "value,dtype,text",
    [
        # Exact ties: the shortest text lies half-way between two float32s and reads back by ties-to-even.
        (9e9, np.float32, "9000000000.0"), (1e28, np.float32, "1e+28"),
        # The layout (chosen to be polars'): integral values keep ".0", positional within 1e-6..1e13 for
        # float32 and 1e-5..1e16 for float64, scientific outside with an unpadded exponent.
        (1.0, np.float32, "1.0"), (-0.0, np.float32, "-0.0"), (0.1, np.float32, "0.1"),
        (123456789.0, np.float32, "123456790.0"), (1e-6, np.float32, "0.000001"), (1e-7, np.float32, "1e-7"),
        (1e13, np.float32, "1e+13"), (1.5e-45, np.float32, "1e-45"), (0.1, np.float64, "0.1"),
        (1e-5, np.float64, "0.00001"), (1e-6, np.float64, "1e-6"), (1e16, np.float64, "1e+16"),
        (9.5e15, np.float64, "9500000000000000.0"), (5e-324, np.float64, "5e-324"),
    ],
)
def test_known_float_texts(path, value, dtype, text, monkeypatch):
    assert csv_column(np.array([value], dtype=dtype), path, monkeypatch) == [text]


# ------------------------------------------------------------------ contracts


INT64 = np.iinfo(np.int64)


@pytest.mark.parametrize("path", PATHS)
def test_integers_and_missing_values(path, monkeypatch):
    columns = ["i64", "u64", "masked", "flag", "f32", "f64", "obj_bool", "obj_int", "text", "const"]
    obj_bool = np.array([True, None, False], dtype=object)
    obj_int = np.array([None, 3, 2**62], dtype=object)
    text = np.array(["a,b", "", None], dtype=object)
    data = [
        np.array([INT64.min, INT64.max, 0]),
        np.array([2**64 - 1, 0, 1], dtype=np.uint64),
        np.ma.masked_array([7, 0, -1], mask=[False, True, False]),
        np.array([True, False, True]),
        np.array([np.nan, np.inf, -np.inf], dtype=np.float32),
        np.array([np.nan, 2.5, -np.inf]),
        obj_bool, obj_int, text, "lstm",
    ]
    block = Block(columns, data)
    csv_text = write([block], columns, "csv", path, monkeypatch).decode()
    assert csv_text.splitlines() == [
        ",".join(columns),
        '-9223372036854775808,18446744073709551615,7,1,,,true,,"a,b",lstm',
        '9223372036854775807,0,,0,inf,2.5,,3,"",lstm',
        "0,1,-1,1,-inf,-inf,false,4611686018427387904,,lstm",
    ]
    for fmt in ("ndjson", "json"):
        out = write([block], columns, fmt, path, monkeypatch).decode()
        rows = json.loads(out) if fmt == "json" else [json.loads(line) for line in out.splitlines()]
        assert [list(row) for row in rows] == [columns] * 3
        assert rows[0] == {"i64": INT64.min, "u64": 2**64 - 1, "masked": 7, "flag": 1, "f32": None, "f64": None,
                           "obj_bool": True, "obj_int": None, "text": "a,b", "const": "lstm"}
        assert rows[1]["masked"] is None and rows[1]["f32"] is None and rows[1]["text"] == ""
        assert rows[2]["f64"] is None and rows[2]["obj_int"] == 2**62 and rows[2]["text"] is None


@pytest.mark.parametrize("path", PATHS)
def test_json_is_one_array_and_empty_outputs(path, monkeypatch):
    columns = ["t", "v"]
    blocks = [Block(columns, [np.arange(k, k + 3), np.full(3, 0.5, np.float32)]) for k in (0, 3)]
    text = write(blocks, columns, "json", path, monkeypatch)
    assert text.startswith(b"[\n{") and text.endswith(b"}\n]\n")
    assert json.loads(text) == [{"t": t, "v": 0.5} for t in range(6)]
    if path == "small":  # nothing to write never reaches polars
        assert write([], columns, "json", path, monkeypatch) == b"[]\n"
        assert write([], columns, "csv", path, monkeypatch) == b"t,v\n"
        assert write([], columns, "ndjson", path, monkeypatch) == b""


# ------------------------------------------------------------------ the two writers agree


TEXTS = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10)


@st.composite
def blocks(draw):
    rows = draw(st.integers(1, 30))
    names = ["f32", "f64", "i64", "small", "flag", "name", "mixed", "masked", "const", "c32"]
    data = [
        draw(hnp.arrays(np.float32, rows, elements=st.floats(width=32))),
        draw(hnp.arrays(np.float64, rows, elements=st.floats())),
        draw(hnp.arrays(np.int64, rows, elements=st.integers(INT64.min, INT64.max))),
        draw(hnp.arrays(np.int8, rows)),
        draw(hnp.arrays(np.bool_, rows)),
        np.array(draw(st.lists(st.one_of(st.none(), TEXTS), min_size=rows, max_size=rows)) + [0], dtype=object)[:-1],
        np.array(draw(st.lists(st.one_of(st.none(), st.integers(-5, 5), st.floats(), st.booleans()),
                               min_size=rows, max_size=rows)) + [0], dtype=object)[:-1],
        np.ma.masked_array(draw(hnp.arrays(np.float32, rows, elements=st.floats(width=32))),
                           mask=draw(hnp.arrays(np.bool_, rows))),
        draw(st.one_of(st.integers(-5, 10**6), TEXTS, st.none(), st.floats())),
        np.float32(draw(st.floats(width=32))),
    ]
    return names, data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(blocks(), st.sampled_from(["csv", "ndjson", "json"]))
def test_both_writers_write_the_same_bytes(monkeypatch, block, fmt):
    names, data = block
    small = write([Block(names, data)], names, fmt, "small", monkeypatch)
    large = write([Block(names, data)], names, fmt, "polars", monkeypatch)
    assert small == large
    if fmt == "csv":
        parsed = list(csv.reader(io.StringIO(small.decode(), newline="")))
        assert parsed[0] == names and len(parsed) == len(data[0]) + 1
        for row, f32, name in zip(parsed[1:], data[0], data[5]):
            assert row[0] == ("" if np.isnan(f32) else row[0]) and (np.isnan(f32) or np.float32(row[0]) == f32)
            assert row[5] == ("" if name is None else name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_json_numbers_both_ways(dtype, monkeypatch):
    """``json_numbers`` (export's JSON): the same text from smalltext and from polars, null for NaN/inf."""
    samples = np.concatenate([float32_samples()[:3000], np.array([np.nan, np.inf, -np.inf], dtype=np.float32)])
    with np.errstate(invalid="ignore"):  # the random bit patterns hold signalling NaNs; widening them is "invalid"
        values = samples.astype(dtype)
    monkeypatch.setattr(writers, "SMALL_OUTPUT_ROWS", 10**12)
    small = writers.json_numbers(values)
    monkeypatch.setattr(writers, "SMALL_OUTPUT_ROWS", 0)
    large = writers.json_numbers(values)
    assert small == large
    assert small[-3:] == [b"null"] * 3
    finite = np.isfinite(values)
    assert [cell for cell, ok in zip(small, finite) if not ok] == [b"null"] * int((~finite).sum())
    back = np.array(json.loads(b"[" + b",".join(c for c, ok in zip(small, finite) if ok) + b"]"), dtype=dtype)
    assert np.array_equal(back, values[finite])


def test_header_quoting_is_the_same(monkeypatch):
    names = ["plain", "a,b", 'say "hi"', "two\nlines", "é"]
    data = [np.arange(2)] * len(names)
    small = write([Block(names, data)], names, "csv", "small", monkeypatch)
    large = write([Block(names, data)], names, "csv", "polars", monkeypatch)
    assert small == large
    assert next(csv.reader(io.StringIO(small.decode(), newline=""))) == names


# ------------------------------------------------------------------ the writer thread


class Failing(io.BytesIO):
    def __init__(self, after: int, error: BaseException) -> None:
        super().__init__()
        self.after, self.error = after, error

    def write(self, data) -> int:
        if self.tell() + len(data) > self.after:
            raise self.error
        return super().write(data)


def many_blocks(count: int, rows: int = 10_000):
    for k in range(count):
        yield Block(["t", "v"], [np.arange(k * rows, (k + 1) * rows), np.full(rows, 0.25, np.float32)])


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json", "parquet"])
def test_a_closed_pipe_is_raised_as_itself(fmt, monkeypatch):
    monkeypatch.setattr(writers, "SMALL_OUTPUT_ROWS", 0)
    stream = Failing(50_000, BrokenPipeError(32, "Broken pipe"))
    with pytest.raises(BrokenPipeError):
        writers.write_blocks(many_blocks(20), ["t", "v"], fmt, stream)


def test_an_error_in_the_blocks_stops_the_writer(monkeypatch):
    monkeypatch.setattr(writers, "SMALL_OUTPUT_ROWS", 0)

    def failing():
        yield from many_blocks(3)
        raise KeyError("replay failed")

    stream = io.BytesIO()
    with pytest.raises(KeyError, match="replay failed"):
        writers.write_blocks(failing(), ["t", "v"], "csv", stream)
    import threading

    assert not [t for t in threading.enumerate() if t.name == "lstm-inspect-writer"]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_long_output_in_order(fmt, monkeypatch):
    """Many frames through the writer thread: every row once, in order."""
    monkeypatch.setattr(writers, "SMALL_OUTPUT_ROWS", 0)
    stream = io.BytesIO()
    assert writers.write_blocks(many_blocks(12, 3000), ["t", "v"], fmt, stream) == 36_000
    text = stream.getvalue().decode()
    if fmt == "csv":
        t = [int(line.split(",")[0]) for line in text.splitlines()[1:]]
    elif fmt == "ndjson":
        t = [json.loads(line)["t"] for line in text.splitlines()]
    else:
        t = [row["t"] for row in json.loads(text)]
    assert t == list(range(36_000))


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_constant_columns_follow_each_block(fmt, monkeypatch):
    """The polars path makes a constant column once and shares it with the next blocks of the same
    length: a block whose constant differs (in value, or only in type: 1, 1.0, True; or 0.0 and -0.0,
    which compare equal) must not get the last block's column."""
    rows = 9000  # above coalesce's 8192: each block reaches the writer on its own
    constants = [("lstm", 1), ("lstm", 1.0), ("gru", True), ("gru", np.float32(1)), ("lstm", None), (None, 1),
                 ("lstm", 0.0), ("lstm", -0.0)]
    blocks = [Block(["t", "layer", "k"], [np.arange(rows) + n * rows, layer, k]) for n, (layer, k) in enumerate(constants)]
    small = write(blocks, ["t", "layer", "k"], fmt, "small", monkeypatch)
    large = write(blocks, ["t", "layer", "k"], fmt, "polars", monkeypatch)
    assert small == large
    if fmt == "csv":
        lines = large.decode().splitlines()[1:]
        firsts = [lines[n * rows].split(",")[1:] for n in range(len(constants))]
        assert firsts == [["lstm", "1"], ["lstm", "1.0"], ["gru", "1"], ["gru", "1.0"], ["lstm", ""], ["", "1"],
                          ["lstm", "0.0"], ["lstm", "-0.0"]]


def test_parquet_reads_back(tmp_path):
    import polars as pl

    columns = ["sequence", "layer", "t", "v", "source"]
    blocks = [
        Block(columns, ["s1", "lstm", np.arange(3), np.array([0.1, np.nan, 2.0], np.float32),
                        np.ma.masked_array([1, 2, 3], mask=[True, False, False])]),
        Block(columns, ["s2", "lstm", np.arange(3, 5), np.array([5.0, -1.0], np.float32), np.array([4, 5])]),
    ]
    path = tmp_path / "out.parquet"
    with open(path, "wb") as stream:
        assert writers.write_blocks(blocks, columns, "parquet", stream) == 5
    frame = pl.read_parquet(path)
    assert frame.columns == columns
    assert frame["sequence"].to_list() == ["s1"] * 3 + ["s2"] * 2
    assert frame["t"].to_list() == list(range(5))
    values = frame["v"].to_numpy()
    assert values.dtype == np.float32 and np.isnan(values[1])  # NaN stays NaN in Parquet
    assert values[0] == np.float32(0.1) and values[3] == 5.0
    assert frame["source"].to_list() == [None, 2, 3, 4, 5]


def test_empty_parquet_has_the_columns(tmp_path):
    import polars as pl

    path = tmp_path / "empty.parquet"
    with open(path, "wb") as stream:
        assert writers.write_blocks([], ["a", "b"], "parquet", stream) == 0
    assert pl.read_parquet(path).columns == ["a", "b"]
