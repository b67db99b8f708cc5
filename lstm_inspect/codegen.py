"""``lstm-inspect code``: a short standalone NumPy script that replays one model.

The script holds only what this model needs, written out to be read:

* where each weight array lives in the model file (read with h5py, and
  zipfile for a ``.keras`` archive), or the ``.npz`` that ``--weights-out``
  wrote beside it (layouts that need converting, such as cuDNN's or Keras 1's
  per-gate arrays, are converted once, there);
* the activations this model uses, ``hard_sigmoid`` as the saving Keras
  defined it (``activations.activation_source``);
* one step function per recurrent kind and activation pair, written by the
  kind itself (``RecurrentKind.step_source``: the gates in Keras' order);
* one loop over time for every recurrent layer (go_backwards, masks), and the
  model's layers in order: stacked layers, Bidirectional, Dense, Embedding,
  Masking, Activation and the inference-time identities (Dropout, ...).

``python replay.py INPUT.csv`` prints what ``lstm-inspect predict`` prints,
``--trace`` what ``lstm-inspect trace`` prints; ``replay.run(x)`` returns the
output and every step's values as arrays.  A model that is not one chain of
those layers (several inputs or outputs, a layer the generator cannot write,
a ConvLSTM) is refused with the layer's name.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from . import __version__
from .activations import activation_source, hard_sigmoid_for
from .engine import ReplayOptions, compile_model
from .engine.program import FEED, FeedForwardOp
from .engine.recurrent import BidirectionalOp, RecurrentOp
from .errors import UnsupportedLayer, UsageProblem
from .model import Model, RecurrentLayer
from .reading import StoredArray

# Layers the generator writes out (besides the recurrent kinds that have a step source).
IDENTITY_CLASSES = ("InputLayer", "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                    "ActivityRegularization")
WRITTEN = "LSTM, GRU, SimpleRNN, Bidirectional, Dense, TimeDistributed(Dense), Embedding, Masking, Activation, Dropout"


@dataclass
class GeneratedCode:
    """A replay script and the arrays it reads.

    ``arrays`` maps ``"<layer>/<tensor>"`` to the canonical array (what
    ``--weights-out`` writes to an ``.npz``); ``source`` is the script.
    """

    source: str
    arrays: dict[str, NDArray] = field(default_factory=dict)


@dataclass
class _Array:
    layer: str  # "lstm_1", "bi/forward", "head"
    tensor: str  # kernel, recurrent_kernel, bias, recurrent_bias, embeddings
    value: NDArray  # what the replay uses
    stored: StoredArray | None  # where the file keeps it (None: only an .npz can carry it)
    row: int | None = None  # a reset_after GRU's (2, 3U) bias: row 0 input side, row 1 recurrent side
    resolved: str = ""  # the dataset path in the HDF5 file, once checked


def generate_code(model: Model, *, weights_out: str | None = None, hard_sigmoid: str | None = None) -> GeneratedCode:
    """The replay script for ``model``.

    ``weights_out``: the script reads its arrays from that ``.npz`` (which the
    caller writes from ``arrays``) instead of the model file; needed when a
    layer stores its weights in a layout that must be converted (cuDNN,
    Keras 1).  ``hard_sigmoid``: ``keras2``/``keras3`` overrides the saving
    Keras' definition.  Raises ``UnsupportedLayer`` naming a layer the script
    cannot hold.
    """
    _refuse_unwritable(model)
    steps = _stateful_steps(model)
    hard = hard_sigmoid_for(model.keras_major, hard_sigmoid)
    program = compile_model(model, ReplayOptions(hard_sigmoid=hard_sigmoid))
    _check_chain(model, program)
    writer = _Writer(model, hard)
    for op in program.ops:
        writer.add(op)
    arrays = {f"{a.layer}/{a.tensor}": a.value for a in writer.arrays}
    if weights_out is None:
        _locate_in_file(model, writer.arrays)
    source = writer.script(weights_out, steps)
    return GeneratedCode(source, arrays)


def write_weights(arrays: dict[str, NDArray], stream) -> None:
    """Write ``GeneratedCode.arrays`` as an ``.npz`` to a binary stream."""
    np.savez(stream, **arrays)


# ----------------------------------------------------------------------------- checks


def _refuse_unwritable(model: Model) -> None:
    """Every layer must be one the script can hold: refused by name otherwise."""
    from .kinds import kind_of

    for spec in model.graph.layers:
        cls = spec.class_name
        inner = spec.children.get("layer") or spec.children.get("forward")
        label = cls if inner is None else f"{cls}({inner.class_name})"
        if spec.is_recurrent or cls == "Bidirectional":
            source = spec if spec.is_recurrent else inner
            kind = kind_of(source.kind) if source is not None else None
            if kind is not None and _has_step_source(kind):
                continue
        elif (cls in IDENTITY_CLASSES or cls in ("Dense", "Embedding", "Masking", "Activation")
              or (cls == "TimeDistributed" and inner is not None and inner.class_name == "Dense")):
            continue
        raise UnsupportedLayer(
            f"{model.label}: layer '{spec.name}' ({label}) cannot be written out by `lstm-inspect code` "
            f"(it writes {WRITTEN} and the other inference-time identities)"
        )


def _stateful_steps(model: Model) -> int | None:
    """T of a stateful model's batch shape (1, T, F): the script feeds its input T rows at a time, each
    piece continuing the state of the one before, as Keras' predict does.  None: the input in one piece."""
    from .feeding import stateful_batch_shape

    shape = stateful_batch_shape(model)
    if shape is None:
        return None
    batch, steps = shape
    if batch != 1:
        raise UnsupportedLayer(
            f"{model.label}: a stateful model with batch size {batch} carries {batch} interleaved states, "
            "which `lstm-inspect code` does not write out (batch size 1 it does)"
        )
    return steps


