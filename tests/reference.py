"""Expected numbers for the trace tests, computed without lstm-inspect.

Two independent sources:

* ``keras_steps``: Keras itself.  A recurrent layer of a live model is cloned
  with ``return_sequences=True, return_state=True`` (and
  ``zero_output_for_mask=False``, so that a masked step shows the state it
  carries), given the same weights with ``set_weights`` and called on the
  layer's own input; ``recurrent_inputs`` walks the model to find that input
  and its mask.
* ``reference_steps``: the Keras step equations written out gate by gate in
  float64 from ``layer.get_weights()``.

Both return arrays in input-row order (index ``t`` = input row consumed, as
lstm-inspect's ``trace_arrays`` does), so a go_backwards layer's outputs are
flipped back from Keras' processing order here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RECURRENT = ("LSTM", "GRU", "SimpleRNN")


def class_name(layer) -> str:
    return type(layer).__name__


def is_recurrent(layer) -> bool:
    return class_name(layer) in RECURRENT


# ------------------------------------------------------------------ Keras itself


@dataclass
class KerasSteps:
    hidden: np.ndarray  # (N, T, U), input-row order
    h: np.ndarray  # (N, U), Keras' return_state h
    c: np.ndarray | None  # (N, U), Keras' return_state c (LSTM only)


def sequence_clone(layer):
    """A non-stateful copy of ``layer`` that returns every step and its final state."""
    config = dict(layer.get_config())
    config.update(
        return_sequences=True,
        return_state=True,
        stateful=False,
        zero_output_for_mask=False,
        name=f"{config['name']}_seq",
    )
    return type(layer).from_config(config)


def keras_steps(layer, x: np.ndarray, mask: np.ndarray | None = None, initial_state=None) -> KerasSteps:
    """Run Keras' own layer (same weights) over ``x`` (N, T, F); outputs in input-row order."""
    clone = sequence_clone(layer)
    kwargs = {}
    if mask is not None:
        kwargs["mask"] = mask
    if initial_state is not None:
        kwargs["initial_state"] = [np.asarray(s, dtype="float32") for s in initial_state]
    clone(x, **kwargs)  # builds the weights
    clone.set_weights(layer.get_weights())
    outputs = [np.asarray(o) for o in clone(x, **kwargs)]
    sequence = outputs[0]
    if layer.get_config().get("go_backwards"):
        sequence = sequence[:, ::-1]  # Keras returns processing order
    return KerasSteps(sequence, outputs[1], outputs[2] if len(outputs) > 2 else None)


@dataclass
class LayerInput:
    name: str  # lstm-inspect's name: "lstm", "bi/forward", "encoder/enc_lstm"
    layer: object  # the Keras recurrent layer (a Bidirectional's direction)
    x: np.ndarray  # (N, T, F) float32, what the layer is called on
    mask: np.ndarray | None  # (N, T) booleans
    exact: bool = True  # x is the model input, only looked up or masked (no float32 arithmetic yet)


def recurrent_inputs(model, x: np.ndarray) -> list[LayerInput]:
    """Every recurrent layer of ``model`` with the input Keras feeds it for the batch ``x``."""
    found: list[LayerInput] = []
    _walk(model, np.asarray(x), None, found, prefix="", exact=[True])
    return found


def _walk(container, value, mask, found, prefix, exact):
    for layer in container.layers:
        cls = class_name(layer)
        if cls == "InputLayer":
            continue
        if hasattr(layer, "layers") and cls not in ("Bidirectional", "TimeDistributed"):
            value, mask = _walk(layer, value, mask, found, prefix=f"{prefix}{layer.name}/", exact=exact)
            continue
        if cls == "Masking":
            mask_value = layer.get_config().get("mask_value", 0.0)
            mask = np.any(value != mask_value, axis=-1)
            value = value * mask[..., None]
        elif cls == "Embedding":
            if layer.get_config().get("mask_zero"):
                mask = value != 0
            value = np.asarray(layer(value))
        elif is_recurrent(layer):
            found.append(LayerInput(f"{prefix}{layer.name}", layer, value, mask, exact[0]))
            steps = keras_steps(layer, value, mask)
            if layer.get_config().get("return_sequences"):
                sequence = steps.hidden[:, ::-1] if layer.get_config().get("go_backwards") else steps.hidden
                value = sequence  # masked steps repeat the state, as Keras' default
            else:
                value, mask = steps.h, None
        elif cls == "Bidirectional":
            name = f"{prefix}{layer.name}"
            found.append(LayerInput(f"{name}/forward", layer.forward_layer, value, mask, exact[0]))
            found.append(LayerInput(f"{name}/backward", layer.backward_layer, value, mask, exact[0]))
            value = layer(value, mask=mask) if mask is not None else layer(value)
            value = np.asarray(value[0] if isinstance(value, (list, tuple)) else value)
        else:
            value = np.asarray(layer(value))
        if cls not in ("Masking", "Embedding"):
            exact[0] = False
    return value, mask


# ------------------------------------------------------------------ float64 equations


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


