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
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .batching import Inputs, Sample, plan_inputs
from .engine import ReplayOptions, compile_model
from .errors import UnsupportedLayer, UsageProblem
from .feeding import Feed, stateful_batch_shape
from .model import Model

if TYPE_CHECKING:
    from .config import LayerSpec

VERIFY_COLUMNS = ["layer", "output", "shape", "max_abs_diff", "tolerance", "status", "keras_vs_float64", "replay_vs_float64"]

# float32 drift: both float32 results (Keras' and the replay's) are within this factor of equally far from
# a float64 replay, or below the floor of a few float32 steps at the output's scale.
DRIFT_RATIO = 10.0
DRIFT_FLOOR = 2.0**-20  # times max(1, largest |output|): 8 float32 ulps of 1.0


@dataclass
class LayerCheck:
    """One compared output of one layer: the largest absolute difference between the replay and
    Keras, and its status (ok, drift, MISMATCH, replay only, or not compared and why)."""

    layer: str
    output: int
    shape: tuple[int, ...]
    max_abs_diff: float | None  # None: not compared
    status: str  # "ok" | "drift" | "MISMATCH" | "replay only" | "not compared: ..."
    keras_vs_float64: float | None = None  # for a difference above the tolerance: Keras' float32 vs a float64 replay
    replay_vs_float64: float | None = None  # and the float32 replay vs the float64 replay


@dataclass
class VerifyResult:
    """Every layer's comparison, the tolerance, and how Keras was run (its version, notes)."""

    checks: list[LayerCheck]
    tolerance: float
    keras: str | None  # "keras 3.15.1" / "tf_keras 2.21.0", or None when Keras did not load the file
    note: str | None = None  # why Keras was not used, if it was not
    notes: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> list[LayerCheck]:
        """The checks over the tolerance that are not float32 drift."""
        return [c for c in self.checks if c.status == "MISMATCH"]

    @property
    def drifts(self) -> list[LayerCheck]:
        """The checks whose difference is float32 drift."""
        return [c for c in self.checks if c.status == "drift"]

    @property
    def largest(self) -> LayerCheck | None:
        """The check with the largest difference, or None when nothing was compared."""
        compared = [c for c in self.checks if c.max_abs_diff is not None]
        return max(compared, key=lambda c: c.max_abs_diff) if compared else None


def is_drift(keras_vs_float64: float, replay_vs_float64: float, scale: float) -> bool:
    """Whether two float32 results differ by rounding alone, judged against a float64 replay.

    Both are about equally far from it (within a factor ``DRIFT_RATIO``, and a
    distance below ``DRIFT_FLOOR * max(1, scale)`` counts as that floor): the
    model amplifies float32 rounding.  A real difference (another formula,
    other weights) leaves the replay's float32 result next to its float64
    one while Keras' is far from both.
    """
    floor = DRIFT_FLOOR * max(1.0, scale)
    near, far = sorted((keras_vs_float64, replay_vs_float64))
    return math.isfinite(far) and far <= DRIFT_RATIO * max(near, floor)