def _has_step_source(kind) -> bool:
    try:
        kind.step_source("step", "tanh", "sigmoid", True, False)
    except NotImplementedError:
        return False
    return True


def _check_chain(model: Model, program) -> None:
    """One input, one output, each layer reading the one before it: what the script's ``run`` is."""
    if len(program.inputs) != 1:
        raise UnsupportedLayer(f"{model.label}: the model has {len(program.inputs)} inputs; `lstm-inspect code` "
                               "writes models with one input")
    if len(program.outputs) != 1 or program.outputs[0].index != 0 or program.outputs[0].layer != program.ops[-1].name:
        raise UnsupportedLayer(f"{model.label}: the model has several outputs; `lstm-inspect code` writes models "
                               "with one output")
    previous = None
    for op in program.ops:
        edges = list(op.inputs)
        # The first layer reads the model's input; every other one the output 0 of the layer before it.
        reads = edges[0].layer.startswith(FEED) if previous is None else edges[0].layer == previous
        if len(edges) != 1 or edges[0].index != 0 or not reads:
            raise UnsupportedLayer(
                f"{model.label}: layer '{op.name}' does not simply read the layer before it (its inputs: "
                f"{', '.join(e.layer.replace(FEED, 'input ') for e in edges)}); `lstm-inspect code` writes a chain of layers"
            )
        previous = op.name


# ----------------------------------------------------------------------------- writing


# The recorded values a kind's state arrays are traced as: its first state is the hidden
# state, the others its extra values (LSTM: [h, c] -> hidden, cell).
def _state_values(layer: RecurrentLayer) -> tuple[str, ...]:
    names = ("hidden",) + tuple(layer.kind.extra_values)
    assert len(names) == len(layer.kind.states), layer.kind
    return names