ACTIVATIONS = {
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "relu": lambda x: np.maximum(x, 0.0),
    "linear": lambda x: x,
    # Keras 1/2 and tf-keras: clip(0.2x + 0.5); Keras 3: clip(x/6 + 0.5) = relu6(x + 3) / 6.
    "hard_sigmoid:keras2": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
    "hard_sigmoid:keras3": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
}


def activation(name, hard_sigmoid: str):
    name = name if isinstance(name, str) else name.get("config", {}).get("name", name.get("class_name"))
    if name == "hard_sigmoid":
        name = f"hard_sigmoid:{hard_sigmoid}"
    return ACTIVATIONS[name]


def reference_steps(layer, x, hard_sigmoid: str, mask=None, initial_state=None) -> dict[str, np.ndarray]:
    """The Keras step equations in float64 for the Keras ``layer`` over ``x`` (N, T, F).

    Returns (N, T, U) arrays in input-row order: the gates (``i f c o``,
    ``z r c``), ``cell`` (LSTM), ``hidden``, the pre-activations ``z_<gate>``
    and ``masked`` (N, T).  At a masked step the state is held and the gates
    are NaN.
    """
    config = layer.get_config()
    kind = class_name(layer)
    act = activation(config.get("activation", "tanh"), hard_sigmoid)
    ract = activation(config.get("recurrent_activation", "sigmoid"), hard_sigmoid)
    weights = [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]
    kernel, recurrent = weights[0], weights[1]
    U = recurrent.shape[0]
    bias = weights[2] if len(weights) > 2 else None
    x = np.asarray(x, dtype=np.float64)
    n, total, _ = x.shape
    order = range(total - 1, -1, -1) if config.get("go_backwards") else range(total)
    keep = np.ones((n, total), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    h = np.zeros((n, U)) if initial_state is None else np.broadcast_to(np.asarray(initial_state[0], np.float64), (n, U)).copy()
    cell = np.zeros((n, U)) if initial_state is None or len(initial_state) < 2 else np.broadcast_to(np.asarray(initial_state[1], np.float64), (n, U)).copy()
    names = {"LSTM": ["i", "f", "c", "o", "cell"], "GRU": ["z", "r", "c"], "SimpleRNN": []}[kind] + ["hidden"]
    pre_names = {"LSTM": ["z_i", "z_f", "z_c", "z_o"], "GRU": ["z_z", "z_r", "z_c"], "SimpleRNN": ["z_h"]}[kind]
    out = {name: np.full((n, total, U), np.nan) for name in names + pre_names}
    for t in order:
        x_t = x[:, t]
        values: dict[str, np.ndarray] = {}
        if kind == "LSTM":
            b = np.zeros(4 * U) if bias is None else bias
            Wi, Wf, Wc, Wo = (kernel[:, k * U : (k + 1) * U] for k in range(4))
            Ui, Uf, Uc, Uo = (recurrent[:, k * U : (k + 1) * U] for k in range(4))
            bi, bf, bc, bo = (b[k * U : (k + 1) * U] for k in range(4))
            z_i = x_t @ Wi + h @ Ui + bi
            z_f = x_t @ Wf + h @ Uf + bf
            z_c = x_t @ Wc + h @ Uc + bc
            z_o = x_t @ Wo + h @ Uo + bo
            i, f, c, o = ract(z_i), ract(z_f), act(z_c), ract(z_o)
            new_cell = f * cell + i * c
            new_h = o * act(new_cell)
            values.update(i=i, f=f, c=c, o=o, z_i=z_i, z_f=z_f, z_c=z_c, z_o=z_o)
        elif kind == "GRU":
            Wz, Wr, Wh = (kernel[:, k * U : (k + 1) * U] for k in range(3))
            Uz, Ur, Uh = (recurrent[:, k * U : (k + 1) * U] for k in range(3))
            if config.get("reset_after", True):
                b = np.zeros((2, 3 * U)) if bias is None else bias.reshape(2, 3 * U)
                b_in, b_rec = b[0], b[1]
                z_z = x_t @ Wz + b_in[:U] + h @ Uz + b_rec[:U]
                z_r = x_t @ Wr + b_in[U : 2 * U] + h @ Ur + b_rec[U : 2 * U]
                z, r = ract(z_z), ract(z_r)
                z_c = x_t @ Wh + b_in[2 * U :] + r * (h @ Uh + b_rec[2 * U :])
            else:
                b = np.zeros(3 * U) if bias is None else bias
                z_z = x_t @ Wz + b[:U] + h @ Uz
                z_r = x_t @ Wr + b[U : 2 * U] + h @ Ur
                z, r = ract(z_z), ract(z_r)
                z_c = x_t @ Wh + b[2 * U :] + (r * h) @ Uh
            c = act(z_c)
            new_h = z * h + (1.0 - z) * c
            new_cell = None
            values.update(z=z, r=r, c=c, z_z=z_z, z_r=z_r, z_c=z_c)
        else:
            z_h = x_t @ kernel + h @ recurrent + (0.0 if bias is None else bias)
            new_h = act(z_h)
            new_cell = None
            values.update(z_h=z_h)
        k = keep[:, t][:, None]
        h = np.where(k, new_h, h)
        if new_cell is not None:
            cell = np.where(k, new_cell, cell)
            out["cell"][:, t] = cell
        out["hidden"][:, t] = h
        for name, value in values.items():
            out[name][:, t] = np.where(k, value, np.nan)
    out["masked"] = ~keep
    return out


def reset_states(model) -> None:
    """Forget the running state of every stateful layer (Keras 3 and tf-keras spell it differently)."""
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            if hasattr(layer, "reset_states"):
                layer.reset_states()
            else:
                layer.reset_state()


# ------------------------------------------------------------------ the command, in-process


class _Entry:
    """What ``CliRunner.invoke`` calls: the real entry point ``lstm_inspect.cli.main``,
    which turns errors into one line on stderr and an exit status (``cli.cli`` alone would not)."""

    name = "lstm-inspect"

    def main(self, args, prog_name=None, **extra):
        from lstm_inspect.cli import main

        main(list(args))


def invoke(*args, input=None):
    """Run ``lstm-inspect ARGS`` in-process; returns click's Result (``stdout``, ``stderr``, ``exit_code``)."""
    from click.testing import CliRunner

    return CliRunner().invoke(_Entry(), [str(a) for a in args], input=input, catch_exceptions=False)


def read_csv(text: str):
    import io

    import pandas as pd

    return pd.read_csv(io.StringIO(text))


# ------------------------------------------------------------------ masked models


def _mask_bi_seq(K, L, T, F):
    return K.Sequential(
        [K.Input((T, F)), L.Masking(), L.Bidirectional(L.LSTM(4, return_sequences=True), name="bi"), L.TimeDistributed(L.Dense(2))]
    )


def _mask_bi_last(K, L, T, F):
    return K.Sequential([K.Input((T, F)), L.Masking(), L.Bidirectional(L.LSTM(4), name="bi"), L.Dense(2)])


def _mask_backwards_seq(K, L, T, F):
    return K.Sequential([K.Input((T, F)), L.Masking(), L.LSTM(4, return_sequences=True, go_backwards=True, name="lstm")])


def _mask_chain(K, L, T, F):
    return K.Sequential(
        [
            K.Input((T, F)),
            L.Masking(),
            L.LSTM(4, return_sequences=True, name="a"),
            L.GRU(3, return_sequences=True, name="b"),
            L.SimpleRNN(2, name="c"),
        ]
    )


def _func_mask_bi_none(K, L, T, F):
    inputs = K.Input((T, F))
    masked = L.Masking()(inputs)
    return K.Model(inputs, L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode=None, name="bi")(masked))


