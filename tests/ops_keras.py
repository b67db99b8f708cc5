"""Helpers for the feed-forward layer tests (tests/test_ops_*.py): build a small model in each Keras,
give it seeded random weights, save it in every file format, and compare lstm-inspect's replay with
Keras' own ``predict``.

A case is a builder ``(keras, layers) -> model`` plus an input batch.  Expected numbers always come
from the live Keras model (``model.predict``) at test time.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from conftest import keras_module

import lstm_inspect as li

TOL = 1e-5  # float32 replay against Keras' float32 predict (absolute and relative)

# (backend, file suffix): Keras 3 writes .keras and .h5, tf-keras 2.x writes .h5.
FORMATS = (("keras3", "keras"), ("keras3", "h5"), ("tfkeras", "h5"))
BOTH = ("keras3", "tfkeras")
KERAS3 = ("keras3",)


@dataclass
class Case:
    """A model to build in each backend that has its layers, and the batch to feed it."""

    id: str
    build: Callable  # (keras module, layers module) -> model
    x: np.ndarray
    backends: tuple[str, ...] = BOTH
    keep: tuple[str, ...] = ()  # layers whose weights are kept as built (adapted statistics), not randomised
    formats: tuple[tuple[str, str], ...] = FORMATS  # fewer where a Keras cannot save the model in one
    # After building: backend -> live Keras model, (backend, suffix) -> saved file.
    models: dict[str, object] = field(default_factory=dict)
    paths: dict[tuple[str, str], Path] = field(default_factory=dict)
    _expected: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def expected(self, backend: str) -> list[np.ndarray]:
        """The live ``backend`` model's ``predict`` on ``x`` (computed once)."""
        if backend not in self._expected:
            self._expected[backend] = keras_predict(self.models[backend], self.x)
        return self._expected[backend]

    def files(self) -> list[tuple[str, str]]:
        return [(backend, suffix) for backend, suffix in self.formats if backend in self.backends]


def randomise(model, seed: int, keep: tuple[str, ...] = ()) -> None:
    """Seeded random weights for every layer not named in ``keep``: normal values, but variances
    positive (BatchNormalization's moving_variance) and integer counters untouched."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if layer.name in keep or not layer.weights:
            continue
        values = []
        for variable, current in zip(layer.weights, layer.get_weights()):
            name = variable.name.split("/")[-1].split(":")[0]
            if current.dtype.kind != "f":
                values.append(current)
            elif "variance" in name or "stddev" in name:
                values.append(rng.uniform(0.3, 2.0, current.shape).astype(current.dtype))
            else:
                values.append(rng.normal(0.0, 0.6, current.shape).astype(current.dtype))
        layer.set_weights(values)


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ not in ("Bidirectional", "TimeDistributed"):
            yield from _all_layers(layer)
        else:
            yield layer


def build_case(case: Case, folder: Path) -> Case:
    """Build, randomise (seeded by the case id; ``case.keep`` aside) and save ``case`` in each of its backends."""
    for backend in case.backends:
        K, L = keras_module(backend)
        model = case.build(K, L)
        randomise(model, zlib.crc32(case.id.encode()) % 10_000, case.keep)
        case.models[backend] = model
        for b, suffix in case.files():
            if b == backend:
                path = folder / f"{case.id}-{backend}.{suffix}"
                model.save(path)
                case.paths[(backend, suffix)] = path
    return case


def keras_predict(model, x) -> list[np.ndarray]:
    """The model's outputs as a list (one array per output)."""
    outputs = model.predict(x, verbose=0)
    return [np.asarray(o) for o in outputs] if isinstance(outputs, (list, tuple)) else [np.asarray(outputs)]


def output_names(model) -> list[str]:
    """The names of the layers that make a Keras model's outputs, in output order."""
    return [tensor._keras_history[0].name for tensor in model.outputs]


def api_input(x: np.ndarray):
    """``x`` as ``lstm_inspect.predict`` takes it.  The API reads arrays of rank 1 to 3 itself; a batch
    of samples of higher rank ((N, H, W, C): images, volumes) is given as one InputSequence per sample."""
    if x.ndim <= 3:
        return x
    from lstm_inspect.inputs import InputSequence

    return [InputSequence(n, x[n]) for n in range(x.shape[0])]