class _Writer:
    """Collects the script's parts while walking the compiled layers in order."""

    def __init__(self, model: Model, hard_sigmoid: str) -> None:
        self.model = model
        self.hard = hard_sigmoid
        self.arrays: list[_Array] = []
        self.activations: list[str] = []
        self.steps: dict[tuple, str] = {}  # (kind, a, ra, use_bias, reset_after) -> function name
        self.step_sources: list[str] = []
        self.lines: list[str] = []
        self.traced: list[tuple[str, bool]] = []  # (layer, go_backwards), model order
        self.columns: list[str] = []
        self.masks = False
        self.token_ids = False

    # -- pieces -------------------------------------------------------------------------------

    def activation(self, name: str | None, where: str) -> str:
        key = "linear" if name in (None, "", "None") else str(name)
        if activation_source(key, self.hard) is None:
            raise UnsupportedLayer(f"{self.model.label}: {where}: activation '{key}' cannot be written out by "
                                   "`lstm-inspect code`")
        if key not in self.activations:
            self.activations.append(key)
        return key

    def step(self, layer: RecurrentLayer, activation: str, recurrent_activation: str) -> str:
        kind = layer.kind
        key = (kind.name, activation, recurrent_activation, layer.use_bias, layer.weights.reset_after)
        if key not in self.steps:
            from .model import to_snake_case

            base = f"{to_snake_case(kind.name)}_step"
            taken = sum(1 for k in self.steps if k[0] == kind.name)
            name = base if not taken else f"{base}_{taken + 1}"
            self.steps[key] = name
            self.step_sources.append(kind.step_source(name, activation, recurrent_activation, layer.use_bias,
                                                      layer.weights.reset_after))
        return self.steps[key]

    def stored(self, layer: str, tensor: str, value: NDArray, stored: StoredArray | None, row: int | None = None) -> None:
        self.arrays.append(_Array(layer, tensor, np.asarray(value), stored, row))

    # -- layers -------------------------------------------------------------------------------

    def add(self, op) -> None:
        spec = self.model.graph.layer(op.name)
        if isinstance(op, RecurrentOp):
            self.recurrent(op, zero_output=bool(op.zero_output_for_mask), target="x", comment=None)
            if not op.layer.return_sequences:
                self.lines.append("    mask = None  # only the last step goes on: no time axis left to mask")
        elif isinstance(op, BidirectionalOp):
            self.bidirectional(op, spec)
        elif isinstance(op, FeedForwardOp):
            self.feed_forward(op, spec)

    def recurrent(self, op: RecurrentOp, zero_output: bool, target: str, comment: str | None) -> None:
        layer = op.layer
        cell = op.scan.cell
        where = f"layer '{layer.name}'"
        a = self.activation(cell.activation.name, where)
        ra = self.activation(cell.recurrent_activation.name, where) if layer.kind.recurrent_gates else a
        step = self.step(layer, a, ra)
        self.weights_of(layer)
        sequences = "the whole sequence" if layer.return_sequences else "the last step"
        self.lines.append(comment or f"    # {layer.name}: {layer.kind.name}({layer.units}), returns {sequences}")
        if layer.go_backwards:
            self.lines.append("    # go_backwards: it reads the last input row first and returns its outputs in that order")
        states = ", ".join(_q(name) for name in _state_values(layer)) + ("," if len(_state_values(layer)) == 1 else "")
        options = [f"units={layer.units}", f"states=({states})"]
        if layer.go_backwards:
            options.append("go_backwards=True")
        if layer.return_sequences:
            options.append("return_sequences=True")
        if zero_output:
            options.append("zero_output_for_mask=True")
        self.lines.append(f'    {target}, trace["{layer.name}"] = recurrent({step}, W["{layer.name}"], x, mask, '
                          f"{', '.join(options)})")
        self.traced.append((layer.name, layer.go_backwards))
        for name in layer.kind.value_names(False):
            if name not in self.columns:
                self.columns.append(name)

    def weights_of(self, layer: RecurrentLayer) -> None:
        w = layer.weights
        keras_layout = w.layout == "keras"
        sources = w.sources if keras_layout else {}
        self.stored(layer.name, "kernel", w.kernel, sources.get("kernel"))
        self.stored(layer.name, "recurrent_kernel", w.recurrent_kernel, sources.get("recurrent_kernel"))
        bias = w.effective_bias()
        if bias is not None:
            stored = sources.get("bias") if (w.recurrent_bias is None or w.reset_after) else None
            self.stored(layer.name, "bias", bias, stored, 0 if stored is not None and stored.array.ndim == 2 else None)
        if w.reset_after and w.recurrent_bias is not None:
            stored = sources.get("recurrent_bias")
            self.stored(layer.name, "recurrent_bias", w.recurrent_bias, stored,
                        1 if stored is not None and stored.array.ndim == 2 else None)

    def bidirectional(self, op: BidirectionalOp, spec) -> None:
        f, b = op.forward.layer, op.backward.layer
        if op.merge_mode is None:
            raise UnsupportedLayer(f"{self.model.label}: layer '{op.name}' (Bidirectional, merge_mode None) has two "
                                   "outputs; `lstm-inspect code` writes models with one output")
        sequences = "the whole sequence" if f.return_sequences else "the last step"
        self.lines.append(f"    # {op.name}: Bidirectional({f.kind.name}({f.units})), merge_mode {op.merge_mode}, "
                          f"returns {sequences}")
        zero = f.return_sequences  # Keras zeroes a Bidirectional's outputs at masked steps then
        self.recurrent(op.forward, zero, "forward", f"    # {f.name}")
        self.recurrent(op.backward, zero, "backward", f"    # {b.name}")
        if f.return_sequences:
            for name, layer in (("forward", f), ("backward", b)):
                if layer.go_backwards:
                    self.lines.append(f"    {name} = {name}[:, ::-1]  # back into input-row order before merging")
        merge = {
            "concat": "np.concatenate([forward, backward], axis=-1)",
            "sum": "forward + backward",
            "ave": "(forward + backward) / 2",
            "mul": "forward * backward",
        }[op.merge_mode]
        self.lines.append(f"    x = {merge}")
        if not f.return_sequences:
            self.lines.append("    mask = None  # only the last step goes on: no time axis left to mask")

    def feed_forward(self, op: FeedForwardOp, spec) -> None:
        layer = op.layer
        cls = type(layer).__name__
        name = op.name
        where = f"layer '{name}'"
        if cls == "Identity":
            if spec.class_name != "InputLayer":
                self.lines.append(f"    # {name}: {spec.class_name} does nothing at inference time")
            return
        if cls == "TimeDistributed":
            inner = spec.children["layer"]
            self.dense(layer.inner, f"{name} (TimeDistributed)", inner.name, self.model.weights.get(inner.name, {}), where)
            return
        if cls == "Dense":
            self.dense(layer, name, name, self.model.weights.get(name, {}), where)
            return
        if cls == "FunctionLayer":
            activation = self.activation(layer.fn.name, where)
            self.lines.append(f"    x = {activation}(x)  # {name}: Activation")
            return
        if cls == "Masking":
            value = float(layer.mask_value)
            self.masks = True
            self.lines += [
                f"    # {name}: Masking: a step whose features all equal {value!r} is skipped by the layers after it",
                f"    mask = np.any(x != {value!r}, axis=-1)  # (N, T): True where the step is real",
                "    x = x * mask[..., None]",
            ]
            return
        if cls == "Embedding":
            stored = self.model.weights.get(name, {}).get("embeddings")
            self.stored(name, "embeddings", layer.table, stored)
            self.token_ids = True
            self.lines += [
                f"    # {name}: Embedding({layer.table.shape[0]} tokens, {layer.table.shape[1]} values each)",
                "    ids = x.astype(np.int64)  # (N, T) token ids",
                f'    x = W["{name}"]["embeddings"][ids]  # (N, T, {layer.table.shape[1]})',
            ]
            if layer.mask_zero:
                self.masks = True
                self.lines.append("    mask = ids != 0  # mask_zero: token id 0 is padding, its steps are skipped")
            return
        raise UnsupportedLayer(f"{self.model.label}: layer '{name}' ({spec.class_name}) cannot be written out by "
                               "`lstm-inspect code`")

    def dense(self, layer, label: str, key: str, stored: dict, where: str) -> None:
        activation = self.activation(layer.activation.name, where)
        self.stored(key, "kernel", layer.kernel, stored.get("kernel"))
        product = f'x @ W["{key}"]["kernel"]'
        if layer.bias is not None:
            self.stored(key, "bias", layer.bias, stored.get("bias"))
            product += f' + W["{key}"]["bias"]'
        units = layer.kernel.shape[1]
        text = product if activation == "linear" else f"{activation}({product})"
        self.lines.append(f"    x = {text}  # {label}: Dense({units}), {activation}")

    # -- the script -------------------------------------------------------------------------------

    def script(self, weights_out: str | None, stateful_steps: int | None = None) -> str:
        model = self.model
        layers = ", ".join(f"{spec.name} ({spec.class_name})" for spec in model.graph.layers
                           if spec.class_name != "InputLayer")
        first = "token ids, one column" if self.token_ids else "features"
        parts = [_HEADER.format(
            label=model.label, version=__version__, keras=model.keras_version or "unknown", layers=layers,
            first=first, needs="numpy" if weights_out else "numpy and h5py",
            imports="" if weights_out else "import io\n", zipfile="" if weights_out else "import zipfile\n",
        )]
        parts.append(_loader(model, self.arrays, weights_out))
        parts.append("\n# ---- activations (as the Keras that saved the file defines them)\n\n"
                     + "\n\n".join(activation_source(name, self.hard).rstrip("\n") for name in self.activations) + "\n")
        parts.append("\n# ---- one step of each recurrent layer kind\n\n" + "\n\n".join(s.rstrip("\n") for s in self.step_sources) + "\n")
        parts.append(_LOOP)
        parts.append(self.run_function())
        columns = "[" + ", ".join(_q(name) for name in self.columns) + "]"
        traced = "[" + ", ".join(f"({_q(name)}, {backwards})" for name, backwards in self.traced) + "]"
        parts.append(_OUTPUT.format(columns=columns, traced=traced, masks=self.masks, steps=stateful_steps))
        return "\n".join(parts)

    def run_function(self) -> str:
        convert = ("    x = np.asarray(x)\n"
                   "    if x.ndim == 3:  # (N, T, 1) as read from a one-column file\n"
                   "        x = x[..., 0]\n"
                   "    if x.ndim == 1:  # one sequence\n"
                   "        x = x[None]\n") if self.token_ids else (
                   "    x = np.asarray(x, dtype=DTYPE)\n"
                   "    if x.ndim == 2:  # one sequence (T, F)\n"
                   "        x = x[None]\n")
        shape = "(N, T) token ids" if self.token_ids else "(N, T, F)"
        return (
            "\n# ---- the model, layer by layer\n\n"
            "def run(x):\n"
            f'    """Replay a batch x {shape} -> (output, trace).\n\n'
            "    output is what model.predict returns; trace[layer][value] is an (N, T, U) array of that\n"
            "    value at every step, indexed by input row (also for go_backwards layers), with\n"
            '    trace[layer]["masked"] (N, T) True at masked steps (whose gates are NaN).\n'
            '    """\n'
            f"{convert}"
            "    mask = None\n"
            "    trace = {}\n"
            + "\n".join(self.lines) + "\n"
            "    return x, trace\n"
        )


