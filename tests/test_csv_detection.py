"""CSV input never drops or merges data silently (issue 10, point 1).

The delimiter and the header are decided from whole first lines: a first row
is a header only when one of its fields is text, so a row of numbers is
always data; comma, tab, semicolon and whitespace are detected; a decision a
user may not expect is reported as one note on stderr.  The numbers the
model makes of such files are checked against Keras.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from conftest import SAMPLES, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import invoke, read_csv

from lstm_inspect.errors import InputDataError
from lstm_inspect.inputs import WHITESPACE, CsvOptions, read_input
from lstm_inspect.notes import Note, notes_to

SINGLE = SAMPLES / "single_lstm.keras"  # LSTM(4) over 3 features
TOL = 1e-5
NOTE = "lstm-inspect: note: "


@pytest.fixture(scope="module")
def keras_single():
    import keras

    return keras.saving.load_model(SINGLE, compile=False)


def read_bytes(data: bytes, **options):
    """read_input on ``data`` as stdin; returns (sequences, notes)."""
    notes: list[str] = []
    with notes_to(notes.append):
        sequences = read_input("-", CsvOptions(**options), stdin=io.BytesIO(data))
    return sequences, notes


def y_columns(frame):
    return frame[[c for c in frame.columns if c.startswith("y_")]].to_numpy()


# ------------------------------------------------------------------ the cases of the issue


def test_headerless_stdin_keeps_its_first_row(keras_single):
    """`printf '10,20,30\\n1,2,3\\n' | lstm-inspect trace ... -`: two steps, and a note saying why."""
    data = b"10,20,30\n1,2,3\n"
    result = run_cli("trace", SINGLE, "-", "--units", "0", input=data)  # a real pipe
    assert result.returncode == 0, result.stderr
    frame = read_csv(result.stdout.decode())
    assert frame["t"].tolist() == [0, 1]
    assert result.stderr.decode().splitlines() == [
        f"{NOTE}reading stdin: no header row (line 1 is numbers; --header if it names the columns), delimiter ','"
    ]
    x = np.array([[10, 20, 30], [1, 2, 3]], dtype="float32")
    result = invoke("predict", SINGLE, "-", "--format", "csv", input=data)
    np.testing.assert_allclose(y_columns(read_csv(result.stdout)), keras_single.predict(x[None], verbose=0), atol=TOL)


def test_32_rows_of_zeros_and_ones_are_32_steps(tmp_path, keras_single):
    rng = np.random.default_rng(10)
    x = rng.integers(0, 2, size=(32, 3)).astype("float32")
    x[0] = [1, 0, 1]
    path = tmp_path / "binary.csv"
    path.write_text("".join(",".join(str(int(v)) for v in row) + "\n" for row in x))
    result = invoke("predict", SINGLE, path, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(y_columns(read_csv(result.stdout)), keras_single.predict(x[None], verbose=0), atol=TOL)
    trace = read_csv(invoke("trace", SINGLE, path, "--units", "0", "--format", "csv").stdout)
    assert trace["t"].tolist() == list(range(32))


@pytest.mark.parametrize(
    "name, header, sep, note",
    [
        pytest.param("tabs.csv", "x0\tx1\tx2", "\t", "header row (x0, x1, x2), delimiter tab", id="tab"),
        pytest.param("input.csv", "x0;x1;x2", ";", "header row (x0, x1, x2), delimiter ';'", id="semicolon"),
        pytest.param("spaces.txt", "x0 x1  x2", "   ", "header row (x0, x1, x2), delimiter whitespace", id="whitespace"),
        pytest.param("bare.tsv", None, "\t", "no header row (line 1 is numbers; --header if it names the columns), delimiter tab",
                     id="tab-no-header"),
    ],
)
def test_tab_semicolon_and_whitespace_files(tmp_path, keras_single, name, header, sep, note):
    """Files the old reader refused ('... is not a number'): read, and fed to the model as Keras is fed."""
    x = np.random.default_rng(11).normal(size=(6, 3)).astype("float32")
    lines = ([header] if header else []) + [sep.join(repr(float(v)) for v in row) for row in x]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    result = invoke("predict", SINGLE, path, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [f"{NOTE}reading {name}: {note}"]
    np.testing.assert_allclose(y_columns(read_csv(result.stdout)), keras_single.predict(x[None], verbose=0), atol=TOL)


def test_a_plain_comma_file_with_a_header_needs_no_note():
    result = invoke("predict", SINGLE, SAMPLES / "single_lstm.csv", "--format", "csv")
    assert result.exit_code == 0 and result.stderr == ""


def test_header_and_delimiter_options_override_detection():
    data = b"1;2;3\n4;5;6\n"
    [seq], notes = read_bytes(data)
    assert seq.values.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert notes == ["reading stdin: no header row (line 1 is numbers; --header if it names the columns), delimiter ';'"]
    [seq], notes = read_bytes(data, header=True, delimiter=";")
    assert seq.values.tolist() == [[4, 5, 6]] and notes == []
    [seq], notes = read_bytes(b"a,b\n1,2\n", header=True)
    assert notes == []  # nothing left to detect that is not the default
    # A header holding numbers is worth a note: its numbers are not read as data.
    [seq], notes = read_bytes(b"time,0.5,0.7\n1,2,3\n")
    assert seq.values.tolist() == [[1, 2, 3]]
    assert notes == ["reading stdin: header row (time, 0.5, 0.7), delimiter ','"]
    [seq], notes = read_bytes(b"1 2 3\n4 5 6\n", delimiter=WHITESPACE)
    assert seq.values.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_command_line_whitespace_delimiter(tmp_path):
    path = tmp_path / "blanks.txt"
    path.write_text("x0 x1 x2\n1  2\t3\n")
    result = invoke("predict", SINGLE, path, "--delimiter", "whitespace", "--format", "csv")
    assert result.exit_code == 0 and result.stderr == ""


def test_without_a_handler_notes_are_python_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_input("-", None, stdin=io.BytesIO(b"1,2\n3,4\n"))
    assert [type(w.message) for w in caught] == [Note]
    assert "no header row" in str(caught[0].message)


# ------------------------------------------------------------------ errors that name the fix


@pytest.mark.parametrize(
    "data, options, words",
    [
        pytest.param(b"x0,x1,x2\n1,abc,3\n", [], ["line 2", "column 'x1'", "'abc' is not a number", "--columns", "--sequence-column"],
                     id="text-cell"),
        pytest.param(b"x0,x1,x2\n1;2;3\n4;5;6\n", [], ["line 2", "'1;2;3' is not a number", "--delimiter ';'"],
                     id="semicolons-under-a-comma-header"),
        pytest.param(b"x0,x1\n1,2,3\n", [], ["ragged rows", "line 2", "more fields than the header", "--delimiter"],
                     id="longer-than-the-header"),
        pytest.param(b"x0\tx1\tx2\n1\t2\t3\n", ["--delimiter", ","], ["line 2", "column 'x0 x1 x2'", "--delimiter tab"],
                     id="tabs-read-as-commas"),
        pytest.param(b"x0;x1;x2\n1;2;3\n", ["--delimiter", ","], ["line 2", "--delimiter ';'"], id="semicolons-read-as-commas"),
        pytest.param(b"1,2,3\n4,5\n", [], ["line 2", "column '3'", "short row"], id="short-row-no-header"),
        pytest.param(b"x0,x1,x2\n1,2,3\n" + b"1,2,1e39\n", [], ["line 3", "column 'x2'", "float32", "--dtype float64"],
                     id="beyond-float32"),
    ],
)
def test_errors_name_the_fix(tmp_path, data, options, words):
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    result = invoke("trace", SINGLE, path, *options)
    assert result.exit_code == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("lstm-inspect: error: ")
    for word in words:
        assert word in line, (word, line)


def test_token_id_matrix_for_a_model_without_embedding_names_the_reshape(tmp_path):
    """An (N, T) .npy of ids for a model taking one feature per step: the error says x[..., None]."""
    import keras

    model = keras.Sequential([keras.Input((None, 1)), keras.layers.LSTM(2, name="lstm")])
    path = tmp_path / "one_feature.keras"
    model.save(path)
    ids = tmp_path / "ids.npy"
    np.save(ids, np.arange(12, dtype="float32").reshape(3, 4))
    result = invoke("predict", path, ids)
    assert result.exit_code == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    for word in ["takes 1 feature(s)", "has 4 column(s)", "(N, T, 1)", "x[..., None]"]:
        assert word in line, (word, line)
    # Reshaped as the message says, it is read as 3 sequences and agrees with Keras.
    np.save(ids, np.arange(12, dtype="float32").reshape(3, 4)[..., None])
    result = invoke("predict", path, ids, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    expected = model.predict(np.arange(12, dtype="float32").reshape(3, 4, 1), verbose=0)
    np.testing.assert_allclose(y_columns(read_csv(result.stdout)), expected, atol=TOL)


# ------------------------------------------------------------------ the property


DELIMITERS = {",": ",", "tab": "\t", ";": ";", "whitespace": " ", "padded whitespace": "  \t "}

matrices = st.integers(1, 5).flatmap(
    lambda columns: st.lists(
        st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=columns, max_size=columns),
        min_size=1,
        max_size=12,
    )
)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=matrices,
    delimiter=st.sampled_from(sorted(DELIMITERS)),
    header=st.booleans(),
    line_end=st.sampled_from(["\n", "\r\n"]),
    explicit=st.booleans(),
    data=st.data(),
)
def test_any_numeric_matrix_reads_back_identical(rows, delimiter, header, line_end, explicit, data):
    """Written with any supported delimiter, with or without a header: the same float32 matrix back."""
    matrix = np.array(rows, dtype=np.float32)
    sep = DELIMITERS[delimiter]
    lines = []
    if header:
        columns = data.draw(st.lists(names, min_size=matrix.shape[1], max_size=matrix.shape[1], unique=True))
        lines.append(sep.join(columns))
    lines += [sep.join(repr(float(v)) for v in row) for row in matrix]
    text = line_end.join(lines) + line_end
    options = {}
    if explicit:
        options = {"delimiter": WHITESPACE if "whitespace" in delimiter else sep, "header": header}
    [sequence], _ = read_bytes(text.encode(), **options)
    assert sequence.values.dtype == np.float32
    np.testing.assert_array_equal(sequence.values, matrix)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numbers_are_rounded_once(dtype):
    """Long decimals, and float32 halfway points written exactly: the value of float(text) in dtype."""
    rng = np.random.default_rng(12)
    low = rng.normal(size=300).astype(np.float32)
    high = np.nextafter(low, np.float32(np.inf))
    texts = [repr((float(a) + float(b)) / 2) for a, b in zip(low, high)]  # exact midpoints in float64
    texts += [f"{v:.17g}" for v in (rng.normal(size=300) * 10.0 ** rng.integers(-30, 30, size=300))]
    data = ("x\n" + "\n".join(texts) + "\n").encode()
    [sequence], _ = read_bytes(data)
    [typed] = read_input("-", CsvOptions(), dtype=dtype, stdin=io.BytesIO(data))
    expected = np.array([float(t) for t in texts]).astype(dtype)[:, None]
    np.testing.assert_array_equal(typed.values, expected)
    np.testing.assert_array_equal(sequence.values, expected.astype(np.float32))


def test_the_python_fallback_reads_what_numpy_reads(monkeypatch):
    """Chunks NumPy's parser refuses are read line by line: the same numbers either way."""
    from lstm_inspect import inputs

    text = b"id,x0,x1\n" + b"".join(f"s{k % 3},{k / 7!r},{-k * 1e-3!r}\n".encode() for k in range(50))
    fast = read_bytes(text, sequence_column="id")[0]
    monkeypatch.setattr(inputs._RowReader, "_fast", lambda self, lines: (None, None))
    slow = read_bytes(text, sequence_column="id")[0]
    assert [s.id for s in fast] == [s.id for s in slow] == ["s0", "s1", "s2"]
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a.values, b.values)


