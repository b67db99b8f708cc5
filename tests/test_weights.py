"""Labelled weights (``label_weights``, ``weights_frame``) against the live Keras model.

Every kind of model, saved in every format, is read back without TensorFlow
and each labelled value is compared with the slice of ``layer.get_weights()``
it claims to be: gate ``g`` of unit ``u`` is column ``g*U + u`` (LSTM i, f, c,
o; GRU z, r, c; SimpleRNN h).  Expected numbers come from Keras at test time.
"""

from __future__ import annotations

import io
import re
import zipfile

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import (
    GATE_ORDER,
    expected_weight_rows,
    keras_recurrent_layers,
    keras_tensors,
    kind_format_params,
    model_file,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lstm_inspect as li
from lstm_inspect.errors import ModelFileError, UsageProblem

# The published column order of `weights` (issue 2): a layout contract.
WEIGHT_COLUMNS = ["layer", "tensor", "gate", "unit", "source", "value", "path", "column", "row"]


def _stored_tensor(path, block_path: str) -> np.ndarray:
    """Read the dataset a GateBlock's ``path`` names, straight from the file with h5py."""
    if block_path.startswith("model.weights.h5:"):  # inside a .keras archive
        with zipfile.ZipFile(path) as archive:
            data = archive.read("model.weights.h5")
        with h5py.File(io.BytesIO(data), "r") as h5:
            return h5[block_path.split(":", 1)[1]][()]
    with h5py.File(path, "r") as h5:
        return h5[block_path][()]


def _apply_slice(text: str, array: np.ndarray) -> np.ndarray:
    """Apply a printed slice such as ``[:, 8:12]`` or ``[1, 0:5]`` to ``array``."""
    assert re.fullmatch(r"\[[0-9:, ]+\]", text), text
    index = []
    for part in text[1:-1].split(","):
        part = part.strip()
        if part == ":":
            index.append(slice(None))
        elif ":" in part:
            lo, hi = part.split(":")
            index.append(slice(int(lo), int(hi)))
        else:
            index.append(int(part))
    return array[tuple(index)]


@pytest.mark.parametrize("kind,backend,suffix", kind_format_params())
def test_every_gate_block_is_the_keras_slice(saved_model, kind, backend, suffix):
    case, path = model_file(saved_model, kind, backend, suffix)
    model = li.load_model(str(path))
    blocks = list(li.label_weights(model))

    expected_layers = keras_recurrent_layers(case.model)
    assert list(dict.fromkeys(b.layer for b in blocks)) == [name for name, _ in expected_layers]
    for name, layer in expected_layers:
        gates = GATE_ORDER[type(layer).__name__]
        tensors = keras_tensors(layer)
        units = layer.units
        mine = [b for b in blocks if b.layer == name]
        # One block per (tensor, gate), tensors in the order kernel, recurrent_kernel, bias(, recurrent_bias).
        assert [(b.tensor, b.gate) for b in mine] == [(t, g) for t in tensors for g in gates]
        for block in mine:
            g = gates.index(block.gate)
            columns = slice(g * units, (g + 1) * units)
            keras_array = tensors[block.tensor]
            want = keras_array[:, columns] if keras_array.ndim == 2 else keras_array[columns]
            assert block.kind == type(layer).__name__
            assert block.values.dtype == np.float32
            np.testing.assert_array_equal(block.values, want, err_msg=f"{name} {block.tensor} {block.gate}")
            # Keras' own layout: each value is stored at its canonical column (and row).
            stored_columns = np.broadcast_to(np.arange(g * units, (g + 1) * units), block.values.shape)
            np.testing.assert_array_equal(block.stored_columns, stored_columns)
            if block.values.ndim == 2:
                np.testing.assert_array_equal(block.stored_rows, np.indices(block.values.shape)[0])


@pytest.mark.parametrize("kind,backend,suffix", kind_format_params())
def test_block_path_and_slice_point_at_the_stored_tensor(saved_model, kind, backend, suffix):
    """``path`` names the dataset in the file and ``columns`` selects the block's values from it."""
    case, path = model_file(saved_model, kind, backend, suffix)
    model = li.load_model(str(path))
    raw = {name: dict(zip([w.name.split("/")[-1].split(":")[0] for w in layer.weights], layer.get_weights()))
           for name, layer in keras_recurrent_layers(case.model)}
    for block in li.label_weights(model):
        keras_raw = raw[block.layer]["bias" if block.tensor == "recurrent_bias" else block.tensor]
        stored = _stored_tensor(path, block.path)
        np.testing.assert_array_equal(stored, keras_raw)
        assert block.stored_shape == keras_raw.shape
        np.testing.assert_array_equal(_apply_slice(block.columns, stored), block.values)


@pytest.mark.parametrize("kind,backend,suffix", kind_format_params())
def test_weights_frame_holds_every_keras_value_once(saved_model, kind, backend, suffix):
    case, path = model_file(saved_model, kind, backend, suffix)
    frame = li.weights_frame(li.load_model(str(path)))
    assert list(frame.columns) == WEIGHT_COLUMNS

    expected = expected_weight_rows(case.model)
    total = sum(layer.count_params() for _, layer in keras_recurrent_layers(case.model))
    assert len(frame) == len(expected) == total
    got = {}
    for row in frame.itertuples(index=False):
        key = (row.layer, row.tensor, row.gate, int(row.unit), None if pd.isna(row.source) else int(row.source))
        assert key not in got, f"duplicate row {key}"
        got[key] = (row.value, int(row.column))
    assert got.keys() == expected.keys()
    for key, (value, column) in expected.items():
        assert got[key][1] == column, key
        assert np.float32(got[key][0]) == value, key
    assert frame["value"].dtype == np.float32


# ------------------------------------------------------------------ filters


@pytest.mark.parametrize(
    "kind,layers,gates",
    [
        pytest.param("stacked", ["lstm_b"], None, id="one-layer"),
        pytest.param("stacked", ["lstm_b", "lstm_a"], None, id="two-layers"),
        pytest.param("bi_concat", ["bi"], None, id="bidirectional-name-selects-both"),
        pytest.param("bi_gru", ["bi/backward"], ["r"], id="one-direction-one-gate"),
        pytest.param("nested", ["encoder/enc_lstm"], ["f", "o"], id="nested-two-gates"),
        pytest.param("gru", None, ["c"], id="gru-candidate-both-biases"),
        pytest.param("simple_rnn", None, ["h"], id="simple-rnn"),
    ],
)
def test_label_weights_filters(saved_model, kind, layers, gates):
    case = saved_model(kind, "keras3")
    model = li.load_model(str(case.paths["keras"]))
    frame = li.weights_frame(model, layers, gates)
    expected = expected_weight_rows(case.model, layers, gates)
    assert expected, "the filter must select something"
    got = {(r.layer, r.tensor, r.gate, int(r.unit), None if pd.isna(r.source) else int(r.source)): r.value
           for r in frame.itertuples(index=False)}
    assert len(got) == len(frame)
    assert got.keys() == expected.keys()
    assert all(np.float32(got[k]) == v for k, (v, _) in expected.items())


def test_unknown_layer_and_gate_are_usage_problems(saved_model):
    model = li.load_model(str(saved_model("stacked", "keras3").paths["keras"]))
    with pytest.raises(UsageProblem, match="no recurrent layer named 'nope'.*lstm_a, lstm_b"):
        list(li.label_weights(model, ["nope"]))
    with pytest.raises(UsageProblem, match="unknown gate"):
        list(li.label_weights(model, None, ["z"]))
    gru = li.load_model(str(saved_model("gru", "tfkeras").paths["h5"]))
    with pytest.raises(UsageProblem, match="unknown gate"):
        list(li.label_weights(gru, None, ["f"]))  # LSTM letter on a GRU


@pytest.mark.parametrize("backend,suffix", [("keras3", "keras"), ("keras3", "h5"), ("tfkeras", "h5")])
def test_model_without_recurrent_layers_is_refused(dense_only, backend, suffix):
    model = li.load_model(str(dense_only[(backend, suffix)]))
    assert model.recurrent_layers() == []
    with pytest.raises(ModelFileError, match="no recurrent layers"):
        list(li.label_weights(model))


# ------------------------------------------------------------------ any shape (hypothesis)

@st.composite
def recurrent_configs(draw):
    kind = draw(st.sampled_from(["LSTM", "GRU", "SimpleRNN"]))
    config = {
        "units": draw(st.integers(1, 6)),
        "use_bias": draw(st.booleans()),
        "go_backwards": draw(st.booleans()),
    }
    if kind == "GRU":
        config["reset_after"] = draw(st.booleans())
    return kind, draw(st.integers(1, 4)), config, draw(st.sampled_from(["keras", "h5"]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recurrent_configs())
def test_any_shape_rebuilds_the_keras_arrays(tmp_path, spec):
    """Whatever the units and features (1 included, where F and U blocks are easy to mix up),
    the long rows rebuild Keras' own tensors exactly."""
    import keras

    kind, features, config, suffix = spec
    model = keras.Sequential([keras.Input((5, features)), getattr(keras.layers, kind)(name="rnn", **config)])
    rng = np.random.default_rng(features * 100 + config["units"])
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path / f"any-{kind}-{features}-{config['units']}.{suffix}"
    model.save(path)

    frame = li.weights_frame(li.load_model(str(path)))
    tensors = {}
    for row in frame.itertuples(index=False):
        array = tensors.setdefault(row.tensor, {})
        array[(None if pd.isna(row.source) else int(row.source), int(row.column))] = row.value
    layer = model.get_layer("rnn")
    for tensor, keras_array in keras_tensors(layer).items():
        cells = tensors.pop(tensor)
        rebuilt = np.full(keras_array.shape, np.nan, dtype=np.float32)
        for (source, column), value in cells.items():
            assert (source is None) == (keras_array.ndim == 1)
            rebuilt[(column,) if source is None else (source, column)] = value
        assert len(cells) == keras_array.size
        np.testing.assert_array_equal(rebuilt, keras_array, err_msg=tensor)
    assert tensors == {}, "rows for tensors Keras does not have"