def _loader(model: Model, arrays: list[_Array], weights_out: str | None) -> str:
    if weights_out is not None:
        return _NPZ_LOADER.format(name=_q(os.path.basename(weights_out)), path=_q(os.path.abspath(weights_out)))
    entries = "\n".join(f"    ({_q(a.layer)}, {_q(a.tensor)}): ({_q(a.resolved)}, {a.row!r})," for a in arrays)
    return _H5_LOADER.format(name=_q(os.path.basename(model.path)), path=_q(os.path.abspath(model.path)), entries=entries)


def _q(text: str) -> str:
    """A Python string literal in double quotes."""
    return json.dumps(text, ensure_ascii=False)


def _inner_path(path: str) -> str:
    """The dataset path inside the HDF5 file (a .keras archive's paths start with its member name)."""
    return path.split(":", 1)[1] if path.startswith("model.weights.h5:") else path


def _locate_in_file(model: Model, arrays: list[_Array]) -> None:
    """Check that every array can be read as stored (and equals what the replay uses); record the
    exact dataset path.  A layer whose weights need converting asks for --weights-out."""
    import h5py

    missing = [a for a in arrays if a.stored is None]
    if missing:
        layer = model.recurrent_layer(missing[0].layer) if missing[0].layer in model.recurrent_names() else None
        layout = layer.weights.layout if layer is not None else "another"
        raise UsageProblem(
            f"{model.label}: layer '{missing[0].layer}' stores its weights in {_LAYOUT_NAMES.get(layout, layout)}, "
            "which the script would have to convert; give --weights-out FILE.npz to write them converted beside it"
        )
    source = model.path
    if zipfile.is_zipfile(model.path):
        with zipfile.ZipFile(model.path) as archive:
            source = io.BytesIO(archive.read("model.weights.h5"))
    with h5py.File(source, "r") as h5:
        for a in arrays:
            path = _inner_path(a.stored.path)
            if path not in h5:  # tf.keras on Windows wrote group names with backslashes
                group, _, rest = path.rpartition("/vars/")
                path = f"{group.replace('/', chr(92))}/vars/{rest}"
            found = h5[path][()] if path in h5 else None
            if found is not None and a.row is not None:
                found = found[a.row]
            if found is None or found.shape != a.value.shape or not np.array_equal(found, a.value, equal_nan=True):
                raise UsageProblem(f"{model.label}: the weights of layer '{a.layer}' ({a.tensor}) cannot be read "
                                   "back as stored; give --weights-out FILE.npz to write them beside the script")
            a.resolved = path


