"""`lstm-inspect layers`: the command (in-process, through its entry point); its CSV and JSON rows compared
with what the live Keras model says about each layer (config, count_params, weight shapes).

Each model kind is checked in one file format, rotating through Keras 3 .keras,
Keras 3 .h5 and tf-keras .h5 so every kind and every format is exercised
(``test_reading`` checks the same rows in-process for every kind x format).
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import (
    BAD_FILE_CASES,
    FILE_FORMATS,
    MODEL_KINDS,
    keras_layer_rows,
    keras_module,
    parse_weight_shapes,
    run_cli,
)

LAYER_COLUMNS = [
    "name", "class", "units", "activation", "recurrent_activation", "return_sequences", "go_backwards",
    "stateful", "use_bias", "params", "weight_shapes", "keras_version", "initial_state",
]

ROTATED = [
    pytest.param(kind, *FILE_FORMATS[i % len(FILE_FORMATS)], id=f"{kind}-{FILE_FORMATS[i % 3][0]}.{FILE_FORMATS[i % 3][1]}")
    for i, kind in enumerate(MODEL_KINDS)
]


def as_csv_text(value) -> str:
    """How a JSON value of a `layers` row is written in CSV."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ok(result) -> str:
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout.decode("utf-8")


@pytest.mark.parametrize("kind,backend,suffix", ROTATED)
def test_json_and_csv_rows_match_keras(saved_model, kind, backend, suffix):
    case = saved_model(kind, backend)
    version = keras_module(backend)[0].__version__
    json_run, csv_run = (run_cli("layers", case.paths[suffix], "--format", fmt) for fmt in ("json", "csv"))
    rows = json.loads(_ok(json_run))
    assert all(list(row) == LAYER_COLUMNS for row in rows)
    for row in rows:
        assert row["keras_version"] == version
        if row["class"] == "InputLayer":
            assert row["params"] == 0 and row["weight_shapes"] is None
    layer_rows = [row for row in rows if row["class"] != "InputLayer"]
    expected = keras_layer_rows(case.model, version)
    assert [row["name"] for row in layer_rows] == [row["name"] for row in expected]
    for row, want in zip(layer_rows, expected):
        assert {**row, "weight_shapes": parse_weight_shapes(row["weight_shapes"])} == want

    header, *csv_rows = list(csv.reader(io.StringIO(_ok(csv_run))))
    assert header == LAYER_COLUMNS
    assert csv_rows == [[as_csv_text(row[c]) for c in LAYER_COLUMNS] for row in rows]


def test_piped_output_without_format_is_csv(saved_model):
    text = _ok(run_cli("layers", saved_model("stacked", "keras3").paths["keras"]))
    assert text.splitlines()[0] == ",".join(LAYER_COLUMNS)


def test_output_file(saved_model, tmp_path):
    case = saved_model("bi_last", "tfkeras")
    target = tmp_path / "layers.json"
    assert _ok(run_cli("layers", case.paths["h5"], "-o", target)) == ""
    rows = json.loads(target.read_text(encoding="utf-8"))
    assert [row["name"] for row in rows if row["class"] != "InputLayer"] == ["bi", "head"]


def test_table_runs_and_names_the_layers(saved_model):
    case = saved_model("stacked", "tfkeras")
    text = _ok(run_cli("layers", case.paths["h5"], "--format", "table"))
    for word in ("lstm_a", "lstm_b", "head", "LSTM", "Dense", "2.21.0"):
        assert word in text


@pytest.mark.parametrize("case_id", BAD_FILE_CASES)
def test_unreadable_file_is_one_line_status_2(bad_files, case_id):
    path = bad_files[case_id]
    result = run_cli("layers", path, "--format", "csv")
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert result.stdout == b""
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1 and path.name in stderr
