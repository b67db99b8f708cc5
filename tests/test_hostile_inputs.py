"""Hostile and broken input data, beyond the files in tests/bad_inputs (test_inputs.py).

Made at test time: byte-order marks and CR/CRLF line ends that must not shift
line numbers, explicit ``--delimiter`` choices (and impossible ones), a 50 MB
line, overflowing and non-finite numbers, NUL bytes, UTF-16 and binary files,
an unterminated quote, more features than the model takes, token ids out of
the Embedding's range in a later sequence, an empty sequence id, an empty
batch.  Each is refused with exit status 2 and one line naming the line (or
sequence and step) and the column; the good ones parse to the right numbers.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from conftest import SAMPLES, run_cli_many
from hostile import assert_refused
from reference import invoke, read_csv

import lstm_inspect as li
from lstm_inspect.errors import InputDataError
from lstm_inspect.inputs import CsvOptions, read_input

SINGLE = SAMPLES / "single_lstm.keras"  # LSTM(4) over 3 features
TOKENS = SAMPLES / "embedding_lstm.keras"  # Embedding(50) -> LSTM

# name -> (file bytes, model, extra options, words of the one-line message)
BAD = {
    "bom-crlf-bad-cell": (b"\xef\xbb\xbfx0,x1,x2\r\n1,2,3\r\n4,five,6\r\n", SINGLE, [], ["line 3", "column 'x1'", "'five' is not a number"]),
    "cr-only-bad-cell": (b"x0,x1,x2\r1,2,3\r4,5,x\r", SINGLE, [], ["line 3", "column 'x2'", "'x' is not a number"]),
    "bom-header-only": (b"\xef\xbb\xbfx0,x1,x2\r\n", SINGLE, [], ["only a header"]),
    "bom-only": (b"\xef\xbb\xbf", SINGLE, [], ["empty"]),
    "semicolons-decimal-comma": (b"x0;x1;x2\n1,5;2;3\n", SINGLE, ["--delimiter", ";"], ["line 2", "column 'x0'", "'1,5' is not a number"]),
    "commas-read-as-semicolons": (b"x0,x1,x2\n1,2,3\n", SINGLE, ["--delimiter", ";"], ["line 2", "column 'x0,x1,x2'"]),
    "pipes-with-a-short-row": (b"x0|x1|x2\n1|2|3\n4|5\n", SINGLE, ["--delimiter", "|"], ["line 3", "column 'x2'", "short row"]),
    "more-features": (b"a,b,c,d\n1,2,3,4\n", SINGLE, [], ["takes 3 feature(s)", "has 4 column(s)"]),
    "overflow-to-inf": (b"x0,x1,x2\n1,1e400,3\n", SINGLE, [], ["line 2", "column 'x1'", "is inf", "finite"]),
    "infinity-word": (b"x0,x1,x2\n1,2,-Infinity\n", SINGLE, [], ["line 2", "column 'x2'", "-inf", "finite"]),
    "nan-in-a-later-row": (b"x0,x1,x2\n" + b"1,2,3\n" * 500 + b"1,NaN,3\n", SINGLE, [], ["line 502", "column 'x1'", "finite"]),
    "nul-byte": (b"x0,x1,x2\n1,2\x00,3\n", SINGLE, [], ["line 2", "column 'x1'", "not a number"]),
    "utf16": ("x0,x1,x2\n1,2,3\n".encode("utf-16"), SINGLE, [], ["not UTF-8"]),
    "binary": (bytes(range(256)) * 8, SINGLE, [], ["not UTF-8"]),
    "unterminated-quote": (b'x0,x1,x2\n1,"2,3\n4,5,6\n', SINGLE, [], ["EOF inside string"]),
    "hex-number": (b"x0,x1,x2\n1,0x10,3\n", SINGLE, [], ["line 2", "column 'x1'", "'0x10' is not a number"]),
    "empty-sequence-id": (b"id,x0,x1,x2\na,1,2,3\n,4,5,6\n", SINGLE, ["--sequence-column", "id"], ["line 3", "column 'id'", "empty sequence id"]),
    "ragged-sequence-row": (b"id,x0,x1,x2\na,1,2,3\nb,4,5\n", SINGLE, ["--sequence-column", "id"], ["line 3", "column 'x2'", "short row"]),
    "token-out-of-range-in-a-later-sequence": (b"id,token\na,3\na,4\nb,5\nb,50\n", TOKENS, ["--sequence-column", "id"],
                                               ["sequence b", "step 1", "token id 50", "(0..49)", "'embedding'"]),
    "token-id-1e30": (b"token\n1\n1e30\n", TOKENS, [], ["step 1", "token id 1e+30", "outside the vocabulary"]),
    "token-id-nan-text": (b"token\n1\nnan\n", TOKENS, [], ["line 3", "column 'token'", "nan", "finite"]),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs")
    paths = {}
    for name, (data, *_rest) in BAD.items():
        paths[name] = folder / f"{name}.csv"
        paths[name].write_bytes(data)
    return paths


@pytest.mark.parametrize("command", ["trace", "predict", "stats"])
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_one_line_naming_where(bad_files, tmp_path, name, command):
    _, model, options, words = BAD[name]
    target = tmp_path / "out.csv"
    result = invoke(command, model, bad_files[name], *options, "-o", target)
    assert_refused(result.exit_code, result.stdout, result.stderr, words)
    assert not target.exists()
    if command == "trace":  # the same from standard input
        result = invoke(command, model, "-", *options, input=BAD[name][0])
        assert_refused(result.exit_code, result.stdout, result.stderr, [w for w in words if "csv" not in w])


def test_bad_inputs_in_real_processes(bad_files):
    names = ["bom-crlf-bad-cell", "utf16", "binary", "nul-byte", "token-out-of-range-in-a-later-sequence"]
    runs = [("trace", BAD[name][1], bad_files[name], *BAD[name][2]) for name in names]
    for name, result in zip(names, run_cli_many(runs)):
        assert_refused(result.returncode, result.stdout, result.stderr, BAD[name][3])


@pytest.mark.parametrize("delimiter", ['"', "\n", "\r", "ab", ""])
def test_impossible_delimiters_are_usage_errors(delimiter):
    result = invoke("trace", SINGLE, SAMPLES / "single_lstm.csv", "--delimiter", delimiter)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--delimiter" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ the good ones parse right

X = [[0.5, -1.0, 2.0], [3.0, 4.5, -6.0]]


@pytest.mark.parametrize(
    "data, options",
    [
        pytest.param(b"\xef\xbb\xbfx0,x1,x2\r\n0.5,-1,2\r\n3,4.5,-6\r\n", {}, id="bom-crlf"),
        pytest.param(b"x0,x1,x2\r0.5,-1,2\r3,4.5,-6\r", {}, id="cr-only"),
        pytest.param(b"x0;x1;x2\n0.5;-1;2\n3;4.5;-6\n", {"delimiter": ";"}, id="delimiter-semicolon"),
        pytest.param(b"x0\tx1\tx2\n0.5\t-1\t2\n3\t4.5\t-6\n", {"delimiter": "\t"}, id="delimiter-tab"),
        pytest.param(b"x0|x1|x2\n0.5|-1|2\n3|4.5|-6\n", {"delimiter": "|"}, id="delimiter-pipe"),
        pytest.param(b'"x0","x1","x2"\n"0.5","-1","2"\n" 3 ",4.5,-6\n', {}, id="quoted-and-padded"),
        pytest.param(b"x0,x1,x2\n\n0.5,-1,2\n\n\n3,4.5,-6\n\n", {}, id="blank-lines"),
        pytest.param(b"x0,x1,x2\n.5,-1e0,+2\n3.,45e-1,-6.000\n", {}, id="number-spellings"),
    ],
)
def test_good_spellings_parse_to_the_same_numbers(data, options):
    [sequence] = read_input("-", CsvOptions(**options), stdin=io.BytesIO(data))
    np.testing.assert_array_equal(sequence.values, np.array(X, dtype=np.float32))


def test_tab_delimiter_by_name_on_the_command_line(tmp_path):
    path = tmp_path / "tabs.csv"
    path.write_bytes(b"x0\tx1\tx2\n0.5\t-1\t2\n3\t4.5\t-6\n")
    outputs = {invoke("predict", SINGLE, path, "--delimiter", spelling, "--format", "csv").stdout for spelling in ("tab", "\\t", "\t")}
    assert len(outputs) == 1 and outputs.pop().startswith("sequence,y_0")


def test_a_50_MB_line_is_one_short_message(tmp_path):
    """One cell of 50 MB: refused in a few seconds, and the message quotes only its start."""
    path = tmp_path / "long-line.csv"
    with open(path, "wb") as handle:
        handle.write(b"x0,x1,x2\n1,2,")
        handle.write(b"7" * (50 << 20))
        handle.write(b"x\n")
    start = time.perf_counter()
    result = invoke("trace", SINGLE, path)
    elapsed = time.perf_counter() - start
    line = assert_refused(result.exit_code, result.stdout, result.stderr, ["line 2", "column 'x2'", "is not a number"])
    assert len(line) < 200
    assert elapsed < 30


def test_a_50_MB_line_of_padding_still_parses(tmp_path):
    path = tmp_path / "padded.csv"
    with open(path, "wb") as handle:
        handle.write(b"x0,x1,x2\n0.5,-1,2")
        handle.write(b" " * (50 << 20))
        handle.write(b"\n3,4.5,-6\n")
    [sequence] = read_input(str(path))
    np.testing.assert_array_equal(sequence.values, np.array(X, dtype=np.float32))


def test_empty_batch_of_sequences_is_refused(tmp_path):
    path = tmp_path / "none.npy"
    np.save(path, np.zeros((0, 7, 3), dtype=np.float32))
    result = invoke("trace", SINGLE, path)
    assert_refused(result.exit_code, result.stdout, result.stderr, ["(0, 7, 3)", "holds no sequences"])


def test_token_ids_checked_before_any_output(tmp_path):
    """The bad id is in the last sequence; nothing was written for the first ones."""
    data = tmp_path / "tokens.csv"
    data.write_text("id,token\n" + "".join(f"s{k},{1 + k % 40}\n" for k in range(300)) + "last,-3\n")
    for command in ("trace", "predict", "stats"):
        result = invoke(command, TOKENS, data, "--sequence-column", "id", "--format", "csv")
        assert_refused(result.exit_code, result.stdout, result.stderr, ["sequence last", "token id -3"])


@pytest.mark.parametrize(
    "array, words",
    [
        pytest.param(np.where(np.arange(24).reshape(2, 4, 3) == 23, np.inf, 0.0), ["input[1, 3, 2] is inf", "finite"], id="inf"),
        pytest.param(np.full((4, 3), np.nan), ["input[0, 0] is nan"], id="nan"),
        pytest.param(np.array([["a", "b", "c"]]), ["dtype <U1", "expected numbers"], id="strings"),
        pytest.param(np.zeros((0, 4, 3)), ["holds no steps"], id="no-sequences"),
        pytest.param(np.zeros((1, 0, 3)), ["holds no steps"], id="no-steps"),
        pytest.param(np.zeros((1, 2, 4, 3)), ["takes arrays of shape (N, T, 3)", "got (1, 2, 4, 3)"], id="four-axes"),
    ],
)
def test_bad_arrays_through_the_api_are_input_errors(array, words):
    """Arrays given to the Python API are checked as files are: the tool's error, naming the element."""
    model = li.load_model(str(SINGLE))
    for call in (li.trace, li.predict, li.trace_arrays):
        with pytest.raises(InputDataError) as caught:
            call(model, array)
        for word in words:
            assert word in str(caught.value)


def test_sequence_ids_survive_odd_text(tmp_path):
    """Ids with commas, quotes and unicode are written back as the same text."""
    data = tmp_path / "ids.csv"
    data.write_text('id,x0,x1,x2\n"a,b",1,2,3\n"say ""hi""",4,5,6\nñ,7,8,9\n', encoding="utf-8")
    result = invoke("predict", SINGLE, data, "--sequence-column", "id", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert read_csv(result.stdout)["sequence"].tolist() == ["a,b", 'say "hi"', "ñ"]
