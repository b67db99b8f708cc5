"""Build the inference encoder/decoder pair of a Keras lstm_seq2seq training model (needs tf-keras).

    python sample_models/seq2seq_inference.py TRAINING_MODEL.h5 OUTDIR

As the Keras example does after training: the encoder returns the states h
and c of the training model's encoder LSTM; the decoder takes one-hot tokens
plus h and c as inputs and returns the next-token probabilities and its new
h and c.  Both are saved as .h5 next to an encoder input (a random one-hot
sentence) and the decoder's first input (the start token, index 0), so that
lstm-inspect can replay the pair step by step.  Written for the corpus file
../shared/wild_models/udnet96_lstm_seq2seq_s2s.h5 (Keras 2.2.5, which
tf-keras 2.21 loads).
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save")  # .h5 is the point here


def build(source: str, folder: str) -> None:
    import tf_keras as keras

    training = keras.models.load_model(source, compile=False)
    encoder_input, decoder_input = training.inputs
    encoder_lstm, decoder_lstm = (layer for layer in training.layers if isinstance(layer, keras.layers.LSTM))
    dense = training.layers[-1]
    _, h, c = encoder_lstm.output
    encoder = keras.Model(encoder_input, [h, c], name="encoder")
    units = decoder_lstm.units
    h_in = keras.Input((units,), name="h_in")
    c_in = keras.Input((units,), name="c_in")
    sequence, h_out, c_out = decoder_lstm(decoder_input, initial_state=[h_in, c_in])
    decoder = keras.Model([decoder_input, h_in, c_in], [dense(sequence), h_out, c_out], name="decoder")
    os.makedirs(folder, exist_ok=True)
    encoder.save(os.path.join(folder, "encoder.h5"))
    decoder.save(os.path.join(folder, "decoder.h5"))
    rng = np.random.default_rng(0)
    tokens = encoder_input.shape[-1]
    np.save(os.path.join(folder, "encoder_input.npy"), np.eye(tokens, dtype="float32")[rng.integers(0, tokens, (1, 12))])
    start = np.zeros((1, 1, decoder_input.shape[-1]), dtype="float32")
    start[0, 0, 0] = 1.0
    np.save(os.path.join(folder, "decoder_start.npy"), start)
    for name in ("encoder.h5", "decoder.h5", "encoder_input.npy", "decoder_start.npy"):
        print(os.path.join(folder, name))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.splitlines()[2].strip())
    build(sys.argv[1], sys.argv[2])
