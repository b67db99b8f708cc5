"""Models with several inputs and outputs, and state wiring, against Keras.

The Keras ``lstm_seq2seq`` pattern, built here with Keras 3 and tf-keras:

* a training model: encoder LSTM (return_state) whose h and c are the decoder
  LSTM's ``initial_state``, two inputs;
* the inference pair made from the same layers: an encoder returning [h, c],
  and a decoder taking its token sequence plus h and c as inputs and
  returning [sequence, h, c].

Inputs without a time axis (h, c) are one row per sequence.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import run_cli

import lstm_inspect as li

ENC_F, DEC_F, UNITS, VOCAB = 5, 6, 4, 6
ENC_T, DEC_T, N = 7, 5, 3


def _seq2seq(K, L, rng):
    enc_in = K.Input((None, ENC_F), name="encoder_inputs")
    dec_in = K.Input((None, DEC_F), name="decoder_inputs")
    encoder = L.LSTM(UNITS, return_state=True, name="encoder")
    decoder = L.LSTM(UNITS, return_sequences=True, return_state=True, name="decoder")
    dense = L.Dense(VOCAB, activation="softmax", name="head")
    _, h, c = encoder(enc_in)
    dec_seq, _, _ = decoder(dec_in, initial_state=[h, c])
    training = K.Model([enc_in, dec_in], dense(dec_seq))
    for weight in training.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32") * 0.5)
    inference_encoder = K.Model(enc_in, [h, c])
    h_in = K.Input((UNITS,), name="h_in")
    c_in = K.Input((UNITS,), name="c_in")
    seq, h_out, c_out = decoder(dec_in, initial_state=[h_in, c_in])
    inference_decoder = K.Model([dec_in, h_in, c_in], [dense(seq), h_out, c_out])
    return training, inference_encoder, inference_decoder


@pytest.fixture(scope="module", params=["keras3", "tfkeras"])
def seq2seq(request, tmp_path_factory):
    if request.param == "keras3":
        import keras as K
    else:
        import tf_keras as K
    rng = np.random.default_rng(5)
    models = _seq2seq(K, K.layers, rng)
    folder = tmp_path_factory.mktemp(f"s2s-{request.param}")
    suffix = "keras" if request.param == "keras3" else "h5"
    paths = []
    for name, model in zip(("training", "encoder", "decoder"), models):
        path = folder / f"{name}.{suffix}"
        model.save(path)
        paths.append(path)
    data = {
        "enc": rng.normal(size=(N, ENC_T, ENC_F)).astype("float32"),
        "dec": rng.normal(size=(N, DEC_T, DEC_F)).astype("float32"),
        "h": rng.normal(size=(N, UNITS)).astype("float32") * 0.5,
        "c": rng.normal(size=(N, UNITS)).astype("float32") * 0.5,
    }
    files = {}
    for key, array in data.items():
        files[key] = folder / f"{key}.npy"
        np.save(files[key], array)
    return models, paths, data, files, folder


def _csv(result):
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr.decode()
    return list(csv.DictReader(io.StringIO(result.stdout.decode())))


def _y(row, width):
    return np.array([float(row[f"y_{k}"]) for k in range(width)])


def test_training_model_predict_equals_keras(seq2seq):
    (training, _, _), paths, data, files, _ = seq2seq
    expected = training.predict([data["enc"], data["dec"]], verbose=0)
    model = li.load_model(str(paths[0]))
    assert np.abs(li.predict(model, [data["enc"], data["dec"]]) - expected).max() < 1e-5
    by_name = {"encoder_inputs": data["enc"], "decoder_inputs": data["dec"]}
    assert np.abs(li.predict(model, by_name) - expected).max() < 1e-5
    for args in ((files["enc"], files["dec"]), (f"decoder_inputs={files['dec']}", f"encoder_inputs={files['enc']}")):
        rows = _csv(run_cli("predict", paths[0], *args, "--format", "csv"))
        assert len(rows) == N * DEC_T
        for row in rows:
            n, t = int(row["sequence"]), int(row["t"])
            assert np.abs(_y(row, VOCAB) - expected[n, t]).max() < 1e-5


def test_the_encoder_is_traced_with_the_encoder_input_alone(seq2seq):
    (training, _, _), paths, data, files, _ = seq2seq
    rows = _csv(run_cli("trace", paths[0], files["enc"], "--layer", "encoder", "--gates", "hidden", "--format", "csv"))
    assert {row["layer"] for row in rows} == {"encoder"}
    # Keras' own final state of the encoder, through a sub-model of the training model.
    probe = type(training)(training.inputs[0], training.get_layer("encoder").output[1])
    final_h = probe.predict(data["enc"], verbose=0)
    last = [row for row in rows if int(row["t"]) == ENC_T - 1]
    assert len(last) == N * UNITS
    for row in last:
        assert abs(float(row["hidden"]) - final_h[int(row["sequence"]), int(row["unit"])]) < 1e-5


def test_the_decoder_starts_from_the_encoder_state(seq2seq):
    (training, _, _), paths, data, _, _ = seq2seq
    decoder = training.get_layer("decoder")
    probe = type(training)(training.inputs, decoder.output[0])
    expected = probe.predict([data["enc"], data["dec"]], verbose=0)  # (N, DEC_T, U)
    arrays = li.trace_arrays(li.load_model(str(paths[0])), [data["enc"], data["dec"]], ["decoder"])
    assert np.abs(arrays["decoder"]["hidden"] - expected).max() < 1e-5


def test_inference_encoder_writes_each_output(seq2seq):
    (_, encoder, _), paths, data, files, _ = seq2seq
    h, c = encoder.predict(data["enc"], verbose=0)
    rows = _csv(run_cli("predict", paths[1], files["enc"], "--format", "csv"))
    assert list(rows[0]) == ["sequence", "output"] + [f"y_{k}" for k in range(UNITS)]
    assert len(rows) == 2 * N
    for row in rows:
        expected = (h, c)[int(row["output"])][int(row["sequence"])]
        assert np.abs(_y(row, UNITS) - expected).max() < 1e-5


def test_inference_decoder_takes_h_and_c_one_row_per_sequence(seq2seq):
    (_, _, decoder), paths, data, files, folder = seq2seq
    seq, h, c = decoder.predict([data["dec"], data["h"], data["c"]], verbose=0)
    # h and c as CSV files: one row per sequence, as the issue says inputs without a time axis are.
    for key in ("h", "c"):
        np.savetxt(folder / f"{key}.csv", data[key], delimiter=",", fmt="%.9g")
    result = run_cli("predict", paths[2], files["dec"], folder / "h.csv", folder / "c.csv", "--format", "json")
    assert result.returncode == 0, result.stderr.decode()
    rows = json.loads(result.stdout)
    assert list(rows[0]) == ["sequence", "output", "t"] + [f"y_{k}" for k in range(VOCAB)]
    assert len(rows) == N * (DEC_T + 2)
    for row in rows:
        n, output = row["sequence"], row["output"]
        values = np.array([row[f"y_{k}"] for k in range(VOCAB)], dtype=object)
        if output == 0:
            assert np.abs(values.astype(float) - seq[n, row["t"]]).max() < 1e-5
        else:
            assert row["t"] is None
            assert np.abs(values[:UNITS].astype(float) - (h, c)[output - 1][n]).max() < 1e-5
            assert all(v is None for v in values[UNITS:])  # cells beyond an output's width are empty
    api = li.predict(li.load_model(str(paths[2])), [data["dec"], data["h"], data["c"]])
    for ours, theirs in zip(api, (seq, h, c)):
        assert np.abs(ours - theirs).max() < 1e-5


def test_layers_says_where_the_initial_state_comes_from(seq2seq):
    _, paths, _, _, _ = seq2seq
    rows = {row["name"]: row for row in json.loads(run_cli("layers", paths[0], "--format", "json").stdout)}
    assert rows["encoder"]["initial_state"] == "zeros"
    assert rows["decoder"]["initial_state"] == "h=encoder[1]; c=encoder[2]"
    rows = {row["name"]: row for row in json.loads(run_cli("layers", paths[2], "--format", "json").stdout)}
    assert rows["decoder"]["initial_state"] == "h=h_in; c=c_in"


@pytest.mark.parametrize(
    "args, message",
    [
        (("{enc}",), "no INPUT given for the model input 'decoder_inputs'"),
        (("{enc}", "{dec}", "{enc}"), "3 INPUT(s) given"),
        (("nope={enc}", "{dec}"), "no model input named 'nope'"),
        (("{enc}", "{enc}"), "takes 6 feature(s) per step"),
        (("encoder_inputs={enc}", "encoder_inputs={enc}"), "given twice"),
    ],
)
def test_wrong_inputs_are_one_line(seq2seq, args, message):
    _, paths, _, files, _ = seq2seq
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    result = run_cli("predict", paths[0], *args)
    assert result.returncode == 2
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert len(stderr.strip().splitlines()) == 1 and message in stderr, stderr


def test_sequence_counts_must_agree(seq2seq):
    _, paths, data, files, folder = seq2seq
    np.save(folder / "dec2.npy", data["dec"][:2])
    result = run_cli("predict", paths[0], files["enc"], folder / "dec2.npy")
    assert result.returncode == 2
    assert "different numbers of sequences" in result.stderr.decode()
