"""`export`: each layout proven by the software that reads it.

* ``pytorch``: the arrays are loaded with ``load_state_dict`` into the
  ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` the metadata names, run on the input,
  and must give the hidden sequence ``trace`` gives (``trace_arrays``)
  within 1e-5.
* ``onnx``: W, R, B feed an ONNX ``LSTM`` / ``GRU`` / ``RNN`` node with the
  attributes recorded in the metadata, run by onnxruntime; same check.
* ``gates``: every array equals the slice of Keras' own weights (read from
  the live Keras layer).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import SAMPLES, keras_recurrent_layers, keras_tensors, run_cli

import lstm_inspect as li

torch = pytest.importorskip("torch", reason="the pytorch export is proven with torch (pip install -e '.[test]')")
onnx = pytest.importorskip("onnx", reason="the onnx export is proven with onnx + onnxruntime (pip install -e '.[test]')")
ort = pytest.importorskip("onnxruntime", reason="the onnx export is proven with onnxruntime (pip install -e '.[test]')")

TOLERANCE = 1e-5
MAX_DIFF: dict[str, float] = {}  # layout -> the largest difference seen (printed with -s)


def _load_npz(path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path) as data:  # no allow_pickle: everything, metadata included, is plain arrays
        arrays = {key: data[key] for key in data.files}
    metadata = json.loads(str(arrays.pop("__metadata__")))
    return arrays, metadata


def _export(model_path, layout, tmp_path, fmt="npz"):
    out = tmp_path / f"{layout}.{fmt}"
    result = run_cli("export", model_path, "--layout", layout, "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    if fmt == "json":
        document = json.loads(out.read_text())
        metadata = document.pop("__metadata__")
        return {k: np.asarray(v, dtype=np.float32) for k, v in document.items()}, metadata
    return _load_npz(out)


def assert_close_and_record(layout: str, diff: float) -> None:
    """Assert that ``diff`` is within TOLERANCE, and keep the largest per layout for the summary."""
    MAX_DIFF[layout] = max(MAX_DIFF.get(layout, 0.0), diff)
    assert diff <= TOLERANCE, f"{layout}: {diff}"


def _hidden(arrays, name: str, directions: int) -> list[np.ndarray]:
    """Expected hidden sequences (N, T, U), input-row order, per direction."""
    if directions == 2:
        return [arrays[f"{name}/forward"]["hidden"], arrays[f"{name}/backward"]["hidden"]]
    return [arrays[name]["hidden"]]


def _inputs_per_layer(model, arrays, x) -> dict[str, np.ndarray]:
    """Each recurrent layer's input: x for the first, the previous layer's hidden sequence after."""
    result = {}
    previous = x
    for layer in model.recurrent_layers():
        key = layer.wrapper or layer.name
        if key in result:
            continue
        result[key] = previous
        hidden = _hidden(arrays, key, 2 if layer.wrapper else 1)
        previous = np.concatenate(hidden, axis=-1)
    return result


# ------------------------------------------------------------------ pytorch


def _run_torch(info, arrays, x):
    module_name = info["module"].rsplit(".", 1)[-1]
    module = getattr(torch.nn, module_name)(**info["module_kwargs"])
    state = {key.split("/", 1)[1]: torch.from_numpy(np.ascontiguousarray(arrays[key])) for key in info["keys"]}
    module.load_state_dict(state, strict=True)
    data = np.ascontiguousarray(x, dtype=np.float32)
    if info.get("go_backwards"):
        data = data[:, ::-1].copy()
    with torch.no_grad():
        out, _ = module(torch.from_numpy(data))
    out = out.numpy()
    if info.get("go_backwards"):
        out = out[:, ::-1]
    units = info["units"]
    return [out[..., :units], out[..., units:]] if info["module_kwargs"]["bidirectional"] else [out]


PYTORCH_CASES = [
    ("single", "keras3", "keras"),
    ("single", "tfkeras", "h5"),
    ("bi_concat", "keras3", "keras"),
    ("bi_concat", "tfkeras", "h5"),
    ("gru", "keras3", "keras"),
    ("gru", "tfkeras", "h5"),
    ("bi_gru", "keras3", "h5"),
    ("stacked", "keras3", "keras"),
    ("no_bias", "keras3", "keras"),
    ("backwards", "keras3", "keras"),
    ("simple_rnn", "keras3", "keras"),
]


@pytest.mark.parametrize("kind,backend,suffix", PYTORCH_CASES, ids=lambda v: str(v))
def test_pytorch_export_reproduces_trace(saved_model, tmp_path, kind, backend, suffix):
    case = saved_model(kind, backend)
    path = case.paths[suffix]
    arrays, metadata = _export(path, "pytorch", tmp_path)
    assert metadata["layout"] == "pytorch"
    model = li.load_model(str(path))
    traced = li.trace_arrays(model, case.x)
    inputs = _inputs_per_layer(model, traced, case.x)
    assert [info["name"] for info in metadata["layers"]] == list(inputs)
    for info in metadata["layers"]:
        directions = 2 if info["module_kwargs"]["bidirectional"] else 1
        got = _run_torch(info, arrays, inputs[info["name"]])
        for out, want in zip(got, _hidden(traced, info["name"], directions), strict=True):
            assert_close_and_record("pytorch", float(np.abs(out - want).max()))


def test_pytorch_names_shapes_and_gate_order(saved_model, tmp_path):
    """weight_ih_l0 is Keras' kernel transposed (i, f, g, o = i, f, c, o); bias_ih the Keras bias."""
    case = saved_model("bi_concat", "keras3")
    arrays, _ = _export(case.paths["keras"], "pytorch", tmp_path)
    layers = dict(keras_recurrent_layers(case.model))
    for suffix, direction in (("", "forward"), ("_reverse", "backward")):
        keras = keras_tensors(layers[f"bi/{direction}"])
        np.testing.assert_array_equal(arrays[f"bi/weight_ih_l0{suffix}"], keras["kernel"].T)
        np.testing.assert_array_equal(arrays[f"bi/weight_hh_l0{suffix}"], keras["recurrent_kernel"].T)
        np.testing.assert_array_equal(arrays[f"bi/bias_ih_l0{suffix}"], keras["bias"])
        np.testing.assert_array_equal(arrays[f"bi/bias_hh_l0{suffix}"], np.zeros(16, dtype=np.float32))
    assert arrays["bi/weight_ih_l0"].shape == (16, 3) and arrays["bi/weight_hh_l0"].shape == (16, 4)


