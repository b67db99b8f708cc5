"""Shared fixtures: Keras models built at test time, saved, and Keras' own outputs.

Expected numbers always come from Keras (Keras 3 or tf-keras 2.x) at test
time, or from an independent float64 computation in the test; never from a
file lstm-inspect wrote.

``saved_model(kind, backend)`` builds a model of a named kind (see
``MODEL_KINDS``) with seeded random weights, saves it (Keras 3: ``.keras``
and ``.h5``; tf-keras: ``.h5``) and returns a :class:`SavedCase` holding the
paths, the live Keras model and an input batch.  Cases are kept for the
session, and the saved files on disk between runs (``keras_cache.py``: keyed by
the Keras, TensorFlow, NumPy and h5py versions and by this file's source); a
run that finds them loads the live model from them with Keras when a test asks
for it.

``run_cli`` runs the command in this process (fast); ``run_process`` and
``run_cli_many`` in real processes, for pipes, signals, environment variables
and anything C code could print straight to file descriptor 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from keras_cache import cached_files

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"


def sample_inputs(model: Path) -> list:
    """What feeds a shipped sample model on the command line: its INPUT arguments, and ``--from``
    where a layer cannot be replayed (the Lambda sample).  Every shipped model is listed, so a new
    sample model without an entry fails here rather than being left out of the every-model tests."""
    s = SAMPLES
    special = {
        "conv_lstm.keras": [s / "conv_lstm.npy"],
        "lambda_scaled.keras": [s / "lambda_scaled.csv", "--from", "lstm"],
        "seq2seq.keras": [f"encoder_inputs={s / 'seq2seq_encoder.csv'}", f"decoder_inputs={s / 'seq2seq_decoder.csv'}"],
        "seq2seq_decoder.keras": [f"decoder_inputs={s / 'seq2seq_decoder.csv'}", f"h_in={s / 'seq2seq_decoder_h.csv'}",
                                  f"c_in={s / 'seq2seq_decoder_c.csv'}"],
    }
    if model.name in special:
        return special[model.name]
    data = model.with_suffix(".csv")
    assert data.exists(), f"{model.name}: no sample input; give it one in conftest.sample_inputs"
    return [data]


SAMPLE_MODEL_FILES = sorted(SAMPLES.glob("*.keras")) + sorted(SAMPLES.glob("*.h5"))
def _wild_models() -> Path:
    """The shared real-world corpus: ../shared/wild_models beside the checkout (or
    LSTM_INSPECT_WILD_MODELS); tests that need it skip, saying so, when it is absent."""
    candidates = [os.environ.get("LSTM_INSPECT_WILD_MODELS"), ROOT.parent / "shared" / "wild_models",
                  "/work/shared/wild_models"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "manifest.json").exists():
            return Path(candidate)
    return ROOT.parent / "shared" / "wild_models"


WILD = _wild_models()
CLI = [sys.executable, "-m", "lstm_inspect"]

STEPS = 7
FEATURES = 3


def keras_module(backend: str):
    """``keras`` (Keras 3) or ``tf_keras`` (Keras 2 API), with its layers module."""
    if backend == "keras3":
        import keras

        return keras, keras.layers
    import tf_keras

    return tf_keras, tf_keras.layers


# Each builder takes (keras, layers) and returns a compiled-free model.  Names are
# stable so tests can refer to layers.
def _single(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.LSTM(5, name="lstm")])


def _stacked(K, L):
    return K.Sequential(
        [
            K.Input((STEPS, FEATURES)),
            L.LSTM(5, return_sequences=True, name="lstm_a"),
            L.LSTM(4, name="lstm_b"),
            L.Dense(3, activation="softmax", name="head"),
        ]
    )


def _relu_hard(K, L):
    return K.Sequential(
        [
            K.Input((STEPS, FEATURES)),
            L.LSTM(5, activation="relu", recurrent_activation="hard_sigmoid", return_sequences=True, name="lstm"),
        ]
    )


def _backwards(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.LSTM(5, go_backwards=True, return_sequences=True, name="lstm")])


def _no_bias(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.LSTM(5, use_bias=False, return_sequences=True, name="lstm")])


def _bidirectional(mode):
    def build(K, L):
        inputs = K.Input((STEPS, FEATURES))
        outputs = L.Bidirectional(L.LSTM(4, return_sequences=True, name="inner"), merge_mode=mode, name="bi")(inputs)
        return K.Model(inputs, outputs)

    return build


def _bidirectional_last(K, L):
    return K.Sequential(
        [K.Input((STEPS, FEATURES)), L.Bidirectional(L.LSTM(4, name="inner"), name="bi"), L.Dense(2, name="head")]
    )


def _stateful(K, L):
    inputs = K.Input(batch_shape=(1, 1, 1))
    hidden = L.LSTM(10, stateful=True, name="lstm")(inputs)
    return K.Model(inputs, L.Dense(3, activation="softmax", name="head")(hidden))


def _embedding(K, L):
    return K.Sequential(
        [K.Input((STEPS,)), L.Embedding(20, 4, mask_zero=True, name="embedding"), L.LSTM(5, name="lstm")]
    )


def _masking(K, L):
    return K.Sequential(
        [
            K.Input((STEPS, FEATURES)),
            L.Masking(name="masking"),
            L.LSTM(5, return_sequences=True, name="lstm"),
            L.TimeDistributed(L.Dense(2), name="td"),
        ]
    )


def _nested(K, L):
    inner = K.Sequential([L.LSTM(4, return_sequences=True, name="enc_lstm"), L.Dense(3, name="enc_dense")], name="encoder")
    inputs = K.Input((STEPS, FEATURES))
    x = inner(inputs)
    return K.Model(inputs, L.LSTM(3, name="top_lstm")(x))


def _gru(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.GRU(5, return_sequences=True, name="gru")])


def _gru_reset_before(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.GRU(5, reset_after=False, return_sequences=True, name="gru")])


def _simple_rnn(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.SimpleRNN(5, return_sequences=True, name="rnn")])


def _bi_gru(K, L):
    return K.Sequential([K.Input((STEPS, FEATURES)), L.Bidirectional(L.GRU(4, return_sequences=True), name="bi")])


MODEL_KINDS: dict[str, Callable] = {
    "single": _single,
    "stacked": _stacked,
    "relu_hard": _relu_hard,
    "backwards": _backwards,
    "no_bias": _no_bias,
    "bi_concat": _bidirectional("concat"),
    "bi_sum": _bidirectional("sum"),
    "bi_ave": _bidirectional("ave"),
    "bi_mul": _bidirectional("mul"),
    "bi_none": _bidirectional(None),
    "bi_last": _bidirectional_last,
    "stateful": _stateful,
    "embedding": _embedding,
    "masking": _masking,
    "nested": _nested,
    "gru": _gru,
    "gru_reset_before": _gru_reset_before,
    "simple_rnn": _simple_rnn,
    "bi_gru": _bi_gru,
}


@dataclass
class SavedCase:
    kind: str
    backend: str  # "keras3" | "tfkeras"
    paths: dict[str, Path] = field(default_factory=dict)  # "keras" / "h5" -> file
    x: np.ndarray | None = None  # an input batch that fits the model
    built: object = None  # the model Keras built, when this run built it (not read from the cache)

    @property
    def model(self):
        """The live Keras model: the one built in this run, or Keras' own load of the saved file."""
        if self.built is None:
            self.built = load_with_keras(self.backend, self.paths["keras" if self.backend == "keras3" else "h5"])
        return self.built

    def files(self):
        return list(self.paths.items())


