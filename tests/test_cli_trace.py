"""`lstm-inspect trace`: the published columns, the formats, the selections, pipes and -o.

Numbers are checked against Keras (the sample models loaded by Keras 3, or
tf-keras for the Keras 2 file) and against the float64 step equations in
``reference.py``; never against a file lstm-inspect wrote.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import CLI, ROOT, SAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import invoke, keras_steps, read_csv, recurrent_inputs, reference_steps

import lstm_inspect as li
from lstm_inspect.engine import ReplayOptions

TOL = 1e-5
LSTM_COLUMNS = ["sequence", "layer", "t", "unit", "i", "f", "c", "o", "cell", "hidden"]


def trace(*args, input=None) -> pd.DataFrame:
    """Run `lstm-inspect trace ARGS --format csv` (unless a format is given) and parse its stdout."""
    if "--format" not in args and "-f" not in args:
        args = args + ("--format", "csv")
    result = invoke("trace", *args, input=input)
    assert result.exit_code == 0, result.stderr
    # Nothing on stderr but notes (the stateful sample model's feed plan).
    assert all(line.startswith("lstm-inspect: note: ") for line in result.stderr.splitlines()), result.stderr
    fmt = args[args.index("--format") + 1] if "--format" in args else "csv"
    if fmt == "csv":
        return read_csv(result.stdout)
    if fmt == "json":
        return pd.DataFrame(json.loads(result.stdout))
    return pd.DataFrame([json.loads(line) for line in result.stdout.splitlines()])


def arrays_from_long(frame: pd.DataFrame, layer: str, names) -> dict[str, np.ndarray]:
    """(N, T, U) arrays indexed by sequence, input row t and unit, from the long form."""
    rows = frame[frame["layer"] == layer]
    n, t, u = (rows[key].to_numpy(int) for key in ("sequence", "t", "unit"))
    shape = (n.max() + 1, t.max() + 1, u.max() + 1)
    result = {}
    for name in names:
        array = np.full(shape, np.nan)
        array[n, t, u] = rows[name].to_numpy(float)
        result[name] = array
    return result


# ------------------------------------------------------------------ sample models against Keras


def keras_sample(name: str):
    if name == "keras2_hard_sigmoid":
        import tf_keras

        return tf_keras.models.load_model(SAMPLES / f"{name}.h5", compile=False)
    import keras

    return keras.saving.load_model(SAMPLES / f"{name}.keras", compile=False)


def sample_input(name: str) -> np.ndarray:
    x = read_csv((SAMPLES / f"{name}.csv").read_text()).to_numpy()[None]
    return x[..., 0].astype("int32") if name == "embedding_lstm" else x.astype("float32")


SAMPLE_FILES = [
    ("single_lstm", "keras"), ("single_lstm", "h5"), ("stacked_lstm", "keras"), ("stacked_lstm", "h5"),
    ("bidirectional_lstm", "keras"), ("bidirectional_lstm", "h5"), ("embedding_lstm", "keras"),
    ("embedding_lstm", "h5"), ("stateful_lstm", "keras"), ("keras2_hard_sigmoid", "h5"),
]


@pytest.mark.keras_oracle
@pytest.mark.parametrize("name, ext", [pytest.param(n, e, id=f"{n}.{e}") for n, e in SAMPLE_FILES])
def test_sample_trace_equals_keras_and_the_equations(name, ext):
    frame = trace(SAMPLES / f"{name}.{ext}", SAMPLES / f"{name}.csv", "--pre-activation")
    keras_model = keras_sample(name)
    hard = "keras2" if name == "keras2_hard_sigmoid" else "keras3"
    items = recurrent_inputs(keras_model, sample_input(name))
    assert list(dict.fromkeys(frame["layer"])) == [item.name for item in items]
    for item in items:
        got = arrays_from_long(frame, item.name, ["i", "f", "c", "o", "cell", "hidden", "z_i", "z_f", "z_c", "z_o"])
        expected = keras_steps(item.layer, item.x, item.mask)
        np.testing.assert_allclose(got["hidden"], expected.hidden, atol=TOL, err_msg=item.name)
        last = 0 if item.layer.get_config().get("go_backwards") else item.x.shape[1] - 1
        np.testing.assert_allclose(got["cell"][:, last], expected.c, atol=TOL, err_msg=item.name)
        equations = reference_steps(item.layer, item.x, hard, item.mask)
        keep = ~equations["masked"]
        for gate in ["i", "f", "c", "o", "cell"]:
            np.testing.assert_allclose(got[gate], equations[gate], atol=TOL, err_msg=f"{item.name}: {gate}")
        for gate in ["z_i", "z_f", "z_c", "z_o"]:
            np.testing.assert_allclose(got[gate][keep], equations[gate][keep], atol=TOL, err_msg=f"{item.name}: {gate}")


@pytest.mark.keras_oracle
def test_keras2_file_uses_keras2_hard_sigmoid_unless_told():
    x = sample_input("keras2_hard_sigmoid")
    layer = keras_sample("keras2_hard_sigmoid").get_layer("lstm")
    for flag, hard in [((), "keras2"), (("--hard-sigmoid", "keras2"), "keras2"), (("--hard-sigmoid", "keras3"), "keras3")]:
        frame = trace(SAMPLES / "keras2_hard_sigmoid.h5", SAMPLES / "keras2_hard_sigmoid.csv", *flag)
        got = arrays_from_long(frame, "lstm", ["i", "hidden"])
        expected = reference_steps(layer, x, hard)
        np.testing.assert_allclose(got["i"], expected["i"], atol=TOL, err_msg=str(flag))
        np.testing.assert_allclose(got["hidden"], expected["hidden"], atol=TOL, err_msg=str(flag))
    assert not np.allclose(reference_steps(layer, x, "keras2")["i"], reference_steps(layer, x, "keras3")["i"], atol=1e-3)


# ------------------------------------------------------------------ columns and formats


@pytest.mark.parametrize(
    "kind, columns",
    [
        pytest.param("single", LSTM_COLUMNS, id="lstm"),
        pytest.param("gru", ["sequence", "layer", "t", "unit", "z", "r", "c", "hidden"], id="gru"),
        pytest.param("simple_rnn", ["sequence", "layer", "t", "unit", "hidden"], id="simple_rnn"),
        pytest.param("masking", LSTM_COLUMNS + ["masked"], id="masking"),
    ],
)
def test_long_header(saved_model, tmp_path, kind, columns):
    case = saved_model(kind, "keras3")
    path = tmp_path / "x.npy"
    np.save(path, case.x)
    result = invoke("trace", case.paths["keras"], path, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == ",".join(columns)


def test_sample_long_header_is_exactly_the_published_one():
    result = invoke("trace", SAMPLES / "single_lstm.keras", SAMPLES / "single_lstm.csv")  # not a terminal: CSV
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "sequence,layer,t,unit,i,f,c,o,cell,hidden"
    assert len(result.stdout.splitlines()) == 1 + 10 * 4


@pytest.mark.parametrize("name", ["single_lstm", "stacked_lstm", "bidirectional_lstm"])
def test_wide_carries_the_long_numbers(name):
    model, data = SAMPLES / f"{name}.keras", SAMPLES / f"{name}.csv"
    long = trace(model, data)
    wide = trace(model, data, "--wide")
    units = int(long["unit"].max()) + 1
    names = ["i", "f", "c", "o", "cell", "hidden"]
    assert list(wide.columns) == ["sequence", "layer", "t"] + [f"{n}_{u}" for n in names for u in range(units)]
    # One row per (sequence, layer, t), in the long form's order.
    keys = long[["sequence", "layer", "t"]].drop_duplicates().reset_index(drop=True)
    pd.testing.assert_frame_equal(wide[["sequence", "layer", "t"]], keys)
    for layer in keys["layer"].unique():
        from_long = arrays_from_long(long, layer, names)
        rows = wide[wide["layer"] == layer]
        layer_units = from_long["i"].shape[2]
        for n in names:
            block = rows[[f"{n}_{u}" for u in range(units)]].to_numpy(float)
            np.testing.assert_array_equal(block[:, :layer_units], from_long[n][0][rows["t"].to_numpy(int)])
            assert np.isnan(block[:, layer_units:]).all()  # a narrower layer's missing units are empty


STACKED = li.load_model(str(SAMPLES / "stacked_lstm.keras"))  # lstm_1: 8 units, lstm_2: 4 units


@settings(max_examples=25, deadline=None)
@given(
    x=st.integers(1, 6).flatmap(lambda t: st.lists(st.lists(st.floats(-3, 3, width=32), min_size=3, max_size=3), min_size=t, max_size=t)),
    units=st.none() | st.lists(st.integers(0, 7), min_size=1, max_size=8, unique=True).map(sorted),
    gates=st.none() | st.lists(st.sampled_from(["i", "f", "c", "o", "cell", "hidden"]), min_size=1, max_size=6, unique=True),
    pre_activation=st.booleans(),
)
def test_long_and_wide_carry_the_same_numbers(x, units, gates, pre_activation):
    """Whatever the selection, every long row's value is in the wide row of its (layer, t)."""
    x = np.array(x, dtype=np.float32)
    options = ReplayOptions(pre_activation=pre_activation)
    long = li.trace(STACKED, x, options=options, units=units, gates=gates)
    wide = li.trace(STACKED, x, wide=True, options=options, units=units, gates=gates)
    values = [c for c in long.columns if c not in ("sequence", "layer", "t", "unit")]
    # One wide row per (layer, t); as in the long form, a layer none of whose selected
    # units exists is left out (lstm_1 has 8 units, lstm_2 has 4).
    kept = [layer for layer, width in (("lstm_1", 8), ("lstm_2", 4)) if units is None or any(u < width for u in units)]
    assert wide[["layer", "t"]].values.tolist() == [[layer, t] for layer in kept for t in range(len(x))]
    assert set(long["unit"]) <= set(units if units is not None else range(8))
    merged = long.merge(wide, on=["sequence", "layer", "t"], validate="many_to_one")
    for name in values:
        picked = np.array([merged.at[k, f"{name}_{u}"] for k, u in enumerate(merged["unit"])], dtype=float)
        np.testing.assert_array_equal(picked, merged[name].to_numpy(float), err_msg=name)


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
@pytest.mark.parametrize("wide", [False, True], ids=["long", "wide"])
def test_json_formats_carry_the_csv_numbers(fmt, wide):
    args = (SAMPLES / "stacked_lstm.keras", SAMPLES / "stacked_lstm.csv") + (("--wide",) if wide else ())
    from_csv = trace(*args)
    from_json = trace(*args, "--format", fmt)
    assert list(from_json.columns) == list(from_csv.columns)
    pd.testing.assert_frame_equal(from_json, from_csv, check_dtype=False, rtol=0, atol=0)


