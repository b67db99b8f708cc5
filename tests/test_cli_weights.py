"""`lstm-inspect weights`: the command (in-process, through its entry point), its CSV/JSON/NDJSON parsed and
every number compared with the live Keras model's ``get_weights()`` (exact at float32).

Gate ``g`` of unit ``u`` is column ``g*U + u``: a kernel row is
``kernel[source, g*U + u]``, a bias row ``bias[g*U + u]`` with an empty source.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import (
    BAD_FILE_CASES,
    expected_weight_rows,
    keras_recurrent_layers,
    kind_format_params,
    model_file,
    run_cli,
)

WEIGHT_COLUMNS = ["layer", "tensor", "gate", "unit", "source", "value", "path", "column", "row"]


def _ok(result) -> str:
    """stdout of a successful run (exit 0, nothing on stderr)."""
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout.decode("utf-8")


def parse_csv(text: str) -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


def keyed(rows: list[dict]) -> dict[tuple, tuple[np.float32, int]]:
    """Rows (CSV strings or JSON values) -> {(layer, tensor, gate, unit, source): (value, column)}; no duplicates."""
    result = {}
    for row in rows:
        source = row["source"]
        source = None if source in ("", None) else int(source)
        key = (row["layer"], row["tensor"], row["gate"], int(row["unit"]), source)
        assert key not in result, f"duplicate row {key}"
        assert row["path"], key
        result[key] = (np.float32(float(row["value"])), int(row["column"]))
    return result


def assert_rows_match(rows: list[dict], expected: dict) -> None:
    got = keyed(rows)
    assert len(rows) == len(expected)
    assert got.keys() == expected.keys()
    wrong = [(k, got[k], v) for k, v in expected.items() if got[k] != v]
    assert not wrong, f"{len(wrong)} values differ from Keras, e.g. {wrong[:3]}"


# ------------------------------------------------------------------ every kind, every format


@pytest.mark.parametrize("kind,backend,suffix", kind_format_params())
def test_csv_equals_keras_weights(saved_model, kind, backend, suffix):
    case, path = model_file(saved_model, kind, backend, suffix)
    header, rows = parse_csv(_ok(run_cli("weights", path, "--format", "csv")))
    assert header == WEIGHT_COLUMNS
    expected = expected_weight_rows(case.model)
    assert len(rows) == sum(layer.count_params() for _, layer in keras_recurrent_layers(case.model))
    assert_rows_match(rows, expected)


JSON_CASES = [
    pytest.param("gru", "keras3", "keras", id="gru-keras3.keras"),
    pytest.param("bi_concat", "tfkeras", "h5", id="bi_concat-tfkeras.h5"),
    pytest.param("no_bias", "keras3", "h5", id="no_bias-keras3.h5"),
    pytest.param("nested", "tfkeras", "h5", id="nested-tfkeras.h5"),
]


@pytest.mark.parametrize("kind,backend,suffix", JSON_CASES)
def test_json_and_ndjson_carry_the_same_numbers(saved_model, kind, backend, suffix):
    case, path = model_file(saved_model, kind, backend, suffix)
    expected = expected_weight_rows(case.model)
    as_json = json.loads(_ok(run_cli("weights", path, "--format", "json")))
    lines = _ok(run_cli("weights", path, "--format", "ndjson")).splitlines()
    as_ndjson = [json.loads(line) for line in lines]
    for rows in (as_json, as_ndjson):
        assert all(list(row) == WEIGHT_COLUMNS for row in rows)
        assert all(isinstance(row["unit"], int) and isinstance(row["value"], float) for row in rows)
        assert all(row["source"] is None if "bias" in row["tensor"] else isinstance(row["source"], int) for row in rows)
        assert_rows_match(rows, expected)
    assert as_json == as_ndjson  # same rows, same order


# ------------------------------------------------------------------ filters


FILTERS = [
    pytest.param("stacked", ["--layer", "lstm_b"], ["lstm_b"], None, id="layer"),
    pytest.param("stacked", ["--layer", "lstm_b", "--layer", "lstm_a"], ["lstm_a", "lstm_b"], None, id="layer-repeated"),
    pytest.param("bi_sum", ["--layer", "bi"], ["bi"], None, id="bidirectional-name-selects-both"),
    pytest.param("bi_gru", ["--layer", "bi/backward"], ["bi/backward"], None, id="one-direction"),
    pytest.param("nested", ["--layer", "encoder/enc_lstm"], ["encoder/enc_lstm"], None, id="nested-layer"),
    pytest.param("single", ["--gate", "f"], None, ["f"], id="gate"),
    pytest.param("stacked", ["--gate", "i", "--gate", "o", "--layer", "lstm_a"], ["lstm_a"], ["i", "o"], id="gates-and-layer"),
    pytest.param("gru", ["--gate", "r"], None, ["r"], id="gru-gate-both-biases"),
]


@pytest.mark.parametrize("kind,args,layers,gates", FILTERS)
def test_layer_and_gate_filters(saved_model, kind, args, layers, gates):
    case = saved_model(kind, "tfkeras")
    _, rows = parse_csv(_ok(run_cli("weights", case.paths["h5"], "--format", "csv", *args)))
    expected = expected_weight_rows(case.model, layers, gates)
    assert expected
    assert_rows_match(rows, expected)


# ------------------------------------------------------------------ output plumbing


def test_output_file_gets_the_data_and_stdout_nothing(saved_model, tmp_path):
    case = saved_model("stacked", "keras3")
    target = tmp_path / "weights.csv"
    result = run_cli("weights", case.paths["keras"], "--format", "csv", "-o", target)
    assert _ok(result) == ""
    header, rows = parse_csv(target.read_text(encoding="utf-8"))
    assert header == WEIGHT_COLUMNS
    assert_rows_match(rows, expected_weight_rows(case.model))
    assert [p.name for p in tmp_path.iterdir()] == ["weights.csv"]  # no temporary file left behind


def test_output_file_format_follows_its_extension(saved_model, tmp_path):
    case = saved_model("gru", "keras3")
    target = tmp_path / "weights.json"
    assert _ok(run_cli("weights", case.paths["h5"], "-o", target)) == ""
    assert_rows_match(json.loads(target.read_text(encoding="utf-8")), expected_weight_rows(case.model))


def test_piped_output_without_format_is_csv(saved_model):
    case = saved_model("simple_rnn", "keras3")
    text = _ok(run_cli("weights", case.paths["keras"]))  # stdout is a pipe, not a terminal
    header, rows = parse_csv(text)
    assert header == WEIGHT_COLUMNS
    assert_rows_match(rows, expected_weight_rows(case.model))


def test_table_names_gates_and_prints_the_equations(saved_model):
    case = saved_model("stacked", "tfkeras")
    text = _ok(run_cli("weights", case.paths["h5"], "--format", "table"))
    for gate in ("input gate", "forget gate", "candidate", "output gate"):
        assert gate in text
    assert "lstm_a" in text and "lstm_b" in text
    assert "pre = x·kernel + h_prev·recurrent_kernel + bias" in text
    assert "cell = f·cell_prev + i·c" in text
    gru = _ok(run_cli("weights", saved_model("gru", "tfkeras").paths["h5"], "--format", "table"))
    assert "update gate" in gru and "reset gate" in gru and "reset_after=True" in gru


def test_weights_only_file_warns_once_and_still_labels(saved_model, model_dir):
    case = saved_model("bi_concat", "tfkeras")
    path = model_dir / "bi_concat-tfkeras-cli-weights.h5"
    case.model.save_weights(path)
    result = run_cli("weights", path, "--format", "csv")
    assert result.returncode == 0
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstm-inspect: warning:") and "weights-only" in lines[0]
    assert_rows_match(parse_csv(result.stdout.decode())[1], expected_weight_rows(case.model))


# ------------------------------------------------------------------ errors: one line, status 2


def _assert_one_line_error(result, *fragments: str) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert result.stdout == b""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case_id", BAD_FILE_CASES)
def test_unreadable_file(bad_files, case_id):
    path = bad_files[case_id]
    _assert_one_line_error(run_cli("weights", path, "--format", "csv"), path.name)


@pytest.mark.parametrize("backend,suffix", [("keras3", "keras"), ("keras3", "h5"), ("tfkeras", "h5")])
def test_model_without_recurrent_layers(dense_only, backend, suffix):
    path = dense_only[(backend, suffix)]
    _assert_one_line_error(run_cli("weights", path, "--format", "csv"), path.name, "no recurrent layers")


def test_unknown_layer_name(saved_model):
    path = saved_model("stacked", "keras3").paths["keras"]
    _assert_one_line_error(run_cli("weights", path, "--layer", "nope", "--format", "csv"), "'nope'", "lstm_a, lstm_b")


def test_unknown_gate(saved_model):
    path = saved_model("gru", "keras3").paths["keras"]
    _assert_one_line_error(run_cli("weights", path, "--gate", "f", "--format", "csv"), "f")
