"""Shared fixtures: Keras models built at test time, saved, and Keras' own outputs.

Expected numbers always come from Keras (Keras 3 or tf-keras 2.x) at test
time, or from an independent float64 computation in the test; never from a
file lstm-inspect wrote.

``saved_model(kind, backend)`` builds a model of a named kind (see
``MODEL_KINDS``) with seeded random weights, saves it (Keras 3: ``.keras``
and ``.h5``; tf-keras: ``.h5``) and returns a :class:`SavedCase` holding the
paths, the live Keras model and an input batch.  Builds are cached for the
session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
WILD = ROOT.parent / "shared" / "wild_models"
CLI = [sys.executable, "-m", "lstm_inspect"]

STEPS = 7
FEATURES = 3


def keras_module(backend: str):
    """``keras`` (Keras 3) or ``tf_keras`` (Keras 2 API), with its layers module."""
    if backend == "keras3":
        import keras

        return keras, keras.layers
    import tf_keras

    return tf_keras, tf_keras.layers


# Each builder takes (keras, layers) and returns a compiled-free model.  Names are
# stable so tests can refer to layers.
def _single(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.LSTM(5, name="lstm")])


def _stacked(K, L):
    return K.Sequential(
        [
            K.Input((STEPS, FEATURES)),
            L.LSTM(5, return_sequences=True, name="lstm_a"),
            L.LSTM(4, name="lstm_b"),
            L.Dense(3, activation="softmax", name="head"),
        ]
    )


def _relu_hard(K, L):
    return K.Sequential(
        [
            K.Input((STEPS, FEATURES)),
            L.LSTM(5, activation="relu", recurrent_activation="hard_sigmoid", return_sequences=True, name="lstm"),
        ]
    )


def _backwards(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.LSTM(5, go_backwards=True, return_sequences=True, name="lstm")])


def _no_bias(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.LSTM(5, use_bias=False, return_sequences=True, name="lstm")])


def _bidirectional(mode):
    def build(K, L):
        inputs = K.Input((STEPS, FEATURES))
        outputs = L.Bidirectional(L.LSTM(4, return_sequences=True, name="inner"), merge_mode=mode, name="bi")(inputs)
        return K.Model(inputs, outputs)

    return build


def _bidirectional_last(K, L):
    return K.Sequential(
        [K.Input((STEPS, FEATURES)), L.Bidirectional(L.LSTM(4, name="inner"), name="bi"), L.Dense(2, name="head")]
    )


def _stateful(K, L):
    inputs = K.Input(batch_shape=(1, 1, 1))
    hidden = L.LSTM(10, stateful=True, name="lstm")(inputs)
    return K.Model(inputs, L.Dense(3, activation="softmax", name="head")(hidden))


def _embedding(K, L):
    return K.Sequential(
        [K.Input((STEPS,)), L.Embedding(20, 4, mask_zero=True, name="embedding"), L.LSTM(5, name="lstm")]
    )


def _masking(K, L):
    return K.Sequential(
        [
            K.Input((STEPS, FEATURES)),
            L.Masking(name="masking"),
            L.LSTM(5, return_sequences=True, name="lstm"),
            L.TimeDistributed(L.Dense(2), name="td"),
        ]
    )


def _nested(K, L):
    inner = K.Sequential([L.LSTM(4, return_sequences=True, name="enc_lstm"), L.Dense(3, name="enc_dense")], name="encoder")
    inputs = K.Input((STEPS, FEATURES))
    x = inner(inputs)
    return K.Model(inputs, L.LSTM(3, name="top_lstm")(x))


def _gru(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.GRU(5, return_sequences=True, name="gru")])


def _gru_reset_before(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.GRU(5, reset_after=False, return_sequences=True, name="gru")])


def _simple_rnn(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.SimpleRNN(5, return_sequences=True, name="rnn")])


def _bi_gru(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.Bidirectional(L.GRU(4, return_sequences=True), name="bi")])


MODEL_KINDS: dict[str, Callable] = {
    "single": _single,
    "stacked": _stacked,
    "relu_hard": _relu_hard,
    "backwards": _backwards,
    "no_bias": _no_bias,
    "bi_concat": _bidirectional("concat"),
    "bi_sum": _bidirectional("sum"),
    "bi_ave": _bidirectional("ave"),
    "bi_mul": _bidirectional("mul"),
    "bi_none": _bidirectional(None),
    "bi_last": _bidirectional_last,
    "stateful": _stateful,
    "embedding": _embedding,
    "masking": _masking,
    "nested": _nested,
    "gru": _gru,
    "gru_reset_before": _gru_reset_before,
    "simple_rnn": _simple_rnn,
    "bi_gru": _bi_gru,
}


@dataclass
class SavedCase:
    kind: str
    backend: str  # "keras3" | "tfkeras"
    model: object  # the live Keras model
    paths: dict[str, Path] = field(default_factory=dict)  # "keras" / "h5" -> file
    x: np.ndarray | None = None  # an input batch that fits the model

    def files(self):
        return list(self.paths.items())


def randomise(model, seed: int, scale: float = 0.5) -> None:
    """Seeded random weights for every layer (Keras initialisers are not what we test)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0.0, scale, w.shape).astype("float32") for w in weights])


def input_for(kind: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    if kind == "stateful":
        return rng.normal(size=(1, 1, 1)).astype("float32")
    if kind == "embedding":
        ids = rng.integers(1, 20, size=(3, STEPS))
        ids[0, :3] = 0  # left padding: masked steps
        ids[2, -2:] = 0  # trailing padding
        return ids.astype("int32")
    x = rng.normal(size=(3, STEPS, FEATURES)).astype("float32")
    if kind == "masking":
        x[0, 2:4] = 0.0
        x[1, 5:] = 0.0
        x[2, :2] = 0.0
    return x


_CACHE: dict[tuple[str, str], SavedCase] = {}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def saved_model(model_dir) -> Callable[[str, str], SavedCase]:
    """Factory: ``saved_model(kind, backend)`` -> SavedCase (cached per session)."""

    def make(kind: str, backend: str = "keras3") -> SavedCase:
        key = (kind, backend)
        if key in _CACHE:
            return _CACHE[key]
        K, L = keras_module(backend)
        model = MODEL_KINDS[kind](K, L)
        randomise(model, seed=zlib.crc32(kind.encode()) % 1000)
        case = SavedCase(kind, backend, model, x=input_for(kind))
        stem = model_dir / f"{kind}-{backend}"
        if backend == "keras3":
            case.paths["keras"] = stem.with_suffix(".keras")
            model.save(case.paths["keras"])
        case.paths["h5"] = stem.with_suffix(".h5")
        model.save(case.paths["h5"])
        _CACHE[key] = case
        return case

    return make


def run_cli(*args: str, input: bytes | None = None, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real command in a subprocess; returns the CompletedProcess (bytes)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        CLI + [str(a) for a in args], input=input, capture_output=True, env=full_env, cwd=cwd or ROOT, timeout=300
    )
