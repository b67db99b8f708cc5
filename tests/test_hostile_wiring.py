"""Hostile and mistaken input to architecture files, several inputs and --from (issue 11, point 8).

Each case gets what hostile model files get: exit status 2, nothing on
stdout, one line on stderr, nothing from any file run.
"""

from __future__ import annotations

import json
import zipfile

import h5py
import numpy as np
import pytest
from conftest import run_cli
from hostile import INPUT_CSV, KERAS3_ARCHIVE, archive_members, assert_refused, write_archive

T, F = 5, 3


@pytest.fixture(scope="module")
def weights_and_json(tmp_path_factory):
    """A tf-keras LSTM(4) -> Lambda -> Dense saved as weights only, with its to_json() beside it."""
    import tf_keras as K

    folder = tmp_path_factory.mktemp("wiring")
    model = K.Sequential([K.Input((T, F)), K.layers.LSTM(4, return_sequences=True, name="lstm"),
                          K.layers.Lambda(lambda x: x * 2.0, name="code"), K.layers.Dense(2, name="head")])
    model.save_weights(folder / "weights.h5")
    config = json.loads(model.to_json())
    (folder / "model.json").write_text(json.dumps(config))
    np.save(folder / "x.npy", np.random.default_rng(0).normal(size=(1, T, F)).astype("float32"))
    return folder, config


def _write(folder, name, config) -> str:
    path = folder / name
    path.write_text(json.dumps(config) if not isinstance(config, str) else config)
    return str(path)


def test_config_json_bomb_is_one_line(weights_and_json, tmp_path):
    folder, _ = weights_and_json
    nested = tmp_path / "deep.json"
    nested.write_text("[" * 200_000 + "]" * 200_000)
    result = run_cli("layers", folder / "weights.h5", "--config", nested)
    assert_refused(result.returncode, result.stdout, result.stderr, ["not valid JSON"])
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:  # sparse: 65 MB declared, nothing written
        handle.seek(65 << 20)
        handle.write(b"}")
    result = run_cli("layers", folder / "weights.h5", "--config", huge)
    assert_refused(result.returncode, result.stdout, result.stderr, ["refused", "architecture JSON"])


def test_config_with_a_lambda_is_never_run(weights_and_json, tmp_path):
    folder, _ = weights_and_json
    marker = tmp_path / "ran"
    # If anything in the config were executed, this Lambda's marshalled code would not even load;
    # the replay must refuse the layer by name and create nothing.
    result = run_cli("predict", folder / "weights.h5", folder / "x.npy", "--config", folder / "model.json")
    assert_refused(result.returncode, result.stdout, result.stderr, ["'code' (Lambda)", "never runs", "--from head"])
    assert not marker.exists()
    traced = run_cli("trace", folder / "weights.h5", folder / "x.npy", "--config", folder / "model.json",
                     "--format", "csv")
    assert traced.returncode == 0, traced.stderr


def test_config_with_other_units_is_one_line(weights_and_json):
    folder, config = weights_and_json
    changed = json.loads(json.dumps(config))
    for layer in changed["config"]["layers"]:
        if layer["class_name"] == "LSTM":
            layer["config"]["units"] = 7
    path = _write(folder, "units.json", changed)
    result = run_cli("weights", folder / "weights.h5", "--config", path)
    assert_refused(result.returncode, result.stdout, result.stderr, ["lstm", "7 units"])


def test_config_with_other_layer_names_is_one_line(weights_and_json):
    folder, config = weights_and_json
    changed = json.loads(json.dumps(config))
    for layer in changed["config"]["layers"]:
        if layer["config"].get("name") == "lstm":
            layer["config"]["name"] = "encoder"
    path = _write(folder, "names.json", changed)
    result = run_cli("layers", folder / "weights.h5", "--config", path)
    assert_refused(result.returncode, result.stdout, result.stderr, ["'lstm'", "does not name"])


@pytest.mark.parametrize("text", ["not json", "[1, 2, 3]", '{"class_name": "Lambda", "config": {}}'])
def test_config_that_is_not_a_model_is_one_line(weights_and_json, text):
    folder, _ = weights_and_json
    path = _write(folder, "odd.json", text)
    result = run_cli("layers", folder / "weights.h5", "--config", path)
    assert_refused(result.returncode, result.stdout, result.stderr)


@pytest.mark.parametrize("member", ["../evil.txt", "..\\evil.txt", "/etc/evil", "layers/../../evil"])
def test_archive_member_outside_the_archive_is_refused(tmp_path, member):
    members = archive_members(KERAS3_ARCHIVE)
    members[member] = b"x"
    path = write_archive(tmp_path / "evil.keras", members)
    with zipfile.ZipFile(path) as archive:
        assert member in archive.namelist()  # zipfile keeps the name as written
    result = run_cli("trace", path, INPUT_CSV)
    assert_refused(result.returncode, result.stdout, result.stderr, ["outside the archive"])
    assert not (tmp_path.parent / "evil.txt").exists()


def test_weight_group_named_with_dots_is_refused(tmp_path):
    """A Windows-style backslash group name that climbs out of the tree."""
    members = archive_members(KERAS3_ARCHIVE)
    scratch = tmp_path / "w.h5"
    scratch.write_bytes(members["model.weights.h5"])
    with h5py.File(scratch, "r+") as h5:
        h5.move("layers", "layers\\..\\lstm")
    members["model.weights.h5"] = scratch.read_bytes()
    path = write_archive(tmp_path / "dots.keras", members)
    result = run_cli("weights", path)
    assert_refused(result.returncode, result.stdout, result.stderr, ["refused"])


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--from", "no_such_layer"], ["no layer named 'no_such_layer'"]),
        (["name=" + str(INPUT_CSV)], ["no model input named 'name'"]),
        ([str(INPUT_CSV)], ["2 INPUT(s) given"]),
    ],
)
def test_wrong_inputs_to_a_one_input_model(extra, words):
    result = run_cli("trace", KERAS3_ARCHIVE, INPUT_CSV, *extra)
    assert_refused(result.returncode, result.stdout, result.stderr, words)
