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


def build_seq2seq() -> None:
    """The Keras lstm_seq2seq pattern: a training model (encoder h, c -> decoder initial_state, two
    inputs) and the inference pair built from its layers (encoder -> [h, c]; decoder taking its
    token one-hots plus h and c as inputs, returning [probabilities, h, c])."""
    import keras
    from keras import layers

    enc_in = keras.Input((None, 5), name="encoder_inputs")
    dec_in = keras.Input((None, 6), name="decoder_inputs")
    encoder = layers.LSTM(8, return_state=True, name="encoder")
    decoder = layers.LSTM(8, return_sequences=True, return_state=True, name="decoder")
    head = layers.Dense(6, activation="softmax", name="head")
    _, h, c = encoder(enc_in)
    sequence, _, _ = decoder(dec_in, initial_state=[h, c])
    training = keras.Model([enc_in, dec_in], head(sequence), name="seq2seq")
    _randomise(training, seed=41)
    h_in, c_in = keras.Input((8,), name="h_in"), keras.Input((8,), name="c_in")
    sequence, h_out, c_out = decoder(dec_in, initial_state=[h_in, c_in])
    models = {
        "seq2seq": training,
        "seq2seq_encoder": keras.Model(enc_in, [h, c], name="seq2seq_encoder"),
        "seq2seq_decoder": keras.Model([dec_in, h_in, c_in], [head(sequence), h_out, c_out], name="seq2seq_decoder"),
    }
    for name, model in models.items():
        model.save(os.path.join(HERE, f"{name}.keras"))
    rng = np.random.default_rng(41)
    _save_csv("seq2seq_encoder", np.eye(5)[rng.integers(0, 5, 6)], [f"e{j}" for j in range(5)])
    _save_csv("seq2seq_decoder", np.eye(6)[[0, 3, 1, 4]], [f"d{j}" for j in range(6)])
    _save_seq2seq_states()


def _save_seq2seq_states() -> None:
    """An h and a c for the inference decoder's h_in and c_in (one sample: one row of 8)."""
    rng = np.random.default_rng(43)
    _save_csv("seq2seq_decoder_h", np.round(np.tanh(rng.normal(size=(1, 8))), 4), [f"h{j}" for j in range(8)])
    _save_csv("seq2seq_decoder_c", np.round(rng.normal(size=(1, 8)), 4), [f"c{j}" for j in range(8)])


def build_conv_lstm() -> None:
    """A ConvLSTM2D over 6 frames of 5x5 maps, then a Dense head; the input is an .npy (N, T, 5, 5, 1)."""
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((None, 5, 5, 1)),
            layers.ConvLSTM2D(3, 3, padding="same", name="conv_lstm"),
            layers.Flatten(name="flatten"),
            layers.Dense(2, activation="softmax", name="head"),
        ],
        name="conv_lstm",
    )
    _randomise(model, seed=51, scale=0.5)
    model.save(os.path.join(HERE, "conv_lstm.keras"))
    frames = np.zeros((1, 6, 5, 5, 1), dtype="float32")
    for t in range(6):  # a bright spot moving along the diagonal
        frames[0, t, min(t, 4), min(t, 4), 0] = 1.0
    np.save(os.path.join(HERE, "conv_lstm.npy"), frames)


def build_cnn_lstm() -> None:
    """A CNN-LSTM: Conv1D + MaxPooling1D in front of an LSTM (12 steps -> 10 -> 5)."""
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((12, 2)),
            layers.Conv1D(6, 3, activation="relu", name="conv1d"),
            layers.MaxPooling1D(2, name="pool"),
            layers.LSTM(4, name="lstm"),
            layers.Dense(1, name="out"),
        ],
        name="cnn_lstm",
    )
    _randomise(model, seed=61, scale=0.5)
    model.save(os.path.join(HERE, "cnn_lstm.keras"))
    rng = np.random.default_rng(61)
    _save_csv("cnn_lstm", np.round(rng.normal(size=(12, 2)), 4), ["x0", "x1"])


def build_lambda() -> None:
    """A Lambda (x / 10) in front of an LSTM: lstm-inspect never runs a Lambda's code, and the README
    shows how to get past it with --from."""
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((None, 2)),
            layers.Lambda(lambda x: x / 10.0, name="scale"),
            layers.LSTM(4, name="lstm"),
            layers.Dense(1, name="out"),
        ],
        name="lambda_scaled",
    )
    _randomise(model, seed=71)
    model.save(os.path.join(HERE, "lambda_scaled.keras"))
    rng = np.random.default_rng(71)
    _save_csv("lambda_scaled", np.round(rng.normal(0, 10, size=(6, 2)), 1), ["a", "b"])


BUILDERS = {
    "keras3": lambda: build_keras3(),
    "gru": lambda: build_gru(),
    "keras2": lambda: build_keras2(),
    "seq2seq": lambda: build_seq2seq(),
    "conv_lstm": lambda: build_conv_lstm(),
    "cnn_lstm": lambda: build_cnn_lstm(),
    "lambda": lambda: build_lambda(),
}


if __name__ == "__main__":
    # `make_samples.py` builds everything; `make_samples.py seq2seq conv_lstm` only those groups.
    for group in sys.argv[1:] or list(BUILDERS):
        BUILDERS[group]()
    for name in sorted(os.listdir(HERE)):
        if name.endswith((".h5", ".keras", ".csv", ".npy")):
            print(f"{name:32s} {os.path.getsize(os.path.join(HERE, name)):>7,d} bytes", file=sys.stderr)