def verify(
    model: Model,
    sequences: Inputs | Feed,
    *,
    tolerance: float = 1e-5,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    start: str | None = None,
) -> VerifyResult:
    """Compare the NumPy replay of every top-level layer with Keras' own outputs.

    ``sequences`` are fed as :func:`feeding.plan_feed` plans (a stateful model
    by its batch shape, as ``model.predict(x, batch_size=B)`` does).  A layer
    over the tolerance is replayed again in float32 and float64: when Keras'
    float32 output and the float32 replay are both about as far from the
    float64 one (:func:`is_drift`), its status is ``drift``, not ``MISMATCH``.
    ``sequences``: the input sequences (one model input), or one list of them
    per model input (in order, or a dict by input name).
    """
    if start is not None:
        raise UsageProblem("verify compares the whole model with Keras, so it takes no --from")
    options = options or ReplayOptions()
    try:
        program = compile_model(model, options)  # before TensorFlow: a model we cannot replay stops here
    except UnsupportedLayer as exc:
        if exc.resume_from is None:
            raise
        raise UnsupportedLayer(  # verify takes no --from: say where trace and predict can go instead
            f"{exc.problem}; verify compares the whole model with Keras, so it cannot check this one "
            f"(trace and predict can replay from '{exc.resume_from}' on with --from {exc.resume_from})"
        ) from None
    feed = plan_inputs(model, program, sequences, stateful, announce=False)
    groups = _groups(model, feed)
    with _quiet_stderr():
        keras_mod, keras_name = _import_keras(model)
        keras_model, note = _load_with_keras(model, keras_mod, keras_name)
    comparable = _comparable_layers(model, keras_model)
    probe = None
    notes: list[str] = []
    if keras_model is not None and comparable:
        fitted = _fit_length(keras_mod, keras_model, program.input_spec.timesteps, feed)
        if fitted is not keras_model:
            notes.append(f"Keras ran the model's layers and weights with an open time axis "
                         f"(the file fixes {program.input_spec.timesteps} steps)")
        keras_model = fitted
        probe = _probe_model(keras_mod, keras_model, comparable)
    shapes: dict[tuple[str, int], tuple[int, ...]] = {}
    diffs: dict[tuple[str, int], float] = {}
    for expected, (replayed,) in _passes(model, groups, [program], probe, keras_model):
        for key, value in replayed.items():
            shapes[key] = tuple(value.shape)
            if key in expected:
                diffs[key] = max(diffs.get(key, 0.0), _distance(expected[key], value))
    drift: dict[tuple[str, int], tuple[float, float, float]] = {}
    if probe is not None and any(diff > tolerance for diff in diffs.values()):
        drift = _drift_figures(model, groups, options, probe, keras_model, {k for k, d in diffs.items() if d > tolerance})
    checks = []
    for spec in model.graph.layers:
        if spec.class_name == "InputLayer":
            continue
        for index in range(_count_outputs(shapes, spec.name)):
            key = (spec.name, index)
            if key in diffs:
                check = LayerCheck(spec.name, index, shapes[key], diffs[key], "ok" if diffs[key] <= tolerance else "MISMATCH")
                if key in drift:
                    keras_far, replay_far, scale = drift[key]
                    check.keras_vs_float64, check.replay_vs_float64 = keras_far, replay_far
                    if math.isfinite(diffs[key]) and is_drift(keras_far, replay_far, scale):
                        check.status = "drift"
                checks.append(check)
            elif keras_model is None:
                checks.append(LayerCheck(spec.name, index, shapes[key], None, "replay only"))
            else:
                reason = "inside a nested model" if spec.container else "not an output Keras exposes"
                checks.append(LayerCheck(spec.name, index, shapes[key], None, f"not compared: {reason}"))
    version = f"{keras_name} {getattr(keras_mod, '__version__', '?')}" if keras_model is not None else None
    feed.announce(model)  # once everything ran: an error above stays the only line on stderr
    return VerifyResult(checks, tolerance, version, note, notes)


def _distance(theirs: NDArray, ours: NDArray) -> float:
    """Largest absolute difference (float64); inf when the shapes differ."""
    if theirs.shape != ours.shape:
        return float("inf")
    if not ours.size:
        return 0.0
    return float(np.max(np.abs(np.asarray(theirs, dtype=np.float64) - np.asarray(ours, dtype=np.float64))))


def _drift_figures(model, groups, options: ReplayOptions, probe, keras_model, keys) -> dict:
    """For ``keys`` over the tolerance: (Keras vs float64, float32 replay vs float64, largest |float64|)."""
    programs = [compile_model(model, replace(options, dtype=dtype)) for dtype in (np.float32, np.float64)]
    figures: dict[tuple[str, int], list[float]] = {key: [0.0, 0.0, 0.0] for key in keys}
    for expected, (single, double) in _passes(model, groups, programs, probe, keras_model):
        for key in keys:
            if key not in expected or key not in double:
                continue
            exact = double[key]
            row = figures[key]
            row[0] = max(row[0], _distance(expected[key], exact))
            row[1] = max(row[1], _distance(single[key], exact))
            row[2] = max(row[2], float(np.max(np.abs(exact))) if exact.size else 0.0)
    return {key: tuple(row) for key, row in figures.items()}


@dataclass(frozen=True)
class _Group:
    samples: list[Sample]
    reset: bool  # forget Keras' running state before this call (not carried from the one before)
    carry: bool  # the replay starts from the states the previous group ended in


