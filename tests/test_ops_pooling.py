"""Pooling layers (``ops/pooling.py``) against Keras 3 and tf-keras 2.21.

Chains of MaxPooling / AveragePooling (pool_size, strides, padding valid and
same) and the global poolings (keepdims), channels last and first, built in
Keras with a seeded random input, saved in the three file kinds and compared
layer by layer (helpers in ``test_ops_conv``).  Also: an average over "same"
padding divides by the real values only (as TensorFlow does), the masked
GlobalAveragePooling1D (and Keras 3's GlobalMaxPooling1D, which ignores the
mask), an LSTM traced after poolings, the command line, bad settings, and the
corpus ConvLSTM2D video model (MaxPooling3D between its ConvLSTM2D layers):
its predict equals Keras 3 and stays practical (timed).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
from conftest import WILD, keras_module, run_cli
from test_ops_conv import (
    FORMATS,
    TOL,
    Case,
    assert_layers_equal,
    build_case,
    file_params,
    layer_steps,
    lstm_hidden,
    read_prediction_csv,
    replay_layers,
    rewrite_config,
    rng_input,
)

import lstm_inspect as li
from lstm_inspect.engine import compile_model
from lstm_inspect.errors import ModelFileError

CF = "channels_first"


def pool1d_chain(K, L):
    return K.Sequential([
        K.Input((20, 4)),
        L.MaxPooling1D(2, name="max_valid"),
        L.MaxPooling1D(3, strides=1, padding="same", name="max_same"),
        L.AveragePooling1D(4, strides=1, padding="same", name="average_same_wide"),
        L.AveragePooling1D(3, strides=2, padding="same", name="average_same_stride2"),
        L.AveragePooling1D(2, strides=1, name="average_valid"),
        L.LSTM(5, return_sequences=True, name="lstm"),
        L.GlobalAveragePooling1D(keepdims=True, name="global_average_keepdims"),
        L.GlobalMaxPooling1D(name="global_max"),
    ])


def pool1d_formats(data_format: str) -> Callable:
    def make(K, L):
        df = data_format
        return K.Sequential([
            K.Input((4, 19) if df == CF else (19, 4)),
            L.MaxPooling1D(3, strides=2, padding="same", data_format=df, name="max_same"),
            L.AveragePooling1D(4, strides=1, padding="same", data_format=df, name="average_same"),
            L.AveragePooling1D(2, data_format=df, name="average_valid"),
            L.GlobalAveragePooling1D(keepdims=True, data_format=df, name="global_average_keepdims"),
            L.GlobalMaxPooling1D(data_format=df, name="global_max"),
        ])

    return make


def pool2d_formats(data_format: str) -> Callable:
    def make(K, L):
        df = data_format
        return K.Sequential([
            K.Input((3, 11, 10) if df == CF else (11, 10, 3)),
            L.MaxPooling2D(3, strides=(2, 1), padding="same", data_format=df, name="max_same"),
            L.AveragePooling2D((3, 2), strides=(1, 2), padding="same", data_format=df, name="average_same"),
            L.AveragePooling2D(2, data_format=df, name="average_valid"),
            L.MaxPooling2D((2, 1), data_format=df, name="max_valid"),
            L.GlobalAveragePooling2D(keepdims=True, data_format=df, name="global_average_keepdims"),
            L.GlobalMaxPooling2D(data_format=df, name="global_max"),
        ])

    return make


def pool2d_global(data_format: str) -> Callable:
    """The global poolings without keepdims, on their own (the chain ends in one)."""

    def make(K, L):
        inputs = K.Input((3, 7, 6) if data_format == CF else (7, 6, 3))
        average = L.GlobalAveragePooling2D(data_format=data_format, name="global_average")(inputs)
        maximum = L.GlobalMaxPooling2D(keepdims=True, data_format=data_format, name="global_max_keepdims")(inputs)
        return K.Model(inputs, [average, maximum])

    return make


def pool3d_formats(data_format: str) -> Callable:
    def make(K, L):
        df = data_format
        return K.Sequential([
            K.Input((2, 6, 7, 5) if df == CF else (6, 7, 5, 2)),
            L.MaxPooling3D((1, 2, 2), padding="same", data_format=df, name="max_same"),  # as in the corpus file
            L.AveragePooling3D(2, strides=(2, 1, 1), padding="same", data_format=df, name="average_same"),
            L.AveragePooling3D((2, 2, 1), data_format=df, name="average_valid"),
            L.MaxPooling3D((1, 2, 3), strides=1, data_format=df, name="max_valid"),
            L.GlobalAveragePooling3D(keepdims=True, data_format=df, name="global_average_keepdims"),
            L.GlobalMaxPooling3D(data_format=df, name="global_max"),
        ])

    return make


# name -> (builder, input shape, channels-last twin, backends that use the twin as Keras' answer)
# tf-keras' CPU kernels do not run a channels_first 2D pooling with oneDNN off (as conftest sets it);
# Keras 3 runs them all.  See test_ops_conv.build_case.
CASES: dict[str, tuple[Callable, tuple[int, ...], Callable | None, tuple[str, ...]]] = {
    "pool1d": (pool1d_chain, (3, 20, 4), None, ()),
    "pool1d_cf": (pool1d_formats(CF), (3, 4, 19), pool1d_formats("channels_last"), ("tfkeras",)),
    "pool2d": (pool2d_formats("channels_last"), (2, 11, 10, 3), None, ()),
    "pool2d_cf": (pool2d_formats(CF), (2, 3, 11, 10), pool2d_formats("channels_last"), ("tfkeras",)),
    "pool3d": (pool3d_formats("channels_last"), (2, 6, 7, 5, 2), None, ()),
    "pool3d_cf": (pool3d_formats(CF), (2, 2, 6, 7, 5), pool3d_formats("channels_last"), ("tfkeras",)),
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Callable[[str, str], Case]:
    folder = tmp_path_factory.mktemp("ops_pooling")
    built: dict[tuple[str, str], Case] = {}

    def get(name: str, backend: str) -> Case:
        if (name, backend) not in built:
            make, shape, twin, twin_backends = CASES[name]
            built[name, backend] = build_case(folder, name, backend, make, rng_input(shape, len(name)),
                                              twin if backend in twin_backends else None)
        return built[name, backend]

    return get


@pytest.mark.parametrize("name, backend, suffix", file_params(list(CASES)))
def test_every_layer_equals_keras(cases, name, backend, suffix):
    case = cases(name, backend)
    assert_layers_equal(case, replay_layers(case.paths[suffix], case.x))


@pytest.mark.parametrize("data_format", ["channels_last", CF])
@pytest.mark.parametrize("backend", ["keras3", "tfkeras"])
def test_global_poolings_without_keepdims_equal_keras(tmp_path, backend, data_format):
    K, _ = keras_module(backend)
    x = rng_input((2, 7, 6, 3) if data_format == "channels_last" else (2, 3, 7, 6), 5)
    model = pool2d_global(data_format)(K, K.layers)
    want = model.predict(x, verbose=0)
    path = tmp_path / f"global-{backend}.h5"
    model.save(path)
    got = compile_model(li.load_model(str(path))).predict(x)
    assert [g.shape for g in got] == [(2, 3), (2, 1, 1, 3) if data_format == "channels_last" else (2, 3, 1, 1)]
    for have, expected in zip(got, want):
        np.testing.assert_allclose(have, expected, atol=TOL)


def test_average_over_same_padding_divides_by_the_real_values():
    """Of ones, every window's average is 1: the padded positions are not counted (TensorFlow's avg_pool)."""
    from lstm_inspect.ops.convolution import pool

    x = np.ones((1, 5, 4, 2), dtype=np.float32)
    got = pool(x, (3, 4), strides=(2, 3), padding="same", how="mean")
    assert got.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(got, 1.0)
    # and the max skips them: of negative values, no padded zero wins
    np.testing.assert_array_equal(pool(-x, (3, 4), strides=(2, 3), padding="same", how="max"), -1.0)


# ------------------------------------------------------------------ an LSTM after poolings, the command line


@pytest.mark.parametrize("name, backend, suffix", file_params(["pool1d"]))
def test_lstm_after_poolings_trace_equals_keras(cases, name, backend, suffix):
    case = cases(name, backend)
    K, _ = keras_module(backend)
    traced = li.trace_arrays(li.load_model(str(case.paths[suffix])), case.x)
    want = lstm_hidden(case.model, "lstm", case.x, K)
    assert want.shape == (3, 4, 5)  # 20 steps -> 10 -> 10 -> 10 -> 5 -> 4
    np.testing.assert_allclose(layer_steps(traced["lstm"]["hidden"], want), want, atol=TOL)
    np.testing.assert_allclose(li.predict(li.load_model(str(case.paths[suffix])), case.x), case.prediction, atol=TOL)


def test_predict_command_equals_keras(cases, tmp_path):
    case = cases("pool1d", "keras3")
    source = tmp_path / "x.npy"
    np.save(source, case.x)
    result = run_cli("predict", case.paths["h5"], source, "--format", "csv")
    assert result.returncode == 0 and result.stderr.decode().strip() == "", result.stderr.decode()
    np.testing.assert_allclose(read_prediction_csv(result.stdout.decode()), case.prediction, atol=TOL)


# ------------------------------------------------------------------ masks


def masked_average(K, L):
    return K.Sequential([
        K.Input((6, 3)),
        L.Masking(name="masking"),
        L.LSTM(4, return_sequences=True, name="lstm"),
        L.GlobalAveragePooling1D(name="average"),
        L.Dense(2, name="head"),
    ])


def masked_max(K, L):
    return K.Sequential([
        K.Input((6, 3)),
        L.Masking(name="masking"),
        L.LSTM(4, return_sequences=True, name="lstm"),
        L.GlobalMaxPooling1D(name="max"),
    ])


def masked_input() -> np.ndarray:
    x = rng_input((4, 6, 3), 11)
    x[0, 4:] = 0.0  # trailing padding
    x[1, :2] = 0.0  # leading padding
    x[2] = 0.0  # every step masked: Keras' average is 0/0
    return x


@pytest.mark.parametrize("backend, suffix", [(b, s) for b, s in FORMATS])
def test_masked_global_average_equals_keras(tmp_path, backend, suffix):
    """GlobalAveragePooling1D averages the unmasked steps; a sequence with none gives NaN, as in Keras."""
    K, L = keras_module(backend)
    model = masked_average(K, L)
    x = masked_input()
    want = model.predict(x, verbose=0)
    assert np.isnan(want[2]).all() and np.isfinite(want[[0, 1, 3]]).all()
    path = tmp_path / f"masked.{suffix}"
    model.save(path)
    np.testing.assert_allclose(li.predict(li.load_model(str(path)), x), want, atol=TOL)


def test_keras3_global_max_ignores_the_mask(tmp_path):
    """Keras 3's GlobalMaxPooling1D does not support masking: it takes the max over every step, masked
    ones too (the LSTM repeats its last output there).  tf-keras refuses to build this model."""
    K, L = keras_module("keras3")
    model = masked_max(K, L)
    x = masked_input()
    want = model.predict(x, verbose=0)
    path = tmp_path / "masked-max.keras"
    model.save(path)
    np.testing.assert_allclose(li.predict(li.load_model(str(path)), x), want, atol=TOL)


# ------------------------------------------------------------------ bad settings

BAD_SETTINGS = [
    pytest.param("max_valid", {"pool_size": [0]}, "pool_size", id="zero-pool"),
    pytest.param("max_same", {"strides": [-1]}, "strides", id="negative-stride"),
    pytest.param("average_valid", {"padding": "causal"}, "padding", id="causal-pooling"),
    pytest.param("average_same_wide", {"pool_size": "4"}, "pool_size", id="text-pool-size"),
    pytest.param("global_average_keepdims", {"keepdims": "yes"}, "keepdims", id="text-keepdims"),
    pytest.param("global_max", {"data_format": "NCW"}, "data_format", id="tf-data-format-name"),
]


@pytest.mark.parametrize("layer, changes, word", BAD_SETTINGS)
def test_bad_settings_are_one_line_errors(cases, tmp_path, layer, changes, word):
    case = cases("pool1d", "keras3")
    path = rewrite_config(case.paths["h5"], tmp_path / "bad.h5", layer, **changes)
    with pytest.raises(ModelFileError) as error:
        li.predict(li.load_model(str(path)), case.x)
    message = str(error.value)
    assert "\n" not in message and f"'{layer}'" in message and word in message, message


def test_huge_pool_size_with_same_padding_stays_cheap():
    """A window far larger than the input only walks the taps that touch it."""
    from lstm_inspect.ops.convolution import pool

    x = rng_input((2, 7, 3))
    started = time.perf_counter()
    got = pool(x, (10**9,), strides=(1,), padding="same", how="max")
    assert time.perf_counter() - started < 1.0
    np.testing.assert_allclose(got, np.broadcast_to(x.max(axis=1, keepdims=True), got.shape))


# ------------------------------------------------------------------ the corpus ConvLSTM2D video model

CORPUS_CONVLSTM = WILD / "iam-pranjal_har_convlstm2d.h5"


def test_corpus_convlstm2d_predict_equals_keras_and_is_practical():
    """Four ConvLSTM2D layers on 20 frames of 64x64x3, each followed by MaxPooling3D((1, 2, 2), same):
    the replay's output equals Keras 3 loading the file, and one sample takes seconds, not minutes."""
    if not CORPUS_CONVLSTM.exists():
        pytest.skip(f"the shared corpus file {CORPUS_CONVLSTM} is not here")
    import keras

    x = np.random.default_rng(20).random((1, 20, 64, 64, 3), dtype=np.float32)
    want = keras.saving.load_model(CORPUS_CONVLSTM, compile=False).predict(x, verbose=0)
    program = compile_model(li.load_model(str(CORPUS_CONVLSTM)))
    started = time.perf_counter()
    (got,) = program.predict(x)
    elapsed = time.perf_counter() - started
    np.testing.assert_allclose(got, want, atol=TOL)
    assert elapsed < 15.0, f"one sample took {elapsed:.1f} s"