def test_chunks_keep_line_numbers(monkeypatch):
    """An error in a later chunk names its line in the file."""
    from lstm_inspect import inputs

    monkeypatch.setattr(inputs, "CHUNK_CHARS", 64)
    text = b"x0,x1\n" + b"1.25,2.5\n" * 40 + b"3,oops\n"
    with pytest.raises(InputDataError, match=r"line 42, column 'x1': 'oops' is not a number"):
        read_bytes(text)
    [sequence], _ = read_bytes(b"x0,x1\n" + b"1.25,2.5\n" * 40)
    assert sequence.values.shape == (40, 2)


def test_a_reading_note_never_comes_before_an_error(tmp_path):
    """The note on how a CSV was read is said with the plan, once the inputs passed their checks:
    a later refusal (here, the decoder's h and c inputs are missing) stays the only line."""
    data = tmp_path / "tokens.csv"
    data.write_text("1,0,0,0,0,0\n0,1,0,0,0,0\n")
    refused = invoke("trace", SAMPLES / "seq2seq_decoder.keras", data)
    assert refused.exit_code == 2 and refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert line.startswith("lstm-inspect: error: no INPUT given for the model input 'h_in'")
    data.write_text("1,0,0,0,0\n0,1,0,0,0\n")
    served = invoke("trace", SAMPLES / "seq2seq_encoder.keras", data, "--format", "csv")
    assert served.exit_code == 0 and served.stdout.startswith("sequence,layer,t,unit")
    expected = ("lstm-inspect: note: reading tokens.csv: no header row (line 1 is numbers; "
                "--header if it names the columns), delimiter ','")
    assert served.stderr.splitlines() == [expected]
