"""Input sequences: CSV (header or not, column choice, sequence ids, stdin), .npy/.npz, token ids.

The good inputs are checked by their values (``read_input``) and by what the
model makes of them, compared with Keras.  The bad ones (``tests/bad_inputs``
plus a few binary files made here) must each be refused with exit status 2
and one line on stderr that names the problem, with no traceback.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, run_cli
from reference import invoke, read_csv

import lstm_inspect as li
from lstm_inspect.errors import InputDataError
from lstm_inspect.inputs import CsvOptions, read_input

BAD = Path(__file__).parent / "bad_inputs"
TOL = 1e-5


def read_text(text: str, **options):
    return read_input("-", CsvOptions(**options), stdin=io.BytesIO(text.encode()))


def values(sequences):
    return [(s.id, s.values.tolist()) for s in sequences]


# ------------------------------------------------------------------ CSV


@pytest.mark.parametrize(
    "text, header, expected",
    [
        pytest.param("a,b\n1,2\n3,4\n", None, [[1, 2], [3, 4]], id="header-detected"),
        pytest.param("1,2\n3,4\n", None, [[1, 2], [3, 4]], id="no-header-detected"),
        pytest.param("1,2\n3,4\n", True, [[3, 4]], id="--header-on-numbers"),
        pytest.param("a,b\n1,2\n", True, [[1, 2]], id="--header"),
        pytest.param("1,2\n3,4\n", False, [[1, 2], [3, 4]], id="--no-header"),
        pytest.param("\ufeffa,b\r\n1,2\r\n\r\n3,4\r\n", None, [[1, 2], [3, 4]], id="bom-crlf-blank-line"),
        pytest.param("a;b\n1;2\n", None, [[1, 2]], id="semicolons"),
        pytest.param("a\tb\n1e-3\t-2.5\n", None, [[0.001, -2.5]], id="tabs-and-exponents"),
    ],
)
def test_csv_header(text, header, expected):
    [sequence] = read_text(text, header=header)
    np.testing.assert_allclose(sequence.values, expected)
    assert sequence.values.dtype == np.float32


def test_no_header_on_a_text_row_names_line_and_column():
    with pytest.raises(InputDataError, match=r"line 1, column '1': 'a' is not a number"):
        read_text("a,b\n1,2\n", header=False)


@pytest.mark.parametrize(
    "columns, expected",
    [
        pytest.param(("c", "a"), [[3, 1], [6, 4]], id="names-reordered"),
        pytest.param(("3", "1"), [[3, 1], [6, 4]], id="numbers-reordered"),
        pytest.param(("b",), [[2], [5]], id="one"),
    ],
)
def test_columns_pick_and_order(columns, expected):
    [sequence] = read_text("a,b,c\n1,2,3\n4,5,6\n", columns=columns)
    np.testing.assert_allclose(sequence.values, expected)


def test_unknown_column_lists_the_columns():
    with pytest.raises(InputDataError, match=r"no column 'z' \(columns: a, b\)"):
        read_text("a,b\n1,2\n", columns=("z",))


def test_sequence_column_splits_in_order_of_first_appearance():
    text = "id,x\nb,1\na,2\nb,3\nc,4\na,5\n"
    assert values(read_text(text, sequence_column="id")) == [("b", [[1], [3]]), ("a", [[2], [5]]), ("c", [[4]])]
    numeric = values(read_text("id,x\n7,1\n3,2\n7,3\n", sequence_column="id"))
    assert numeric == [(7, [[1], [3]]), (3, [[2]])]


def test_sequence_column_with_columns():
    text = "x,id,y\n1,s,10\n2,t,20\n3,s,30\n"
    assert values(read_text(text, sequence_column="id", columns=("y", "x"))) == [
        ("s", [[10, 1], [30, 3]]),
        ("t", [[20, 2]]),
    ]


def test_stdin_and_file_read_the_same(tmp_path):
    text = "x0,x1,x2\n0.5,1,2\n3,4,5\n"
    path = tmp_path / "in.csv"
    path.write_text(text)
    assert values(read_input(str(path))) == values(read_text(text))


# ------------------------------------------------------------------ NumPy files


@pytest.mark.parametrize("suffix", ["npy", "npz"])
@pytest.mark.parametrize("shape", [(7, 3), (4, 7, 3)], ids=["T,F", "N,T,F"])
def test_numpy_files(tmp_path, suffix, shape):
    array = np.random.default_rng(0).normal(size=shape)
    path = tmp_path / f"x.{suffix}"
    if suffix == "npy":
        np.save(path, array)
    else:
        np.savez(path, other=np.zeros(2), x=array)  # the array called "x" is the input
    sequences = read_input(str(path))
    batch = array[None] if len(shape) == 2 else array
    assert [s.id for s in sequences] == list(range(batch.shape[0]))
    np.testing.assert_allclose(np.stack([s.values for s in sequences]), batch.astype(np.float32))


def test_numpy_file_through_the_command_equals_keras(saved_model, tmp_path):
    case = saved_model("single", "keras3")
    path = tmp_path / "batch.npy"
    np.save(path, case.x)
    result = invoke("predict", case.paths["keras"], path, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    frame = read_csv(result.stdout)
    assert frame["sequence"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(frame[[f"y_{k}" for k in range(5)]], case.model.predict(case.x, verbose=0), atol=TOL)


# ------------------------------------------------------------------ through the command, against Keras


def single_lstm_keras():
    import keras

    return keras.saving.load_model(SAMPLES / "single_lstm.keras", compile=False)


def test_columns_and_header_options_feed_the_model(tmp_path):
    """--columns picks the features in the model's order; --no-header keeps the first row."""
    model = single_lstm_keras()
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 3)).astype("float32")
    expected = model.predict(x[None], verbose=0)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("x2,junk,x0,x1\n" + "".join(f"{c!r},9,{a!r},{b!r}\n" for a, b, c in x.tolist()))
    headerless = tmp_path / "headerless.csv"
    headerless.write_text("".join(f"{a!r},{b!r},{c!r}\n" for a, b, c in x.tolist()))
    runs = [
        (shuffled, ["--columns", "x0,x1,x2"]),
        (shuffled, ["--columns", "3,4,1"]),
        (headerless, []),
        (headerless, ["--no-header"]),
    ]
    for path, flags in runs:
        result = invoke("predict", SAMPLES / "single_lstm.keras", path, "--format", "csv", *flags)
        assert result.exit_code == 0, result.stderr
        np.testing.assert_allclose(read_csv(result.stdout)[["y_0", "y_1", "y_2", "y_3"]], expected, atol=TOL, err_msg=str(flags))
    # --header on the headerless file drops its first row.
    result = invoke("predict", SAMPLES / "single_lstm.keras", headerless, "--format", "csv", "--header")
    np.testing.assert_allclose(read_csv(result.stdout)[["y_0", "y_1", "y_2", "y_3"]], model.predict(x[None, 1:], verbose=0), atol=TOL)


