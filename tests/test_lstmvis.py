"""`trace --format lstmvis -o DIR/`: read back the way LSTMVis reads a project folder.

LSTMVis' README and its data handler: `lstm.yml` names `files` (HDF5 files end in
.h5/.hdf5, dictionaries in .dict), `word_sequence` (file, path, dict_file) and
`states` (file, types: [{type, layer, path}]); each states dataset is (positions,
units); a dict line is `word id`, split on whitespace.  The numbers must be the
ones `lstm-inspect trace` writes (0 where a masked step has no gates).
"""

from __future__ import annotations

import csv
import io
import json
import os

import h5py
import numpy as np
import pytest
from conftest import SAMPLES, run_cli

yaml = pytest.importorskip("yaml", reason="reading LSTMVis' lstm.yml needs PyYAML (pip install -e '.[test]')")


def read_project(folder):
    """What LSTMVis' data handler loads: the config, the HDF5 files, the dicts (id -> word)."""
    config = yaml.safe_load((folder / "lstm.yml").read_text())
    files = {key: folder / name for key, name in config["files"].items()}
    h5 = {key: h5py.File(path, "r") for key, path in files.items() if path.suffix in (".h5", ".hdf5")}
    dicts = {}
    for key, path in files.items():
        if path.suffix in (".dict", ".txt"):
            pairs = [line.split() for line in path.read_text().splitlines() if line]
            assert all(len(pair) == 2 for pair in pairs), pairs  # LSTMVis: `k, v = line.split()`
            dicts[key] = {int(v): k for k, v in pairs}
    words = config["word_sequence"]
    ids = h5[words["file"]][words["path"]][()]
    states = {}
    for entry in config["states"]["types"]:
        assert entry["type"] in ("state", "output") and entry["layer"] >= 1
        states[entry["path"]] = (entry, h5[entry.get("file", config["states"]["file"])][entry["path"]][()])
    return config, ids, dicts[words["dict_file"]], states


def trace_csv(*args):
    result = run_cli("trace", *args, "--format", "csv")
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout.decode())))


def expected_states(rows, sequences):
    """{layer/value: (positions, units)} from trace rows: sequences one after the other, t ascending."""
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    values = [c for c in rows[0] if c not in ("sequence", "layer", "t", "unit", "masked")]
    out = {}
    for layer in layers:
        mine = [r for r in rows if r["layer"] == layer]
        units = max(int(r["unit"]) for r in mine) + 1
        steps = {s: max(int(r["t"]) for r in mine if r["sequence"] == s) + 1 for s in sequences}
        offset = dict(zip(sequences, np.cumsum([0] + [steps[s] for s in sequences])[:-1]))
        for value in values:
            if mine[0][value] == "" and all(r[value] == "" for r in mine):
                continue  # a value this layer does not have (SimpleRNN's gates)
            array = np.zeros((sum(steps.values()), units), np.float32)
            for r in mine:
                array[offset[r["sequence"]] + int(r["t"]), int(r["unit"])] = float(r[value] or 0.0)
            out[f"{layer}/{value}"] = array
    return out


@pytest.mark.parametrize("name", ["bidirectional_lstm.keras", "embedding_lstm.keras", "gru_rnn.keras"])
def test_project_holds_what_trace_writes(tmp_path, name):
    model, data = SAMPLES / name, SAMPLES / (name.split(".")[0] + ".csv")
    result = run_cli("trace", model, data, "--format", "lstmvis", "-o", tmp_path / "project")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    _, ids, words, states = read_project(tmp_path / "project")
    want = expected_states(trace_csv(model, data), ["0"])
    assert sorted(states) == sorted(want)
    positions = len(np.loadtxt(data, delimiter=",", skiprows=1, ndmin=1))
    assert ids.shape == (positions,) and set(ids.tolist()) <= set(words)
    for path, (entry, array) in states.items():
        assert array.shape == want[path].shape and array.dtype == np.float32
        np.testing.assert_allclose(array, want[path], rtol=1e-6, atol=1e-7, err_msg=path)
        value = path.rsplit("/", 1)[1]
        assert entry["type"] == ("output" if value == "hidden" else "state")
        if value in ("i", "f", "o", "z", "r"):  # gates: 0..1 already, LSTMVis must not squash them with tanh
            assert entry["unsigned"] is True and entry["transform"] == "none"
    if name.startswith("embedding"):
        tokens = np.loadtxt(data, skiprows=1).astype(int)
        np.testing.assert_array_equal(ids, tokens)  # the token ids, position by position
        assert words == {i: str(i) for i in set(tokens.tolist())}
    layers = [entry["layer"] for entry, _ in states.values()]
    assert layers == sorted(layers) and layers[0] == 1


def test_several_sequences_follow_each_other_and_vocab_words_have_no_spaces(tmp_path):
    model = SAMPLES / "embedding_lstm.keras"
    ids = np.array([[0, 0, 3, 17, 4, 1], [5, 2, 9, 4, 1, 1]], np.float32)
    np.save(tmp_path / "ids.npy", ids[..., None])  # (N, T, 1): two sequences of token ids
    vocab = ["<pad>", " ", "a", "b", "\n", "new york"] + [f"w{k}" for k in range(6, 50)]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    result = run_cli("trace", model, tmp_path / "ids.npy", "--format", "lstmvis", "-o", tmp_path / "p", "--vocab",
                     tmp_path / "vocab.json", "--gates", "f,hidden")
    assert result.returncode == 0, result.stderr
    _, word_ids, words, states = read_project(tmp_path / "p")
    assert sorted(states) == ["lstm/f", "lstm/hidden"]
    np.testing.assert_array_equal(word_ids, ids.reshape(-1))
    assert words[1] == "<space>" and words[4] == "<newline>" and words[5] == "new_york" and words[17] == "w17"
    want = expected_states(trace_csv(model, tmp_path / "ids.npy"), ["0", "1"])
    for path, (_, array) in states.items():
        np.testing.assert_allclose(array, want[path], rtol=1e-6, atol=1e-7)


def test_feature_inputs_get_step_words(tmp_path):
    model, data = SAMPLES / "stacked_lstm.keras", SAMPLES / "stacked_lstm.csv"
    result = run_cli("trace", model, data, "--format", "lstmvis", "-o", tmp_path / "p", "--layer", "lstm_2")
    assert result.returncode == 0, result.stderr
    _, ids, words, states = read_project(tmp_path / "p")
    np.testing.assert_array_equal(ids, np.arange(12))
    assert words[3] == "t3"
    assert {entry["layer"] for entry, _ in states.values()} == {1} and all(p.startswith("lstm_2/") for p in states)


@pytest.mark.parametrize("args,message", [
    ([], "--format lstmvis writes a folder of files: give -o DIR"),
    (["-o", "-"], "--format lstmvis writes a folder of files: give -o DIR"),
])
def test_needs_a_folder(tmp_path, args, message):
    result = run_cli("trace", SAMPLES / "single_lstm.keras", SAMPLES / "single_lstm.csv", "--format", "lstmvis", *args,
                     cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr.decode()
    assert len(result.stderr.decode().splitlines()) == 1 and result.stdout == b""


def test_bad_input_leaves_no_folder(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")  # single_lstm takes 3 features
    result = run_cli("trace", SAMPLES / "single_lstm.keras", bad, "--format", "lstmvis", "-o", tmp_path / "p")
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "p")
