"""`lstm-inspect code`: the generated script runs on its own and computes what Keras computes.

For every sample model, and for models built here with Keras (masks, every
Bidirectional merge mode, go_backwards, no bias, relu/hard_sigmoid, GRUs of
both reset_after kinds, SimpleRNN, Embedding), the script is written, run as
`python replay.py INPUT --trace` and imported (`replay.run(x)`), and compared
with Keras' own outputs and with `lstm-inspect predict` / `trace` (as numbers,
with a tolerance).  Corpus files from other people are compared with
`lstm-inspect` (which tests/test_corpus.py checks against Keras) and, where
Keras 3 loads them, with Keras.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, WILD, keras_module, run_cli

import lstm_inspect as li

TEXT_COLUMNS = {"sequence", "layer", "t", "unit", "masked"}
# The sample models `code` writes out; the others hold layers it refuses by name (tested below).
REFUSED = {
    "cnn_lstm.keras": "'conv1d' (Conv1D)",
    "conv_lstm.keras": "'conv_lstm' (ConvLSTM2D)",
    "lambda_scaled.keras": "'scale' (Lambda)",
    "seq2seq.keras": "the model has 2 inputs",
    "seq2seq_decoder.keras": "the model has 3 inputs",
    "seq2seq_encoder.keras": "several outputs",
}
SAMPLE_FILES = [p for p in sorted(SAMPLES.glob("*.keras")) + sorted(SAMPLES.glob("*.h5")) if p.name not in REFUSED]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_models_code_cannot_write_out_are_refused_by_name(name, tmp_path):
    result = run_cli("code", SAMPLES / name, "-o", tmp_path / "replay.py")
    assert result.returncode == 2 and not (tmp_path / "replay.py").exists()
    stderr = result.stderr.decode()
    assert len(stderr.strip().splitlines()) == 1 and REFUSED[name] in stderr, stderr


def write_script(tmp_path: Path, model: Path, *extra) -> Path:
    script = tmp_path / "replay.py"
    result = run_cli("code", model, *extra, "-o", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    return script


def run_script(script: Path, *args) -> str:
    result = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                            cwd=script.parent, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def import_script(script: Path):
    spec = importlib.util.spec_from_file_location(f"replay_{abs(hash(script))}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def same_table(ours: str, theirs: str, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """Two CSV texts: the same header and rows; text columns equal, numbers within a tolerance
    (an empty field, a masked step's gate, must be empty in both)."""
    a = list(csv.reader(io.StringIO(ours)))
    b = list(csv.reader(io.StringIO(theirs)))
    assert a[0] == b[0], (a[0], b[0])
    assert len(a) == len(b), (len(a), len(b))
    header = a[0]
    text = [k for k, name in enumerate(header) if name in TEXT_COLUMNS]
    numbers = [k for k, name in enumerate(header) if name not in TEXT_COLUMNS]
    for k in text:
        assert [row[k] for row in a[1:]] == [row[k] for row in b[1:]], header[k]
    for k in numbers:
        left = np.array([np.nan if row[k] == "" else float(row[k]) for row in a[1:]])
        right = np.array([np.nan if row[k] == "" else float(row[k]) for row in b[1:]])
        np.testing.assert_allclose(left, right, rtol=rtol, atol=atol, equal_nan=True, err_msg=header[k])


def lstm_inspect_output(*args) -> str:
    result = run_cli(*args, "--format", "csv")
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


# ----------------------------------------------------------------------------- sample models


def keras_predict(model_path: Path, x: np.ndarray) -> np.ndarray:
    """Keras' own output: Keras 3 for files it saved, tf-keras for older ones; a stateful model
    (batch shape (1, 1, F)) gets the input's rows as samples of one step, as its predict takes them."""
    version = li.load_model(str(model_path)).keras_major
    K, _ = keras_module("keras3" if version == 3 else "tfkeras")
    model = K.models.load_model(str(model_path), compile=False)
    if getattr(model.layers[-2] if len(model.layers) > 1 else model.layers[-1], "stateful", False):
        return model.predict(x.reshape(-1, 1, x.shape[-1]), batch_size=1, verbose=0)
    return model.predict(x, verbose=0)


def sample_input(model_path: Path) -> tuple[Path, np.ndarray]:
    data = SAMPLES / (model_path.stem + ".csv")
    x = np.loadtxt(data, delimiter=",", skiprows=1, dtype=np.float32, ndmin=2)[None]
    if model_path.stem == "embedding_lstm":
        x = x[..., 0].astype(np.int32)
    return data, x


@pytest.mark.parametrize("model_path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_model_matches_keras_predict_and_trace(model_path, tmp_path):
    data, x = sample_input(model_path)
    script = write_script(tmp_path, model_path)
    printed = run_script(script, data)
    same_table(printed, lstm_inspect_output("predict", model_path, data))
    same_table(run_script(script, data, "--trace"), lstm_inspect_output("trace", model_path, data))
    expected = keras_predict(model_path, x)
    header, *rows = list(csv.reader(io.StringIO(printed)))
    ys = [k for k, name in enumerate(header) if name.startswith("y_")]
    values = np.array([[float(row[k]) for k in ys] for row in rows])
    np.testing.assert_allclose(values.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


def test_script_is_standalone_and_reads_an_npz_beside_it(tmp_path):
    """--weights-out: the script reads the .npz (found beside it after a move), not the model file."""
    model = SAMPLES / "bidirectional_lstm.h5"
    data = SAMPLES / "bidirectional_lstm.csv"
    build = tmp_path / "build"
    build.mkdir()
    result = run_cli("code", model, "--weights-out", build / "weights.npz", "-o", build / "replay.py")
    assert result.returncode == 0, result.stderr
    with np.load(build / "weights.npz") as arrays:
        assert sorted(arrays.files) == sorted(f"bi/{d}/{t}" for d in ("forward", "backward")
                                              for t in ("kernel", "recurrent_kernel", "bias")) + ["out/bias", "out/kernel"]
    moved = tmp_path / "elsewhere"
    build.rename(moved)
    source = (moved / "replay.py").read_text()
    assert "h5py" not in source and "DATASETS" not in source
    same_table(run_script(moved / "replay.py", data, "--trace"), lstm_inspect_output("trace", model, data))
    same_table(run_script(moved / "replay.py", data), lstm_inspect_output("predict", model, data))


def test_script_shows_the_pitfalls_where_they_lie(tmp_path):
    source = write_script(tmp_path, SAMPLES / "keras2_hard_sigmoid.h5").read_text()
    assert "Keras' column blocks are i, f, c, o" in source
    assert "bias added once per step" in source
    assert "clip(0.2 * x + 0.5, 0.0, 1.0)" in source  # the saving Keras' hard_sigmoid, not Keras 3's
    assert "def softmax" not in source and "def relu" not in source  # only what this model uses
    backwards = write_script(tmp_path, SAMPLES / "bidirectional_lstm.keras").read_text()
    assert "go_backwards" in backwards and "[:, ::-1]" in backwards
    gru = write_script(tmp_path, SAMPLES / "gru_rnn.keras").read_text()
    assert "row 0 is added to x·kernel, row 1 to h·recurrent_kernel" in gru


# ----------------------------------------------------------------------------- built models

BUILT = ["stacked", "relu_hard", "backwards", "no_bias", "bi_concat", "bi_sum", "bi_ave", "bi_mul", "bi_last",
         "embedding", "masking", "gru", "gru_reset_before", "simple_rnn", "bi_gru", "nested"]


@pytest.mark.parametrize("backend", ["keras3", "tfkeras"])
@pytest.mark.parametrize("kind", BUILT)
def test_run_matches_keras_and_trace_arrays(saved_model, kind, backend, tmp_path):
    """`replay.run(x)` on a batch: the output is Keras' and every step's values are trace_arrays'."""
    case = saved_model(kind, backend)
    path = case.paths["h5"]
    replay = import_script(write_script(tmp_path, path))
    output, trace = replay.run(case.x)
    np.testing.assert_allclose(output, case.model.predict(case.x, verbose=0), rtol=1e-5, atol=1e-5)
    expected = li.trace_arrays(li.load_model(str(path)), case.x)
    assert set(trace) == set(expected)
    for layer, values in expected.items():
        assert set(trace[layer]) == set(values), layer
        for name, want in values.items():
            np.testing.assert_allclose(trace[layer][name], want, rtol=1e-5, atol=1e-5, equal_nan=True,
                                       err_msg=f"{layer} {name}")


# ----------------------------------------------------------------------------- real-world files

MANIFEST = WILD / "manifest.json"
ENTRIES = {e["file"]: e for e in json.loads(MANIFEST.read_text())} if MANIFEST.exists() else {}
corpus = pytest.mark.skipif(not ENTRIES, reason=f"corpus manifest not found at {MANIFEST}")
# Keras 1 files store one array per gate: the script reads them converted, from --weights-out.
SERVED = {
    "jaungiers_timeseries_lstm.h5": [],
    "galalen_arabic_lstm.h5": [],
    "komei_lstm_practice.keras": [],
    "fauzzzs7_bilstm.keras": [],
    "arafat_emoji_bilstm.h5": [],
    "satwikk_battery_gru.h5": [],
    "karolinak00_stateful_gru_charrnn_tfkeras2.15.h5": [],
    "mainakcris7_ser_lstm_gru_tfkeras2.15.keras": [],
    "nanoporetech_medaka_r941_flip213_bigru.hdf5": [],
    "beneyal_keras1_stacked_lstm_textgen.hdf5": ["--weights-out"],
    "tsudalab_chemts_keras1_gru_weights.h5": ["--weights-out", "--config", "tsudalab_chemts_keras1_gru_model.json"],
}


def corpus_input(entry, tmp_path) -> Path:
    rng = np.random.default_rng(1)
    shape = entry["input_shape"]
    if isinstance(shape, str):  # token ids
        x = rng.integers(1, 64, size=(1, 12, 1)).astype(np.float32)
    else:
        steps = shape[1] if shape[1] is not None else 9
        x = rng.normal(size=(2 if shape[0] is None else shape[0], min(steps, 60)) + tuple(shape[2:])).astype(np.float32)
        if steps > 60:  # a long fixed length: the replay takes any length, Keras' config notwithstanding
            x = x[:, :60]
    path = tmp_path / "x.npy"
    np.save(path, x)
    return path


@corpus
@pytest.mark.parametrize("name", sorted(SERVED))
def test_corpus_model_matches_lstm_inspect(name, tmp_path):
    entry = ENTRIES[name]
    extra = []
    config = []
    options = SERVED[name]
    if "--config" in options:
        config = ["--config", WILD / options[options.index("--config") + 1]]
    if "--weights-out" in options:
        extra = ["--weights-out", tmp_path / "weights.npz"]
        refused = run_cli("code", WILD / name, *config, "-o", tmp_path / "no.py")
        assert refused.returncode == 2 and b"--weights-out" in refused.stderr and not (tmp_path / "no.py").exists()
    script = write_script(tmp_path, WILD / name, *config, *extra)
    x = corpus_input(entry, tmp_path)
    # float32 as written: trained models amplify rounding (the Keras 1 char model: 4.6e-4 between two
    # float32 replays, 3.2e-3 on a cell state of 16; KERAS_NOTES saw 1.3e-3), hence loose bounds here ...
    loose = {"atol": 2e-3, "rtol": 1e-3}
    same_table(run_script(script, x), lstm_inspect_output("predict", WILD / name, *config, x), **loose)
    same_table(run_script(script, x, "--trace"), lstm_inspect_output("trace", WILD / name, *config, x), **loose)
    # ... and the same script in float64, which must agree with lstm-inspect's float64 replay to 1e-9.
    replay = import_script(script)
    replay.DTYPE = np.float64
    replay.W = replay.load_weights()
    output, trace = replay.run(np.load(x))
    model = li.load_model(str(WILD / name), config=str(config[1]) if config else None)
    options = li.ReplayOptions(dtype=np.float64)
    np.testing.assert_allclose(output, li.predict(model, np.load(x), options=options), rtol=1e-9, atol=1e-9)
    for layer, values in li.trace_arrays(model, np.load(x), options=options).items():
        for value, want in values.items():
            np.testing.assert_allclose(trace[layer][value], want, rtol=1e-9, atol=1e-9, equal_nan=True,
                                       err_msg=f"{layer} {value}")
    if entry.get("keras3_loads"):
        import keras

        replay.DTYPE = np.float32
        replay.W = replay.load_weights()
        output, _ = replay.run(np.load(x))
        expected = keras.saving.load_model(str(WILD / name), compile=False).predict(np.load(x), verbose=0)
        np.testing.assert_allclose(output, expected, rtol=1e-5, atol=2e-5)


@corpus
@pytest.mark.parametrize("name,message", [
    ("g1213123_conv1d_lstm_k3.2.h5", "layer 'conv1d' (Conv1D) cannot be written out by `lstm-inspect code`"),
    ("iam-pranjal_har_convlstm2d.h5", "(ConvLSTM2D) cannot be written out"),
    ("udnet96_lstm_seq2seq_s2s.h5", "the model has 2 inputs"),
    ("textgenrnn_weights.hdf5", "cannot be written out"),
])
def test_refused_by_name(name, message, tmp_path):
    result = run_cli("code", WILD / name, "-o", tmp_path / "replay.py")
    assert result.returncode == 2
    errors = [line for line in result.stderr.decode().splitlines() if not line.startswith("lstm-inspect: warning:")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- activations


@pytest.mark.parametrize("hard", ["keras2", "keras3"])
def test_activation_sources_compute_what_the_replay_computes(hard):
    from lstm_inspect.activations import KNOWN, activation_source, get_activation

    x = np.random.default_rng(3).normal(0, 4, size=(5, 7)).astype(np.float32)
    written = 0
    for name in KNOWN:
        source = activation_source(name, hard)
        if source is None:
            continue
        scope = {"np": np}
        exec(source, scope)  # noqa: S102 - the text the generated scripts hold, written by lstm-inspect
        got = scope[name](x)
        assert got.dtype == np.float32, name
        np.testing.assert_allclose(got, get_activation(name, hard, "test")(x), rtol=1e-6, atol=1e-7, err_msg=name)
        written += 1
    assert written >= 10


def test_api_replay_code_is_what_the_command_writes(tmp_path):
    model = SAMPLES / "gru_rnn.keras"
    script = write_script(tmp_path, model)
    assert li.replay_code(li.load_model(str(model))).source == script.read_text()
