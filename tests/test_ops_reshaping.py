"""Reshape, Permute, Flatten, ZeroPadding1D/2D/3D, Cropping1D/2D/3D, UpSampling1D/2D/3D and RepeatVector
replayed in NumPy equal Keras 3 and tf-keras (models built here, saved as .keras and .h5), and the real
corpus model whose flat input is reshaped into steps for an LSTM equals Keras 3.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import WILD, run_cli
from ops_keras import (
    KERAS3,
    TOL,
    Case,
    api_input,
    assert_bad_setting_refused,
    assert_cli_predict_equals_keras,
    assert_garbage_settings_refused,
    assert_replay_equals_keras,
    assert_trace_equals_keras,
    branches,
    build_case,
    edit_keras_config,
    keras_predict,
    params,
    rng_input,
    sequence_model,
    traced,
)

import lstm_inspect as li
from lstm_inspect.errors import InputDataError, ModelFileError, UnsupportedLayer


def _reshape_lstm(K, L):
    # A flat vector per sample made into 3 steps of 4 features (-1: the features are what is left).
    return sequence_model(K, L, (12,), L.Reshape((3, -1), name="reshape"))


def _reshapes(K, L):
    return branches(K, (6, 4), L.Reshape((-1, 2), name="minus_one_first"), L.Reshape((4, 3, 2), name="rank3"),
                    L.Reshape((24,), name="flat"), L.Reshape((2, -1, 3), name="minus_one_middle"))


def _permutes(K, L):
    return branches(K, (2, 3, 4), L.Permute((3, 1, 2), name="p312"), L.Permute((2, 1, 3), name="p213"),
                    L.Permute((1, 2, 3), name="p123"))


def _permute_lstm(K, L):
    # Features become steps: (T=5, F=3) -> (3, 5).
    return sequence_model(K, L, (5, 3), L.Permute((2, 1), name="permute"), L.Dense(4, name="dense"))


def _flattens(K, L):
    return branches(K, (3, 4, 2), L.Flatten(name="last"), L.Flatten(data_format="channels_first", name="first"))


def _flatten_head(K, L):
    return K.Sequential([K.Input((5, 3)), L.LSTM(4, return_sequences=True, name="lstm"), L.Flatten(name="flat"),
                         L.Dense(3, name="head")])


def _pad_crop_1d(K, L):
    return branches(K, (7, 3), L.ZeroPadding1D(2, name="pad_int"), L.ZeroPadding1D((1, 3), name="pad_pair"),
                    L.Cropping1D((2, 1), name="crop_pair"), L.Cropping1D((3, 0), name="crop_before"),
                    L.UpSampling1D(3, name="up3"))


def _pad_1d_channels_first(K, L):
    return branches(K, (7, 3), L.ZeroPadding1D((2, 1), data_format="channels_first", name="pad_cf"))


def _pad_lstm(K, L):
    return sequence_model(K, L, (5, 3), L.ZeroPadding1D((2, 1), name="pad"), L.Cropping1D((1, 0), name="crop"),
                          L.UpSampling1D(2, name="up"))


def _two_d(K, L, fmt):
    return branches(
        K, (4, 5, 3),
        L.ZeroPadding2D(1, data_format=fmt, name="pad_int"),
        L.ZeroPadding2D((2, 1), data_format=fmt, name="pad_sym"),
        L.ZeroPadding2D(((1, 0), (2, 3)), data_format=fmt, name="pad_pairs"),
        L.Cropping2D(((1, 0), (0, 2)), data_format=fmt, name="crop_pairs"),
        L.Cropping2D(1, data_format=fmt, name="crop_int"),
        L.Cropping2D(((0, 2), (1, 1)), data_format=fmt, name="crop_after"),
        L.UpSampling2D((2, 3), data_format=fmt, name="up_nearest"),
        L.UpSampling2D((3, 2), data_format=fmt, interpolation="bilinear", name="up_bilinear"),
        L.UpSampling2D(4, data_format=fmt, interpolation="bilinear", name="up_bilinear4"),
    )


def _three_d(K, L, fmt):
    return branches(
        K, (4, 5, 6, 3),
        L.ZeroPadding3D(1, data_format=fmt, name="pad_int"),
        L.ZeroPadding3D(((1, 0), (0, 2), (2, 1)), data_format=fmt, name="pad_pairs"),
        L.Cropping3D(((1, 1), (0, 2), (2, 0)), data_format=fmt, name="crop_pairs"),
        L.Cropping3D((1, 1, 0), data_format=fmt, name="crop_sym"),
        L.UpSampling3D((2, 1, 3), data_format=fmt, name="up"),
    )


def _repeat_lstm(K, L):
    return sequence_model(K, L, (4,), L.RepeatVector(3, name="repeat"))


def _video_lstm(K, L):
    """Frames through TimeDistributed reshaping layers, flattened per frame, into an LSTM (a CNN-LSTM's shape)."""
    td = L.TimeDistributed
    return sequence_model(K, L, (4, 5, 6, 2), td(L.ZeroPadding2D(((1, 0), (0, 1))), name="td_pad"),
                          td(L.UpSampling2D(2, interpolation="bilinear"), name="td_up"),
                          td(L.Cropping2D(((1, 2), (2, 1))), name="td_crop"), td(L.Flatten(), name="td_flat"),
                          L.Dense(6, name="dense"))


def _masking_then(layer_name):
    """Masking -> a reshaping layer -> LSTM: Keras 3 drops the mask at the reshaping layer, so the
    LSTM runs every step (tf-keras refuses to build such a model)."""

    def build(K, L):
        layer = {"reshape": L.Reshape((6, 3), name="reshape"), "pad": L.ZeroPadding1D(1, name="pad")}[layer_name]
        return sequence_model(K, L, (6, 3), L.Masking(name="masking"), layer)

    return build


def _masked_input(seed):
    x = rng_input((3, 6, 3), seed)
    x[0, 1:3] = 0.0
    x[2, 4:] = 0.0
    return x


CASES = [
    Case("reshape_lstm", _reshape_lstm, rng_input((4, 12), 1)),
    Case("reshapes", _reshapes, rng_input((3, 6, 4), 2)),
    Case("permutes", _permutes, rng_input((3, 2, 3, 4), 3)),
    Case("permute_lstm", _permute_lstm, rng_input((3, 5, 3), 4)),
    Case("flattens", _flattens, rng_input((3, 3, 4, 2), 5)),
    Case("flatten_head", _flatten_head, rng_input((3, 5, 3), 6)),
    Case("pad_crop_1d", _pad_crop_1d, rng_input((3, 7, 3), 7)),
    Case("pad_1d_channels_first", _pad_1d_channels_first, rng_input((3, 7, 3), 8), KERAS3),  # Keras 3 only
    Case("pad_lstm", _pad_lstm, rng_input((3, 5, 3), 9)),
    Case("two_d_last", lambda K, L: _two_d(K, L, "channels_last"), rng_input((2, 4, 5, 3), 10)),
    Case("two_d_first", lambda K, L: _two_d(K, L, "channels_first"), rng_input((2, 4, 5, 3), 11)),
    Case("three_d_last", lambda K, L: _three_d(K, L, "channels_last"), rng_input((2, 4, 5, 6, 3), 12)),
    Case("three_d_first", lambda K, L: _three_d(K, L, "channels_first"), rng_input((2, 4, 5, 6, 3), 13)),
    Case("repeat_lstm", _repeat_lstm, rng_input((3, 4), 14)),
    Case("video_lstm", _video_lstm, rng_input((2, 4, 5, 6, 2), 17)),
    Case("masking_reshape", _masking_then("reshape"), _masked_input(15), KERAS3),
    Case("masking_pad", _masking_then("pad"), _masked_input(16), KERAS3),
]
BY_ID = {case.id: case for case in CASES}
TRACED = ["reshape_lstm", "permute_lstm", "pad_lstm", "repeat_lstm", "video_lstm", "masking_reshape", "masking_pad"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ops_reshaping")
    return {case.id: build_case(case, folder) for case in CASES}


@pytest.mark.parametrize("case_id, backend, suffix", params(CASES))
def test_predict_equals_keras(built, case_id, backend, suffix):
    assert_replay_equals_keras(built[case_id], backend, suffix)


@pytest.mark.parametrize("case_id", ["reshape_lstm", "two_d_first", "three_d_last"])
def test_float64_replay_equals_keras(built, case_id):
    """The float64 replay (``--dtype float64``) gives float64 arrays within TOL of Keras' float32."""
    assert_replay_equals_keras(built[case_id], "keras3", "keras", dtype=np.float64)


@pytest.mark.parametrize("case_id, backend, suffix", params([BY_ID[i] for i in TRACED]))
def test_lstm_after_the_layer_traced_as_keras(built, case_id, backend, suffix):
    assert_trace_equals_keras(built[case_id], backend, suffix)


@pytest.mark.parametrize("case_id", ["masking_reshape", "masking_pad"])
def test_reshaping_layers_drop_the_mask(built, case_id):
    """The mask ends at the reshaping layer (Keras 3): no step of the LSTM after it is masked."""
    case = built[case_id]
    model = li.load_model(str(case.paths[("keras3", "keras")]))
    assert not traced(model, case.x, value="masked").any()
    assert np.isfinite(traced(model, case.x, value="i")).all()


def test_bilinear_upsampling_is_tensorflow_resize(built):
    """Keras' bilinear UpSampling2D is TensorFlow's resize (half-pixel centres), and so is ours."""
    import tensorflow as tf

    case = built["two_d_last"]
    model = li.load_model(str(case.paths[("keras3", "keras")]))
    outputs = dict(zip([t._keras_history[0].name for t in case.models["keras3"].outputs], li.predict(model, api_input(case.x))))
    resized = tf.image.resize(case.x, (12, 10), method="bilinear").numpy()
    np.testing.assert_allclose(outputs["up_bilinear"], resized, rtol=TOL, atol=TOL)
    # Not a plain repeat: the interpolation is really used.
    assert np.abs(outputs["up_bilinear"] - np.repeat(np.repeat(case.x, 3, axis=1), 2, axis=2)).max() > 0.1


def test_predict_on_the_command_line(built, tmp_path):
    """An (N, 12) .npy: one sample per row, reshaped to 3 steps for the LSTM."""
    assert_cli_predict_equals_keras(built["reshape_lstm"], "keras3", "keras", tmp_path)


# ------------------------------------------------------------------ the real corpus file

EMG = WILD / "cdt406_emg_unrolled_lstm_k3.9.keras"


@pytest.fixture(scope="module")
def emg():
    if not EMG.exists():
        pytest.skip(f"the shared corpus file {EMG} is not here")
    import keras

    x = rng_input((6, 12), 21, scale=2.0)
    keras_model = keras.models.load_model(EMG, compile=False)
    return keras_model, x


def test_corpus_flat_input_reshaped_for_an_lstm_equals_keras(emg):
    """cdt406_emg_unrolled_lstm_k3.9.keras: Input (None, 12) -> Reshape (3, 4) -> LSTM(16) -> Dense -> Dense.
    Each row of an (N, 12) input is one sample."""
    keras_model, x = emg
    model = li.load_model(str(EMG))
    got = li.predict(model, x)
    (expected,) = keras_predict(keras_model, x)
    assert got.shape == expected.shape == (6, 4)
    np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL)
    # The LSTM's steps: Keras' own LSTM on the reshaped rows.
    lstm = keras_model.get_layer("lstm")
    clone = type(lstm).from_config({**lstm.get_config(), "return_sequences": True, "unroll": False, "name": "seq"})
    reshaped = x.reshape(6, 3, 4)
    clone(reshaped)
    clone.set_weights(lstm.get_weights())
    hidden = np.asarray(clone(reshaped))
    np.testing.assert_allclose(traced(model, x), hidden, rtol=TOL, atol=TOL)


def test_corpus_flat_input_on_the_command_line(emg, tmp_path):
    keras_model, x = emg
    path = tmp_path / "rows.csv"
    np.savetxt(path, x, delimiter=",", header=",".join(f"x{k}" for k in range(12)), comments="")
    result = run_cli("predict", EMG, path, "--format", "csv")
    assert result.returncode == 0, result.stderr.decode()
    import io

    import pandas as pd

    frame = pd.read_csv(io.StringIO(result.stdout.decode()))
    assert frame["sequence"].tolist() == list(range(6))
    (expected,) = keras_predict(keras_model, x)
    np.testing.assert_allclose(frame[[f"y_{k}" for k in range(4)]].to_numpy(), expected, rtol=1e-5, atol=TOL)


# ------------------------------------------------------------------ bad settings in a file


BAD_SETTINGS = [
    pytest.param("reshape_lstm", "reshape", {"target_shape": [3, "a"]}, ModelFileError, "target_shape", id="target-text"),
    pytest.param("reshape_lstm", "reshape", {"target_shape": [-1, -1]}, ModelFileError, "target_shape", id="two-minus-ones"),
    pytest.param("reshape_lstm", "reshape", {"target_shape": [5, -1]}, InputDataError, "cannot make", id="target-misfit"),
    pytest.param("repeat_lstm", "repeat", {"n": -3}, ModelFileError, "n is -3", id="repeat-negative"),
    pytest.param("repeat_lstm", "repeat", {"n": 10**12}, ModelFileError, "n is", id="repeat-huge"),
    pytest.param("pad_lstm", "pad", {"padding": [1, 2, 3]}, ModelFileError, "padding", id="pad-three"),
    pytest.param("pad_lstm", "pad", {"padding": 1.5}, ModelFileError, "padding", id="pad-fraction"),
    pytest.param("pad_lstm", "crop", {"cropping": [4, 4]}, InputDataError, "crops 4+4", id="crop-everything"),
    pytest.param("pad_lstm", "up", {"size": 0}, ModelFileError, "size", id="up-zero"),
    pytest.param("permute_lstm", "permute", {"dims": [1, 1]}, ModelFileError, "dims", id="dims-not-permutation"),
    pytest.param("two_d_last", "up_bilinear", {"interpolation": "lanczos5"}, UnsupportedLayer, "lanczos5", id="interp"),
    pytest.param("two_d_last", "pad_int", {"data_format": "sideways"}, ModelFileError, "data_format", id="format"),
]


@pytest.mark.parametrize("case_id, layer, changes, error, words", BAD_SETTINGS)
def test_bad_settings_are_one_line_errors(built, tmp_path, case_id, layer, changes, error, words):
    assert_bad_setting_refused(built[case_id], tmp_path, layer, changes, error, words)


def test_bad_setting_on_the_command_line(built, tmp_path):
    case = built["repeat_lstm"]
    path = tmp_path / "bad.keras"
    edit_keras_config(case.paths[("keras3", "keras")], path, "repeat", n=0)
    data = tmp_path / "x.npy"
    np.save(data, case.x)
    out = tmp_path / "out.csv"
    result = run_cli("predict", path, data, "--format", "csv", "-o", out)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "repeat" in lines[0] and "Traceback" not in lines[0], lines
    assert not out.exists() and result.stdout == b""


def test_garbage_settings_never_crash():
    """Random garbage in the config and weights of these layers ends in a one-line error or a result."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf/NaN settings overflow float32, as in Keras
        assert_garbage_settings_refused(
            ["Reshape", "Permute", "Flatten", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
     "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "RepeatVector"], trials=3000, seed=9)
