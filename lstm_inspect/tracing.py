"""Drive the engine over many input sequences: batching, stateful carry, ordering.

``trace_blocks`` yields :class:`TraceBlock` s ordered by sequence (input
order), then layer (model order), then step (processing order), whatever the
batching: equal-length neighbouring sequences are replayed together for
speed, and their blocks are re-emitted one sequence at a time.  A single
sequence streams straight through, one chunk of steps at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .engine import Program, ReplayOptions, StepBlock, compile_model
from .errors import ModelFileError, UsageProblem
from .inputs import InputSequence
from .model import Model, RecurrentLayer

BATCH_BUFFER_BYTES = 64 << 20  # how much traced output a batch may hold before re-ordering


@dataclass
class TraceBlock:
    """Steps of one recurrent layer for one or more sequences (ids in ``sequences``)."""

    sequences: list  # (N,) ids
    block: StepBlock

    @property
    def layer(self) -> RecurrentLayer:
        return self.block.layer


def trace_blocks(
    model: Model,
    sequences: Sequence[InputSequence],
    *,
    layers: Sequence[str] | None = None,
    options: ReplayOptions | None = None,
    stateful: bool = False,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    program: Program | None = None,
) -> Iterator[TraceBlock]:
    """Replay each input sequence and yield the recorded steps of the selected layers.

    ``layers`` names recurrent layers (a Bidirectional's name selects both
    directions); all when empty.  With ``stateful``, each sequence starts
    from the state the previous one ended in, as a stateful Keras model fed
    the sequences in order; otherwise every sequence starts from
    ``initial_states`` (or zeros).
    """
    selected = [layer.name for layer in model.select_recurrent(layers)]
    program = program or compile_model(model, options, upto=selected)
    program.input_spec.check(sequences)
    width = _values_per_step(model, selected, program.options)
    states = dict(initial_states or {})
    _check_state_rows(states, len(sequences), stateful)
    start = 0
    for batch in _batches(sequences, stateful, width, np.dtype(program.options.dtype).itemsize):
        x = _stack(batch)
        ids = [s.id for s in batch]
        run = program.run(x, trace=selected, states=_broadcast(states, start, len(batch)), stop_after=selected)
        start += len(batch)
        if len(batch) == 1:
            for block in run:
                yield TraceBlock(ids, block)
        else:
            collected = list(run)  # each block holds fresh arrays, so keeping them is safe
            for n, seq_id in enumerate(ids):
                for block in collected:
                    yield TraceBlock([seq_id], _select_sequence(block, n))
        if stateful:
            states = run.final_states


def _stack(batch: Sequence[InputSequence]) -> NDArray:
    """(N, T, F); a lone sequence is not copied (on a long input it is the largest array)."""
    if len(batch) == 1:
        return batch[0].values[None]
    return np.stack([s.values for s in batch])


def _select_sequence(block: StepBlock, n: int) -> StepBlock:
    return StepBlock(
        block.layer,
        block.t,
        {name: value[:, n : n + 1] for name, value in block.values.items()},
        None if block.masked is None else block.masked[:, n : n + 1],
    )


def _check_state_rows(states: Mapping[str, Sequence[NDArray]], total: int, stateful: bool) -> None:
    """Initial states are (U,) or (1, U) for every sequence, or (N, U) one row per sequence:
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
    """The initial states of sequences ``start`` .. ``start + n - 1`` (one row each, or one for all)."""
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


def _values_per_step(model: Model, selected: Sequence[str], options: ReplayOptions) -> int:
    total = 0
    for name in selected:
        layer = model.recurrent_layer(name)
        gates = {"LSTM": 6, "GRU": 4, "SimpleRNN": 1}.get(layer.kind, 6)
        if options.pre_activation:
            gates += len(layer.gates)
        total += gates * layer.units
    return max(total, 1)


def _batches(sequences: Sequence[InputSequence], stateful: bool, width: int, itemsize: int) -> Iterator[list[InputSequence]]:
    """Runs of neighbouring equal-length sequences whose traced output fits the buffer."""
    if stateful:
        for sequence in sequences:
            yield [sequence]
        return
    batch: list[InputSequence] = []
    for sequence in sequences:
        steps = sequence.values.shape[0]
        if batch:
            same = batch[0].values.shape == sequence.values.shape
            fits = (len(batch) + 1) * steps * width * itemsize <= BATCH_BUFFER_BYTES
            if not (same and fits):
                yield batch
                batch = []
        batch.append(sequence)
    if batch:
        yield batch


def predict_batches(
    model: Model,
    sequences: Sequence[InputSequence],
    *,
    options: ReplayOptions | None = None,
    stateful: bool = False,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
) -> Iterator[tuple[list, list[NDArray]]]:
    """The model's outputs per batch of sequences: (ids, [output arrays])."""
    if not model.graph.outputs:
        raise ModelFileError(f"{model.label}: the model config names no output layer, so there is nothing to predict")
    program = compile_model(model, options)
    program.input_spec.check(sequences)
    states = dict(initial_states or {})
    _check_state_rows(states, len(sequences), stateful)
    start = 0
    for batch in _batches(sequences, stateful, 1, 1):
        x = _stack(batch)
        run = program.run(x, trace=[], states=_broadcast(states, start, len(batch)))
        start += len(batch)
        for _ in run:
            pass
        yield [s.id for s in batch], run.outputs
        if stateful:
            states = run.final_states
