"""Compile a model's layer graph once, then replay it on batches of inputs.

``compile_model`` turns the graph into a list of operations in execution
order: a :class:`~lstm_inspect.ops.Layer` for each feed-forward layer (looked
up in the ``ops`` registry), a :class:`RecurrentOp`/:class:`BidirectionalOp`
for each recurrent one (cells built by the layer's kind).  It compiles only
what the request needs:

* ``upto`` names recurrent layers to trace: only their ancestors are built,
  so layers after them need not be replayable, and only the model inputs they
  read are needed;
* ``start`` (``--from LAYER``) feeds that layer's input directly: nothing
  before it is built;
* otherwise (predict, verify) everything that leads to the model's outputs.

A layer that cannot be replayed stops compilation with an error naming it and
the ``--from`` that would get past it.  ``Program.replay`` replays a batch: one
array per program input, (N, T, F) for sequences, (N, D) for inputs without a
time axis, (N, T) token ids for an Embedding.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..activations import get_activation, hard_sigmoid_for
from ..config import Edge, LayerSpec
from ..errors import InputDataError, ModelFileError, UnsupportedLayer, UsageProblem
from ..model import Model, RecurrentLayer, default_recurrent_activation
from ..ops import BuildContext, Layer, Tensor, op_for
from .recurrent import BidirectionalOp, GraphOp, RecurrentOp
from .scan import DEFAULT_CHUNK, Scan, StepBlock

FEED = "\x00feed:"  # edges named FEED + input name carry what the caller fed
FROM = "from:"  # the input name of a --from feed: "from:<layer>"

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


def value_names(layer: RecurrentLayer, pre_activation: bool) -> list[str]:
    """The recorded columns of a recurrent layer, in output order (its kind's)."""
    return layer.kind.value_names(pre_activation)


@dataclass
class ReplayState:
    """The state of one replay: what to record, the states to start from and those it ended in, and every layer's outputs so far."""
    trace: set[str] | None  # recurrent layer names to record; None = all
    states: dict[str, list[NDArray]]  # recurrent layer name -> initial state (consumed)
    final_states: dict[str, list[NDArray]] = field(default_factory=dict)
    outputs: dict[str, list[Tensor]] = field(default_factory=dict)
    unused: set[str] = field(default_factory=set)  # layers whose outputs no later layer of this run reads


class FeedForwardOp(GraphOp):
    """A feed-forward layer in the graph."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer

    def evaluate(self, inputs: list[Tensor], replay_state: ReplayState) -> Iterator[StepBlock]:
        replay_state.outputs[self.name] = self.layer.apply(inputs)
        return iter(())


class MaskNodeOp(GraphOp):
    """A Keras 3 mask op node (``MASK_OP_NODES``): only ever read by other mask op nodes."""

    def evaluate(self, inputs: list[Tensor], replay_state: ReplayState) -> Iterator[StepBlock]:
        replay_state.outputs[self.name] = [inputs[0]]
        return iter(())


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputSpec:
    """What one program input takes.

    ``shape`` is the declared shape without the batch axis ((T, F), (D,),
    (T, H, W, C)), with None where free, or None when nothing declares it.
    ``token_ids``: an Embedding reads it (one column of whole numbers).
    """

    name: str
    shape: tuple[int | None, ...] | None
    token_ids: bool = False
    vocabulary: int | None = None  # Embedding input_dim
    layer_name: str = ""  # the Embedding reading the token ids

    @property
    def timesteps(self) -> int | None:
        """The fixed number of steps, where the input has a time axis that is fixed."""
        if self.token_ids:
            return self.shape[0] if self.shape else None
        return self.shape[0] if self.shape and len(self.shape) >= 2 else None

    @property
    def features(self) -> int | None:
        """Features per step this input takes (1 for token ids); None when its shape is not known."""
        if self.token_ids:
            return 1
        return self.shape[-1] if self.shape else None

    @property
    def has_time_axis(self) -> bool:
        """False for an input of one vector per sequence ((D,): a decoder's initial h, a flat input)."""
        if self.token_ids:
            return True
        return self.shape is None or len(self.shape) >= 2

    def check(self, sequences) -> None:
        """Check every input sequence (``.id``, ``.values``) before anything is replayed or written.

        Names the sequence id and the input row of the first problem.
        """
        for sequence in sequences:
            values = np.asarray(sequence.values)
            label = f"sequence {sequence.id}" if len(sequences) > 1 else "the input"
            if self.token_ids:
                self._check_tokens(values, label)
            elif self.features is not None and values.shape[-1] != self.features:
                raise InputDataError(
                    f"{self._which()}takes {self.features} feature(s) per step; {label} has {values.shape[-1]} column(s)"
                )
            elif self.shape is not None and len(self.shape) > 2 and values.shape[1:] != tuple(
                d if d is not None else values.shape[1 + k] for k, d in enumerate(self.shape[1:])
            ):
                raise InputDataError(
                    f"{self._which()}takes steps of shape {_shape_text(self.shape[1:])}; {label} has steps of shape "
                    f"{_shape_text(values.shape[1:])}"
                )

    def _which(self) -> str:
        return f"input '{self.name}' " if self.name else "the model "

    def _check_tokens(self, values: NDArray, label: str) -> None:
        if values.ndim == 2 and values.shape[1] != 1:
            raise InputDataError(f"this model takes one column of token ids; {label} has {values.shape[1]} columns")
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

    def prepare(self, x: NDArray, dtype) -> Tensor:
        """A batch for this input as the graph takes it."""
        x = np.asarray(x)
        if self.token_ids:
            if x.ndim == 3 and x.shape[-1] == 1:
                x = x[..., 0]
            if x.ndim != 2:
                raise InputDataError(f"this model takes one column of token ids; the input has {x.shape[-1]} columns")
            return Tensor(x)
        rank = len(self.shape) if self.shape is not None else None
        if rank is not None and x.ndim != rank + 1:
            one = _shape_text(self.shape, time_axis=self.has_time_axis)
            raise InputDataError(
                f"{self._which()}takes arrays of shape (N, {one}), or ({one}) for one sequence; got {x.shape}"
            )
        if rank is None and x.ndim < 2:
            raise InputDataError(f"{self._which()}got an array of shape {x.shape}")
        if self.features is not None and x.shape[-1] != self.features:
            raise InputDataError(
                f"{self._which()}takes {self.features} feature(s) per step; the input has {x.shape[-1]} column(s)"
            )
        return Tensor(np.ascontiguousarray(x, dtype=dtype))


def _shape_text(shape: Sequence[int | None], *, time_axis: bool = False) -> str:
    """``(None, 3)`` as ``T, 3`` (``time_axis``: the first axis is the steps) or ``?, 3``."""
    names = ["T" if k == 0 and time_axis and d is None else "?" if d is None else str(d) for k, d in enumerate(shape)]
    return ", ".join(names)


# ---------------------------------------------------------------- the program


class Program:
    """A model compiled for replay."""

    def __init__(self, model: Model, ops: list[GraphOp], options: ReplayOptions, inputs: list[InputSpec],
                 outputs: Sequence[Edge]) -> None:
        self.model = model
        self.ops = ops
        self.options = options
        self.inputs = inputs
        self.outputs = tuple(outputs)
        self.output_names = {edge.layer for edge in outputs}
        # Whether any step can be masked (decides the `masked` output column up front).
        self.may_mask = any(isinstance(op, FeedForwardOp) and op.layer.makes_mask for op in ops)
        self.recurrent: dict[str, RecurrentOp] = {}
        for op in ops:
            if isinstance(op, RecurrentOp):
                self.recurrent[op.layer.name] = op
            elif isinstance(op, BidirectionalOp):
                self.recurrent[op.forward.layer.name] = op.forward
                self.recurrent[op.backward.layer.name] = op.backward

    @property
    def input_names(self) -> list[str]:
        """The names of the model inputs, in the order the replay takes its arrays."""
        return [spec.name for spec in self.inputs]

    @property
    def input_spec(self) -> InputSpec:
        """The one input (most models have one)."""
        return self.inputs[0]

    def replay(
        self,
        x: NDArray | Sequence[NDArray] | Mapping[str, NDArray],
        *,
        trace: Sequence[str] | None = None,
        states: Mapping[str, Sequence[NDArray]] | None = None,
        stop_after: Sequence[str] | None = None,
        keep_outputs: bool = False,
    ) -> Replay:
        """Replay a batch: ``x`` is one array (one input), a list in ``input_names`` order, or a
        dict by input name.

        ``trace`` names the recurrent layers whose steps are recorded (all when
        None).  ``states`` gives initial states per recurrent layer name
        (``[h, c]`` for LSTM, ``[h]`` otherwise; each (U,) or (N, U)).
        ``stop_after`` ends the run once those layers are done.  Iterate over
        the result for the step blocks; afterwards ``outputs`` and
        ``final_states`` are filled in, and with ``keep_outputs`` also
        ``layer_outputs`` (layer name -> its output arrays).
        """
        return Replay(self, self._feeds(x), trace, states, stop_after, keep_outputs)

    def _feeds(self, x) -> list[NDArray]:
        names = self.input_names
        if isinstance(x, Mapping):
            missing = [name for name in names if name not in x]
            if missing:
                raise UsageProblem(f"no input given for {', '.join(missing)} (the model's inputs: {', '.join(names)})")
            return [x[name] for name in names]
        if isinstance(x, (list, tuple)):
            if len(x) != len(names):
                raise UsageProblem(f"{len(x)} inputs given; this needs {len(names)} ({', '.join(names)})")
            return list(x)
        if len(names) != 1:
            raise UsageProblem(f"this needs {len(names)} inputs ({', '.join(names)}); one was given")
        return [x]

    def predict(self, x) -> list[NDArray]:
        """The model's outputs for a batch, computed in NumPy."""
        replay = self.replay(x, trace=[])
        for _ in replay:
            pass
        return replay.outputs


class Replay:
    """One replay of a batch (see :meth:`Program.replay`)."""

    def __init__(self, program: Program, feeds: list[NDArray], trace, states, stop_after, keep_outputs: bool) -> None:
        self.program = program
        self.feeds = feeds
        self.keep_outputs = keep_outputs
        self.layer_outputs: dict[str, list[NDArray]] = {}
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
        replay_state = ReplayState(trace=self.trace, states=dict(self.states))
        batch = None
        for spec, value in zip(program.inputs, self.feeds):
            tensor = spec.prepare(value, program.options.dtype)
            if batch is not None and tensor.value.shape[0] != batch:
                raise InputDataError(f"input '{spec.name}' has {tensor.value.shape[0]} sequences; the first input has {batch}")
            batch = tensor.value.shape[0]
            replay_state.outputs[FEED + spec.name] = [tensor]
        remaining = set(self.stop_after)
        needed = _consumer_counts(program.ops)
        if remaining and not self.keep_outputs:
            replay_state.unused = _unused_outputs(program.ops, remaining)
        for op in program.ops:
            inputs = []
            for edge in op.inputs:
                produced = replay_state.outputs.get(edge.layer)
                if produced is None or edge.index >= len(produced):
                    raise ModelFileError(f"layer '{op.name}' uses output {edge.index} of '{edge.layer}', which does not exist")
                inputs.append(produced[edge.index])
            try:
                yield from op.evaluate(inputs, replay_state)
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
                self.layer_outputs[op.name] = [tensor.value for tensor in replay_state.outputs[op.name]]
            for edge in op.inputs:  # free what no later layer reads
                needed[edge.layer] -= 1
                if needed[edge.layer] == 0 and edge.layer not in program.output_names:
                    replay_state.outputs.pop(edge.layer, None)
            if remaining:
                remaining -= {op.name} | set(op.traced_names)
                if not remaining:
                    break
        self.final_states = replay_state.final_states
        if not self.stop_after:
            for edge in program.outputs:
                produced = replay_state.outputs.get(edge.layer)
                if produced is None or edge.index >= len(produced):
                    raise ModelFileError(
                        f"{program.model.label}: the model's output is output {edge.index} of '{edge.layer}', "
                        "which no layer produces"
                    )
            self.outputs = [replay_state.outputs[e.layer][e.index].value for e in program.outputs]


def _unused_outputs(ops: Sequence[GraphOp], stop_after: set[str]) -> set[str]:
    """Layers whose outputs are not read when the run stops after ``stop_after``: a recurrent layer
    among them need not keep its (T, U) output sequence (on a long input, the largest array)."""
    last = max((k for k, op in enumerate(ops) if stop_after & ({op.name} | set(op.traced_names))), default=len(ops) - 1)
    read = {edge.layer for op in ops[: last + 1] for edge in op.inputs}
    return {op.name for op in ops[: last + 1] if op.name not in read}


def _consumer_counts(ops: Sequence[GraphOp]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in ops:
        for edge in op.inputs:
            counts[edge.layer] = counts.get(edge.layer, 0) + 1
    return counts


# ---------------------------------------------------------------- compile


def compile_model(
    model: Model,
    options: ReplayOptions | None = None,
    *,
    upto: Sequence[str] | None = None,
    start: str | None = None,
) -> Program:
    """Prepare ``model`` for replay.

    ``upto`` (recurrent layer names) compiles only what is needed to reach
    them; ``start`` names the layer whose input is fed directly
    (``--from``).  Raises ``UnsupportedLayer`` naming the first layer that
    cannot be replayed, with the ``--from`` that would get past it.
    """
    options = options or ReplayOptions()
    graph = model.graph
    if model.weights_only and graph.class_name != "weights-only":
        raise UnsupportedLayer(
            f"{model.label}: a Keras 3 weights-only file does not record the layer order; "
            "replay needs the model (.keras or .h5 saved with model.save), or its architecture with --config"
        )
    sources = _sources(model, start)
    wiring = {spec.name: _wiring(spec, sources, start) for spec in graph.layers if spec.name not in sources.skip}
    if upto:
        targets = [_spec_name(model, name) for name in upto]
    else:
        if not graph.outputs:
            raise ModelFileError(f"{model.label}: the model config names no output layer, so there is nothing to predict")
        targets = [edge.layer for edge in graph.outputs]
    needed = _needed(wiring, targets, model, sources)
    hard = hard_sigmoid_for(model.keras_major, options.hard_sigmoid)
    builder = _OpBuilder(model, options, hard, sources)
    ops = []
    for spec in graph.layers:  # config order is an execution order
        if spec.name in needed:
            op = builder.build(spec)
            op.name = spec.name
            op.inputs = wiring[spec.name]
            ops.append(op)
    _check_order(ops)
    _check_mask_nodes(model, ops)
    read = {edge.layer[len(FEED):] for op in ops for edge in op.inputs if edge.layer.startswith(FEED)}
    inputs = [builder.input_spec(name, ops) for name in sources.names if name in read]
    outputs = graph.outputs if not upto else ()
    return Program(model, ops, options, inputs, outputs)


@dataclass
class _Sources:
    names: list[str]  # program input names, in model order
    feeds: dict[str, Edge]  # layer name -> the feed edge that replaces its (first) input
    skip: set[str]  # layers not in the program at all (before --from)


def _sources(model: Model, start: str | None) -> _Sources:
    graph = model.graph
    if start is None:
        return _Sources(list(graph.inputs), {}, set())
    names = [spec.name for spec in graph.layers]
    if start not in names:
        known = ", ".join(spec.name for spec in graph.layers if spec.class_name != "InputLayer")
        raise UsageProblem(f"--from: no layer named '{start}' in {model.label} (layers: {known})")
    spec = graph.layer(start)
    if spec.class_name == "InputLayer":
        raise UsageProblem(f"--from {start}: that is an input layer; give its input without --from")
    data_inputs = [e for e in spec.inbound if e.layer] if not (spec.is_recurrent or spec.is_bidirectional) else spec.inbound[:1]
    if len(data_inputs) > 1:
        raise UsageProblem(f"--from {start}: layer '{start}' ({spec.class_name}) takes {len(data_inputs)} inputs; "
                           "--from feeds one")
    ancestors = _ancestor_names(graph, [start]) - {start}
    return _Sources([FROM + start], {start: Edge(FEED + FROM + start)}, ancestors)


def _wiring(spec: LayerSpec, sources: _Sources, start: str | None) -> tuple[Edge, ...]:
    """The edges a layer reads: its inbound tensors, with model inputs and --from feeds as FEED edges."""
    if spec.name in sources.feeds:
        return (sources.feeds[spec.name],)
    if not spec.inbound:
        # An InputLayer reads its feed; so does the first layer of a Sequential without one.
        return (Edge(FEED + spec.name),)
    return tuple(spec.inbound)


def _needed(wiring: Mapping[str, tuple[Edge, ...]], targets: Sequence[str], model: Model, sources: _Sources) -> set[str]:
    """The layers that ``targets`` depend on; refuses a target that depends on something not given."""
    needed: set[str] = set()
    stack = list(targets)
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        if name not in wiring:
            if name in sources.skip:
                raise UsageProblem(
                    f"layer '{targets[0]}' needs the output of '{name}', which comes before --from {sources.names[0][len(FROM):]}"
                )
            raise ModelFileError(f"{model.label}: the model refers to a layer '{name}' that it does not define")
        needed.add(name)
        for edge in wiring[name]:
            if edge.layer.startswith(FEED):
                continue
            stack.append(edge.layer)
    return needed


def _ancestor_names(graph, names: list[str]) -> set[str]:
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


def _spec_name(model: Model, recurrent_name: str) -> str:
    layer = model.recurrent_layer(recurrent_name)
    return layer.wrapper or layer.name


def _check_order(ops: list[GraphOp]) -> None:
    """Each layer reads only layers before it (the config's order): a file whose wiring loops back
    or reads ahead is refused here, before anything is fed."""
    done: set[str] = set()
    for op in ops:
        for edge in op.inputs:
            if not edge.layer.startswith(FEED) and edge.layer not in done:
                raise ModelFileError(
                    f"layer '{op.name}' uses output {edge.index} of '{edge.layer}', which does not exist before it "
                    "(the model's wiring reads ahead or loops)"
                )
        done.add(op.name)


def _check_mask_nodes(model: Model, ops: list[GraphOp]) -> None:
    """A mask op node may only feed other mask op nodes (its result travels as a `mask` keyword)."""
    nodes = {op.name for op in ops if isinstance(op, MaskNodeOp)}
    if not nodes:
        return
    for op in ops:
        used = [edge.layer for edge in op.inputs if edge.layer in nodes]
        if used and not isinstance(op, MaskNodeOp):
            raise UnsupportedLayer(f"layer '{op.name}' takes the output of op '{used[0]}' as data, which cannot be replayed")
    outputs = [edge.layer for edge in model.graph.outputs if edge.layer in nodes]
    if outputs:
        raise UnsupportedLayer(f"the model's output '{outputs[0]}' is an op that cannot be replayed")


class _OpBuilder:
    def __init__(self, model: Model, options: ReplayOptions, hard_sigmoid: str, sources: _Sources) -> None:
        self.model = model
        self.options = options
        self.hard = hard_sigmoid
        self.dtype = np.dtype(options.dtype)
        self.sources = sources
        self.children = {spec.name: spec for spec in model.graph.layers}

    def where(self, spec: LayerSpec) -> str:
        return f"layer '{spec.name}' ({spec.class_name})"

    def build(self, spec: LayerSpec) -> GraphOp:
        if spec.shared:
            raise self._stuck(spec, "is called more than once in the model (shared layers are not replayed)")
        try:
            return self._build(spec)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
            # Converting the file's settings (int("abc"), float([1]), a missing key) failed.
            raise ModelFileError(
                f"{self.model.label}: {self.where(spec)} has settings that cannot be used ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:120]})"
            ) from None

    def _build(self, spec: LayerSpec) -> GraphOp:
        cls = spec.class_name
        if cls in MASK_OP_NODES:
            return MaskNodeOp()
        if spec.is_recurrent:
            return self._recurrent_op(spec.name)
        if cls == "Bidirectional":
            return BidirectionalOp(
                self._recurrent_op(f"{spec.name}/forward"),
                self._recurrent_op(f"{spec.name}/backward"),
                merge_mode=spec.config.get("merge_mode", "concat"),
                return_state=bool(spec.children["forward"].get("return_state", False)),
            )
        if cls == "NoWeights":
            if not spec.inbound or "dropout" in spec.name.lower() or "noise" in spec.name.lower():
                if spec.inbound:
                    self.model.warn(f"layer '{spec.name}': kind not recorded; replayed as a dropout (identity)")
                return FeedForwardOp(_identity())
            raise self._stuck(spec, "a weights-only file does not record what this weightless layer does")
        if cls == "Unknown":
            raise self._stuck(spec, "its kind cannot be told from a weights-only file")
        if cls == "Lambda":
            raise self._stuck(spec, "holds Python code, which lstm-inspect never runs")
        definition = op_for(cls)
        if definition is None:
            if spec.custom:
                raise self._stuck(spec, "is a custom (non-Keras) layer, which lstm-inspect cannot replay (nothing in it is run)")
            raise self._stuck(spec, "cannot be replayed (not a layer lstm-inspect knows; a custom layer is never run)")
        context = BuildContext(spec, self.model.weights.get(spec.name, {}), label=self.model.label, dtype=self.dtype,
                               hard_sigmoid=self.hard, warn=self.model.warn,
                               child_weights=lambda name: self.model.weights.get(name, {}),
                               keras_major=self.model.keras_major)
        return FeedForwardOp(definition.build(context))

    def _stuck(self, spec: LayerSpec, reason: str) -> UnsupportedLayer:
        """The error for a layer that cannot be replayed, with the --from that gets past it."""
        problem = f"{self.where(spec)} {reason}"
        after = _next_layer(self.model, spec)
        if after is None:
            return UnsupportedLayer(problem)
        return UnsupportedLayer(f"{problem}; to replay what comes after it, feed the input of '{after}' directly with "
                                f"--from {after}", problem=problem, resume_from=after)

    def _recurrent_op(self, name: str) -> RecurrentOp:
        layer = self.model.recurrent_layer(name)
        activation = layer.activation or self.options.assume_activation
        recurrent_activation = layer.recurrent_activation or self.options.assume_recurrent_activation
        if not layer.kind.recurrent_gates:
            recurrent_activation = recurrent_activation or "sigmoid"  # not used by the kind
        if activation is None or recurrent_activation is None:
            # Weights-only file: assume the defaults of the Keras that saved it.
            activation = activation or "tanh"
            recurrent_activation = recurrent_activation or default_recurrent_activation(self.model)
            version = self.model.keras_version or "unknown"
            self.model.warn(
                f"layer '{name}': activations not recorded in the file; assuming the defaults of "
                f"Keras {version} (activation={activation}, recurrent_activation={recurrent_activation}); "
                "override with --activation / --recurrent-activation"
            )
        where = f"layer '{name}'"
        try:
            cell = layer.kind.cell(
                layer.weights,
                get_activation(activation, self.hard, where),
                get_activation(recurrent_activation, self.hard, where),
                self.dtype,
                layer.spec.config,
            )
        except UnsupportedLayer as exc:
            raise UnsupportedLayer(f"{where} ({layer.kind.name}): {exc}") from None
        scan = Scan(layer, cell, chunk=self.options.chunk, threads=self.options.threads,
                    pre_activation=self.options.pre_activation)
        return RecurrentOp(layer, scan)

    def input_spec(self, name: str, ops: list[GraphOp]) -> InputSpec:
        """What program input ``name`` takes: declared shape, or what its first reader implies."""
        graph = self.model.graph
        shape = None
        if not name.startswith(FROM):
            shape = graph.input_shapes.get(name)
            if shape is None and len(graph.inputs) == 1:
                shape = graph.input_shape
        first = _first_reader(FEED + name, ops)
        if isinstance(first, FeedForwardOp) and first.layer.token_vocabulary is not None:
            return InputSpec(name, shape, token_ids=True, vocabulary=first.layer.token_vocabulary, layer_name=first.name)
        if shape is None:
            if isinstance(first, RecurrentOp):
                shape = (None,) * (1 + first.layer.kind.spatial_rank) + (first.layer.weights.features,)
            elif isinstance(first, BidirectionalOp):
                shape = (None,) * (1 + first.forward.layer.kind.spatial_rank) + (first.forward.layer.weights.features,)
            elif isinstance(first, FeedForwardOp) and first.layer.input_features() is not None:
                shape = (None, first.layer.input_features())
        return InputSpec(name, shape)


def _first_reader(feed: str, ops: list[GraphOp]) -> GraphOp | None:
    """The first op reading the feed, past identities (InputLayer, Dropout, ...)."""
    sources = {feed}
    for op in ops:
        if any(edge.layer in sources for edge in op.inputs):
            if isinstance(op, FeedForwardOp) and op.layer.is_identity:
                sources.add(op.name)
                continue
            return op
    return None


def _identity() -> Layer:
    from ..ops.core import Identity

    return Identity()


def _next_layer(model: Model, spec: LayerSpec) -> str | None:
    """The first layer reading ``spec``'s output: where ``--from`` can resume past it."""
    for other in model.graph.layers:
        if any(edge.layer == spec.name for edge in other.inbound) and other.class_name != "InputLayer":
            return other.name
    return None