def assert_replay_equals_keras(case: Case, backend: str, suffix: str, dtype=np.float32) -> None:
    """``lstm_inspect.predict`` of the saved file equals the live model's ``predict`` on ``case.x``,
    output by output.  ``dtype``: the replay's (float64: Keras' float32 result is within TOL of it)."""
    from lstm_inspect.engine import ReplayOptions

    model = case.models[backend]
    expected = case.expected(backend)
    got = li.predict(li.load_model(str(case.paths[(backend, suffix)])), api_input(case.x),
                     options=ReplayOptions(dtype=dtype))
    got = got if isinstance(got, list) else [got]
    assert all(array.dtype == dtype for array in got), [array.dtype for array in got]
    assert len(got) == len(expected)
    for name, mine, theirs in zip(output_names(model), got, expected):
        where = f"{case.id} {backend}.{suffix}, output of '{name}'"
        assert mine.shape == theirs.shape, (where, mine.shape, theirs.shape)
        np.testing.assert_allclose(mine, theirs, rtol=TOL, atol=TOL, err_msg=where)


def params(cases: list[Case]) -> list:
    """pytest params (case id, backend, suffix) with ids like ``reshape-keras3.h5``."""
    import pytest

    return [
        pytest.param(case.id, backend, suffix, id=f"{case.id}-{backend}.{suffix}")
        for case in cases
        for backend, suffix in case.files()
    ]


def sequence_model(K, L, input_shape, *layers, lstm_units: int = 4):
    """Input -> ``layers`` -> LSTM(return_sequences=True, name="lstm"), the model's output: its hidden
    states are Keras' own answer for the trace of the LSTM after the layers under test."""
    inputs = K.Input(input_shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    return K.Model(inputs, L.LSTM(lstm_units, return_sequences=True, name="lstm")(x))


def traced(model, x, layer: str = "lstm", value: str = "hidden") -> np.ndarray:
    """One traced value of a recurrent layer as (N, T, U), from the long DataFrame of ``lstm_inspect.trace``.

    (``trace_arrays`` sizes its arrays by the input's steps, so it does not fit layers that change
    the number of steps, nor inputs without a time axis.)
    """
    frame = li.trace(model, api_input(x), layers=[layer])
    shape = (frame["sequence"].nunique(), int(frame["t"].max()) + 1, int(frame["unit"].max()) + 1)
    result = np.full(shape, np.nan)
    codes = frame["sequence"].astype("category").cat.codes.to_numpy()
    result[codes, frame["t"].to_numpy(int), frame["unit"].to_numpy(int)] = frame[value].to_numpy()
    return result


def assert_trace_equals_keras(case: Case, backend: str, suffix: str, layer: str = "lstm") -> None:
    """The traced hidden state of the LSTM that ends the model equals the model's Keras output."""
    (expected,) = case.expected(backend)  # (N, T, U)
    got = traced(li.load_model(str(case.paths[(backend, suffix)])), case.x, layer)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL, err_msg=f"{case.id} {backend}.{suffix}")


def rng_input(shape: tuple[int, ...], seed: int, scale: float = 1.0, loc: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, scale, shape).astype("float32")


def branches(K, input_shape, *layers):
    """One input feeding each of ``layers`` side by side; each layer's output is a model output
    (several settings of a layer compared in one model)."""
    inputs = K.Input(input_shape)
    return K.Model(inputs, [layer(inputs) for layer in layers])