def _groups(model: Model, feed: Feed) -> list[_Group]:
    """The calls Keras is given, in order: the feed's batches, or groups of equal-length sequences.

    A model with a fixed batch size B gets at most B samples per call (padded
    to B for Keras, see :func:`_passes`).
    """
    batch = model.graph.batch_size
    if feed.chains:
        groups = [_Group(samples, reset=k == 0, carry=k > 0) for k, samples in enumerate(feed.batches())]
        for group in groups:
            lengths = {s.values.shape[0] for s in group.samples}
            if len(lengths) > 1:
                raise UsageProblem(
                    f"verify: the last sample has {min(lengths)} steps and shares a batch with samples of "
                    f"{max(lengths)}; Keras runs a batch at one length: give a multiple of {max(lengths)} rows "
                    f"(or --no-stateful)"
                )
        return groups
    if feed.stateful:
        if not stateful_batch_shape(model) and not any(layer.stateful for layer in model.recurrent_layers()):
            raise UsageProblem("verify: Keras carries no state between calls of this model (no layer is "
                               "stateful), so --stateful cannot be compared: drop it")
        return [_Group([s], reset=k == 0, carry=k > 0) for k, s in enumerate(feed.samples)]
    groups = []
    for sequences in _equal_length_groups(feed.samples):
        size = batch or len(sequences)
        groups += [_Group(sequences[k : k + size], reset=True, carry=False) for k in range(0, len(sequences), size)]
    return groups


def _passes(model: Model, groups: list[_Group], programs, probe, keras_model):
    """Per group: (Keras' outputs, [each program's layer outputs]), all keyed by (layer, output index)."""
    carried = {layer.name for layer in model.recurrent_layers() if layer.stateful}
    states: list[dict] = [{} for _ in programs]
    batch = model.graph.batch_size
    for group in groups:
        x = [np.stack(arrays) for arrays in zip(*(s.arrays for s in group.samples))]  # one array per input
        rows = len(group.samples)
        replayed = []
        for k, program in enumerate(programs):
            start = {n: [a[:rows] for a in arrays] for n, arrays in states[k].items()} if group.carry else {}
            run = program.replay(x, trace=[], keep_outputs=True, states=start)
            for _ in run:
                pass
            states[k] = {n: arrays for n, arrays in run.final_states.items() if n in carried}
            replayed.append({(name, index): value for name, outputs in run.layer_outputs.items()
                             for index, value in enumerate(outputs)})
        expected = {}
        if probe is not None:
            if group.reset:
                _reset_states(keras_model)
            feed = x
            if batch and rows < batch:  # a stateful model takes exactly B rows: pad, then drop the padding
                feed = [np.concatenate([a, np.zeros((batch - rows,) + a.shape[1:], dtype=a.dtype)]) for a in x]
            with _quiet_stderr():
                expected = {key: value[:rows] for key, value in _keras_outputs(probe, feed, programs[0]).items()}
        yield expected, replayed


def _fit_length(keras_mod, keras_model, timesteps: int | None, feed: Feed):
    """The Keras model itself, or, when the input's length differs from the steps its input layer
    fixes, the same layers and weights rebuilt with an open time axis; a UsageProblem where Keras
    cannot run at that length."""
    lengths = sorted({s.values.shape[0] for s in feed.samples})
    if not timesteps or lengths == [timesteps]:
        return keras_model
    config = keras_model.get_config()
    _open_time_axis(config)
    try:
        with warnings.catch_warnings(), _quiet_stderr():
            warnings.simplefilter("ignore")
            rebuilt = type(keras_model).from_config(config)
            rebuilt.set_weights(keras_model.get_weights())
    except Exception as exc:  # Keras' own refusal, whatever its type
        text = " ".join(str(exc).split())[:160]
        raise UsageProblem(
            f"verify: Keras cannot run this model on {lengths[-1]} steps (its input layer fixes {timesteps}: "
            f"{text}); cut the input with --sequence-length {timesteps}"
        ) from None
    return rebuilt


def _open_time_axis(config: Any) -> None:
    """Set the time axis of every declared batch shape in a Keras config to None (in place)."""
    stack = [config]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key in ("batch_shape", "batch_input_shape"):
                shape = value.get(key)
                if isinstance(shape, (list, tuple)) and len(shape) >= 2:
                    value[key] = [shape[0], None, *shape[2:]]
            if value.get("input_length") is not None:
                value["input_length"] = None
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
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


def _import_keras(model: Model) -> tuple[Any, str]:
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


def _load_with_keras(model: Model, keras_mod: Any, keras_name: str) -> tuple[Any, str | None]:
    if model.weights_only:
        return None, "a weights-only file holds no architecture for Keras to load"
    unsafe = sorted({spec.class_name for spec in _all_specs(model) if spec.class_name == "Lambda"})
    if unsafe or _holds_code(model.file.config):
        return None, "the model has a Lambda layer: Keras would run its stored code, so it is not loaded"
    try:
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