_LAYOUT_NAMES = {"cudnn": "cuDNN's layout (CuDNNLSTM/CuDNNGRU)", "keras1": "Keras 1's per-gate arrays"}


# ----------------------------------------------------------------------------- script text

_HEADER = '''#!/usr/bin/env python3
"""{label}: a standalone NumPy replay, written by `lstm-inspect code` (lstm-inspect {version}).

Saved by Keras {keras}.  Layers: {layers}.

    python replay.py INPUT.csv           # the model's output, as `lstm-inspect predict` prints it
    python replay.py INPUT.csv --trace   # every value at every step, as `lstm-inspect trace` prints it

INPUT.csv: one row per step, {first} in columns (a header row is skipped), or an
.npy array of shape (T, F) or (N, T, F).  From Python: `import replay; output, trace = replay.run(x)`.
Needs {needs}.
"""

{imports}import os
import sys
{zipfile}
import numpy as np

DTYPE = np.float32  # Keras computes in float32
'''

_H5_LOADER = '''
# ---- weights, read from the model file

MODEL_FILE = {name}  # looked for beside this script first
MODEL_PATH = {path}
# (layer, tensor) -> (dataset in the HDF5 file, row).  A row picks half of a reset_after GRU's
# (2, 3U) bias: row 0 is added to x·kernel, row 1 to h·recurrent_kernel.
DATASETS = {{
{entries}
}}


def load_weights():
    """W[layer][tensor] as DTYPE arrays (a .keras file is a zip holding model.weights.h5)."""
    import h5py

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), MODEL_FILE)
    path = here if os.path.exists(here) else MODEL_PATH
    source = path
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            source = io.BytesIO(archive.read("model.weights.h5"))
    weights = {{}}
    with h5py.File(source, "r") as h5:
        for (layer, tensor), (dataset, row) in DATASETS.items():
            array = h5[dataset][()]
            weights.setdefault(layer, {{}})[tensor] = (array if row is None else array[row]).astype(DTYPE)
    return weights


W = load_weights()
'''