def edit_keras_config(source: Path, target: Path, layer: str, remove: tuple[str, ...] = (), **changes) -> None:
    """Copy a .keras archive with one layer's config changed: keys in ``remove`` dropped, ``changes`` set."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                for entry in config["config"]["layers"]:
                    if entry["config"].get("name") == layer:
                        for key in remove:
                            entry["config"].pop(key, None)
                        entry["config"].update(changes)
                data = json.dumps(config).encode()
            zout.writestr(item, data)


def assert_edited_file_equals_keras3(case: Case, folder: Path, layer: str, remove: tuple[str, ...] = (), **changes) -> None:
    """Edit ``layer``'s config in the case's .keras file; Keras 3 loading the edited file and the replay
    agree (a missing key means the same default to both)."""
    import keras

    path = folder / f"{case.id}-{layer}-edited.keras"
    edit_keras_config(case.paths[("keras3", "keras")], path, layer, remove, **changes)
    model = keras.models.load_model(path, compile=False)
    expected = keras_predict(model, case.x)
    got = li.predict(li.load_model(str(path)), api_input(case.x))
    got = got if isinstance(got, list) else [got]
    for name, mine, theirs in zip(output_names(model), got, expected):
        np.testing.assert_allclose(mine, theirs, rtol=TOL, atol=TOL, err_msg=f"{case.id}, output of '{name}'")


def assert_bad_setting_refused(case: Case, folder: Path, layer: str, changes: dict, error: type, words: str) -> None:
    """``layer`` given ``changes`` in the case's .keras file: the replay raises ``error``, one line naming
    the layer and holding ``words``."""
    import pytest

    path = folder / f"{case.id}-{layer}-bad.keras"
    edit_keras_config(case.paths[("keras3", "keras")], path, layer, **changes)
    with pytest.raises(error) as raised:
        li.predict(li.load_model(str(path)), api_input(case.x))
    message = str(raised.value)
    assert "\n" not in message and words in message and f"'{layer}'" in message, message


def assert_cli_predict_equals_keras(case: Case, backend: str, suffix: str, folder: Path) -> None:
    """``lstm-inspect predict FILE X.npy --format csv`` (a real subprocess) on a model whose output is a
    sequence (N, T, U): the CSV's rows are (sequence, t) in order and its y_k columns Keras' numbers."""
    import io

    import pandas as pd
    from conftest import run_cli

    path = folder / f"{case.id}-x.npy"
    np.save(path, case.x)
    (expected,) = case.expected(backend)
    result = run_cli("predict", case.paths[(backend, suffix)], path, "--format", "csv")
    assert result.returncode == 0, result.stderr.decode()
    frame = pd.read_csv(io.StringIO(result.stdout.decode()))
    n, steps, units = expected.shape
    assert list(frame.columns) == ["sequence", "t"] + [f"y_{k}" for k in range(units)]
    assert frame["sequence"].tolist() == [s for s in range(n) for _ in range(steps)]
    assert frame["t"].tolist() == list(range(steps)) * n
    got = frame[[f"y_{k}" for k in range(units)]].to_numpy().reshape(n, steps, units)
    np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL)


# Config values a damaged or hostile file may hold where a layer expects sizes, axes or numbers.
GARBAGE = [None, True, 0, -1, 1, 2, 3, 1.5, float("nan"), float("inf"), -1e300, 10**20, "a", "channels_first", "bilinear",
           [], [1], [1, 2], [2, 1], [1, 2, 3], [[1, 2], [3, 4]], [[1, 2], [3, 4], [5, 6]], {"a": 1}, [-1, 3], [None],
           {"class_name": "__numpy__", "config": {"value": [1, 2]}}, [[[[1]]]], ["x", 1]]
GARBAGE_KEYS = ["target_shape", "dims", "data_format", "padding", "cropping", "size", "interpolation", "n", "max_value",
                "negative_slope", "threshold", "alpha", "theta", "axis", "mean", "variance", "invert", "scale", "offset",
                "epsilon", "center", "rms_scaling", "groups", "length", "dim_ordering", "shared_axes"]
GARBAGE_WEIGHTS = ["alpha", "gamma", "beta", "moving_mean", "moving_variance", "mean", "variance", "scale"]


def assert_garbage_settings_refused(class_names: list[str], trials: int, seed: int) -> None:
    """Seeded random garbage configs and weights for these builders, applied to inputs of several ranks:
    every failure is an lstm-inspect error (one line naming the layer), or one of the NumPy/Python
    errors that ``engine.program`` turns into such a line; never anything else, and outputs keep the
    replay's dtype."""
    import random

    from lstm_inspect.config import LayerSpec
    from lstm_inspect.errors import LstmInspectError
    from lstm_inspect.ops import BuildContext, Tensor, op_for
    from lstm_inspect.reading import StoredArray

    rnd = random.Random(seed)
    data = np.random.default_rng(seed)
    for _ in range(trials):
        class_name = rnd.choice(class_names)
        config = {key: rnd.choice(GARBAGE) for key in rnd.sample(GARBAGE_KEYS, rnd.randrange(0, 5))}
        weights = {
            name: StoredArray(name=name, path=name, array=data.normal(size=rnd.choice([(), (3,), (4,), (5, 3), (2, 2, 3)]))
                              .astype("float32"))
            for name in GARBAGE_WEIGHTS if rnd.random() < 0.7
        }
        spec = LayerSpec(name="x", class_name=class_name, config=config, keras_name="x")
        ctx = BuildContext(spec, weights, label="f", dtype=np.dtype("float32"), hard_sigmoid="keras3", warn=lambda m: None)
        try:
            layer = op_for(class_name).build(ctx)
        except (LstmInspectError, ValueError, TypeError, KeyError, IndexError, OverflowError):
            continue  # what compile_model reports in one line
        for shape in [(2, 5, 3), (2, 3), (2, 4, 5, 3), (2, 3, 4, 5, 3)]:
            mask = np.ones(shape[:2], bool) if len(shape) == 3 and rnd.random() < 0.3 else None
            try:
                outputs = layer.apply([Tensor(data.normal(size=shape).astype("float32"), mask)])
            except (LstmInspectError, ValueError, IndexError):
                continue  # what Program.run reports in one line
            assert all(out.value.dtype == np.float32 for out in outputs), (class_name, config)
