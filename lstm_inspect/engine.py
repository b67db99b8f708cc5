"""Replay a Keras model in NumPy and record every gate of every recurrent step.

The model graph is compiled once into a list of operations (``compile_model``).
Running it on a batch of equal-length sequences (``Program.run``) executes the
operations in order; recurrent layers scan their input in chunks of steps and
hand each chunk over as a :class:`StepBlock` holding ``i, f, c, o, cell,
hidden`` (LSTM), ``z, r, c, hidden`` (GRU) or ``hidden`` (SimpleRNN), so a
long sequence is written out while it is being computed.

The step equations (Keras, all versions; ``a`` = activation,
``ra`` = recurrent_activation):

* LSTM: ``pre = x·kernel + h·recurrent_kernel + bias``; ``i, f, o = ra(pre_i,
  pre_f, pre_o)``; ``c = a(pre_c)``; ``cell = f·cell_prev + i·c``;
  ``hidden = o·a(cell)``.
* GRU, reset_after=True: ``xz, xr, xh = x·kernel + bias``; ``hz, hr, hh =
  h·recurrent_kernel + recurrent_bias``; ``z = ra(xz + hz)``, ``r = ra(xr +
  hr)``, ``c = a(xh + r·hh)``; ``hidden = z·h_prev + (1 - z)·c``.
  reset_after=False: ``c = a(xh + (r·h_prev)·recurrent_kernel_h)``.
* SimpleRNN: ``hidden = a(x·kernel + h·recurrent_kernel + bias)``.

Speed: the input projection ``x·kernel + bias`` is one matrix product per
chunk; each step does one fused product ``h·recurrent_kernel`` and in-place
ufuncs on preallocated buffers.  For an LSTM whose recurrent activation is
sigmoid and activation tanh, the sigmoid columns of the weights are halved
once up front so that a single ``tanh`` over all four gates serves both
(sigmoid(x) = 0.5·tanh(x/2) + 0.5); hard_sigmoid's slope is folded in the
same way.  Gates are kept internally in the order i, f, o, c so that the
three sigmoid gates are contiguous.  A batch wide enough is cut into slices
of sequences that threads step through side by side (see ``parallel``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from .activations import Activation, get_activation, hard_sigmoid_for
from .config import Edge, LayerSpec, activation_name
from .errors import InputDataError, ModelFileError, UnsupportedLayer, UsageProblem
from .model import Model, RecurrentLayer
from .parallel import plan_threads, run_split, single_threaded_blas, slices

INPUT = "\x00input"  # the name under which the model input is fed to the first layers
MAX_REPEAT = 1_000_000  # RepeatVector's n, at most
DEFAULT_CHUNK = 2048  # steps per block: large enough to amortise, small enough to stay in cache
CHUNK_BYTES = 4 << 20  # gate buffer per block, at most (batches: fewer steps per block)

# Layers that are the identity at inference time.
IDENTITY_LAYERS = {
    "Dropout",
    "SpatialDropout1D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "InputLayer",
}

# Keras 3 functional models record how a mask was computed (Masking: any(not_equal(x, v));
# Embedding(mask_zero): not_equal(ids, 0)) as op nodes, and pass the result in a call's
# `mask` keyword.  The replay carries masks with the values, so these nodes compute nothing.
MASK_OP_NODES = {"NotEqual", "Any"}


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay: numeric type, hard_sigmoid definition, what to record."""

    dtype: Any = np.float32
    hard_sigmoid: str | None = None  # "keras2" | "keras3"; None: from the saving Keras version
    pre_activation: bool = False  # also record z_<gate> (pre-activations)
    chunk: int = DEFAULT_CHUNK
    # Threads for the step loop of a batch of sequences: None picks by batch width and CPUs.
    threads: int | None = None
    # Activations to assume where the file does not say (weights-only files).
    assume_activation: str | None = None
    assume_recurrent_activation: str | None = None


@dataclass
class StepBlock:
    """A run of consecutive steps of one recurrent layer for a batch of sequences.

    ``t`` holds, per step, the index of the input row consumed (descending
    for a go_backwards layer).  ``values`` maps a column name (``i``, ``f``,
    ``c``, ``o``, ``cell``, ``hidden``, ``z_i``, ...) to an array of shape
    (S, N, U), time-major.  ``masked`` is (S, N) or None when no step is masked.
    """

    layer: RecurrentLayer
    t: NDArray[np.int64]  # (S,)
    values: dict[str, NDArray]  # name -> (S, N, U)
    masked: NDArray[np.bool_] | None = None  # (S, N)

    @property
    def steps(self) -> int:
        return int(self.t.shape[0])

    @property
    def batch(self) -> int:
        return int(next(iter(self.values.values())).shape[1])


def value_names(layer: RecurrentLayer, pre_activation: bool) -> list[str]:
    """The recorded columns of a recurrent layer, in output order."""
    names = [gate for gate in layer.gates if layer.kind != "SimpleRNN"]
    if layer.kind == "LSTM":
        names.append("cell")
    names.append("hidden")
    if pre_activation:
        names += [f"z_{gate}" for gate in layer.gates]
    return names


# ---------------------------------------------------------------- tensors


@dataclass
class Tensor:
    """A value flowing between layers: (N, T, D) sequences or (N, D) vectors, with a mask."""

    value: NDArray
    mask: NDArray[np.bool_] | None = None  # (N, T) for sequences

    @property
    def is_sequence(self) -> bool:
        return self.value.ndim == 3


# ---------------------------------------------------------------- the program


class Op:
    """One compiled layer."""

    name: str = ""
    inputs: tuple[Edge, ...] = ()

    def run(self, inputs: list[Tensor], ctx: "RunContext") -> Iterator[StepBlock]:
        """Yield step blocks (recurrent layers only); set ``ctx.outputs[self.name]``."""
        raise NotImplementedError
        yield  # pragma: no cover


@dataclass
class RunContext:
    trace: set[str] | None  # recurrent layer names to record; None = all
    states: dict[str, list[NDArray]]  # recurrent layer name -> initial state (consumed)
    final_states: dict[str, list[NDArray]] = field(default_factory=dict)
    outputs: dict[str, list[Tensor]] = field(default_factory=dict)
    unused: set[str] = field(default_factory=set)  # layers whose outputs no later layer of this run reads