_NPZ_LOADER = '''
# ---- weights, read from the .npz that `lstm-inspect code --weights-out` wrote

WEIGHTS_FILE = {name}  # looked for beside this script first
WEIGHTS_PATH = {path}


def load_weights():
    """W[layer][tensor] as DTYPE arrays, from the keys "<layer>/<tensor>" of the .npz."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), WEIGHTS_FILE)
    weights = {{}}
    with np.load(here if os.path.exists(here) else WEIGHTS_PATH) as arrays:
        for key in arrays.files:
            layer, tensor = key.rsplit("/", 1)
            weights.setdefault(layer, {{}})[tensor] = arrays[key].astype(DTYPE)
    return weights


W = load_weights()
'''

_LOOP = '''
# ---- the loop over time, the same for every recurrent layer

def recurrent(step, w, x, mask, units, states, go_backwards=False, return_sequences=False,
              zero_output_for_mask=False):
    """Run one recurrent layer over x (N, T, F) from a zero state.

    Returns its output, (N, T, U) in processing order or the last step's (N, U), and the
    values of every step as (N, T, U) arrays indexed by input row.  `states` names what
    each state array is traced as (LSTM: hidden, cell).
    """
    n, steps = x.shape[:2]
    state = [np.zeros((n, units), DTYPE) for _ in states]
    output = np.zeros((n, units), DTYPE)  # what a masked first step outputs
    outputs = np.zeros((n, steps, units), DTYPE)
    trace = {}
    # go_backwards reads the last input row first; its outputs come back in that order.
    rows = range(steps - 1, -1, -1) if go_backwards else range(steps)
    for k, t in enumerate(rows):
        new_state, values = step(x[:, t], state, w)
        if mask is None:
            output = new_state[0]
        else:
            keep = mask[:, t, None]  # (N, 1): False where the step is masked
            # A masked step leaves the state as it was and has no gates; its output is the
            # previous one (zeros with zero_output_for_mask, as a Bidirectional sets).
            new_state = [np.where(keep, new, old) for new, old in zip(new_state, state)]
            values = {name: np.where(keep, value, np.nan) for name, value in values.items()}
            output = np.where(keep, new_state[0], 0.0 if zero_output_for_mask else output)
        values.update(zip(states, new_state))
        for name, value in values.items():
            trace.setdefault(name, np.full((n, steps, units), np.nan, DTYPE))[:, t] = value
        state = new_state
        outputs[:, k] = output
    trace["masked"] = np.zeros((n, steps), bool) if mask is None else ~mask
    return (outputs if return_sequences else output), trace
'''

