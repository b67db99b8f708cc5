"""The light install: every command works on the sample models with TensorFlow, Keras and
tf-keras unimportable, and running the CLI never imports them.

The blocker is a folder put first on PYTHONPATH whose ``tensorflow.py``,
``keras.py`` and ``tf_keras.py`` raise ImportError, so any import of them,
however indirect, fails the command.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SAMPLE_MODEL_FILES, SAMPLES, run_process, sample_inputs

BLOCKED = ("tensorflow", "keras", "tf_keras")
WEIGHT_HEADER = ["layer", "tensor", "gate", "unit", "source", "value", "path", "column", "row"]


SAMPLE_MODELS = [pytest.param(model, id=model.name) for model in SAMPLE_MODEL_FILES]


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("block_tensorflow")
    for name in BLOCKED:
        (folder / f"{name}.py").write_text(f'raise ImportError("blocked: {name} must not be imported")\n')
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH", "")]))
    return {"PYTHONPATH": path}


def test_sample_models_are_there():
    assert len(SAMPLE_MODELS) >= 6, "sample_models/ should hold .keras/.h5 files with input CSVs"


@pytest.mark.parametrize("name", BLOCKED)
def test_the_blocker_blocks(blocked_env, name):
    """Without this the tests below could pass vacuously."""
    result = run_process("--version", env=blocked_env)
    assert result.returncode == 0
    probe = python_c(f"import {name}", env=blocked_env)
    assert probe.returncode != 0 and b"blocked" in probe.stderr


def python_c(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -c code args...`` from the repository root."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, env=full_env, cwd=ROOT, timeout=120, check=False)


# Every sample model through four commands, in ONE process with the blocker first on the path
# (a process each would spend most of its time starting Python).  Each command runs through the
# real entry point with Click's test streams; the process's own stderr must stay empty.
BLOCKED_RUNS = """
import json, sys
sys.path.insert(0, %(tests)r)
from reference import invoke
runs = {}
for model, data in %(pairs)r:
    for args in (["weights", model, "--format", "csv"], ["layers", model, "--format", "json"],
                 ["trace", model, *data, "--format", "csv"], ["predict", model, *data, "--format", "csv"]):
        result = invoke(*args)
        runs[model + " " + args[0]] = [result.exit_code, result.stdout, result.stderr]
print(json.dumps(runs))
"""


@pytest.fixture(scope="module")
def blocked_runs(blocked_env) -> dict:
    pairs = [(str(model), [str(arg) for arg in sample_inputs(model)]) for model in SAMPLE_MODEL_FILES]
    result = python_c(BLOCKED_RUNS % {"tests": str(ROOT / "tests"), "pairs": pairs}, env=blocked_env)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr.decode()
    return json.loads(result.stdout)


def _ok(run: list) -> str:
    code, stdout, stderr = run
    assert code == 0, stderr
    # Nothing on stderr but notes (the stateful sample model's feed plan).
    assert all(line.startswith("lstm-inspect: note: ") for line in stderr.splitlines()), stderr
    return stdout


@pytest.mark.parametrize("model", SAMPLE_MODELS)
def test_every_command_works_without_tensorflow(blocked_runs, model):
    weights, layers, trace, predict = (blocked_runs[f"{model} {command}"] for command in ("weights", "layers", "trace", "predict"))
    rows = list(csv.reader(io.StringIO(_ok(weights))))
    # a convolutional kernel's values carry their window position in a last column, tap
    assert rows[0] == WEIGHT_HEADER + (["tap"] if "conv_lstm" in model.name else []) and len(rows) > 1
    layer_rows = json.loads(_ok(layers))
    # Every labelled value is accounted for by the recurrent layers' parameter counts.
    recurrent = [row for row in layer_rows if any(kind in row["class"] for kind in ("LSTM", "GRU", "SimpleRNN"))]
    assert recurrent and len(rows) - 1 == sum(row["params"] for row in recurrent)
    steps = list(csv.DictReader(io.StringIO(_ok(trace))))
    assert steps and {"sequence", "layer", "t", "unit", "hidden"} <= set(steps[0])
    outputs = list(csv.DictReader(io.StringIO(_ok(predict))))
    assert outputs and "y_0" in outputs[0]


PROBE = """
import json, sys
import lstm_inspect.cli as cli
heavy = {name: name in sys.modules for name in %(blocked)r}
out = sys.argv[1]
codes = []
for args in (
    ["weights", %(model)r, "--format", "csv", "-o", out],
    ["layers", %(model)r, "--format", "csv", "-o", out],
    ["trace", %(model)r, %(data)r, "--format", "csv", "-o", out],
    ["predict", %(model)r, %(data)r, "--format", "csv", "-o", out],
):
    codes.append(cli._run(args, debug=False))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in %(blocked)r)
print(json.dumps({"after_import": heavy, "codes": codes, "loaded": loaded}))
"""


def test_running_the_cli_does_not_import_tensorflow(tmp_path):
    """No blocker here: TensorFlow is installed, and must still not be imported."""
    model = SAMPLES / "stacked_lstm.keras"
    code = PROBE % {"blocked": BLOCKED, "model": str(model), "data": str(model.with_suffix(".csv"))}
    result = python_c(code, str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert report["codes"] == [0, 0, 0, 0]
    assert not any(report["after_import"].values())
    assert report["loaded"] == []


def test_import_lstm_inspect_is_light():
    code = f"import sys, lstm_inspect; print(sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r}))"
    result = python_c(code)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "[]"
