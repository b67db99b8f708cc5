"""The model reader (``load_model``, ``layer_rows``) against the live Keras model.

Every model kind, in every format (Keras 3 .keras, Keras 3 .h5, tf-keras
.h5), is read without TensorFlow; the Keras version, the recurrent layers and
their settings, and the per-layer rows of ``layers`` must match what Keras
itself says about the model it saved.  Weights-only files (tf-keras
``save_weights`` .h5, Keras 3 ``.weights.h5``) are read too, recognising
recurrent layers from their shapes.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest
from conftest import (
    BAD_FILE_CASES,
    GATE_ORDER,
    expected_weight_rows,
    keras_layer_rows,
    keras_module,
    keras_recurrent_layers,
    kind_format_params,
    model_file,
    parse_weight_shapes,
)

import lstm_inspect as li
from lstm_inspect.errors import ModelFileError


def _keras_version(backend: str) -> str:
    return keras_module(backend)[0].__version__


# ------------------------------------------------------------------ whole models


@pytest.mark.parametrize("kind,backend,suffix", kind_format_params())
def test_keras_version_is_kept(saved_model, kind, backend, suffix):
    _, path = model_file(saved_model, kind, backend, suffix)
    model = li.load_model(str(path))
    assert model.keras_version == _keras_version(backend)
    assert model.keras_version.startswith("3." if backend == "keras3" else "2.")
    assert not model.weights_only
    assert model.warnings == []


@pytest.mark.parametrize("kind,backend,suffix", kind_format_params())
def test_recurrent_layers_match_keras(saved_model, kind, backend, suffix):
    case, path = model_file(saved_model, kind, backend, suffix)
    model = li.load_model(str(path))
    expected = keras_recurrent_layers(case.model)
    assert model.recurrent_names() == [name for name, _ in expected]
    for (name, keras_layer), layer in zip(expected, model.recurrent_layers()):
        config = keras_layer.get_config()
        kind_name = type(keras_layer).__name__
        assert layer.kind == kind_name, name
        assert layer.gates == GATE_ORDER[kind_name]
        assert layer.units == config["units"]
        assert layer.activation == config["activation"]
        if "recurrent_activation" in config:
            assert layer.recurrent_activation == config["recurrent_activation"]
        # A Bidirectional's backward_layer is a go_backwards copy in Keras itself.
        assert layer.go_backwards is keras_layer.go_backwards
        assert layer.return_sequences is config["return_sequences"]
        assert layer.stateful is config["stateful"]
        assert layer.use_bias is config["use_bias"]
        assert layer.weights.features == keras_layer.get_weights()[0].shape[0]
        if kind_name == "GRU":
            assert layer.weights.reset_after is config["reset_after"]
        if "/" in name and name.rsplit("/", 1)[1] in ("forward", "backward"):
            assert (layer.wrapper, layer.direction) == tuple(name.rsplit("/", 1))


@pytest.mark.parametrize("kind,backend,suffix", kind_format_params())
def test_layer_rows_match_keras(saved_model, kind, backend, suffix):
    case, path = model_file(saved_model, kind, backend, suffix)
    version = _keras_version(backend)
    rows = li.layer_rows(li.load_model(str(path)))
    for row in rows:
        assert row["keras_version"] == version
        if row["class"] == "InputLayer":
            assert row["params"] == 0 and row["weight_shapes"] is None  # an empty cell in CSV, null in JSON
    mine = [row for row in rows if row["class"] != "InputLayer"]
    expected = keras_layer_rows(case.model, version)
    assert [row["name"] for row in mine] == [row["name"] for row in expected]
    for row, want in zip(mine, expected):
        assert {**row, "weight_shapes": parse_weight_shapes(row["weight_shapes"])} == want


# ------------------------------------------------------------------ weights-only files

WEIGHTS_ONLY_KINDS = ["single", "stacked", "no_bias", "bi_concat", "bi_gru", "gru", "gru_reset_before",
                      "simple_rnn", "embedding", "masking", "nested"]


@pytest.fixture(scope="session")
def weights_only_file(saved_model, model_dir):
    """Factory: the model of ``kind`` saved with ``save_weights`` (tf-keras .h5, Keras 3 .weights.h5)."""
    cache = {}

    def make(kind: str, backend: str):
        if (kind, backend) not in cache:
            case = saved_model(kind, backend)
            path = model_dir / (f"{kind}-{backend}.weights.h5" if backend == "keras3" else f"{kind}-{backend}-weights.h5")
            case.model.save_weights(path)
            cache[(kind, backend)] = case, path
        return cache[(kind, backend)]

    return make


@pytest.mark.parametrize("backend", ["tfkeras", "keras3"])
@pytest.mark.parametrize("kind", WEIGHTS_ONLY_KINDS)
def test_weights_only_file_is_read(weights_only_file, kind, backend):
    case, path = weights_only_file(kind, backend)
    model = li.load_model(str(path))
    assert model.weights_only
    # tf-keras writes its version on save_weights files; Keras 3 .weights.h5 carry none.
    assert model.keras_version == (_keras_version(backend) if backend == "tfkeras" else None)
    assert any("weights-only" in w and os.path.basename(path) in w for w in model.warnings)

    expected = keras_recurrent_layers(case.model)
    names = model.recurrent_names()
    if backend == "keras3":  # the .weights.h5 tree does not keep the layer order
        assert sorted(names) == sorted(name for name, _ in expected)
    else:
        assert names == [name for name, _ in expected]
    for name, keras_layer in expected:
        layer = model.recurrent_layer(name)
        assert layer.kind == type(keras_layer).__name__, name
        assert layer.units == keras_layer.units
        assert layer.activation is None and layer.recurrent_activation is None
        assert layer.use_bias is keras_layer.get_config()["use_bias"]
        if layer.kind == "GRU":
            assert layer.weights.reset_after is keras_layer.get_config()["reset_after"]
        if layer.direction is not None:
            assert layer.go_backwards is (layer.direction == "backward")

    frame = li.weights_frame(model)
    got = {(r.layer, r.tensor, r.gate, int(r.unit), None if pd.isna(r.source) else int(r.source)): np.float32(r.value)
           for r in frame.itertuples(index=False)}
    want = expected_weight_rows(case.model)
    assert len(frame) == len(want)
    assert got == {key: value for key, (value, _) in want.items()}


# ------------------------------------------------------------------ files that are not models


@pytest.mark.parametrize("case_id", BAD_FILE_CASES)
def test_unreadable_files_raise_one_line_model_file_error(bad_files, case_id):
    path = bad_files[case_id]
    with pytest.raises(ModelFileError) as info:
        li.load_model(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert os.path.basename(path) in message
    assert re.search(r"no such file|not a Keras model file|empty|corrupt or truncated", message), message