def _func_embedding_bi_gru(K, L, T, F):
    inputs = K.Input((T,))
    embedded = L.Embedding(20, 3, mask_zero=True)(inputs)
    return K.Model(inputs, L.Bidirectional(L.GRU(4, return_sequences=True), merge_mode="sum", name="bi")(embedded))


# Masks met with the other features: Bidirectional (Keras zeroes its masked outputs
# when it returns sequences), go_backwards, a masked chain of LSTM -> GRU -> SimpleRNN,
# and Keras 3 functional models (which record the mask computation as op nodes).
MASKED_KINDS = {
    "mask_bi_seq": _mask_bi_seq,
    "mask_bi_last": _mask_bi_last,
    "mask_backwards_seq": _mask_backwards_seq,
    "mask_chain": _mask_chain,
    "func_mask_bi_none": _func_mask_bi_none,
    "func_embedding_bi_gru": _func_embedding_bi_gru,
}


def masked_input(kind: str):
    from conftest import input_for

    return input_for("embedding" if "embedding" in kind else "masking")


_MASKED_CACHE: dict = {}


def masked_case(kind: str, backend: str):
    """A ``MASKED_KINDS`` model as a conftest ``SavedCase``: its files saved once (kept on disk
    between runs, see keras_cache.py), its live Keras model built or loaded when first asked for."""
    from conftest import FEATURES, STEPS, SavedCase, keras_module, randomise
    from keras_cache import cached_files

    key = (kind, backend)
    if key not in _MASKED_CACHE:
        stem = f"{kind}-{backend}"
        suffixes = ("keras", "h5") if backend == "keras3" else ("h5",)
        case = SavedCase(kind, backend, x=masked_input(kind))

        def build_and_save(folder) -> None:
            K, L = keras_module(backend)
            case.built = MASKED_KINDS[kind](K, L, STEPS, FEATURES)
            randomise(case.built, seed=len(kind))
            for suffix in suffixes:
                case.built.save(folder / f"{stem}.{suffix}")

        folder = cached_files(f"models/{stem}", build_and_save)
        case.paths = {suffix: folder / f"{stem}.{suffix}" for suffix in suffixes}
        _MASKED_CACHE[key] = case
    return _MASKED_CACHE[key]


def build_masked(kind: str, backend: str):
    """(live Keras model, {ext: path}) for a ``MASKED_KINDS`` model; cached for the session."""
    case = masked_case(kind, backend)
    return case.model, case.paths
