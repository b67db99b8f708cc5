"""``verify``: replay a model in NumPy and compare every layer's output with Keras itself.

TensorFlow is imported here and only here (and only when ``verify`` runs).
The file is loaded with the Keras that fits it: Keras 3 for files saved by
Keras 3, tf-keras for Keras 1/2 files.  Loading a model with Keras can run
code stored in it (a Lambda layer's marshalled bytecode in an .h5 file), so
a model with a Lambda layer is never handed to Keras: its replay is reported
alone, as for files Keras cannot load.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .engine import ReplayOptions, compile_model
from .errors import UsageProblem
from .inputs import InputSequence
from .model import Model

VERIFY_COLUMNS = ["layer", "output", "shape", "max_abs_diff", "tolerance", "status"]


@dataclass
class LayerCheck:
    layer: str
    output: int
    shape: tuple[int, ...]
    max_abs_diff: float | None  # None: not compared
    status: str  # "ok" | "MISMATCH" | "replay only" | "not compared: ..."


@dataclass
class VerifyResult:
    checks: list[LayerCheck]
    tolerance: float
    keras: str | None  # "keras 3.15.1" / "tf_keras 2.21.0", or None when Keras did not load the file
    note: str | None = None  # why Keras was not used, if it was not
    notes: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> list[LayerCheck]:
        return [c for c in self.checks if c.status == "MISMATCH"]

    @property
    def largest(self) -> LayerCheck | None:
        compared = [c for c in self.checks if c.max_abs_diff is not None]
        return max(compared, key=lambda c: c.max_abs_diff) if compared else None


def verify(
    model: Model,
    sequences: Sequence[InputSequence],
    *,
    tolerance: float = 1e-5,
    options: ReplayOptions | None = None,
) -> VerifyResult:
    """Compare the NumPy replay of every top-level layer with Keras' own outputs."""
    options = options or ReplayOptions()
    program = compile_model(model, options)  # before TensorFlow: a model we cannot replay stops here
    with _quiet_stderr():
        keras_mod, keras_name = _import_keras(model)
        keras_model, note = _load_with_keras(model, keras_mod, keras_name)
    comparable = _comparable_layers(model, keras_model)
    stateful_steps = _stateful_piece_length(model)
    if stateful_steps:
        pieces = [InputSequence(f"{s.id}:{k}", s.values[i : i + stateful_steps])
                  for s in sequences for k, i in enumerate(range(0, s.values.shape[0], stateful_steps))]
        groups = [[p] for p in pieces]
    else:
        groups = _equal_length_groups(sequences)
    diffs: dict[tuple[str, int], float] = {}
    shapes: dict[tuple[str, int], tuple[int, ...]] = {}
    probe = None
    if keras_model is not None and comparable:
        probe = _probe_model(keras_mod, keras_model, comparable)
        if stateful_steps:
            _reset_states(keras_model)
    states: dict[str, list[NDArray]] = {}
    for group in groups:
        x = np.stack([s.values for s in group])
        run = program.run(x, trace=[], keep_outputs=True, states=states if stateful_steps else None)
        for _ in run:
            pass
        if stateful_steps:
            states = run.final_states
        with _quiet_stderr():
            expected = _keras_outputs(probe, x, program) if probe is not None else {}
        for name, outputs in run.layer_outputs.items():
            for index, value in enumerate(outputs):
                key = (name, index)
                shapes[key] = tuple(value.shape)
                if key in expected:
                    theirs = expected[key]
                    if theirs.shape != value.shape:
                        diffs[key] = float("inf")
                    else:
                        diff = float(np.max(np.abs(theirs.astype(np.float64) - value.astype(np.float64)))) if value.size else 0.0
                        diffs[key] = max(diffs.get(key, 0.0), diff)
    checks = []
    for spec in model.graph.layers:
        if spec.class_name == "InputLayer":
            continue
        for index in range(_count_outputs(shapes, spec.name)):
            key = (spec.name, index)
            if key in diffs:
                status = "ok" if diffs[key] <= tolerance else "MISMATCH"
                checks.append(LayerCheck(spec.name, index, shapes[key], diffs[key], status))
            elif keras_model is None:
                checks.append(LayerCheck(spec.name, index, shapes[key], None, "replay only"))
            else:
                reason = "inside a nested model" if spec.container else "not an output Keras exposes"
                checks.append(LayerCheck(spec.name, index, shapes[key], None, f"not compared: {reason}"))
    version = f"{keras_name} {getattr(keras_mod, '__version__', '?')}" if keras_model is not None else None
    return VerifyResult(checks, tolerance, version, note)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence TensorFlow's C++ start-up logging (it writes to fd 2 directly); errors still raise."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _count_outputs(shapes: dict, name: str) -> int:
    return sum(1 for key in shapes if key[0] == name)


def _import_keras(model: Model):
    """Keras 3 for Keras 3 files, tf-keras for older ones; a UsageProblem if not installed."""
    major = model.keras_major
    use_tf_keras = major is not None and major < 3 or (major is None and model.file.container == "h5")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        if use_tf_keras:
            import tf_keras as keras_mod

            return keras_mod, "tf_keras"
        import keras as keras_mod

        return keras_mod, "keras"
    except ImportError:
        raise UsageProblem(
            "verify needs TensorFlow and Keras: pip install 'lstm-inspect[verify]' "
            "(tensorflow and tf-keras)"
        ) from None