_OUTPUT = '''
# ---- reading the input, writing what lstm-inspect writes

COLUMNS = {columns}  # the trace's value columns
TRACED = {traced}  # (layer, go_backwards) in model order
MASKS = {masks!r}  # whether the model can mask steps (the trace's "masked" column)
STATEFUL_STEPS = {steps!r}  # stateful, batch shape (1, T, F): predict feeds T rows at a time, the state carried


def read_input(path):
    """(1, T, F) from a CSV (one row per step; a header row is skipped), or an .npy as stored."""
    if path.endswith(".npy"):
        x = np.load(path)
        return x[None] if x.ndim == 2 else x
    with open(path) as stream:
        rows = [line.strip().split(",") for line in stream if line.strip()]
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        rows = rows[1:]  # a header
    return np.array([[float(v) for v in row] for row in rows], dtype=np.float64)[None]


def predict(x):
    """What model.predict(x) returns, one array per sample.

    A stateful model (STATEFUL_STEPS set) is fed STATEFUL_STEPS rows at a time, each piece
    continuing the state the one before ended in.  From a zero state that is the same as
    replaying every row up to the piece's end: that is what is done here (clear, not fast).
    """
    x = np.asarray(x)
    if STATEFUL_STEPS is None or x.shape[1] <= STATEFUL_STEPS:
        return list(run(x)[0])
    if x.shape[0] != 1:
        raise SystemExit("a stateful model's input is one sequence of rows (a CSV, or an .npy of (T, F))")
    outputs = []
    for start in range(0, x.shape[1], STATEFUL_STEPS):
        end = min(start + STATEFUL_STEPS, x.shape[1])
        output = run(x[:, :end])[0][0]
        outputs.append(output[-(end - start):] if output.ndim >= 2 else output)  # a sequence: this piece's steps
    return outputs


def number(value):
    return "" if np.isnan(value) else "%.9g" % value


def write_output(outputs):
    """What `lstm-inspect predict` prints: sequence,[t,]y_0..y_k (one array per sample)."""
    if outputs[0].ndim >= 2:  # a sequence output: one row per step
        print(",".join(["sequence", "t"] + ["y_%d" % k for k in range(outputs[0].reshape(outputs[0].shape[0], -1).shape[1])]))
        for s, output in enumerate(outputs):
            flat = output.reshape(output.shape[0], -1)
            for t in range(flat.shape[0]):
                print(",".join([str(s), str(t)] + [number(v) for v in flat[t]]))
    else:
        print(",".join(["sequence"] + ["y_%d" % k for k in range(outputs[0].size)]))
        for s, output in enumerate(outputs):
            print(",".join([str(s)] + [number(v) for v in output.reshape(-1)]))


def write_trace(trace):
    """What `lstm-inspect trace` prints: a row per sequence, layer, step (processing order) and unit."""
    print(",".join(["sequence", "layer", "t", "unit"] + COLUMNS + (["masked"] if MASKS else [])))
    for s in range(next(iter(trace.values()))["masked"].shape[0]):
        for layer, go_backwards in TRACED:
            values = trace[layer]
            steps, units = values["hidden"].shape[1:]
            for t in range(steps - 1, -1, -1) if go_backwards else range(steps):
                for u in range(units):
                    row = [str(s), layer, str(t), str(u)]
                    row += [number(values[name][s, t, u]) if name in values else "" for name in COLUMNS]
                    if MASKS:
                        row.append(str(int(values["masked"][s, t])))
                    print(",".join(row))


def main(argv):
    paths = [arg for arg in argv if arg != "--trace"]
    if len(paths) != 1:
        print("usage: python replay.py INPUT.csv [--trace]", file=sys.stderr)
        return 2
    x = read_input(paths[0])
    if "--trace" in argv:
        write_trace(run(x)[1])
    else:
        write_output(predict(x))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''