class Program:
    """A model compiled for replay."""

    def __init__(self, model: Model, ops: list[Op], options: ReplayOptions, input_spec: "InputSpec") -> None:
        self.model = model
        self.ops = ops
        self.options = options
        self.input_spec = input_spec
        self.output_names = {edge.layer for edge in model.graph.outputs}
        # Whether any step can be masked (decides the `masked` output column up front).
        self.may_mask = any(
            isinstance(op, MaskingOp) or (isinstance(op, EmbeddingOp) and op.mask_zero) for op in ops
        )
        self.recurrent = {op.layer.name: op for op in ops if isinstance(op, RecurrentOp)}
        for op in ops:
            if isinstance(op, BidirectionalOp):
                self.recurrent[op.forward.layer.name] = op.forward
                self.recurrent[op.backward.layer.name] = op.backward

    def run(
        self,
        x: NDArray,
        *,
        trace: Sequence[str] | None = None,
        states: Mapping[str, Sequence[NDArray]] | None = None,
        stop_after: Sequence[str] | None = None,
        keep_outputs: bool = False,
    ) -> "Run":
        """Replay a batch ``x`` of shape (N, T, F) (or (N, T) token ids).

        ``trace`` names the recurrent layers whose steps are recorded (all when
        None).  ``states`` gives initial states per recurrent layer name
        (``[h, c]`` for LSTM, ``[h]`` otherwise; each (U,) or (N, U)).
        ``stop_after`` ends the run once those layers are done (trace needs no
        more).  Iterate over the result for the step blocks; afterwards
        ``outputs`` and ``final_states`` are filled in, and with
        ``keep_outputs`` also ``layer_outputs`` (layer name -> its output arrays).
        """
        return Run(self, x, trace, states, stop_after, keep_outputs)

    def predict(self, x: NDArray) -> list[NDArray]:
        """The model's outputs for a batch, computed in NumPy."""
        run = self.run(x, trace=[])
        for _ in run:
            pass
        return run.outputs


class Run:
    def __init__(self, program: Program, x, trace, states, stop_after, keep_outputs: bool = False) -> None:
        self.program = program
        self.keep_outputs = keep_outputs
        self.layer_outputs: dict[str, list[NDArray]] = {}
        self.x = x
        self.trace = None if trace is None else set(trace)
        self.states = {k: [np.asarray(s) for s in v] for k, v in (states or {}).items()}
        self.stop_after = set(stop_after or ())
        self.outputs: list[NDArray] = []
        self.final_states: dict[str, list[NDArray]] = {}
        unknown = set(self.states) - set(program.recurrent)
        if unknown:
            raise UsageProblem(
                f"initial state given for unknown layer(s): {', '.join(sorted(unknown))} "
                f"(recurrent layers: {', '.join(program.recurrent)})"
            )

    def __iter__(self) -> Iterator[StepBlock]:
        program = self.program
        ctx = RunContext(trace=self.trace, states=dict(self.states))
        first = program.input_spec.prepare(self.x, program.options.dtype)
        remaining = set(self.stop_after)
        needed = _consumer_counts(program)
        if remaining and not self.keep_outputs:
            ctx.unused = _unused_outputs(program.ops, remaining)
        ctx.outputs[INPUT] = [first]
        for op in program.ops:
            inputs = []
            for edge in op.inputs:
                produced = ctx.outputs.get(edge.layer)
                if produced is None or edge.index >= len(produced):
                    raise ModelFileError(
                        f"layer '{op.name}' uses output {edge.index} of '{edge.layer}', which does not exist"
                    )
                inputs.append(produced[edge.index])
            try:
                yield from op.run(inputs, ctx)
            except (ValueError, IndexError) as exc:
                if isinstance(op, (RecurrentOp, BidirectionalOp)):
                    raise  # they check their input themselves
                # NumPy refusing to combine shapes: the file's layers do not fit together.
                shapes = ", ".join(str(tensor.value.shape) for tensor in inputs)
                raise ModelFileError(
                    f"{program.model.label}: layer '{op.name}' cannot be applied to its input of shape {shapes} "
                    f"(the model's layers do not fit together: {' '.join(str(exc).split())[:120]})"
                ) from None
            if self.keep_outputs:
                self.layer_outputs[op.name] = [tensor.value for tensor in ctx.outputs[op.name]]
            for edge in op.inputs:  # free what no later layer reads
                needed[edge.layer] -= 1
                if needed[edge.layer] == 0 and edge.layer not in program.output_names:
                    ctx.outputs.pop(edge.layer, None)
            if remaining:
                remaining -= {op.name} | set(getattr(op, "traced_names", ()))
                if not remaining:
                    break
        self.final_states = ctx.final_states
        if not self.stop_after:
            for edge in program.model.graph.outputs:
                produced = ctx.outputs.get(edge.layer)
                if produced is None or edge.index >= len(produced):
                    raise ModelFileError(
                        f"{program.model.label}: the model's output is output {edge.index} of '{edge.layer}', "
                        "which no layer produces"
                    )
            self.outputs = [ctx.outputs[e.layer][e.index].value for e in program.model.graph.outputs]


def _unused_outputs(ops: Sequence[Op], stop_after: set[str]) -> set[str]:
    """Layers whose outputs are not read when the run stops after ``stop_after``: a recurrent layer
    among them need not keep its (T, U) output sequence (on a long input, the largest array)."""
    last = max((k for k, op in enumerate(ops) if stop_after & ({op.name} | set(getattr(op, "traced_names", ())))),
               default=len(ops) - 1)
    read = {edge.layer for op in ops[: last + 1] for edge in op.inputs}
    return {op.name for op in ops[: last + 1] if op.name not in read}


def _consumer_counts(program: Program) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in program.ops:
        for edge in op.inputs:
            counts[edge.layer] = counts.get(edge.layer, 0) + 1
    return counts


# ---------------------------------------------------------------- input