def _load_with_keras(model: Model, keras_mod, keras_name: str):
    if model.weights_only:
        return None, "a weights-only file holds no architecture for Keras to load"
    unsafe = sorted({spec.class_name for spec in _all_specs(model) if spec.class_name == "Lambda"})
    if unsafe or _holds_code(model.file.config):
        return None, "the model has a Lambda layer: Keras would run its stored code, so it is not loaded"
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if keras_name == "keras":
                loaded = keras_mod.saving.load_model(model.path, compile=False, safe_mode=True)
            else:
                loaded = keras_mod.models.load_model(model.path, compile=False)
    except Exception as exc:  # Keras' own refusal, whatever its type
        text = " ".join(str(exc).split())
        return None, f"{keras_name} {getattr(keras_mod, '__version__', '')} cannot load it: {text[:200]}"
    return loaded, None


# What a config holds when it carries Python code: a Lambda layer (Keras 1/2/tf-keras marshal
# its function, Keras 3 writes "__lambda__" objects), wherever it is nested (an RNN's cell, a
# wrapper, a layer's output_shape or mask, an activation).
_CODE_CLASSES = {"Lambda", "__lambda__"}
_CODE_KEYS = {"function_type", "output_shape_type", "mask_type"}


def _holds_code(config: Any) -> bool:
    """Whether any object in the raw config (walked without recursion) could carry code."""
    stack = [config]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            class_name = value.get("class_name")
            if (isinstance(class_name, str) and class_name in _CODE_CLASSES) or _CODE_KEYS & value.keys():
                return True
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _all_specs(model: Model):
    for spec in model.graph.layers:
        yield spec
        yield from spec.children.values()


def _comparable_layers(model: Model, keras_model) -> list[str]:
    if keras_model is None:
        return []
    names = {layer.name for layer in keras_model.layers}
    return [spec.name for spec in model.graph.layers if not spec.container and spec.name in names
            and spec.class_name != "InputLayer"]


def _probe_model(keras_mod, keras_model, names: list[str]):
    """A Keras model returning every named layer's output(s), flattened; with their keys."""
    outputs, keys = [], []
    for name in names:
        out = keras_model.get_layer(name).output
        parts = list(out) if isinstance(out, (list, tuple)) else [out]
        for index, part in enumerate(parts):
            outputs.append(part)
            keys.append((name, index))
    return keras_mod.Model(keras_model.inputs, outputs), keys


def _keras_outputs(probe, x: NDArray, program) -> dict[tuple[str, int], NDArray]:
    model, keys = probe
    if program.input_spec.token_ids:
        feed = (x[..., 0] if x.ndim == 3 else x).astype("int32")
    else:
        feed = x.astype("float32")
    result = model.predict(feed, verbose=0, batch_size=len(feed))
    parts = list(result) if isinstance(result, (list, tuple)) else [result]
    return {key: np.asarray(part) for key, part in zip(keys, parts)}


def _reset_states(keras_model) -> None:
    for layer in keras_model.layers:
        if getattr(layer, "stateful", False) and hasattr(layer, "reset_states"):
            layer.reset_states()


def _stateful_piece_length(model: Model) -> int | None:
    """A stateful model with a fixed batch is fed its declared number of steps per call."""
    if model.graph.batch_size is None:
        return None
    if not any(layer.stateful for layer in model.recurrent_layers()):
        return None
    shape = model.graph.input_shape
    return int(shape[0]) if shape and shape[0] else None


def _equal_length_groups(sequences: Sequence[InputSequence]) -> list[list[InputSequence]]:
    groups: list[list[InputSequence]] = []
    for sequence in sequences:
        if groups and groups[-1][0].values.shape == sequence.values.shape:
            groups[-1].append(sequence)
        else:
            groups.append([sequence])
    return groups


def result_rows(result: VerifyResult) -> list[dict[str, Any]]:
    return [
        {
            "layer": check.layer,
            "output": check.output,
            "shape": "×".join(str(d) for d in check.shape),
            "max_abs_diff": check.max_abs_diff,
            "tolerance": result.tolerance,
            "status": check.status,
        }
        for check in result.checks
    ]


def summary(result: VerifyResult) -> str:
    if result.keras is None:
        return f"verify: {result.note}; reporting the NumPy replay alone"
    largest = result.largest
    compared = sum(1 for c in result.checks if c.max_abs_diff is not None)
    if result.mismatches:
        names = ", ".join(sorted({c.layer for c in result.mismatches}))
        return (f"verify: MISMATCH against {result.keras}: {len(result.mismatches)} output(s) differ by more than "
                f"{result.tolerance:g} ({names}); largest {largest.max_abs_diff:.3g} at {largest.layer}")
    if largest is None:
        return f"verify: {result.keras} loaded the file, but no layer output could be compared"
    return (f"verify: {compared} layer output(s) match {result.keras} within {result.tolerance:g} "
            f"(largest difference {largest.max_abs_diff:.3g} at {largest.layer})")