def test_masked_steps_are_empty_in_csv_and_null_in_json(saved_model, tmp_path):
    case = saved_model("masking", "keras3")
    path = tmp_path / "x.npy"
    np.save(path, case.x)
    text = invoke("trace", case.paths["keras"], path, "--format", "csv").stdout
    masked_rows = [line for line in text.splitlines()[1:] if line.endswith(",1")]
    assert masked_rows and all(line.split(",")[4:8] == ["", "", "", ""] for line in masked_rows)
    rows = json.loads(invoke("trace", case.paths["keras"], path, "--format", "json").stdout)
    masked = [row for row in rows if row["masked"] == 1]
    assert len(masked) == len(masked_rows)
    assert all(row[g] is None for row in masked for g in "ifco")
    assert all(row["cell"] is not None and row["hidden"] is not None for row in masked)


# ------------------------------------------------------------------ selections


def test_layer_units_gates_select():
    model, data = SAMPLES / "stacked_lstm.keras", SAMPLES / "stacked_lstm.csv"
    full = trace(model, data)
    picked = trace(model, data, "--layer", "lstm_1", "--units", "0,3-5", "--gates", "i,f")
    assert list(picked.columns) == ["sequence", "layer", "t", "unit", "i", "f"]
    assert set(picked["layer"]) == {"lstm_1"}
    assert sorted(set(picked["unit"])) == [0, 3, 4, 5]
    expected = full[(full["layer"] == "lstm_1") & full["unit"].isin([0, 3, 4, 5])][picked.columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(picked, expected)
    wide = trace(model, data, "--layer", "lstm_2", "--units", "1-2", "--gates", "cell,hidden", "--wide")
    assert list(wide.columns) == ["sequence", "layer", "t", "cell_1", "cell_2", "hidden_1", "hidden_2"]


@pytest.mark.parametrize(
    "args, words",
    [
        pytest.param(["--layer", "nope"], ["no recurrent layer named 'nope'", "lstm_1, lstm_2"], id="unknown-layer"),
        pytest.param(["--units", "9"], ["unit 9"], id="unit-out-of-range"),
        pytest.param(["--units", "3-1"], ["0,3-5"], id="bad-range"),
        pytest.param(["--gates", "q"], ["unknown gate", "q"], id="unknown-gate"),
    ],
)
def test_bad_selection_is_a_usage_error(args, words):
    result = invoke("trace", SAMPLES / "stacked_lstm.keras", SAMPLES / "stacked_lstm.csv", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_pre_activation_columns():
    model, data = SAMPLES / "single_lstm.keras", SAMPLES / "single_lstm.csv"
    frame = trace(model, data, "--pre-activation")
    assert list(frame.columns) == LSTM_COLUMNS + ["z_i", "z_f", "z_c", "z_o"]
    sigmoid = lambda z: 1 / (1 + np.exp(-z))
    for gate in "ifo":
        np.testing.assert_allclose(frame[gate], sigmoid(frame[f"z_{gate}"]), atol=TOL)
    np.testing.assert_allclose(frame["c"], np.tanh(frame["z_c"]), atol=TOL)
    picked = trace(model, data, "--pre-activation", "--gates", "i,hidden")
    assert list(picked.columns) == ["sequence", "layer", "t", "unit", "i", "hidden", "z_i"]


def test_bidirectional_directions_are_named_layers():
    frame = trace(SAMPLES / "bidirectional_lstm.h5", SAMPLES / "bidirectional_lstm.csv")
    assert list(dict.fromkeys(frame["layer"])) == ["bi/forward", "bi/backward"]
    steps = len(read_csv((SAMPLES / "bidirectional_lstm.csv").read_text()))
    backward_t = frame.loc[(frame["layer"] == "bi/backward") & (frame["unit"] == 0), "t"].tolist()
    assert backward_t == list(range(steps - 1, -1, -1))  # processing order: last row first
    only_backward = trace(SAMPLES / "bidirectional_lstm.h5", SAMPLES / "bidirectional_lstm.csv", "--layer", "bi/backward")
    assert set(only_backward["layer"]) == {"bi/backward"}
    both = trace(SAMPLES / "bidirectional_lstm.h5", SAMPLES / "bidirectional_lstm.csv", "--layer", "bi")
    pd.testing.assert_frame_equal(both, frame)


# ------------------------------------------------------------------ initial state


@pytest.mark.parametrize("fmt", ["npz", "json"])
def test_initial_state_file_equals_keras(saved_model, tmp_path, fmt):
    case = saved_model("single", "keras3")
    layer = case.model.get_layer("lstm")
    rng = np.random.default_rng(12)
    h, c = rng.normal(size=5).astype("float32"), rng.normal(size=5).astype("float32")
    state = tmp_path / f"state.{fmt}"
    if fmt == "npz":
        np.savez(state, **{"lstm/h": h, "lstm/c": c})
    else:
        state.write_text(json.dumps({"lstm": {"h": h.tolist(), "c": c.tolist()}}))
    data = tmp_path / "x.npy"
    np.save(data, case.x)
    frame = trace(case.paths["h5"], data, "--initial-state", state)
    n = case.x.shape[0]
    expected = keras_steps(layer, case.x, initial_state=[np.tile(h, (n, 1)), np.tile(c, (n, 1))])
    got = arrays_from_long(frame, "lstm", ["hidden", "cell"])
    np.testing.assert_allclose(got["hidden"], expected.hidden, atol=TOL)
    np.testing.assert_allclose(got["cell"][:, -1], expected.c, atol=TOL)
    assert not np.allclose(got["hidden"], keras_steps(layer, case.x).hidden, atol=1e-3)


def test_initial_state_for_a_bidirectional_direction(saved_model, tmp_path):
    case = saved_model("bi_concat", "keras3")
    bi = case.model.get_layer("bi")
    rng = np.random.default_rng(13)
    h, c = rng.normal(size=(2, 4)).astype("float32")
    state = tmp_path / "state.npz"
    np.savez(state, **{"bi/backward/h": h, "bi/backward/c": c})
    data = tmp_path / "x.npy"
    np.save(data, case.x)
    frame = trace(case.paths["keras"], data, "--initial-state", state)
    n = case.x.shape[0]
    backward = keras_steps(bi.backward_layer, case.x, initial_state=[np.tile(h, (n, 1)), np.tile(c, (n, 1))])
    forward = keras_steps(bi.forward_layer, case.x)
    np.testing.assert_allclose(arrays_from_long(frame, "bi/backward", ["hidden"])["hidden"], backward.hidden, atol=TOL)
    np.testing.assert_allclose(arrays_from_long(frame, "bi/forward", ["hidden"])["hidden"], forward.hidden, atol=TOL)


# ------------------------------------------------------------------ pipes and files (real processes)


def shell(command: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(["bash", "-c", command], check=False, capture_output=True, env=env, cwd=ROOT, timeout=120)


def lstm_inspect_command() -> str:
    return " ".join(f"'{part}'" for part in CLI)


def test_stdin_through_a_shell_pipe():
    command = f"cat sample_models/single_lstm.csv | {lstm_inspect_command()} trace sample_models/single_lstm.keras -"
    result = shell(command)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    direct = invoke("trace", SAMPLES / "single_lstm.keras", SAMPLES / "single_lstm.csv", "--format", "csv").stdout
    assert result.stdout.decode() == direct


@pytest.fixture(scope="module")
def long_input(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "long.csv"
    x = np.random.default_rng(1).normal(size=(5000, 3))
    np.savetxt(path, x, delimiter=",", header="x0,x1,x2", comments="", fmt="%.5f")
    return path


@pytest.mark.parametrize("flags", ["", "--wide", "--format json", "--format ndjson"], ids=["csv", "wide", "json", "ndjson"])
def test_head_closes_the_pipe_quietly(long_input, flags):
    """`trace ... | head -3`: the output is far beyond the pipe buffer; exit 0, nothing on stderr."""
    command = (
        f"{lstm_inspect_command()} trace sample_models/single_lstm.keras '{long_input}' {flags} | head -3; "
        'echo "status=${PIPESTATUS[0]}" >&2'
    )
    result = shell(command)
    assert len(result.stdout.decode().splitlines()) == 3
    stderr = result.stderr.decode()
    assert stderr.splitlines() == ["status=0"], stderr
    assert "BrokenPipe" not in stderr and "Traceback" not in stderr


def test_output_file_is_written_atomically(tmp_path):
    target = tmp_path / "trace.csv"
    good = SAMPLES / "single_lstm.csv"
    result = invoke("trace", SAMPLES / "single_lstm.keras", good, "-o", target)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    expected = invoke("trace", SAMPLES / "single_lstm.keras", good, "--format", "csv").stdout
    assert target.read_text() == expected
    # A failing run leaves the existing file as it was, and no temporary file behind.
    bad = tmp_path / "bad.csv"
    bad.write_text("x0,x1,x2\n1,2,3\n4,five,6\n")
    for args in [(bad,), (tmp_path / "missing.csv",), (tmp_path / "two.csv",)]:
        if args[0].name == "two.csv":
            args[0].write_text("a,b\n1,2\n")  # the replay itself refuses it (2 features, not 3)
        result = invoke("trace", SAMPLES / "single_lstm.keras", *args, "-o", target)
        assert result.exit_code == 2
        assert target.read_text() == expected
    # A failing run with no existing file creates none.
    fresh = tmp_path / "fresh.csv"
    result = invoke("trace", SAMPLES / "single_lstm.keras", tmp_path / "two.csv", "-o", fresh)
    assert result.exit_code == 2
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "trace.csv", "two.csv"]


def test_output_file_format_from_extension(tmp_path):
    target = tmp_path / "trace.json"
    result = invoke("trace", SAMPLES / "single_lstm.keras", SAMPLES / "single_lstm.csv", "-o", target)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(target.read_text())
    assert list(rows[0]) == LSTM_COLUMNS


def test_output_fails_mid_stream_leaves_no_file(tmp_path):
    """An error found after rows were written (a later batch's bad token) still leaves no file."""
    data = tmp_path / "tokens.csv"
    data.write_text("id,token\na,3\na,4\nb,5\nb,6\nb,7\nc,99\n")  # c: a later batch, id out of range
    target = tmp_path / "out.csv"
    result = invoke("trace", SAMPLES / "embedding_lstm.keras", data, "--sequence-column", "id", "-o", target)
    assert result.exit_code == 2
    assert "99" in result.stderr
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.csv"]


def test_real_process_success_has_empty_stderr():
    result = subprocess.run(
        CLI + ["trace", str(SAMPLES / "single_lstm.h5"), str(SAMPLES / "single_lstm.csv")],
        check=False, capture_output=True, cwd=ROOT, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0
    assert result.stderr == b""
    assert result.stdout.decode().startswith("sequence,layer,t,unit,i,f,c,o,cell,hidden\n")