def test_sequence_column_feeds_each_sequence(tmp_path):
    model = single_lstm_keras()
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 5, 3)).astype("float32")
    rows = []
    for step in range(5):  # interleaved: ids first appear in the order q, p, r
        for n, name in [(1, "q"), (0, "p"), (2, "r")]:
            rows.append(f"{name},{','.join(repr(v) for v in x[n, step].tolist())}\n")
    path = tmp_path / "ids.csv"
    path.write_text("id,x0,x1,x2\n" + "".join(rows))
    result = invoke("predict", SAMPLES / "single_lstm.keras", path, "--sequence-column", "id", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    frame = read_csv(result.stdout)
    assert frame["sequence"].tolist() == ["q", "p", "r"]
    np.testing.assert_allclose(frame[["y_0", "y_1", "y_2", "y_3"]], model.predict(x[[1, 0, 2]], verbose=0), atol=TOL)


def test_stdin_dash_equals_the_file():
    data = (SAMPLES / "single_lstm.csv").read_bytes()
    from_file = invoke("trace", SAMPLES / "single_lstm.h5", SAMPLES / "single_lstm.csv", "--format", "csv")
    from_stdin = invoke("trace", SAMPLES / "single_lstm.h5", "-", "--format", "csv", input=data)
    assert from_stdin.exit_code == 0, from_stdin.stderr
    assert from_stdin.stdout == from_file.stdout
    assert from_stdin.stdout.startswith("sequence,layer,t,unit,i,f,c,o,cell,hidden")


@pytest.mark.keras_oracle
def test_embedding_model_takes_one_column_of_ids():
    import keras

    ids = read_csv((SAMPLES / "embedding_lstm.csv").read_text())["token"].to_numpy()
    model = keras.saving.load_model(SAMPLES / "embedding_lstm.keras", compile=False)
    expected = model.predict(ids[None].astype("int32"), verbose=0)
    result = invoke("predict", SAMPLES / "embedding_lstm.keras", SAMPLES / "embedding_lstm.csv", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(read_csv(result.stdout)[["y_0", "y_1"]], expected, atol=TOL)
    ours = li.predict(li.load_model(str(SAMPLES / "embedding_lstm.h5")), ids[None, :, None])
    np.testing.assert_allclose(ours, expected, atol=TOL)


# ------------------------------------------------------------------ bad inputs

SINGLE = SAMPLES / "single_lstm.keras"  # 3 features
TOKENS = SAMPLES / "embedding_lstm.keras"  # vocabulary 0..49

# file in tests/bad_inputs -> (model, words the one-line message must contain)
BAD_CASES = {
    "feature_count.csv": (SINGLE, ["takes 3 feature", "has 2 column"]),
    "non_numeric.csv": (SINGLE, ["line 3", "column 'x1'", "'abc' is not a number"]),
    "na_text.csv": (SINGLE, ["line 2", "column 'b'", "'NA' is not a number"]),
    "ragged_long_row.csv": (SINGLE, ["ragged rows", "line 3"]),
    "ragged_short_row.csv": (SINGLE, ["line 3", "column 'x2'", "short row"]),
    "ragged_no_header.csv": (SINGLE, ["ragged rows", "line 2"]),
    "longer_than_header.csv": (SINGLE, ["ragged rows", "more fields than the header"]),
    "empty.csv": (SINGLE, ["empty.csv", "empty"]),
    "blank_lines.csv": (SINGLE, ["blank_lines.csv", "empty"]),
    "header_only.csv": (SINGLE, ["header_only.csv", "only a header"]),
    "nan.csv": (SINGLE, ["line 3", "column 'x1'", "nan", "finite"]),
    "inf.csv": (SINGLE, ["line 3", "column 'x2'", "inf", "finite"]),
    "minus_inf.csv": (SINGLE, ["line 3", "column 'x2'", "-inf", "finite"]),
    "token_out_of_range.csv": (TOKENS, ["token id 99", "step 1", "vocabulary (0..49)", "'embedding'"]),
    "token_negative.csv": (TOKENS, ["token id -1", "vocabulary (0..49)"]),
    "token_fraction.csv": (TOKENS, ["whole-number token ids"]),
    "token_two_columns.csv": (TOKENS, ["one column of token ids", "2 columns"]),
}


def assert_one_line_error(code: int, stdout: str, stderr: str, words: list[str]) -> None:
    assert code == 2, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lstm-inspect: error: ")
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


def test_every_bad_input_file_has_a_case():
    assert sorted(p.name for p in BAD.glob("*.csv")) == sorted(BAD_CASES)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_input_is_one_line_exit_2(name):
    model, words = BAD_CASES[name]
    result = run_cli("trace", model, BAD / name)  # a real process: nothing else reaches stderr
    assert_one_line_error(result.returncode, result.stdout.decode(), result.stderr.decode(), words)
    result = invoke("predict", model, BAD / name)
    assert_one_line_error(result.exit_code, result.stdout, result.stderr, words)


def bad_numpy(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    if name == "nan.npy":
        array = np.zeros((2, 4, 3))
        array[1, 2, 0] = np.nan
        np.save(path, array)
    elif name == "inf.npz":
        array = np.zeros((4, 3))
        array[3, 1] = np.inf
        np.savez(path, x=array)
    elif name == "four_dims.npy":
        np.save(path, np.zeros((1, 2, 4, 3)))
    elif name == "objects.npy":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif name == "features.npy":
        np.save(path, np.zeros((4, 5)))
    elif name == "empty.npz":
        np.savez(path)
    elif name == "no_steps.npy":
        np.save(path, np.zeros((0, 3)))
    return path


@pytest.mark.parametrize(
    "name, words",
    [
        ("nan.npy", ["sequence 1, step 2, feature 0", "nan", "finite"]),
        ("inf.npz", ["step 3, feature 1", "inf", "finite"]),
        ("four_dims.npy", ["got (1, 2, 4, 3)", "takes arrays of shape (N, T, 3), or (T, 3) for one sequence"]),
        ("objects.npy", ["objects.npy", "cannot be read"]),
        ("features.npy", ["takes 3 feature", "has 5 column"]),
        ("empty.npz", ["no arrays"]),
        ("no_steps.npy", ["no timesteps"]),
    ],
)
def test_bad_numpy_input_is_one_line_exit_2(tmp_path, name, words):
    result = invoke("trace", SINGLE, bad_numpy(tmp_path, name))
    assert_one_line_error(result.exit_code, result.stdout, result.stderr, words)


def test_bad_stdin_is_one_line_exit_2():
    result = invoke("trace", SINGLE, "-", input=b"x0,x1,x2\n1,2,oops\n")
    assert_one_line_error(result.exit_code, result.stdout, result.stderr, ["stdin", "line 2", "column 'x2'", "'oops'"])
    result = invoke("trace", SINGLE, "-", input=b"")
    assert_one_line_error(result.exit_code, result.stdout, result.stderr, ["stdin", "empty"])
