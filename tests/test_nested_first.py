"""A Sequential whose first layer is a nested model and which has no InputLayer of its own
(as Keras 2.0-2.2 saved them): the nested model's input is the model's input."""

import json

import h5py
import numpy as np
import pytest
from conftest import keras_module

import lstm_inspect as li


@pytest.mark.keras_oracle
def test_nested_model_first_without_input_layer(tmp_path):
    K, L = keras_module("tfkeras")
    inner = K.Sequential([K.Input((5, 3)), L.LSTM(4, return_sequences=True, name="enc")], name="encoder")
    outer = K.Sequential([inner, L.LSTM(2, name="top"), L.Dense(1, name="out")], name="outer")
    rng = np.random.default_rng(4)
    for layer in inner.layers + outer.layers[1:]:
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    expected = outer.predict(x, verbose=0)
    path = tmp_path / "nested_first.h5"
    outer.save(path)
    with h5py.File(path, "r+") as h5:  # drop the outer InputLayer that tf-keras 2.21 adds
        config = json.loads(h5.attrs["model_config"])
        config["config"]["layers"] = [e for e in config["config"]["layers"] if e["class_name"] != "InputLayer"]
        h5.attrs["model_config"] = json.dumps(config)
    model = li.load_model(str(path))
    assert [layer.name for layer in model.recurrent_layers()] == ["encoder/enc", "top"]
    np.testing.assert_allclose(li.predict(model, x), expected, atol=1e-5)