@pytest.mark.parametrize(
    "kind,message",
    [
        ("gru_reset_before", b"reset_after=False"),
        ("relu_hard", b"torch.nn.LSTM computes sigmoid gates and tanh"),
    ],
)
def test_pytorch_export_refuses_what_it_cannot_map(saved_model, tmp_path, kind, message):
    case = saved_model(kind, "keras3")
    out = tmp_path / "w.npz"
    result = run_cli("export", case.paths["keras"], "--layout", "pytorch", "-o", out)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert b"Traceback" not in result.stderr
    assert not out.exists()


# ------------------------------------------------------------------ onnx


def _run_onnx(info, arrays, x):
    from onnx import TensorProto, helper, numpy_helper

    name = info["name"]
    W, R, B = (np.asarray(arrays[f"{name}/{key}"], dtype=np.float32) for key in "WRB")
    directions, _, units = R.shape
    xs = np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(1, 0, 2))  # (T, N, F)
    node = helper.make_node(info["op_type"], ["X", "W", "R", "B"], ["Y"], **info["attributes"])
    graph = helper.make_graph(
        [node],
        "export_check",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(xs.shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [xs.shape[0], directions, xs.shape[1], units])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"), numpy_helper.from_array(B, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"X": xs})  # (T, dirs, N, U), in input-time order for both directions
    return [y[:, d].transpose(1, 0, 2) for d in range(directions)]


ONNX_CASES = [
    ("single", "keras3", "keras"),
    ("single", "tfkeras", "h5"),
    ("bi_concat", "keras3", "keras"),
    ("bi_concat", "tfkeras", "h5"),
    ("gru", "keras3", "keras"),
    ("gru", "tfkeras", "h5"),
    ("gru_reset_before", "keras3", "keras"),
    ("bi_gru", "keras3", "keras"),
    ("stacked", "keras3", "h5"),
    ("no_bias", "keras3", "keras"),
    ("backwards", "keras3", "keras"),
    ("relu_hard", "keras3", "keras"),  # relu activation, Keras 3 hard_sigmoid (x/6 + 0.5)
    ("relu_hard", "tfkeras", "h5"),  # Keras 2 hard_sigmoid (0.2x + 0.5)
    ("simple_rnn", "keras3", "keras"),
]


@pytest.mark.parametrize("kind,backend,suffix", ONNX_CASES, ids=lambda v: str(v))
def test_onnx_export_reproduces_trace(saved_model, tmp_path, kind, backend, suffix):
    case = saved_model(kind, backend)
    path = case.paths[suffix]
    arrays, metadata = _export(path, "onnx", tmp_path)
    model = li.load_model(str(path))
    traced = li.trace_arrays(model, case.x)
    inputs = _inputs_per_layer(model, traced, case.x)
    for info in metadata["layers"]:
        directions = 2 if info["attributes"]["direction"] == "bidirectional" else 1
        got = _run_onnx(info, arrays, inputs[info["name"]])
        for out, want in zip(got, _hidden(traced, info["name"], directions), strict=True):
            assert_close_and_record("onnx", float(np.abs(out - want).max()))


def test_onnx_attributes_and_gate_order(saved_model, tmp_path):
    case = saved_model("relu_hard", "keras3")
    arrays, metadata = _export(case.paths["keras"], "onnx", tmp_path)
    info = metadata["layers"][0]
    assert info["op_type"] == "LSTM" and info["gate_order"] == "i,o,f,c"
    assert info["attributes"]["activations"] == ["HardSigmoid", "Relu", "Relu"]
    assert info["attributes"]["activation_alpha"] == pytest.approx([1 / 6])
    assert info["attributes"]["activation_beta"] == pytest.approx([0.5])
    keras = keras_tensors(dict(keras_recurrent_layers(case.model))["lstm"])
    U = 5
    i, f, c, o = (keras["kernel"][:, g * U : (g + 1) * U].T for g in range(4))
    np.testing.assert_array_equal(arrays["lstm/W"][0], np.concatenate([i, o, f, c]))
    bias = keras["bias"]
    np.testing.assert_array_equal(arrays["lstm/B"][0][: 4 * U], np.concatenate([bias[:U], bias[3 * U :], bias[U : 2 * U], bias[2 * U : 3 * U]]))
    np.testing.assert_array_equal(arrays["lstm/B"][0][4 * U :], np.zeros(4 * U, dtype=np.float32))

    gru = saved_model("gru_reset_before", "keras3")
    _, metadata = _export(gru.paths["keras"], "onnx", tmp_path)
    assert metadata["layers"][0]["attributes"]["linear_before_reset"] == 0


# ------------------------------------------------------------------ gates, json, metadata


@pytest.mark.parametrize("kind", ["single", "bi_concat", "gru", "gru_reset_before", "simple_rnn", "no_bias", "nested"])
def test_gates_layout_equals_keras_weights(saved_model, tmp_path, kind):
    case = saved_model(kind, "keras3")
    arrays, metadata = _export(case.paths["keras"], "gates", tmp_path)
    expected = {}
    for name, layer in keras_recurrent_layers(case.model):
        order = {"LSTM": ("i", "f", "c", "o"), "GRU": ("z", "r", "c"), "SimpleRNN": ("h",)}[type(layer).__name__]
        units = layer.units
        for tensor, array in keras_tensors(layer).items():
            for g, gate in enumerate(order):
                expected[f"{name}/{tensor}_{gate}"] = array[..., g * units : (g + 1) * units]
    assert set(arrays) == set(expected)
    for key, array in expected.items():
        np.testing.assert_array_equal(arrays[key], array, err_msg=key)
    assert sum(len(info["keys"]) for info in metadata["layers"]) == len(expected)


@pytest.mark.parametrize("layout", ["gates", "pytorch", "onnx"])
def test_json_carries_the_same_arrays_as_npz(saved_model, tmp_path, layout):
    case = saved_model("bi_gru", "keras3")
    npz, npz_meta = _export(case.paths["keras"], layout, tmp_path)
    js, js_meta = _export(case.paths["keras"], layout, tmp_path, fmt="json")
    assert npz_meta == js_meta
    assert list(npz) == list(js)
    for key in npz:
        assert npz[key].shape == js[key].shape, key
        np.testing.assert_array_equal(npz[key], js[key])  # float32 round-trips exactly


def test_json_to_stdout_and_npz_to_a_pipe():
    result = run_cli("export", SAMPLES / "single_lstm.h5", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert np.asarray(document["lstm/kernel_f"]).shape == (3, 4)
    result = run_cli("export", SAMPLES / "single_lstm.h5", "--layout", "onnx")
    assert result.returncode == 0, result.stderr
    with np.load(io.BytesIO(result.stdout)) as data:
        assert data["lstm/W"].shape == (1, 16, 3)


def test_every_sample_model_exports():
    for model in sorted(SAMPLES.glob("*.keras")) + sorted(SAMPLES.glob("*.h5")):
        for layout in ("gates", "pytorch", "onnx"):
            result = run_cli("export", model, "--layout", layout, "--format", "json")
            if layout == "pytorch" and model.name == "keras2_hard_sigmoid.h5":
                assert result.returncode == 2 and b"hard_sigmoid" in result.stderr
                continue
            if layout != "gates" and model.name == "conv_lstm.keras":  # neither framework has a ConvLSTM layer
                assert result.returncode == 2 and b"has no ConvLSTM2D layer" in result.stderr
                continue
            assert result.returncode == 0, (model, layout, result.stderr)
            assert json.loads(result.stdout)["__metadata__"]["layout"] == layout


def test_api_export_weights(saved_model):
    case = saved_model("single", "keras3")
    exported = li.export_weights(li.load_model(str(case.paths["keras"])), "pytorch")
    assert set(exported.arrays) == {"lstm/weight_ih_l0", "lstm/weight_hh_l0", "lstm/bias_ih_l0", "lstm/bias_hh_l0"}
    assert exported.metadata["layers"][0]["module"] == "torch.nn.LSTM"
    buffer = io.BytesIO()
    exported.write(buffer, "npz")
    buffer.seek(0)
    with np.load(buffer) as data:
        np.testing.assert_array_equal(data["lstm/weight_ih_l0"], exported.arrays["lstm/weight_ih_l0"])


def test_export_help():
    result = run_cli("export", "--help")
    assert result.returncode == 0 and b"Exit status" in result.stdout and b"weight_ih_l0" in result.stdout


def test_report_largest_differences():
    """Runs last in this file: the largest differences seen (visible with -s)."""
    for layout, diff in sorted(MAX_DIFF.items()):
        print(f"export {layout}: largest |difference| from trace {diff:.3g}")
        assert diff <= TOLERANCE