def _all_specs(model: Model) -> Iterator[LayerSpec]:
    for spec in model.graph.layers:
        yield spec
        yield from spec.children.values()


def _comparable_layers(model: Model, keras_model: Any) -> list[str]:
    if keras_model is None:
        return []
    names = {layer.name for layer in keras_model.layers}
    return [spec.name for spec in model.graph.layers if not spec.container and spec.name in names
            and spec.class_name != "InputLayer"]


def _probe_model(keras_mod: Any, keras_model: Any, names: list[str]) -> Any:
    """A Keras model returning every named layer's output(s), flattened; with their keys."""
    outputs, keys = [], []
    for name in names:
        out = keras_model.get_layer(name).output
        parts = list(out) if isinstance(out, (list, tuple)) else [out]
        for index, part in enumerate(parts):
            outputs.append(part)
            keys.append((name, index))
    return keras_mod.Model(keras_model.inputs, outputs), keys


def _keras_outputs(probe, x: list[NDArray], program) -> dict[tuple[str, int], NDArray]:
    """Keras' outputs of the probed layers for one batch (one array per model input)."""
    model, keys = probe
    feeds = []
    for spec, array in zip(program.inputs, x):
        if spec.token_ids:
            feeds.append((array[..., 0] if array.ndim == 3 else array).astype("int32"))
        else:
            feeds.append(array.astype("float32"))
    feed = feeds[0] if len(feeds) == 1 else feeds
    try:
        result = model.predict(feed, verbose=0, batch_size=len(feeds[0]))
    except Exception as exc:  # Keras' own refusal of the input, whatever its type
        text = " ".join(str(exc).split())[:160]
        shapes = ", ".join(str(f.shape) for f in feeds)
        raise UsageProblem(f"verify: Keras cannot run the model on this input of shape {shapes}: {text}") from None
    parts = list(result) if isinstance(result, (list, tuple)) else [result]
    return {key: np.asarray(part) for key, part in zip(keys, parts)}


def _reset_states(keras_model: Any) -> None:
    """Forget every stateful layer's running state (tf-keras: reset_states; Keras 3 also reset_state)."""
    for layer in keras_model.layers:
        if getattr(layer, "stateful", False):
            reset = getattr(layer, "reset_states", None) or getattr(layer, "reset_state", None)
            if reset is not None:
                reset()


def _equal_length_groups(sequences: Sequence[Sample]) -> list[list[Sample]]:
    groups: list[list[Sample]] = []
    for sequence in sequences:
        if groups and groups[-1][0].shapes == sequence.shapes:
            groups[-1].append(sequence)
        else:
            groups.append([sequence])
    return groups


def result_rows(result: VerifyResult) -> list[dict[str, Any]]:
    """One row per check, in the columns of VERIFY_COLUMNS."""
    return [
        {
            "layer": check.layer,
            "output": check.output,
            "shape": "×".join(str(d) for d in check.shape),
            "max_abs_diff": check.max_abs_diff,
            "tolerance": result.tolerance,
            "status": check.status,
            "keras_vs_float64": check.keras_vs_float64,
            "replay_vs_float64": check.replay_vs_float64,
        }
        for check in result.checks
    ]


DRIFT_MEANING = ("verify: drift means Keras' float32 result and the float32 replay are about equally far from a "
                 "float64 replay: the model amplifies float32 rounding, and both are right to float32 precision")


def summary(result: VerifyResult) -> str:
    """The one-line verdict on stderr (with the notes on how Keras was run, in brackets)."""
    text = _verdict(result)
    return text + "".join(f" [{note}]" for note in result.notes)


def _verdict(result: VerifyResult) -> str:
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
    if result.drifts:
        worst = max(result.drifts, key=lambda c: c.max_abs_diff)
        return (f"verify: {compared - len(result.drifts)} layer output(s) match {result.keras} within "
                f"{result.tolerance:g}; {len(result.drifts)} differ by float32 drift, largest {worst.max_abs_diff:.3g} "
                f"at {worst.layer} (Keras {worst.keras_vs_float64:.3g} and the replay {worst.replay_vs_float64:.3g} "
                "from float64)")
    return (f"verify: {compared} layer output(s) match {result.keras} within {result.tolerance:g} "
            f"(largest difference {largest.max_abs_diff:.3g} at {largest.layer})")

