"""Drive the engine over many input samples: pairing inputs, batching, stateful carry, ordering.

A *sample* is what one row of ``model.predict``'s batch is: one array per
model input (a (T, F) sequence, a (D,) vector for an input without a time
axis, ...).  ``samples_for`` pairs the inputs a user gave (one list of
sequences per model input) into samples.

``trace_blocks`` yields :class:`TraceBlock` s ordered by sample (input
order), then layer (model order), then step (processing order), whatever the
batching: neighbouring samples of equal shapes are replayed together for
speed, and their blocks are re-emitted one sample at a time.  A single
sample streams straight through, one chunk of steps at a time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from .engine import Program, ReplayOptions, StepBlock, compile_model
from .errors import InputDataError, UsageProblem
from .inputs import InputSequence
from .model import Model, RecurrentLayer

BATCH_BUFFER_BYTES = 64 << 20  # how much traced output a batch may hold before re-ordering


@dataclass(frozen=True)
class Sample:
    """One row of a batch: its id and one array per program input."""

    id: Any
    arrays: tuple[NDArray, ...]

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(a.shape for a in self.arrays)


@dataclass
class TraceBlock:
    """Steps of one recurrent layer for one or more samples (ids in ``sequences``)."""

    sequences: list  # (N,) ids
    block: StepBlock

    @property
    def layer(self) -> RecurrentLayer:
        return self.block.layer


Inputs = Sequence[InputSequence] | Sequence[Sequence[InputSequence]] | Mapping[str, Sequence[InputSequence]]


def name_inputs(model: Model, items: Sequence[str], start: str | None = None) -> dict[str, str]:
    """Which model input each INPUT argument feeds: ``NAME=PATH`` names the input layer, the others
    fill the remaining inputs in the model's order.  With ``start`` (``--from``) there is one input.

    An argument holding ``=`` whose left side is not an input name is a path (when it exists).
    """
    from .engine import FROM

    names = [FROM + start] if start else list(model.graph.inputs)
    aliases = {start: FROM + start} if start else {}
    named: dict[str, str] = {}
    positional: list[str] = []
    for item in items:
        key, sep, path = item.partition("=")
        if sep and (key in names or key in aliases):
            target = aliases.get(key, key)
            if target in named:
                raise UsageProblem(f"input '{key}' is given twice")
            named[target] = path
        elif sep and not os.path.exists(item):
            raise UsageProblem(f"no model input named '{key}' ({_inputs_text(model, names, start)})")
        else:
            positional.append(item)
    free = [name for name in names if name not in named]
    if len(positional) > len(free):
        raise UsageProblem(f"{len(items)} INPUT(s) given; {_inputs_text(model, names, start)}")
    named.update(zip(free, positional))
    if sum(path == "-" for path in named.values()) > 1:
        raise UsageProblem("only one INPUT can be '-' (standard input)")
    return {name: named[name] for name in names if name in named}


def _inputs_text(model: Model, names: Sequence[str], start: str | None) -> str:
    if start:
        return f"--from {start} takes one INPUT"
    return f"the model's inputs, in order: {', '.join(names)}" if len(names) > 1 else "the model has one input"


def samples_for(program: Program, inputs: Inputs) -> list[Sample]:
    """Pair the given inputs into samples, checking each against what its program input takes.

    ``inputs`` is a list of sequences (a model with one input), a list of such
    lists in ``program.input_names`` order, or a dict by input name.  An input
    without a time axis (a decoder's initial h, a flat vector) gives one sample
    per row.  The samples take the ids of the first input's sequences (or rows).
    """
    names = program.input_names
    if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], Sample):
        return list(inputs)  # already paired
    if isinstance(inputs, Mapping):
        known = set(program.model.graph.inputs) | set(names)
        unknown = [name for name in inputs if name not in known]
        if unknown:
            raise UsageProblem(f"no model input named '{unknown[0]}' (this needs: {', '.join(names)})")
        missing = [name for name in names if name not in inputs]
        if missing:
            raise UsageProblem(f"no INPUT given for the model input '{missing[0]}' (this needs: {', '.join(names)}; "
                               "name it with NAME=PATH)")
        per_input = [list(inputs[name]) for name in names]  # inputs this replay does not read are left out
    elif inputs and isinstance(inputs[0], InputSequence):
        per_input = [list(inputs)]  # type: ignore[list-item]
    else:
        per_input = [list(group) for group in inputs]  # type: ignore[union-attr]
    if len(per_input) != len(names):
        raise UsageProblem(
            f"{len(per_input)} input(s) given; this needs {len(names)}, in this order: {', '.join(names)}"
        )
    columns: list[list[tuple[Any, NDArray]]] = []
    for spec, sequences in zip(program.inputs, per_input):
        spec.check(sequences)
        if spec.has_time_axis:
            columns.append([(s.id, s.values) for s in sequences])
        else:  # one sample per row
            rows = [(None, row) for s in sequences for row in np.asarray(s.values)]
            columns.append(rows)
    counts = {len(column) for column in columns}
    if len(counts) > 1:
        described = ", ".join(f"'{name}' {len(column)}" for name, column in zip(names, columns))
        raise InputDataError(f"the inputs give different numbers of sequences ({described}); each input needs one per sequence")
    first = columns[0]
    ids = [sample_id if sample_id is not None else k for k, (sample_id, _) in enumerate(first)]
    return [Sample(ids[k], tuple(column[k][1] for column in columns)) for k in range(len(first))]


def trace_blocks(
    model: Model,
    sequences: Inputs,
    *,
    layers: Sequence[str] | None = None,
    options: ReplayOptions | None = None,
    stateful: bool = False,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    program: Program | None = None,
    start: str | None = None,
) -> Iterator[TraceBlock]:
    """Replay each sample and yield the recorded steps of the selected layers.

    ``layers`` names recurrent layers (a Bidirectional's name selects both
    directions); all when empty.  With ``stateful``, each sample starts from
    the state the previous one ended in, as a stateful Keras model fed the
    samples in order; otherwise every sample starts from ``initial_states``
    (or zeros).  ``start`` feeds the input to that layer (``--from``).
    """
    selected = [layer.name for layer in model.select_recurrent(layers)]
    program = program or compile_model(model, options, upto=selected, start=start)
    samples = samples_for(program, sequences)
    width = _values_per_step(model, selected, program.options, samples)
    states = dict(initial_states or {})
    _check_state_rows(states, len(samples), stateful)
    start_row = 0
    for batch in _batches(samples, stateful, width, np.dtype(program.options.dtype).itemsize):
        ids = [s.id for s in batch]
        replay = program.run(_stack(batch), trace=selected, states=_broadcast(states, start_row, len(batch)),
                             stop_after=selected)
        start_row += len(batch)
        if len(batch) == 1:
            for block in replay:
                yield TraceBlock(ids, block)
        else:
            collected = list(replay)  # each block holds fresh arrays, so keeping them is safe
            for n, sample_id in enumerate(ids):
                for block in collected:
                    yield TraceBlock([sample_id], _select_sample(block, n))
        if stateful:
            states = replay.final_states


def _stack(batch: Sequence[Sample]) -> list[NDArray]:
    """One (N, ...) array per input; a lone sample is not copied (on a long input it is the largest array)."""
    if len(batch) == 1:
        return [array[None] for array in batch[0].arrays]
    return [np.stack(arrays) for arrays in zip(*(s.arrays for s in batch))]


def _select_sample(block: StepBlock, n: int) -> StepBlock:
    return StepBlock(
        block.layer,
        block.t,
        {name: value[:, n : n + 1] for name, value in block.values.items()},
        None if block.masked is None else block.masked[:, n : n + 1],
    )


def _check_state_rows(states: Mapping[str, Sequence[NDArray]], total: int, stateful: bool) -> None:
    """Initial states are (U,) or (1, U) for every sample, or (N, U) one row per sample:
    checked against the whole input before anything is replayed or written."""
    for name, arrays in states.items():
        for array in arrays:
            rows = np.shape(array)[0] if np.ndim(array) == 2 else 1
            if rows == 1:
                continue
            if stateful:
                raise UsageProblem(f"initial state for '{name}' has {rows} rows; with --stateful it is one row "
                                   "(the state before the first sequence)")
            if rows != total:
                raise UsageProblem(f"initial state for '{name}' has {rows} rows; the input has {total} sequence(s)")


def _broadcast(states: Mapping[str, Sequence[NDArray]], start: int, n: int) -> dict[str, list[NDArray]]:
    """The initial states of samples ``start`` .. ``start + n - 1`` (one row each, or one for all)."""
    result = {}
    for name, arrays in states.items():
        fixed = []
        for array in arrays:
            array = np.asarray(array)
            if array.ndim == 2:
                array = array[0] if array.shape[0] == 1 else array[start : start + n]
            fixed.append(array)
        result[name] = fixed
    return result


def _values_per_step(model: Model, selected: Sequence[str], options: ReplayOptions, samples: Sequence[Sample]) -> int:
    """Traced values per step of one sample (an upper bound for convolutional layers' maps)."""
    positions = max((math.prod(a.shape[1:-1]) for s in samples[:1] for a in s.arrays if a.ndim > 2), default=1)
    total = 0
    for name in selected:
        layer = model.recurrent_layer(name)
        count = len(layer.kind.value_names(options.pre_activation))
        total += count * layer.units * (positions if layer.kind.spatial_rank else 1)
    return max(total, 1)


def _batches(samples: Sequence[Sample], stateful: bool, width: int, itemsize: int) -> Iterator[list[Sample]]:
    """Runs of neighbouring samples of equal shapes whose traced output fits the buffer."""
    if stateful:
        for sample in samples:
            yield [sample]
        return
    batch: list[Sample] = []
    for sample in samples:
        steps = sample.arrays[0].shape[0] if sample.arrays[0].ndim else 1
        if batch:
            same = batch[0].shapes == sample.shapes
            fits = (len(batch) + 1) * steps * width * itemsize <= BATCH_BUFFER_BYTES
            if not (same and fits):
                yield batch
                batch = []
        batch.append(sample)
    if batch:
        yield batch


def predict_batches(
    model: Model,
    sequences: Inputs,
    *,
    options: ReplayOptions | None = None,
    stateful: bool = False,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    start: str | None = None,
) -> Iterator[tuple[list, list[NDArray]]]:
    """The model's outputs per batch of samples: (ids, [output arrays])."""
    program = compile_model(model, options, start=start)
    samples = samples_for(program, sequences)
    states = dict(initial_states or {})
    _check_state_rows(states, len(samples), stateful)
    start_row = 0
    for batch in _batches(samples, stateful, 1, 1):
        replay = program.run(_stack(batch), trace=[], states=_broadcast(states, start_row, len(batch)))
        start_row += len(batch)
        for _ in replay:
            pass
        yield [s.id for s in batch], replay.outputs
        if stateful:
            states = replay.final_states
