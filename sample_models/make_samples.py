"""Regenerate the sample models in this folder (needs the test extra: TensorFlow, tf-keras).

    make sample-models

Each model gets seeded random weights (no training: the point is to have
small, fixed files whose every number the tests can check against Keras) and
is saved as .keras and .h5 by Keras 3, except `keras2_hard_sigmoid`, which is
saved as .h5 by tf-keras 2.x.  Each has an input CSV next to it.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _randomise(model, seed: int, scale: float = 0.6) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0.0, scale, w.shape).astype("float32") for w in weights])


def _save_csv(name: str, values: np.ndarray, header: list[str]) -> None:
    path = os.path.join(HERE, f"{name}.csv")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(",".join(header) + "\n")
        handle.writelines(",".join(_fmt(v) for v in row) + "\n" for row in values)


def _fmt(value) -> str:
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{float(value):.4f}"


def build_keras3() -> None:
    import keras
    from keras import layers

    rng = np.random.default_rng(7)
    specs = {
        "single_lstm": (keras.Sequential([keras.Input((None, 3)), layers.LSTM(4, name="lstm")], name="single_lstm"), 3, 10),
        "stacked_lstm": (
            keras.Sequential(
                [
                    keras.Input((None, 3)),
                    layers.LSTM(8, return_sequences=True, name="lstm_1"),
                    layers.LSTM(4, name="lstm_2"),
                    layers.Dense(3, activation="softmax", name="head"),
                ],
                name="stacked_lstm",
            ),
            3,
            12,
        ),
        "bidirectional_lstm": (
            keras.Sequential(
                [
                    keras.Input((None, 2)),
                    layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="bi"),
                    layers.Dense(1, name="out"),
                ],
                name="bidirectional_lstm",
            ),
            2,
            8,
        ),
    }
    for index, (name, (model, features, steps)) in enumerate(specs.items()):
        _randomise(model, seed=index + 1)
        model.save(os.path.join(HERE, f"{name}.keras"))
        model.save(os.path.join(HERE, f"{name}.h5"))
        _save_csv(name, np.round(rng.normal(size=(steps, features)), 4), [f"x{j}" for j in range(features)])

    # A stateful LSTM fed one step at a time (batch input shape (1, 1, 1)); tracing the
    # CSV as one sequence equals feeding it row by row without reset_states().
    inputs = keras.Input(batch_shape=(1, 1, 1))
    hidden = layers.LSTM(10, stateful=True, name="lstm")(inputs)
    stateful = keras.Model(inputs, layers.Dense(3, activation="softmax", name="head")(hidden), name="stateful_lstm")
    _randomise(stateful, seed=11)
    stateful.save(os.path.join(HERE, "stateful_lstm.keras"))
    stateful.save(os.path.join(HERE, "stateful_lstm.h5"))
    series = np.round(np.sin(np.arange(16) / 2.0) + rng.normal(0, 0.1, 16), 4)[:, None]
    _save_csv("stateful_lstm", series, ["value"])

    # A text model: token ids -> Embedding(mask_zero) -> LSTM -> Dense.
    text = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            layers.Embedding(50, 8, mask_zero=True, name="embedding"),
            layers.LSTM(6, name="lstm"),
            layers.Dense(2, activation="softmax", name="head"),
        ],
        name="embedding_lstm",
    )
    _randomise(text, seed=12)
    text.save(os.path.join(HERE, "embedding_lstm.keras"))
    text.save(os.path.join(HERE, "embedding_lstm.h5"))
    tokens = np.array([0, 0, 3, 17, 42, 5, 9, 23, 31, 8])[:, None]  # left-padded with 0 (masked)
    _save_csv("embedding_lstm", tokens, ["token"])


def build_gru() -> None:
    """A GRU feeding a SimpleRNN: the other two recurrent kinds, traced together."""
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((None, 2)),
            layers.GRU(4, return_sequences=True, name="gru"),
            layers.SimpleRNN(3, name="rnn"),
            layers.Dense(1, name="out"),
        ],
        name="gru_rnn",
    )
    _randomise(model, seed=31)
    model.save(os.path.join(HERE, "gru_rnn.keras"))
    model.save(os.path.join(HERE, "gru_rnn.h5"))
    rng = np.random.default_rng(31)
    _save_csv("gru_rnn", np.round(rng.normal(size=(6, 2)), 4), ["x0", "x1"])


def build_keras2() -> None:
    import tf_keras as keras
    from tf_keras import layers

    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            layers.LSTM(5, recurrent_activation="hard_sigmoid", return_sequences=True, name="lstm"),
            layers.Dense(1, name="out"),
        ],
        name="keras2_hard_sigmoid",
    )
    _randomise(model, seed=21, scale=1.0)
    model.save(os.path.join(HERE, "keras2_hard_sigmoid.h5"))
    rng = np.random.default_rng(21)
    _save_csv("keras2_hard_sigmoid", np.round(rng.normal(size=(9, 3)), 4), ["a", "b", "c"])


if __name__ == "__main__":
    build_keras3()
    build_gru()
    build_keras2()
    for name in sorted(os.listdir(HERE)):
        if name.endswith((".h5", ".keras", ".csv")):
            print(f"{name:32s} {os.path.getsize(os.path.join(HERE, name)):>7,d} bytes", file=sys.stderr)