@dataclass(frozen=True)
class InputSpec:
    """What the model's input takes: features per step, or token ids for an Embedding."""

    features: int | None  # None: unknown
    timesteps: int | None
    token_ids: bool = False
    vocabulary: int | None = None  # Embedding input_dim
    layer_name: str = ""  # the Embedding reading the token ids

    def check(self, sequences) -> None:
        """Check every input sequence before anything is replayed or written.

        Names the sequence id and the input row of the first problem.
        """
        for sequence in sequences:
            values = np.asarray(sequence.values)
            label = f"sequence {sequence.id}" if len(sequences) > 1 else "the input"
            if self.token_ids:
                if values.ndim == 2 and values.shape[1] != 1:
                    raise InputDataError(
                        f"this model takes one column of token ids; {label} has {values.shape[1]} columns"
                    )
                ids = values.reshape(-1)
                fraction = ~np.isfinite(ids) | (ids != np.round(ids))
                if fraction.any():
                    row = int(np.flatnonzero(fraction)[0])
                    raise InputDataError(
                        f"{label}, step {row}: {ids[row]:g} is not a token id: layer '{self.layer_name}' "
                        "(Embedding) takes whole-number token ids"
                    )
                if self.vocabulary is not None:
                    outside = (ids < 0) | (ids >= self.vocabulary)
                    if outside.any():
                        row = int(np.flatnonzero(outside)[0])
                        raise InputDataError(
                            f"{label}, step {row}: token id {ids[row]:g} is outside the vocabulary "
                            f"(0..{self.vocabulary - 1}) of layer '{self.layer_name}' (Embedding)"
                        )
            elif self.features is not None and values.shape[-1] != self.features:
                raise InputDataError(
                    f"the model takes {self.features} feature(s) per step; {label} has {values.shape[-1]} column(s)"
                )

    def prepare(self, x: NDArray, dtype) -> Tensor:
        x = np.asarray(x)
        if self.token_ids:
            if x.ndim == 3 and x.shape[-1] == 1:
                x = x[..., 0]
            if x.ndim != 2:
                raise InputDataError(f"this model takes one column of token ids; the input has {x.shape[-1]} columns")
            return Tensor(x)
        if x.ndim != 3:
            raise InputDataError(f"input must have shape (sequences, steps, features); got {x.shape}")
        if self.features is not None and x.shape[-1] != self.features:
            raise InputDataError(
                f"the model takes {self.features} feature(s) per step; the input has {x.shape[-1]} column(s)"
            )
        return Tensor(np.ascontiguousarray(x, dtype=dtype))


def _input_spec(model: Model, ops: list[Op]) -> InputSpec:
    shape = model.graph.input_shape
    timesteps = shape[0] if shape else None
    features = shape[-1] if shape and len(shape) >= 2 else None
    # The first layer that reads the model input (past InputLayer and identities).
    sources = {INPUT}
    first = None
    for op in ops:
        if any(edge.layer in sources for edge in op.inputs):
            if isinstance(op, IdentityOp):
                sources.add(op.name)
                continue
            first = op
            break
    if isinstance(first, EmbeddingOp):
        return InputSpec(features=1, timesteps=timesteps, token_ids=True, vocabulary=int(first.table.shape[0]),
                         layer_name=first.layer_name)
    if features is None:
        if isinstance(first, RecurrentOp):
            features = first.layer.weights.features
        elif isinstance(first, BidirectionalOp):
            features = first.forward.layer.weights.features
        elif isinstance(first, DenseOp):
            features = int(first.kernel.shape[0])
    return InputSpec(features=features, timesteps=timesteps)


# ---------------------------------------------------------------- compile


def compile_model(model: Model, options: ReplayOptions | None = None, *, upto: Sequence[str] | None = None) -> Program:
    """Prepare ``model`` for replay.

    ``upto`` (recurrent layer names) compiles only the part of the graph
    needed to reach them, so layers after them need not be replayable.
    Raises ``UnsupportedLayer`` naming the first layer that cannot be replayed.
    """
    options = options or ReplayOptions()
    graph = model.graph
    if model.weights_only and graph.class_name != "weights-only":
        raise UnsupportedLayer(
            f"{model.label}: a Keras 3 weights-only file does not record the layer order; "
            "replay needs the model (.keras or .h5 saved with model.save)"
        )
    specs = list(graph.layers)
    if upto:
        keep = _ancestors(graph, [_spec_of(model, name) for name in upto])
        specs = [spec for spec in specs if spec.name in keep]
    if len(graph.inputs) > 1:
        raise UnsupportedLayer(f"{model.label}: models with several inputs ({', '.join(graph.inputs)}) are not supported")
    hard = hard_sigmoid_for(model.keras_major, options.hard_sigmoid)
    builder = _OpBuilder(model, options, hard)
    ops = [builder.build(spec) for spec in specs]
    _check_mask_nodes(model, specs, ops)
    return Program(model, ops, options, _input_spec(model, ops))


def _check_mask_nodes(model: Model, specs: list[LayerSpec], ops: list[Op]) -> None:
    """A mask op node may only feed other mask op nodes (its result travels as a `mask` keyword)."""
    nodes = {op.name for op in ops if isinstance(op, MaskNodeOp)}
    if not nodes:
        return
    for spec, op in zip(specs, ops):
        used = [edge.layer for edge in op.inputs if edge.layer in nodes]
        if used and not isinstance(op, MaskNodeOp):
            raise UnsupportedLayer(f"layer '{spec.name}' takes the output of op '{used[0]}' as data, which cannot be replayed")
    outputs = [edge.layer for edge in model.graph.outputs if edge.layer in nodes]
    if outputs:
        raise UnsupportedLayer(f"the model's output '{outputs[0]}' is an op that cannot be replayed")


def _spec_of(model: Model, recurrent_name: str) -> str:
    layer = model.recurrent_layer(recurrent_name)
    return layer.wrapper or layer.name


def _ancestors(graph, names: list[str]) -> set[str]:
    by_name = {spec.name: spec for spec in graph.layers}
    keep: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in keep or name not in by_name:
            continue
        keep.add(name)
        stack.extend(edge.layer for edge in by_name[name].inbound)
    return keep


