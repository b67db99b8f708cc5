"""`lstm-inspect verify`: per-layer differences against Keras, exit status 1 on a mismatch.

The expectations here are about the command's behaviour; the numbers it
reports are Keras' own outputs against the replay (which the trace and
predict suites prove separately).  A mismatch is provoked honestly: the
Keras 2 file replayed with Keras 3's hard_sigmoid really does differ.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import SAMPLE_MODEL_FILES, SAMPLES, run_cli, sample_inputs

pytestmark = pytest.mark.keras_oracle  # Keras itself runs inside the command

# Every shipped model but the Lambda one (verify replays the whole model: tested below).
SAMPLE_PAIRS = [
    pytest.param(model, sample_inputs(model), id=model.name)
    for model in SAMPLE_MODEL_FILES
    if model.name != "lambda_scaled.keras"
]


def _rows(result):
    return json.loads(result.stdout)


@pytest.mark.parametrize("model,data", SAMPLE_PAIRS)
def test_sample_models_match_keras(model, data):
    result = run_cli("verify", model, *data, "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = _rows(result)
    compared = [row for row in rows if row["max_abs_diff"] is not None]
    assert compared, rows
    assert all(row["status"] == "ok" and row["max_abs_diff"] <= 1e-5 for row in compared)
    stderr = result.stderr.decode()
    assert "match" in stderr and ("keras 3." in stderr or "tf_keras 2." in stderr)


def test_a_layer_holding_python_code_is_refused_in_one_line():
    result = run_cli("verify", SAMPLES / "lambda_scaled.keras", SAMPLES / "lambda_scaled.csv")
    assert result.returncode == 2 and result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert "'scale' (Lambda) holds Python code" in line
    assert "verify compares the whole model with Keras" in line and "--from lstm" in line


def test_a_real_difference_exits_1():
    """The tf-keras file replayed with Keras 3's hard_sigmoid (x/6 + 0.5) differs from Keras."""
    result = run_cli("verify", SAMPLES / "keras2_hard_sigmoid.h5", SAMPLES / "keras2_hard_sigmoid.csv",
                     "--hard-sigmoid", "keras3", "--format", "csv")
    assert result.returncode == 1, result.stderr
    assert "MISMATCH" in result.stdout.decode()
    assert "MISMATCH" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


def test_tolerance_option():
    """Under --tolerance 0 every nonzero difference is over it; here each is float32 rounding (Keras
    and the replay a few float32 steps from a float64 replay), so its status is drift and the exit 0."""
    args = ("verify", SAMPLES / "stacked_lstm.keras", SAMPLES / "stacked_lstm.csv", "--format", "json")
    assert run_cli(*args).returncode == 0
    tight = run_cli(*args, "--tolerance", "0")
    rows = _rows(tight)
    for row in rows:
        assert row["status"] == ("drift" if row["max_abs_diff"] else "ok"), row
    assert tight.returncode == 0


def test_without_tensorflow_names_the_extra(tmp_path):
    blocker = tmp_path / "block"
    blocker.mkdir()
    for name in ("tensorflow", "keras", "tf_keras"):
        (blocker / f"{name}.py").write_text('raise ImportError("blocked")\n')
    result = run_cli("verify", SAMPLES / "single_lstm.keras", SAMPLES / "single_lstm.csv", env={"PYTHONPATH": str(blocker)})
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "lstm-inspect[verify]" in lines[0]
    assert result.stdout == b""


def test_weights_only_file_reports_the_replay_alone(tmp_path, saved_model):
    case = saved_model("stacked", "tfkeras")
    weights = tmp_path / "stacked_weights.h5"  # (a .weights.h5 name would pick Keras 3's format)
    case.model.save_weights(weights)
    data = tmp_path / "x.npy"
    np.save(data, case.x)
    result = run_cli("verify", weights, data, "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = _rows(result)
    assert rows and all(row["status"] == "replay only" and row["max_abs_diff"] is None for row in rows)
    assert "replay alone" in result.stderr.decode()


def test_lambda_model_is_never_handed_to_keras(tmp_path):
    """A Lambda's stored code would run inside Keras: verify refuses to load it there."""
    marker = tmp_path / "ran"
    source = SAMPLES / "keras2_hard_sigmoid.h5"
    target = tmp_path / "with_lambda.h5"
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        layers = config["config"]["layers"]
        code = f"open({str(marker)!r}, 'w').write('x')"
        layers.append({"class_name": "Lambda", "config": {"name": "evil", "function": ["lambda x: " + code, None, None],
                                                          "function_type": "lambda", "arguments": {}}})
        h5.attrs["model_config"] = json.dumps(config)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in h5["model_weights"].attrs["layer_names"]]
        h5["model_weights"].attrs["layer_names"] = [np.bytes_(n) for n in names + ["evil"]]
    result = run_cli("verify", target, SAMPLES / "keras2_hard_sigmoid.csv")
    stderr = result.stderr.decode()
    assert not marker.exists()
    assert "Traceback" not in stderr
    # The replay itself stops at the Lambda (its code is never run): one clear line, exit 2.
    assert result.returncode == 2 and "Lambda" in stderr and len(stderr.strip().splitlines()) == 1
