"""The real-world corpus (../shared/wild_models): every file is served, or refused with a reason.

Driven by the corpus' own manifest.json: expectations (layer names, classes,
units, shapes, Keras versions, several inputs, companion architecture files)
come from the manifest, and numbers from the stored arrays read independently
with h5py/zipfile, from Keras itself (``verify``) where Keras can load the
file, and from the step equations written out in float64 over the stored
arrays (tests/reference.py) where it cannot.  The corpus stays in ../shared;
these tests skip, saying why, when it is absent.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile

import h5py
import numpy as np
import pytest
from conftest import WILD, run_cli
from reference import reference_steps

MANIFEST = WILD / "manifest.json"
ENTRIES = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else []
pytestmark = pytest.mark.skipif(not ENTRIES, reason=f"corpus manifest not found at {MANIFEST}")

# Files whose model has a layer that is not a Keras layer: `predict` refuses in one line.
CUSTOM = {"textgenrnn_weights.hdf5"}


# Files not served yet, with the layer that stops them (strict: the mark fails once they work).
PENDING: dict[str, str] = {}


def _ids(entries):
    return [entry["file"] for entry in entries]


def _served(entries):
    """``entries`` as params, those not served yet marked as strict xfails with their reason."""
    return [pytest.param(entry, id=entry["file"],
                         marks=[pytest.mark.xfail(strict=True, reason=PENDING[entry["file"]])] if entry["file"] in PENDING else [])
            for entry in entries]


def _config_args(entry) -> list:
    companion = entry.get("companion_config")
    return ["--config", WILD / companion] if companion else []


def _stored_arrays(entry, paths) -> dict[str, np.ndarray]:
    """The datasets at ``paths``, read straight from the file with h5py (not through lstm-inspect)."""
    path = WILD / entry["file"]
    arrays = {}
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
            for name in paths:
                arrays[name] = _h5_path(h5, name.split(":", 1)[1])[()]
    else:
        with h5py.File(path, "r") as h5:
            for name in paths:
                arrays[name] = h5[name][()]
    return arrays


def _h5_path(h5, path: str):
    """A dataset by its '/' path; tf.keras on Windows wrote group names with backslashes."""
    if path in h5:
        return h5[path]
    group, _, rest = path.rpartition("/vars/")
    return h5[group.replace("/", "\\")]["vars"][rest]


def _batch(entry) -> int | None:
    """The fixed batch size a stateful model declares (its input shape's first axis), if any."""
    shape = entry["input_shape"]
    return shape[0] if isinstance(shape, list) and isinstance(shape[0], int) else None


def _input_shapes(entry) -> list[tuple]:
    """One shape per model input, in the model's input order, batch axis dropped."""
    shape = entry["input_shape"]
    if isinstance(shape, dict):
        return [tuple(shape[name][1:]) for name in entry["inputs"]]
    if isinstance(shape, str):  # token ids
        length = re.search(r"length (\d+)", shape)
        return [("ids", int(re.search(r"vocabulary (\d+)", shape).group(1)), int(length.group(1)) if length else 12)]
    return [tuple(shape[1:])]


def _inputs_for(entry, tmp_path) -> list:
    """Small random inputs for every model input: (N, T, F) arrays, (N, D) for a flat input."""
    rng = np.random.default_rng(0)
    paths = []
    for index, shape in enumerate(_input_shapes(entry)):
        path = tmp_path / f"x{index}.npy"
        if shape[0] == "ids":
            _, vocabulary, length = shape
            array = rng.integers(1, vocabulary, size=(1, min(length, 12), 1)).astype(np.float32)
        else:
            dims = tuple(d if d is not None else 8 for d in shape)
            sequences = _batch(entry) or (1 if len(dims) > 2 else 2)
            array = rng.normal(size=(sequences,) + dims).astype(np.float32)
        np.save(path, array)
        paths.append(path)
    return paths


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
def test_layers_lists_the_recurrent_layers(entry):
    result = run_cli("layers", WILD / entry["file"], *_config_args(entry), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    for recurrent in entry["recurrent"]:
        row = rows[recurrent["name"]]
        assert row["units"] == recurrent["units"]
        assert recurrent["class"].split(" ")[0].startswith(row["class"].split("(")[0]) or row["class"] in recurrent["class"]
        if "activation" in recurrent and (entry["has_model_config"] or entry.get("companion_config")):
            assert row["activation"] == recurrent["activation"]
            assert row["recurrent_activation"] == recurrent["recurrent_activation"]
        if "initial_state" in recurrent:
            wired = "; ".join(f"{state}={source}[{index}]"
                              for state, (source, _, index) in zip(("h", "c"), recurrent["initial_state"]))
            assert row["initial_state"] == wired
        assert row["keras_version"] == entry["keras_version"]


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
def test_weights_carry_the_stored_values(entry):
    """Every value `weights` prints is found at its labelled place in the stored array."""
    result = run_cli("weights", WILD / entry["file"], *_config_args(entry), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    stored = _stored_arrays(entry, {row["path"] for row in rows})
    expected_values = 0
    for recurrent in entry["recurrent"]:
        directions = 2 if recurrent["class"].startswith("Bidirectional") else 1
        layer_rows = [r for r in rows if r["layer"].split("/")[0] == recurrent["name"]]
        assert {r["layer"] for r in layer_rows} == (
            {f"{recurrent['name']}/forward", f"{recurrent['name']}/backward"} if directions == 2 else {recurrent["name"]}
        )
        # Every stored value of the layer's tensors is labelled once.
        expected_values += sum(stored[path].size for path in {r["path"] for r in layer_rows})
    assert len(rows) == expected_values
    cudnn = entry["file"].startswith("textgenrnn")  # stored in cuDNN's order: rows/columns point there
    for row in rows:
        array = stored[row["path"]]
        column = int(row["column"])
        value = np.float32(row["value"])
        if row["tensor"] in ("kernel", "recurrent_kernel"):
            tap = tuple(int(v) for v in row["tap"].split(",")) if row.get("tap") else ()
            expected = array[tap + (int(row["row"]), column)]
            if not cudnn:
                assert row["row"] == row["source"]
        elif array.ndim == 2:  # GRU reset_after bias (2, 3U)
            expected = array[0 if row["tensor"] == "bias" else 1, column]
        else:
            expected = array[column]
        assert value == expected, row


@pytest.mark.parametrize("entry", _served(ENTRIES))
def test_trace_serves_every_recurrent_layer(entry, tmp_path):
    inputs = _inputs_for(entry, tmp_path)
    result = run_cli("trace", WILD / entry["file"], *inputs, *_config_args(entry), "--format", "csv")
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    assert {row["layer"].split("/")[0] for row in rows} == {r["name"] for r in entry["recurrent"]}
    hidden = np.array([float(row["hidden"]) for row in rows])
    assert np.all(np.isfinite(hidden)) and np.all(np.abs(hidden) <= 1.0 + 1e-6)


@pytest.mark.parametrize("entry", _served(ENTRIES))
def test_predict_serves_or_refuses_a_custom_layer(entry, tmp_path):
    inputs = _inputs_for(entry, tmp_path)
    result = run_cli("predict", WILD / entry["file"], *inputs, *_config_args(entry), "--format", "csv")
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    if entry["file"] in CUSTOM:
        assert result.returncode == 2 and result.stdout == b""
        errors = [line for line in stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and "attention" in errors[0], stderr
        return
    assert result.returncode == 0, stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    values = np.array([float(v) for row in rows for k, v in row.items() if k.startswith("y_") and v != ""])
    assert values.size and np.all(np.isfinite(values))


LOADABLE = [e for e in ENTRIES if e["has_model_config"] and (e.get("keras3_loads") or e.get("tf_keras_2_21_loads"))]


@pytest.mark.keras_oracle
@pytest.mark.parametrize("entry", _served(LOADABLE))
def test_verify_against_keras(entry, tmp_path):
    """Keras (3, or tf-keras for Keras 2 files) computes the same outputs as the replay."""
    inputs = _inputs_for(entry, tmp_path)
    result = run_cli("verify", WILD / entry["file"], *inputs, "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    compared = [row for row in rows if row["max_abs_diff"] is not None]
    names = {row["layer"] for row in compared}
    assert {r["name"] for r in entry["recurrent"]} <= names
    # ok within 1e-5, or drift: over it, but Keras' float32 result and the float32 replay both about as
    # far from a float64 replay (a stateful GRU char-RNN of the corpus amplifies rounding to 1.4e-5).
    for row in compared:
        if row["status"] == "drift":
            assert row["keras_vs_float64"] > 0 and row["replay_vs_float64"] > 0, row
        else:
            assert row["status"] == "ok" and row["max_abs_diff"] <= 1e-5, rows


# ------------------------------------------------------------------ files Keras cannot load
#
# For these, the first recurrent layer is computed here from the arrays in the file (read with
# h5py) by the Keras equations in float64, and compared with lstm-inspect's trace.


class _StoredLayer:
    """A recurrent layer as tests/reference.py reads one: a config and Keras' fused arrays."""

    def __init__(self, kind: str, config: dict, weights: list[np.ndarray]) -> None:
        self.kind, self.config, self.weights = kind, config, weights

    def get_config(self):
        return self.config

    def get_weights(self):
        return self.weights


def _keras1_lstm(h5, name):
    group = h5["model_weights"][name]
    part = {key[len(name) + 1 :]: group[key][()] for key in group}
    return [np.concatenate([part[f"{w}_{g}"] for g in "ifco"], axis=-1) for w in "WUb"]


def _windows_lstm(h5, name):
    cell = h5[f"layers\\{name}\\cell"]["vars"]
    return [cell[str(k)][()] for k in range(3)]


def _plain(h5, group, names=("kernel:0", "recurrent_kernel:0", "bias:0")):
    return [h5[f"{group}/{name}"][()] for name in names]


INDEPENDENT = {
    "beneyal_keras1_stacked_lstm_textgen.hdf5": (
        "lstm_1", "LSTM", {"activation": "tanh", "recurrent_activation": "hard_sigmoid"}, lambda h5: _keras1_lstm(h5, "lstm_1"),
        lambda xs: xs[0]),
    "mainakcris7_ser_lstm_gru_tfkeras2.15.keras": (
        "lstm_6", "LSTM", {"activation": "tanh", "recurrent_activation": "sigmoid"}, lambda h5: _windows_lstm(h5, "lstm"),
        lambda xs: xs[0]),
    "baiguo0016_multiio_gru_weights_k2.1.1.h5": (
        "gru_1", "GRU", {"activation": "tanh", "recurrent_activation": "hard_sigmoid", "reset_after": False},
        lambda h5: _plain(h5, "gru_1/gru_1"), lambda xs: np.concatenate(xs, axis=-1)),  # Masking passes random data
}


@pytest.mark.parametrize("name", sorted(INDEPENDENT))
def test_first_recurrent_layer_of_unloadable_files(name, tmp_path):
    entry = next(e for e in ENTRIES if e["file"] == name)
    layer_name, kind, config, read, combine = INDEPENDENT[name]
    inputs = _inputs_for(entry, tmp_path)
    path = WILD / name
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
            weights = read(h5)
    else:
        with h5py.File(path, "r") as h5:
            weights = read(h5)
    layer = type(kind, (_StoredLayer,), {})(kind, config, weights)
    x = combine([np.load(p) for p in inputs])
    expected = reference_steps(layer, x, "keras2")
    # float64: the replay is the equations themselves (1e-9).  float32: rounding compounds over the
    # steps (40 steps of 130 random features through hard_sigmoid gates drift ~1e-4 in `cell`), so
    # the float32 check only bounds it; the float64 one is the proof.
    for dtype, tolerance in (("float64", 1e-9), ("float32", 1e-3)):
        result = run_cli("trace", path, *inputs, *_config_args(entry), "--layer", layer_name, "--dtype", dtype,
                         "--format", "csv")
        rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
        assert result.returncode == 0 and rows, result.stderr
        for row in rows:
            n, t, u = int(row["sequence"]), int(row["t"]), int(row["unit"])
            for value in ("hidden",) + (("cell", "f") if kind == "LSTM" else ("z", "r")):
                want = expected[value][n, t, u]
                assert abs(float(row[value]) - want) <= tolerance * max(1.0, abs(want)), (dtype, row, value)
