"""The real-world corpus (../shared/wild_models): every file is served, or refused with a reason.

Driven by the corpus' own manifest.json: expectations (layer names, classes,
units, shapes, Keras versions) come from the manifest, and numbers from the
stored arrays read independently with h5py/zipfile, or from Keras itself
(``verify``) where Keras can load the file.  The corpus stays in ../shared;
these tests skip, saying why, when it is absent.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile

import h5py
import numpy as np
import pytest

from conftest import WILD, run_cli

MANIFEST = WILD / "manifest.json"
ENTRIES = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else []
pytestmark = pytest.mark.skipif(not ENTRIES, reason=f"corpus manifest not found at {MANIFEST}")


def _ids(entries):
    return [entry["file"] for entry in entries]


def _stored_arrays(entry, paths) -> dict[str, np.ndarray]:
    """The datasets at ``paths``, read straight from the file with h5py (not through lstm-inspect)."""
    path = WILD / entry["file"]
    arrays = {}
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
            for name in paths:
                arrays[name] = h5[name.split(":", 1)[1]][()]
    else:
        with h5py.File(path, "r") as h5:
            for name in paths:
                arrays[name] = h5[name][()]
    return arrays


def _input_for(entry, tmp_path, steps=None):
    rng = np.random.default_rng(0)
    shape = entry["input_shape"]
    if isinstance(shape, str):  # token ids
        vocabulary = int(shape.split("vocabulary")[1].strip(" )"))
        ids = rng.integers(1, vocabulary, size=(1, steps or 12, 1))
        path = tmp_path / "tokens.npy"
        np.save(path, ids.astype(np.float32))
        return path
    timesteps = shape[1] or 10
    path = tmp_path / "x.npy"
    np.save(path, rng.normal(size=(2, steps or timesteps, shape[2])).astype(np.float32))
    return path


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
def test_layers_lists_the_recurrent_layers(entry):
    result = run_cli("layers", WILD / entry["file"], "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    for recurrent in entry["recurrent"]:
        row = rows[recurrent["name"]]
        assert row["units"] == recurrent["units"]
        assert recurrent["class"].split(" ")[0].startswith(row["class"].split("(")[0]) or row["class"] in recurrent["class"]
        if "activation" in recurrent and entry["has_model_config"]:
            assert row["activation"] == recurrent["activation"]
            assert row["recurrent_activation"] == recurrent["recurrent_activation"]
        assert row["keras_version"] == entry["keras_version"]


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
def test_weights_carry_the_stored_values(entry):
    """Every value `weights` prints is found at its labelled place in the stored array."""
    result = run_cli("weights", WILD / entry["file"], "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    stored = _stored_arrays(entry, {row["path"] for row in rows})
    recurrent_values = 0
    for recurrent in entry["recurrent"]:
        units = recurrent["units"]
        gates = 3 if "GRU" in recurrent["class"] else 4
        directions = 2 if recurrent["class"].startswith("Bidirectional") else 1
        layer_rows = [r for r in rows if r["layer"].split("/")[0] == recurrent["name"]]
        assert {r["layer"] for r in layer_rows} == (
            {f"{recurrent['name']}/forward", f"{recurrent['name']}/backward"} if directions == 2 else {recurrent["name"]}
        )
        kernel_rows = [r for r in layer_rows if r["tensor"] == "kernel"]
        features = len(kernel_rows) // (directions * gates * units)
        # A reset_after GRU and a cuDNN layer keep two biases (input and recurrent).
        bias_rows = 2 if recurrent.get("reset_after") or "CuDNN" in recurrent["class"] else 1
        recurrent_values += directions * (features + units + bias_rows) * gates * units
    assert len(rows) == recurrent_values
    # Every row whose stored tensor is kept in Keras' plain layout (not CuDNN's).
    plain = [r for r in rows if not entry["file"].startswith("textgenrnn")]
    for row in plain:
        array = stored[row["path"]]
        column = int(row["column"])
        value = float(row["value"])
        if row["tensor"] in ("kernel", "recurrent_kernel"):
            expected = array[int(row["source"]), column]
        elif array.ndim == 2:  # GRU reset_after bias (2, 3U)
            expected = array[0 if row["tensor"] == "bias" else 1, column]
        else:
            expected = array[column]
        assert np.float32(value) == expected, row


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids(ENTRIES))
def test_trace_serves_or_refuses_with_a_reason(entry, tmp_path):
    x = _input_for(entry, tmp_path)
    result = run_cli("trace", WILD / entry["file"], x, "--format", "csv")
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    if result.returncode == 0:
        rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
        layers = {row["layer"].split("/")[0] for row in rows}
        assert layers == {r["name"] for r in entry["recurrent"]}
        values = np.array([[float(row["hidden"])] for row in rows])
        assert np.all(np.isfinite(values)) and np.all(np.abs(values) <= 1.0 + 1e-6)
    else:
        assert result.returncode == 2
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert stderr.startswith("lstm-inspect: error:")


LOADABLE = [e for e in ENTRIES if e["has_model_config"] and (e.get("keras3_loads") or e.get("tf_keras_2_21_loads"))]


@pytest.mark.parametrize("entry", LOADABLE, ids=_ids(LOADABLE))
def test_verify_against_keras(entry, tmp_path):
    """Keras (3, or tf-keras for Keras 2 files) computes the same outputs as the replay."""
    x = _input_for(entry, tmp_path)
    result = run_cli("verify", WILD / entry["file"], x, "--format", "json")
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