class _OpBuilder:
    def __init__(self, model: Model, options: ReplayOptions, hard_sigmoid: str) -> None:
        self.model = model
        self.options = options
        self.hard = hard_sigmoid
        self.dtype = np.dtype(options.dtype)

    def where(self, spec: LayerSpec) -> str:
        return f"layer '{spec.name}' ({spec.class_name})"

    def weight(self, spec_name: str, key: str, required: bool = True) -> NDArray | None:
        stored = self.model.weights.get(spec_name, {})
        if key not in stored:
            if required:
                raise ModelFileError(f"{self.model.label}: layer '{spec_name}' has no '{key}' weight in the file")
            return None
        return np.asarray(stored[key].array, dtype=self.dtype)

    def activation(self, spec: LayerSpec, key: str, default: str | None = "linear") -> Activation:
        return get_activation(activation_name(spec.get(key, default)), self.hard, self.where(spec))

    def build(self, spec: LayerSpec) -> Op:
        try:
            op = self._build(spec)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
            # Converting the file's settings (int("abc"), float([1]), a missing key) failed.
            raise ModelFileError(
                f"{self.model.label}: {self.where(spec)} has settings that cannot be used ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:120]})"
            ) from None
        op.name = spec.name
        # Layers with no inbound tensors read the model input (InputLayer, or the first
        # layer of a Sequential model saved without one).
        op.inputs = spec.inbound or (Edge(INPUT),)
        if spec.shared:
            raise UnsupportedLayer(f"{self.where(spec)} is called more than once in the model (shared layers are not replayed)")
        return op

    def _build(self, spec: LayerSpec) -> Op:
        cls = spec.class_name
        if cls in IDENTITY_LAYERS or (cls == "NoWeights" and not spec.inbound):
            return IdentityOp()
        if cls == "NoWeights":
            # A weights-only file names a weightless layer but not its kind.
            if "dropout" in spec.name.lower() or "noise" in spec.name.lower():
                self.model.warn(f"layer '{spec.name}': kind not recorded; replayed as a dropout (identity)")
                return IdentityOp()
            raise UnsupportedLayer(
                f"layer '{spec.name}': a weights-only file does not record what this weightless layer does, "
                "so it cannot be replayed"
            )
        if cls in MASK_OP_NODES:
            return MaskNodeOp()
        if spec.is_recurrent:
            return RecurrentOp(self._recurrent(spec.name), spec)
        if cls == "Bidirectional":
            forward = self._recurrent(f"{spec.name}/forward")
            backward = self._recurrent(f"{spec.name}/backward")
            return BidirectionalOp(
                RecurrentOp(forward, spec.children["forward"]),
                RecurrentOp(backward, spec.children["backward"]),
                merge_mode=spec.config.get("merge_mode", "concat"),
                return_state=bool(spec.children["forward"].get("return_state", False)),
            )
        if cls == "Dense":
            kernel = self.weight(spec.name, "kernel")
            bias = self.weight(spec.name, "bias", required=bool(spec.get("use_bias", True)))
            if kernel.ndim != 2 or (bias is not None and bias.shape != (kernel.shape[1],)):
                raise ModelFileError(
                    f"{self.model.label}: {self.where(spec)}: kernel {kernel.shape} and bias "
                    f"{None if bias is None else bias.shape} do not make a Dense layer (in, out) + (out,)"
                )
            return DenseOp(kernel, bias, self.activation(spec, "activation", None))
        if cls == "TimeDistributed":
            inner = spec.children.get("layer")
            if inner is None or inner.class_name not in ("Dense", "Activation", "Dropout"):
                inner_name = inner.class_name if inner else "?"
                raise UnsupportedLayer(f"{self.where(spec)}: TimeDistributed({inner_name}) cannot be replayed")
            return TimeDistributedOp(self._build(inner))
        if cls == "Activation":
            return ActivationOp(self.activation(spec, "activation", None))
        if cls == "Masking":
            return MaskingOp(float(spec.config.get("mask_value", 0.0)))
        if cls == "Embedding":
            table = self.weight(spec.name, "embeddings")
            if table.ndim != 2 or table.shape[0] == 0:
                raise ModelFileError(f"{self.model.label}: {self.where(spec)}: embeddings {table.shape} is not a (vocabulary, size) table")
            return EmbeddingOp(table, bool(spec.config.get("mask_zero", False)), spec.name)
        if cls == "RepeatVector":
            n = spec.config.get("n", 1)
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPEAT:
                raise ModelFileError(f"{self.model.label}: {self.where(spec)}: n is {n!r}, not a count from 1 to {MAX_REPEAT:,}")
            return RepeatVectorOp(n)
        if cls == "Flatten":
            return FlattenOp()
        if cls in ("GlobalAveragePooling1D", "GlobalMaxPooling1D"):
            return GlobalPoolOp("max" if "Max" in cls else "mean")
        if cls in ("Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
            return MergeOp(cls, int(spec.config.get("axis", -1)))
        if cls in ("BatchNormalization", "LayerNormalization"):
            return self._normalization(spec)
        if cls == "Lambda":
            raise UnsupportedLayer(
                f"{self.where(spec)}: Lambda layers hold Python code, which lstm-inspect never runs"
            )
        if cls == "Unknown":
            raise UnsupportedLayer(
                f"layer '{spec.name}': its kind cannot be told from a weights-only file, so it cannot be replayed"
            )
        raise UnsupportedLayer(f"{self.where(spec)} cannot be replayed (not supported by lstm-inspect)")

    def _normalization(self, spec: LayerSpec) -> Op:
        eps = float(spec.config.get("epsilon", 1e-3))
        gamma = self.weight(spec.name, "gamma", required=False)
        beta = self.weight(spec.name, "beta", required=False)
        if spec.class_name == "BatchNormalization":
            axis = spec.config.get("axis", -1)
            if axis not in (-1, [-1], 2, [2]):
                raise UnsupportedLayer(f"{self.where(spec)}: only normalisation over the last axis is replayed")
            return BatchNormOp(self.weight(spec.name, "moving_mean"), self.weight(spec.name, "moving_variance"), gamma, beta, eps)
        return LayerNormOp(gamma, beta, eps)

    def _recurrent(self, name: str) -> "CompiledRecurrent":
        layer = self.model.recurrent_layer(name)
        activation = layer.activation or self.options.assume_activation
        recurrent_activation = layer.recurrent_activation or self.options.assume_recurrent_activation
        if layer.kind == "SimpleRNN":
            recurrent_activation = recurrent_activation or "sigmoid"  # unused by SimpleRNN
        if activation is None or recurrent_activation is None:
            # Weights-only file: assume the defaults of the Keras that saved it.
            from .model import default_recurrent_activation

            activation = activation or "tanh"
            recurrent_activation = recurrent_activation or default_recurrent_activation(self.model)
            version = self.model.keras_version or "unknown"
            self.model.warn(
                f"layer '{name}': activations not recorded in the file; assuming the defaults of "
                f"Keras {version} (activation={activation}, recurrent_activation={recurrent_activation}); "
                "override with --activation / --recurrent-activation"
            )
        where = f"layer '{name}'"
        return CompiledRecurrent(
            layer,
            get_activation(activation, self.hard, where),
            get_activation(recurrent_activation, self.hard, where),
            self.dtype,
            self.options,
        )


# ---------------------------------------------------------------- simple ops


class IdentityOp(Op):
    def run(self, inputs, ctx):
        ctx.outputs[self.name] = [inputs[0]]
        return iter(())


class MaskNodeOp(IdentityOp):
    """A Keras 3 mask op node (``MASK_OP_NODES``): only ever read by other mask op nodes."""


class DenseOp(Op):
    def __init__(self, kernel, bias, activation: Activation) -> None:
        self.kernel, self.bias, self.act = kernel, bias, activation

    def apply(self, x: NDArray) -> NDArray:
        if x.shape[-1] != self.kernel.shape[0]:
            raise ModelFileError(
                f"layer '{self.name}': kernel has {self.kernel.shape[0]} rows but its input has {x.shape[-1]} features"
            )
        y = x @ self.kernel
        if self.bias is not None:
            y += self.bias
        return self.act(y)

    def run(self, inputs, ctx):
        tensor = inputs[0]
        ctx.outputs[self.name] = [Tensor(self.apply(tensor.value), tensor.mask)]
        return iter(())


class TimeDistributedOp(Op):
    def __init__(self, inner: Op) -> None:
        self.inner = inner

    def run(self, inputs, ctx):
        self.inner.name = self.name
        return self.inner.run(inputs, ctx)


class ActivationOp(Op):
    def __init__(self, activation: Activation) -> None:
        self.act = activation

    def apply(self, x):
        return self.act(x)

    def run(self, inputs, ctx):
        ctx.outputs[self.name] = [Tensor(self.act(inputs[0].value), inputs[0].mask)]
        return iter(())


class MaskingOp(Op):
    def __init__(self, mask_value: float) -> None:
        self.mask_value = mask_value

    def run(self, inputs, ctx):
        x = inputs[0].value
        keep = np.any(x != x.dtype.type(self.mask_value), axis=-1)  # (N, T)
        ctx.outputs[self.name] = [Tensor(x * keep[..., None].astype(x.dtype), keep)]
        return iter(())


class EmbeddingOp(Op):
    def __init__(self, table: NDArray, mask_zero: bool, name: str) -> None:
        self.table, self.mask_zero, self.layer_name = table, mask_zero, name

    def run(self, inputs, ctx):
        ids = inputs[0].value
        if ids.dtype.kind == "f":
            if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
                raise InputDataError(f"layer '{self.layer_name}' (Embedding) takes whole-number token ids")
            ids = ids.astype(np.int64)
        bad = (ids < 0) | (ids >= self.table.shape[0])
        if np.any(bad):
            n, t = np.argwhere(bad)[0]
            raise InputDataError(
                f"token id {ids[n, t]} at step {t} of sequence {n} is outside the Embedding's vocabulary "
                f"(0..{self.table.shape[0] - 1}) of layer '{self.layer_name}'"
            )
        mask = ids != 0 if self.mask_zero else None
        ctx.outputs[self.name] = [Tensor(self.table[ids], mask)]
        return iter(())


class RepeatVectorOp(Op):
    def __init__(self, n: int) -> None:
        self.n = n

    def run(self, inputs, ctx):
        x = inputs[0].value
        ctx.outputs[self.name] = [Tensor(np.repeat(x[:, None, :], self.n, axis=1))]
        return iter(())


class FlattenOp(Op):
    def run(self, inputs, ctx):
        x = inputs[0].value
        ctx.outputs[self.name] = [Tensor(x.reshape(x.shape[0], -1))]
        return iter(())


class GlobalPoolOp(Op):
    def __init__(self, how: str) -> None:
        self.how = how

    def run(self, inputs, ctx):
        tensor = inputs[0]
        x, mask = tensor.value, tensor.mask
        if self.how == "mean":
            if mask is None:
                y = x.mean(axis=1)
            else:
                weights = mask[..., None].astype(x.dtype)
                y = (x * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1)
        else:
            y = np.where(mask[..., None], x, -np.inf).max(axis=1) if mask is not None else x.max(axis=1)
        ctx.outputs[self.name] = [Tensor(y.astype(x.dtype))]
        return iter(())


class MergeOp(Op):
    def __init__(self, kind: str, axis: int) -> None:
        self.kind, self.axis = kind, axis

    def run(self, inputs, ctx):
        values = [t.value for t in inputs]
        if self.kind == "Concatenate":
            y = np.concatenate(values, axis=self.axis)
        elif self.kind == "Add":
            y = np.sum(values, axis=0)
        elif self.kind == "Subtract":
            y = values[0] - values[1]
        elif self.kind == "Multiply":
            y = np.prod(values, axis=0)
        elif self.kind == "Average":
            y = np.mean(values, axis=0)
        elif self.kind == "Maximum":
            y = np.max(values, axis=0)
        else:
            y = np.min(values, axis=0)
        masks = [t.mask for t in inputs if t.mask is not None]
        mask = np.logical_and.reduce(masks) if masks and y.ndim == 3 else None
        ctx.outputs[self.name] = [Tensor(y.astype(values[0].dtype), mask)]
        return iter(())


class BatchNormOp(Op):
    def __init__(self, mean, var, gamma, beta, eps) -> None:
        scale = 1.0 / np.sqrt(var + eps)
        if gamma is not None:
            scale = scale * gamma
        self.scale = scale
        self.shift = (beta if beta is not None else 0) - mean * scale

    def run(self, inputs, ctx):
        x = inputs[0].value
        ctx.outputs[self.name] = [Tensor((x * self.scale + self.shift).astype(x.dtype), inputs[0].mask)]
        return iter(())


class LayerNormOp(Op):
    def __init__(self, gamma, beta, eps) -> None:
        self.gamma, self.beta, self.eps = gamma, beta, eps

    def run(self, inputs, ctx):
        x = inputs[0].value
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        y = (x - mean) / np.sqrt(var + self.eps)
        if self.gamma is not None:
            y = y * self.gamma
        if self.beta is not None:
            y = y + self.beta
        ctx.outputs[self.name] = [Tensor(y.astype(x.dtype), inputs[0].mask)]
        return iter(())


# ---------------------------------------------------------------- recurrent


class CompiledRecurrent:
    """A recurrent layer's weights rearranged for the step loop."""

    def __init__(self, layer: RecurrentLayer, activation: Activation, recurrent_activation: Activation, dtype, options: ReplayOptions) -> None:
        self.layer = layer
        self.act = activation
        self.ract = recurrent_activation
        self.dtype = dtype
        self.options = options
        w = layer.weights
        U = w.units
        self.units = U
        kernel = np.asarray(w.kernel, dtype=dtype)
        recurrent = np.asarray(w.recurrent_kernel, dtype=dtype)
        effective = w.effective_bias()
        bias = np.zeros(kernel.shape[1], dtype=dtype) if effective is None else np.asarray(effective, dtype=dtype)
        # Only a reset_after GRU keeps its recurrent bias apart (inside the reset gate's product).
        separate = w.kind == "GRU" and w.reset_after and w.recurrent_bias is not None
        self.recurrent_bias = np.asarray(w.recurrent_bias, dtype=dtype) if separate else None
        self.mode = "general"
        if layer.kind == "LSTM":
            # Internal gate order i, f, o, c: the three recurrent-activation gates are contiguous.
            order = np.concatenate([np.arange(0, 2 * U), np.arange(3 * U, 4 * U), np.arange(2 * U, 3 * U)])
            kernel, recurrent, bias = kernel[:, order], recurrent[:, order], bias[order]
            self.scale = np.ones(4 * U, dtype=dtype)
            if self.act.name == "tanh" and self.ract.affine and self.ract.affine[0] == "tanh":
                self.mode = "tanh"  # sigmoid(x) = 0.5*tanh(x/2) + 0.5
                self.scale[: 3 * U] = 0.5
            elif self.act.name == "tanh" and self.ract.affine and self.ract.affine[0] == "clip":
                self.mode = "clip"  # hard_sigmoid(x) = clip(slope*x + offset, 0, 1)
                self.scale[: 3 * U] = self.ract.affine[1]
            kernel = kernel * self.scale
            recurrent = recurrent * self.scale
            bias = bias * self.scale
        self.kernel = np.ascontiguousarray(kernel)
        self.recurrent = np.ascontiguousarray(recurrent)
        self.bias = bias

    def zero_state(self, n: int) -> list[NDArray]:
        count = 2 if self.layer.kind == "LSTM" else 1
        return [np.zeros((n, self.units), dtype=self.dtype) for _ in range(count)]

    def initial_state(self, given: Sequence[NDArray] | None, n: int) -> list[NDArray]:
        state = self.zero_state(n)
        if given is None:
            return state
        if len(given) != len(state):
            raise UsageProblem(
                f"layer '{self.layer.name}': an initial state needs {len(state)} array(s) "
                f"({'h, c' if len(state) == 2 else 'h'}), got {len(given)}"
            )
        result = []
        for value, zero in zip(given, state):
            value = np.asarray(value, dtype=self.dtype)
            if value.ndim == 1:
                value = np.broadcast_to(value, zero.shape)
            if value.shape != zero.shape:
                raise UsageProblem(
                    f"layer '{self.layer.name}': initial state of shape {value.shape}, expected ({self.units},) or {zero.shape}"
                )
            result.append(np.array(value, dtype=self.dtype))
        return result

    def scan(
        self,
        x: NDArray,
        mask: NDArray | None,
        state: list[NDArray],
        record: bool,
        keep_sequence: bool,
        zero_output_for_mask: bool,
    ) -> Iterator[StepBlock]:
        """Scan ``x`` (N, T, F) from ``state``; yield blocks if ``record``.

        Afterwards ``self.last_state`` holds the final state and, when
        ``keep_sequence``, ``self.sequence`` the outputs (N, T, U) in
        processing order (reversed for go_backwards, as Keras returns them).
        """
        n, total, features = x.shape
        if features != self.kernel.shape[0]:
            raise InputDataError(
                f"layer '{self.layer.name}' takes {self.kernel.shape[0]} features per step; it was given {features}"
            )
        backwards = self.layer.go_backwards
        order = np.arange(total - 1, -1, -1) if backwards else np.arange(total)
        sequence = np.empty((n, total, self.units), dtype=self.dtype) if keep_sequence else None
        # Steps per block: options.chunk, fewer for wide batches so that a block's gate buffer
        # stays around CHUNK_BYTES (a 256-sequence batch would otherwise allocate hundreds of MB).
        step_bytes = n * self.kernel.shape[1] * self.dtype.itemsize
        chunk = max(1, min(int(self.options.chunk), max(16, CHUNK_BYTES // max(step_bytes, 1))))
        threads = plan_threads(n, self.kernel.shape[1], self.options.threads) if total else 1
        # BLAS stays on one thread for the whole scan when the batch is split (switching
        # OpenBLAS' thread count chunk by chunk cost more than the split gained).
        with single_threaded_blas() if threads > 1 else contextlib.nullcontext():
            yield from self._scan_chunks(x, mask, state, record, sequence, order, chunk, threads, zero_output_for_mask)

    def _scan_chunks(self, x, mask, state, record, sequence, order, chunk, threads, zero_output_for_mask):
        n, total, _ = x.shape
        dtype, U = self.dtype, self.units
        pre_wanted = record and self.options.pre_activation
        step = self._step_function()
        last_output = np.zeros((n, U), dtype=dtype)
        for start in range(0, total, chunk):
            idx = order[start : start + chunk]
            steps = idx.shape[0]
            m_chunk = mask[:, idx].T if mask is not None else None  # (S, N)
            buffers = self._buffers(steps, n, pre_wanted)
            if threads > 1:
                state = self._advance_in_threads(step, threads, x, idx, state, buffers, m_chunk)
            else:
                state = self._advance(step, x, idx, state, buffers, m_chunk)
            hidden = buffers["hidden"]
            if sequence is not None:
                out = hidden
                if m_chunk is not None and not m_chunk.all():
                    out = self._masked_outputs(hidden, m_chunk, last_output, zero_output_for_mask)
                sequence[:, start : start + steps, :] = out.transpose(1, 0, 2)
            if m_chunk is not None and not m_chunk.all():
                last_output = self._masked_outputs(hidden, m_chunk, last_output, zero_output_for_mask)[-1]
            else:
                last_output = hidden[-1]
            if record:
                yield StepBlock(self.layer, idx.astype(np.int64), self._public(buffers), None if m_chunk is None else ~m_chunk)
        self.last_state = state
        self.last_output = last_output if total else state[0]
        self.sequence = sequence

    def _advance(self, step, x, idx, state, buffers, keep):
        """Steps ``idx`` of ``x`` (N, T, F) from ``state``: the input projection, then the loop."""
        x_chunk = x[:, idx, :].transpose(1, 0, 2)  # (S, N, F)
        xw = np.matmul(x_chunk, self.kernel)
        xw += self.bias
        return step(xw, state, buffers, keep)

    def _advance_in_threads(self, step, threads, x, idx, state, buffers, keep):
        """``_advance`` on slices of the batch, one per thread (the slices never read each other)."""

        def task(rows: slice):
            return lambda: self._advance(
                step,
                x[rows],
                idx,
                [s[rows] for s in state],
                {name: buffer[:, rows] for name, buffer in buffers.items()},
                None if keep is None else keep[:, rows],
            )

        parts = run_split([task(rows) for rows in slices(x.shape[0], threads)])
        return [np.concatenate(pieces) for pieces in zip(*parts)]

    def _masked_outputs(self, hidden, keep, last_output, zero):
        """Keras' output at a masked step: zeros, or the previous output repeated."""
        if zero:
            return np.where(keep[..., None], hidden, 0).astype(hidden.dtype)
        out = np.empty_like(hidden)
        previous = last_output
        for s in range(hidden.shape[0]):
            out[s] = np.where(keep[s][:, None], hidden[s], previous)
            previous = out[s]
        return out

    # -- buffers and public layout ------------------------------------------------

    def _buffers(self, steps: int, n: int, pre: bool) -> dict[str, NDArray]:
        U, dtype = self.units, self.dtype
        kind = self.layer.kind
        gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 0}[kind]
        buffers = {"hidden": np.empty((steps, n, U), dtype=dtype)}
        if gates:
            buffers["gates"] = np.empty((steps, n, gates * U), dtype=dtype)
        if kind == "LSTM":
            buffers["cell"] = np.empty((steps, n, U), dtype=dtype)
        if pre:
            buffers["pre"] = np.empty((steps, n, max(gates, 1) * U), dtype=dtype)
        return buffers

    def _public(self, buffers: dict[str, NDArray]) -> dict[str, NDArray]:
        U = self.units
        kind = self.layer.kind
        values: dict[str, NDArray] = {}
        if kind == "LSTM":
            g = buffers["gates"]
            values.update(i=g[..., 0:U], f=g[..., U : 2 * U], c=g[..., 3 * U : 4 * U], o=g[..., 2 * U : 3 * U])
            values["cell"] = buffers["cell"]
        elif kind == "GRU":
            g = buffers["gates"]
            values.update(z=g[..., 0:U], r=g[..., U : 2 * U], c=g[..., 2 * U : 3 * U])
        values["hidden"] = buffers["hidden"]
        if "pre" in buffers:
            p = buffers["pre"]
            if kind == "LSTM":
                s = self.scale  # undo the folded scale so z_* are Keras' pre-activations
                values.update(
                    z_i=p[..., 0:U] / s[0:U],
                    z_f=p[..., U : 2 * U] / s[U : 2 * U],
                    z_c=p[..., 3 * U : 4 * U] / s[3 * U : 4 * U],
                    z_o=p[..., 2 * U : 3 * U] / s[2 * U : 3 * U],
                )
            elif kind == "GRU":
                values.update(z_z=p[..., 0:U], z_r=p[..., U : 2 * U], z_c=p[..., 2 * U : 3 * U])
            else:
                values["z_h"] = p
        return values

    # -- step loops ------------------------------------------------------------------

    def _step_function(self) -> Callable:
        kind = self.layer.kind
        if kind == "LSTM":
            return self._lstm_steps
        if kind == "GRU":
            return self._gru_steps
        return self._simple_steps

    def _lstm_steps(self, xw, state, buffers, keep):
        h, c = state
        U = self.units
        R = self.recurrent
        G = buffers["gates"]
        cells = buffers["cell"]
        hiddens = buffers["hidden"]
        pre = buffers.get("pre")
        if self.mode == "tanh" and pre is None and keep is None:
            return self._lstm_steps_plain(xw, h, c, G, cells, hiddens)
        n = h.shape[0]
        recur = np.empty((n, 4 * U), dtype=self.dtype)
        scratch = np.empty((n, U), dtype=self.dtype)
        mode = self.mode
        act, ract = self.act, self.ract
        offset = self.dtype.type(self.ract.affine[2]) if mode == "clip" else None
        half = self.dtype.type(0.5)
        tanh, multiply, add, dot = np.tanh, np.multiply, np.add, np.dot
        for s in range(xw.shape[0]):
            g = G[s]
            dot(h, R, out=recur)
            add(xw[s], recur, out=g)
            if pre is not None:
                pre[s] = g
            sig = g[:, : 3 * U]
            if mode == "tanh":
                tanh(g, out=g)
                multiply(sig, half, out=sig)
                add(sig, half, out=sig)
            elif mode == "clip":
                add(sig, offset, out=sig)
                np.clip(sig, 0, 1, out=sig)
                tanh(g[:, 3 * U :], out=g[:, 3 * U :])
            else:
                sig[...] = ract(sig)
                g[:, 3 * U :] = act(g[:, 3 * U :])
            cell = cells[s]
            multiply(g[:, U : 2 * U], c, out=cell)
            multiply(g[:, :U], g[:, 3 * U :], out=scratch)
            add(cell, scratch, out=cell)
            hidden = hiddens[s]
            if mode == "general":
                hidden[...] = act(cell)
            else:
                tanh(cell, out=hidden)
            multiply(hidden, g[:, 2 * U : 3 * U], out=hidden)
            if keep is not None and not keep[s].all():
                self._hold(keep[s], g, cell, hidden, c, h, None if pre is None else pre[s])
            h, c = hidden, cell
        return [h.copy(), c.copy()]

    def _lstm_steps_plain(self, xw, h, c, G, cells, hiddens):
        """The common case of ``_lstm_steps`` (sigmoid/tanh, no mask, no pre-activations), same numbers.

        With small layers the per-step cost is NumPy's call overhead, so the
        per-step views are made in bulk before the loop (iterating over an array
        is cheaper than slicing it) and ufuncs get their output positionally:
        about 40% less time per step than the general loop for LSTM(32).
        """
        U = self.units
        R = self.recurrent
        n = h.shape[0]
        recur = np.empty((n, 4 * U), dtype=self.dtype)
        scratch = np.empty((n, U), dtype=self.dtype)
        half = self.dtype.type(0.5)
        tanh, multiply, add, dot = np.tanh, np.multiply, np.add, np.dot
        steps = zip(xw, G, G[:, :, : 3 * U], G[:, :, :U], G[:, :, U : 2 * U], G[:, :, 2 * U : 3 * U],
                    G[:, :, 3 * U :], cells, hiddens)
        for x, g, sig, gate_i, gate_f, gate_o, gate_c, cell, hidden in steps:
            dot(h, R, recur)
            add(x, recur, g)
            tanh(g, g)
            multiply(sig, half, sig)  # sigmoid(z) = 0.5*tanh(z/2) + 0.5; the /2 is in the weights
            add(sig, half, sig)
            multiply(gate_f, c, cell)
            multiply(gate_i, gate_c, scratch)
            add(cell, scratch, cell)
            tanh(cell, hidden)
            multiply(hidden, gate_o, hidden)
            h, c = hidden, cell
        return [h.copy(), c.copy()]

    def _hold(self, keep, gates, cell, hidden, cell_prev, h_prev, pre=None):
        """A masked step leaves the state unchanged; its gates (and pre-activations) are NaN."""
        drop = ~keep
        gates[drop] = np.nan
        if pre is not None:
            pre[drop] = np.nan
        if cell is not None:
            cell[drop] = cell_prev[drop]
        hidden[drop] = h_prev[drop]

    def _gru_steps(self, xw, state, buffers, keep):
        (h,) = state
        U = self.units
        R = self.recurrent
        G = buffers["gates"]
        hiddens = buffers["hidden"]
        pre = buffers.get("pre")
        act, ract = self.act, self.ract
        reset_after = self.layer.weights.reset_after
        rb = self.recurrent_bias
        n = h.shape[0]
        recur = np.empty((n, 3 * U), dtype=self.dtype)
        for s in range(xw.shape[0]):
            x_s = xw[s]
            g = G[s]
            if reset_after:
                np.dot(h, R, out=recur)
                if rb is not None:
                    recur += rb
                np.add(x_s[:, : 2 * U], recur[:, : 2 * U], out=g[:, : 2 * U])
                if pre is not None:
                    pre[s, :, : 2 * U] = g[:, : 2 * U]
                g[:, : 2 * U] = ract(g[:, : 2 * U])
                r = g[:, U : 2 * U]
                candidate_pre = x_s[:, 2 * U :] + r * recur[:, 2 * U :]
            else:
                np.add(x_s[:, : 2 * U], h @ R[:, : 2 * U], out=g[:, : 2 * U])
                if pre is not None:
                    pre[s, :, : 2 * U] = g[:, : 2 * U]
                g[:, : 2 * U] = ract(g[:, : 2 * U])
                r = g[:, U : 2 * U]
                candidate_pre = x_s[:, 2 * U :] + (r * h) @ R[:, 2 * U :]
            if pre is not None:
                pre[s, :, 2 * U :] = candidate_pre
            g[:, 2 * U :] = act(candidate_pre)
            z = g[:, :U]
            hidden = hiddens[s]
            hidden[...] = z * h + (1 - z) * g[:, 2 * U :]
            if keep is not None and not keep[s].all():
                self._hold(keep[s], g, None, hidden, None, h, None if pre is None else pre[s])
            h = hidden
        return [h.copy()]

    def _simple_steps(self, xw, state, buffers, keep):
        (h,) = state
        R = self.recurrent
        hiddens = buffers["hidden"]
        pre = buffers.get("pre")
        act = self.act
        for s in range(xw.shape[0]):
            z = xw[s] + h @ R
            if pre is not None:
                pre[s] = z
            hidden = hiddens[s]
            hidden[...] = act(z)
            if keep is not None and not keep[s].all():
                drop = ~keep[s]
                hidden[drop] = h[drop]
                if pre is not None:
                    pre[s][drop] = np.nan
            h = hidden
        return [h.copy()]


class RecurrentOp(Op):
    def __init__(self, compiled: CompiledRecurrent, spec: LayerSpec) -> None:
        self.compiled = compiled
        self.layer = compiled.layer
        self.spec = spec
        self.return_state = bool(spec.get("return_state", False))
        self.zero_output_for_mask = bool(spec.get("zero_output_for_mask", False))
        self.traced_names = (compiled.layer.name,)

    def scan(self, tensor: Tensor, ctx: RunContext, extra_states: list[Tensor], keep_sequence: bool, zero_output: bool):
        n = tensor.value.shape[0]
        given = ctx.states.pop(self.layer.name, None)
        if given is None and extra_states:
            given = [t.value for t in extra_states]
        state = self.compiled.initial_state(given, n)
        record = ctx.trace is None or self.layer.name in ctx.trace
        if not tensor.is_sequence:
            raise UnsupportedLayer(f"layer '{self.layer.name}' expects a sequence but its input has shape {tensor.value.shape}")
        yield from self.compiled.scan(tensor.value, tensor.mask, state, record, keep_sequence, zero_output)
        ctx.final_states[self.layer.name] = self.compiled.last_state

    def run(self, inputs, ctx):
        tensor = inputs[0]
        return_sequences = self.layer.return_sequences
        keep = return_sequences and self.name not in ctx.unused
        yield from self.scan(tensor, ctx, inputs[1:], keep, self.zero_output_for_mask)
        c = self.compiled
        if return_sequences:
            # Keras passes the input mask on unchanged, even for go_backwards outputs.
            out = Tensor(c.sequence, tensor.mask)
        else:
            out = Tensor(c.last_output)
        outputs = [out]
        if self.return_state:
            outputs += [Tensor(s) for s in c.last_state]
        ctx.outputs[self.name] = outputs


class BidirectionalOp(Op):
    def __init__(self, forward: RecurrentOp, backward: RecurrentOp, merge_mode, return_state: bool) -> None:
        self.forward, self.backward = forward, backward
        self.merge_mode = merge_mode
        self.return_state = return_state
        self.traced_names = (forward.layer.name, backward.layer.name)

    def run(self, inputs, ctx):
        tensor = inputs[0]
        states = inputs[1:]
        half = len(states) // 2
        return_sequences = self.forward.layer.return_sequences
        # Keras zeroes a Bidirectional's outputs at masked steps when it returns sequences.
        zero = return_sequences
        keep = return_sequences and self.name not in ctx.unused
        yield from self.forward.scan(tensor, ctx, states[:half], keep, zero)
        f_seq, f_last, f_state = self.forward.compiled.sequence, self.forward.compiled.last_output, self.forward.compiled.last_state
        yield from self.backward.scan(tensor, ctx, states[half:], keep, zero)
        b_seq, b_last, b_state = self.backward.compiled.sequence, self.backward.compiled.last_output, self.backward.compiled.last_state
        if return_sequences and not keep:  # nothing reads the merged sequence in this run
            ctx.outputs[self.name] = []
            return
        if return_sequences:
            if self.backward.layer.go_backwards:
                b_seq = b_seq[:, ::-1]  # back into input order
            if self.forward.layer.go_backwards:
                f_seq = f_seq[:, ::-1]
            a, b, mask = f_seq, b_seq, tensor.mask
        else:
            a, b, mask = f_last, b_last, None
        mode = self.merge_mode
        if mode == "concat":
            merged = [np.concatenate([a, b], axis=-1)]
        elif mode == "sum":
            merged = [a + b]
        elif mode == "ave":
            merged = [(a + b) / 2]
        elif mode == "mul":
            merged = [a * b]
        elif mode is None:
            merged = [a, b]
        else:
            raise UnsupportedLayer(f"layer '{self.name}': merge_mode '{mode}' is not supported")
        outputs = [Tensor(np.ascontiguousarray(v), mask) for v in merged]
        if self.return_state:
            outputs += [Tensor(s) for s in f_state] + [Tensor(s) for s in b_state]
        ctx.outputs[self.name] = outputs