def load_with_keras(backend: str, path: Path):
    """The model in ``path`` as Keras loads it (Keras 3 for .keras, tf-keras for its .h5)."""
    K, _ = keras_module(backend)
    if backend == "keras3":
        return K.saving.load_model(path, compile=False)
    return K.models.load_model(path, compile=False)


def randomise(model, seed: int, scale: float = 0.5) -> None:
    """Seeded random weights for every layer (Keras initialisers are not what we test)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0.0, scale, w.shape).astype("float32") for w in weights])


def input_for(kind: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    if kind == "stateful":
        return rng.normal(size=(1, 1, 1)).astype("float32")
    if kind == "embedding":
        ids = rng.integers(1, 20, size=(3, STEPS))
        ids[0, :3] = 0  # left padding: masked steps
        ids[2, -2:] = 0  # trailing padding
        return ids.astype("int32")
    x = rng.normal(size=(3, STEPS, FEATURES)).astype("float32")
    if kind == "masking":
        x[0, 2:4] = 0.0
        x[1, 5:] = 0.0
        x[2, :2] = 0.0
    return x


_CACHE: dict[tuple[str, str], SavedCase] = {}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def saved_model() -> Callable[[str, str], SavedCase]:
    """Factory: ``saved_model(kind, backend)`` -> SavedCase (cached per session, and its files on
    disk between runs: see keras_cache.py)."""

    def make(kind: str, backend: str = "keras3") -> SavedCase:
        key = (kind, backend)
        if key in _CACHE:
            return _CACHE[key]
        stem = f"{kind}-{backend}"
        suffixes = ("keras", "h5") if backend == "keras3" else ("h5",)
        case = SavedCase(kind, backend, x=input_for(kind))

        def build_and_save(folder: Path) -> None:
            K, L = keras_module(backend)
            case.built = MODEL_KINDS[kind](K, L)
            randomise(case.built, seed=zlib.crc32(kind.encode()) % 1000)
            for suffix in suffixes:
                case.built.save(folder / f"{stem}.{suffix}")

        folder = cached_files(f"models/{stem}", build_and_save)  # saved once per Keras version and generators
        case.paths = {suffix: folder / f"{stem}.{suffix}" for suffix in suffixes}
        _CACHE[key] = case
        return case

    return make


@dataclass
class CliRun:
    """One run of the command, shaped like ``subprocess.CompletedProcess`` (stdout and stderr as bytes)."""

    args: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes


@contextmanager
def _working_directory(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_cli(*args, input: bytes | None = None, env: dict | None = None, cwd: Path | None = None) -> CliRun:
    """Run ``lstm-inspect ARGS`` in this process, through the real entry point ``cli.main``.

    stdin, stdout and stderr are Click's test streams (bytes), so the exit
    status, the one-line errors and the data are those a shell would see,
    without the second or so a new interpreter costs.  With ``env`` (which
    must reach a fresh interpreter, e.g. a PYTHONPATH blocker) it is a real
    process: see ``run_process``, also for pipes, signals and anything that
    C code could print straight to file descriptor 2.
    """
    if env is not None:
        return run_process(*args, input=input, env=env, cwd=cwd)
    from reference import invoke

    argv = [str(a) for a in args]
    with _working_directory(cwd or ROOT):
        result = invoke(*argv, input=input)
    return CliRun(argv, result.exit_code, result.stdout_bytes, result.stderr_bytes)


def run_process(*args, input: bytes | None = None, env: dict | None = None,
                cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real command in a subprocess; returns the CompletedProcess (bytes)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        CLI + [str(a) for a in args], input=input, capture_output=True, env=full_env, cwd=cwd or ROOT, timeout=300,
        check=False,
    )


# --------------------------------------------------------------------------------------------
# Keras as the oracle for labelled weights (test_reading, test_weights, test_cli_weights,
# test_cli_layers).  Everything here is read from the live Keras model, never from our output.

# Where each gate's block sits in the fused tensors, as the issue and Keras' cells define it.
GATE_ORDER = {"LSTM": ("i", "f", "c", "o"), "GRU": ("z", "r", "c"), "SimpleRNN": ("h",)}

# (backend, file suffix): Keras 3 writes .keras and .h5, tf-keras 2.x writes .h5.
FILE_FORMATS = (("keras3", "keras"), ("keras3", "h5"), ("tfkeras", "h5"))


def kind_format_params(kinds=None, formats=FILE_FORMATS) -> list:
    """pytest params (kind, backend, suffix) with ids like ``bi_sum-tfkeras.h5``."""
    return [
        pytest.param(kind, backend, suffix, id=f"{kind}-{backend}.{suffix}")
        for kind in (kinds or list(MODEL_KINDS))
        for backend, suffix in formats
    ]


def keras_recurrent_layers(model, prefix: str = "") -> list[tuple[str, object]]:
    """Every recurrent layer of a live Keras model as (our expected name, Keras layer).

    A Bidirectional gives ``<name>/forward`` and ``<name>/backward`` (its
    ``forward_layer`` / ``backward_layer``); a nested model's layers are
    ``<model>/<layer>``.
    """
    found = []
    for layer in model.layers:
        cls = type(layer).__name__
        if cls == "Bidirectional":
            found.append((f"{prefix}{layer.name}/forward", layer.forward_layer))
            found.append((f"{prefix}{layer.name}/backward", layer.backward_layer))
        elif cls in GATE_ORDER:
            found.append((f"{prefix}{layer.name}", layer))
        elif hasattr(layer, "layers"):  # a nested Sequential / Functional model
            found.extend(keras_recurrent_layers(layer, f"{prefix}{layer.name}/"))
    return found


def keras_tensors(layer) -> dict[str, np.ndarray]:
    """A Keras recurrent layer's weights by name (from ``layer.weights`` and ``get_weights()``).

    A reset_after GRU's (2, 3U) bias is split as the issue labels it: row 0
    ``bias``, row 1 ``recurrent_bias``.
    """
    names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
    tensors = dict(zip(names, layer.get_weights()))
    assert set(tensors) <= {"kernel", "recurrent_kernel", "bias"}, names
    bias = tensors.get("bias")
    if bias is not None and bias.ndim == 2:
        tensors["bias"], tensors["recurrent_bias"] = bias[0], bias[1]
    return tensors


def expected_weight_rows(model, layers=None, gates=None) -> dict[tuple, tuple[np.float32, int]]:
    """Every recurrent weight of a live Keras model, as the `weights` command must label it.

    Key ``(layer, tensor, gate, unit, source)`` (source None for biases) ->
    ``(value as float32, column in the stored tensor)``: gate ``g`` of unit
    ``u`` is column ``g*U + u``.  ``layers`` filters by name (a Bidirectional's
    name selects both directions), ``gates`` by letter.
    """
    rows = {}
    for name, layer in keras_recurrent_layers(model):
        if layers and not any(name in (want, f"{want}/forward", f"{want}/backward") for want in layers):
            continue
        units = layer.units if hasattr(layer, "units") else layer.cell.units
        gate_names = GATE_ORDER[type(layer).__name__]
        for tensor, array in keras_tensors(layer).items():
            for g, gate in enumerate(gate_names):
                if gates and gate not in gates:
                    continue
                for unit in range(units):
                    column = g * units + unit
                    if array.ndim == 2:
                        for source in range(array.shape[0]):
                            rows[(name, tensor, gate, unit, source)] = (np.float32(array[source, column]), column)
                    else:
                        rows[(name, tensor, gate, unit, None)] = (np.float32(array[column]), column)
    return rows


def model_file(saved_model, kind: str, backend: str, suffix: str) -> tuple[SavedCase, Path]:
    """The saved case and the path of its file in the given format."""
    case = saved_model(kind, backend)
    return case, case.paths[suffix]


# Files that are not readable models (ids of the ``bad_files`` fixture).
BAD_FILE_CASES = ["missing", "random-bytes", "empty", "truncated-keras3.h5", "truncated-tfkeras.h5", "truncated-keras3.keras"]


@pytest.fixture(scope="session")
def bad_files(saved_model, model_dir):
    """Damaged or foreign files: {case id: path}."""
    folder = model_dir / "bad"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    noise = b"\x00" + noise[1:]  # never a zip or HDF5 signature
    files = {"missing": folder / "missing.h5"}
    (folder / "noise.h5").write_bytes(noise)
    files["random-bytes"] = folder / "noise.h5"
    (folder / "empty.keras").write_bytes(b"")
    files["empty"] = folder / "empty.keras"
    for backend, suffix in (("keras3", "h5"), ("tfkeras", "h5"), ("keras3", "keras")):
        data = saved_model("stacked", backend).paths[suffix].read_bytes()
        target = folder / f"truncated-{backend}.{suffix}"
        target.write_bytes(data[: len(data) // 2])
        files[f"truncated-{backend}.{suffix}"] = target
    return files


@pytest.fixture(scope="session")
def dense_only(model_dir):
    """A Dense-only model saved in every format: {(backend, suffix): path}."""
    paths = {}
    for backend in ("keras3", "tfkeras"):
        K, L = keras_module(backend)
        model = K.Sequential([K.Input((STEPS, FEATURES)), L.Flatten(name="flat"), L.Dense(2, name="head")])
        for suffix in (("keras", "h5") if backend == "keras3" else ("h5",)):
            path = model_dir / f"dense_only-{backend}.{suffix}"
            model.save(path)
            paths[(backend, suffix)] = path
    return paths


# Wrappers whose settings `layers` reads from the wrapped layer.
WRAPPERS = ("Bidirectional", "TimeDistributed")


def keras_layer_rows(model, version: str, prefix: str = "") -> list[dict]:
    """The `layers` row Keras implies for each layer (InputLayers aside; nested models inlined)."""
    rows = []
    for layer in model.layers:
        cls = type(layer).__name__
        if cls == "InputLayer":
            continue
        if cls not in WRAPPERS and hasattr(layer, "layers"):
            rows.extend(keras_layer_rows(layer, version, f"{prefix}{layer.name}/"))
            continue
        inner = layer.forward_layer if cls == "Bidirectional" else layer.layer if cls == "TimeDistributed" else layer
        config = inner.get_config()
        recurrent = type(inner).__name__ in GATE_ORDER
        shapes = []
        for variable, value in zip(layer.weights, layer.get_weights()):
            shapes.append((variable.name.split("/")[-1].split(":")[0], tuple(value.shape)))
        rows.append(
            {
                "name": f"{prefix}{layer.name}",
                "class": cls if inner is layer else f"{cls}({type(inner).__name__})",
                "units": config.get("units"),
                "activation": config.get("activation"),
                "recurrent_activation": config.get("recurrent_activation") if recurrent else None,
                "return_sequences": config["return_sequences"] if recurrent else None,
                "go_backwards": config["go_backwards"] if recurrent else None,
                "stateful": config["stateful"] if recurrent else None,
                "use_bias": config.get("use_bias"),
                "params": layer.count_params(),
                "weight_shapes": shapes,
                "keras_version": version,
                "initial_state": "zeros" if recurrent else None,  # these models wire no state
            }
        )
    return rows


def parse_weight_shapes(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """``"forward.kernel 3×16; forward.bias 16"`` -> [("kernel", (3, 16)), ("bias", (16,))]."""
    result = []
    for part in filter(None, (text or "").split("; ")):
        name, dims = part.rsplit(" ", 1)
        result.append((name.rsplit(".", 1)[-1], tuple(int(d) for d in dims.split("×"))))
    return result


def run_cli_many(commands: list[tuple], env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """``run_process`` for several argument tuples at once, one process each, in order of the input.

    For the tests that need real processes (nothing but the tool's own line may
    reach file descriptor 2): runs them across the CPUs instead of one after another.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(lambda args: run_process(*args, env=env), commands))


def pytest_addoption(parser):
    """``--fuzz-seconds`` / ``--fuzz-seed`` for tests/test_fuzz.py (``make fuzz`` gives it a minute)."""
    parser.addoption("--fuzz-seconds", type=float, default=10.0,
                     help="time budget of tests/test_fuzz.py, shared by its targets (default 10)")
    parser.addoption("--fuzz-seed", type=int, default=None,
                     help="seed of the fuzz mutations (default: a new one each run, printed with any finding)")


# Fixtures that hand a test a model built by Keras: a test that takes one compares lstm-inspect
# with Keras, and is marked ``keras_oracle``.  Modules that compare with Keras through other
# means (test_verify: Keras inside the command) carry the mark themselves.
KERAS_FIXTURES = {"saved_model", "tanh_hard", "weights_only_file", "dense_only"}


def pytest_collection_modifyitems(config, items):
    """Mark the Keras comparisons, so that ``.ci/run`` can rerun them under another BLAS kernel
    (``pytest -m "docs or keras_oracle"``)."""
    for item in items:
        if KERAS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.keras_oracle)
