"""Drive the engine over many input sequences: batching, stateful carry, ordering.

``trace_blocks`` yields :class:`TraceBlock` s ordered by sequence (input
order), then layer (model order), then step (processing order), whatever the
batching: equal-length neighbouring sequences are replayed together for
speed, and their blocks are re-emitted one sequence at a time.  A single
sequence streams straight through, one chunk of steps at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from .engine import Program, ReplayOptions, StepBlock, compile_model
from .errors import ModelFileError
from .feeding import Feed, check_features, check_state_rows, plan_feed
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
    sequences: Sequence[InputSequence] | Feed,
    *,
    layers: Sequence[str] | None = None,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    program: Program | None = None,
) -> Iterator[TraceBlock]:
    """Replay each input sequence and yield the recorded steps of the selected layers.

    ``layers`` names recurrent layers (a Bidirectional's name selects both
    directions); all when empty.  ``sequences`` is planned with
    :func:`feeding.plan_feed` (``stateful`` None follows the model), or is a
    :class:`Feed` already planned.  Without state, every sequence starts from
    ``initial_states`` (or zeros); with ``stateful``, each starts from the
    state the previous one ended in.  A stateful model fed by its batch shape
    yields each chain of samples as one sequence: ``sequences`` holds the
    chain number and ``t`` counts the chain's input rows.
    """
    feed = sequences if isinstance(sequences, Feed) else plan_feed(model, sequences, stateful=stateful)
    selected = [layer.name for layer in model.select_recurrent(layers)]
    program = program or compile_model(model, options, upto=selected)
    _check_input(program, feed)
    states = dict(initial_states or {})
    check_state_rows(states, feed)
    yield from _announcing(feed, model, _trace_feed(model, feed, selected, program, states))


def _trace_feed(model: Model, feed: Feed, selected: list[str], program: Program,
                states: Mapping[str, Sequence[NDArray]]) -> Iterator[TraceBlock]:
    if feed.chains:
        yield from _trace_chains(model, feed, selected, program, states)
        return
    width = _values_per_step(model, selected, program.options)
    start = 0
    for batch in _batches(feed.samples, feed.stateful, width, np.dtype(program.options.dtype).itemsize):
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
        if feed.stateful:
            states = run.final_states


def _trace_chains(model: Model, feed: Feed, selected: list[str], program: Program,
                  states: Mapping[str, Sequence[NDArray]]) -> Iterator[TraceBlock]:
    """Each chain of a stateful model's samples as one sequence in time.

    The chains of a batch never meet (Keras steps the rows of a batch side by
    side), so each is replayed on its own: sample by sample, the state
    carried, ``t`` shifted by the rows before.  Where the model computes the
    same from the whole chain at once (only per-step layers and forward,
    stateful recurrent layers up to the traced ones), the chain is replayed
    as one sequence, which streams a long input in chunks.
    """
    whole = _chain_is_one_sequence(model, selected)
    carried = _stateful_names(model)
    for number in range(feed.chain_count):
        samples = feed.chain(number)
        initial = _broadcast(states, number, 1)
        start = initial
        if whole:
            x = samples[0].values[None] if len(samples) == 1 else np.concatenate([s.values for s in samples])[None]
            for block in program.run(x, trace=selected, states=start, stop_after=selected):
                yield TraceBlock([number], block)
            continue
        offset = 0
        for sample in samples:
            run = program.run(sample.values[None], trace=selected, states=start, stop_after=selected)
            for block in run:
                yield TraceBlock([number], replace(block, t=block.t + offset))
            offset += sample.values.shape[0]
            start = _carry(run.final_states, initial, carried)


def _stateful_names(model: Model) -> set[str]:
    """The recurrent layers whose state Keras keeps from one batch to the next."""
    return {layer.name for layer in model.recurrent_layers() if layer.stateful}


def _carry(final: Mapping[str, list[NDArray]], initial: Mapping[str, Sequence[NDArray]],
           carried: set[str]) -> dict[str, Sequence[NDArray]]:
    """The states the next sample starts from: carried for stateful layers, the initial ones for the rest."""
    start = {name: arrays for name, arrays in initial.items() if name not in carried}
    start.update({name: arrays for name, arrays in final.items() if name in carried})
    return start


# Layers that act on each step alone: a chain's samples put end to end give them the same input.
_PER_STEP = {"InputLayer", "Dense", "Activation", "Dropout", "SpatialDropout1D", "GaussianNoise",
             "GaussianDropout", "AlphaDropout", "ActivityRegularization", "LayerNormalization",
             "BatchNormalization", "TimeDistributed"}


def _chain_is_one_sequence(model: Model, selected: Sequence[str]) -> bool:
    """Whether replaying a chain's samples end to end computes what feeding them one by one does."""
    wanted = {model.recurrent_layer(name).wrapper or name for name in selected}
    last = max(k for k, spec in enumerate(model.graph.layers) if spec.name in wanted)
    for spec in model.graph.layers[: last + 1]:
        if spec.is_recurrent:
            if not spec.get("stateful") or spec.get("go_backwards") or len(spec.inbound) > 1:
                return False
        elif spec.class_name == "Embedding":
            if spec.get("mask_zero"):
                return False
        elif spec.class_name not in _PER_STEP or spec.container:
            return False
        elif spec.class_name == "TimeDistributed":
            inner = list(spec.children.values())
            if any(child.class_name not in _PER_STEP for child in inner):
                return False
    return True


def _check_input(program: Program, feed: Feed) -> None:
    """The input fits the model, or one line says what to change."""
    spec = program.input_spec
    check_features(spec.features, spec.token_ids, feed.checked)
    spec.check(feed.checked)


def _announcing(feed: Feed, model: Model, items: Iterator):
    """``items``, with the feed's note and warning just before the first (or at the end, when there
    is none): once the replay has begun, so that an error in the input or the model stays the only
    line on stderr."""
    announced = False
    for item in items:
        if not announced:
            feed.announce(model)
            announced = True
        yield item
    if not announced:
        feed.announce(model)


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
    sequences: Sequence[InputSequence] | Feed,
    *,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
) -> Iterator[tuple[list, list[NDArray]]]:
    """The model's outputs per batch of samples: (ids, [output arrays]).

    Planned as :func:`trace_blocks` plans; a stateful model fed by its batch
    shape gives one row per sample, as ``model.predict(x, batch_size=B)``.
    """
    if not model.graph.outputs:
        raise ModelFileError(f"{model.label}: the model config names no output layer, so there is nothing to predict")
    feed = sequences if isinstance(sequences, Feed) else plan_feed(model, sequences, stateful=stateful)
    program = compile_model(model, options)
    _check_input(program, feed)
    states = dict(initial_states or {})
    check_state_rows(states, feed)
    yield from _announcing(feed, model, _predict_feed(program, feed, states))


def _predict_feed(program: Program, feed: Feed, states: Mapping[str, Sequence[NDArray]]):
    if feed.chains:
        yield from _predict_chained(program, feed, states)
        return
    start = 0
    for batch in _batches(feed.samples, feed.stateful, 1, 1):
        x = _stack(batch)
        run = program.run(x, trace=[], states=_broadcast(states, start, len(batch)))
        start += len(batch)
        for _ in run:
            pass
        yield [s.id for s in batch], run.outputs
        if feed.stateful:
            states = run.final_states


def _predict_chained(program: Program, feed: Feed, states: Mapping[str, Sequence[NDArray]]):
    """Keras' batches of B samples; row i of each batch continues row i of the one before."""
    recurrent = program.model.recurrent_names()
    if recurrent and _chain_is_one_sequence(program.model, recurrent):
        yield from _predict_from_chains(program, feed, states, recurrent)
        return
    initial = _broadcast(states, 0, feed.chain_count)
    carried = _stateful_names(program.model)
    states = initial
    for batch in feed.batches():
        rows = len(batch)
        if len({s.values.shape[0] for s in batch}) == 1:
            run = program.run(_stack(batch), trace=[], states=_rows(states, 0, rows))
            for _ in run:
                pass
            outputs, states = run.outputs, run.final_states
        else:  # a shorter last sample: its row on its own
            parts, finals = [], []
            for row, sample in enumerate(batch):
                run = program.run(sample.values[None], trace=[], states=_rows(states, row, 1))
                for _ in run:
                    pass
                parts.append(run.outputs)
                finals.append(run.final_states)
            outputs = [np.concatenate([part[k] for part in parts]) for k in range(len(parts[0]))]
            states = {name: [np.concatenate([f[name][k] for f in finals]) for k in range(len(finals[0][name]))]
                      for name in finals[0]}
        states = _carry(states, initial, carried)
        yield [s.id for s in batch], outputs


PREDICT_ROWS = 1 << 14  # samples replayed together once their starting states are known


def _predict_from_chains(program: Program, feed: Feed, states: Mapping[str, Sequence[NDArray]],
                         recurrent: list[str]):
    """The same outputs as Keras' batches, computed in two sweeps instead of one call per batch.

    Where a chain's samples put end to end compute what feeding them one by one
    does (:func:`_chain_is_one_sequence`), each chain is first traced as one
    sequence, keeping the recurrent states where each sample ends; then all
    samples are replayed side by side, each from the state the sample before it
    in its chain ended in.  A stateful model fed one step per sample (batch
    shape (1, 1, F)) then costs two replays, not one call per input row.
    """
    count = len(feed.samples)
    starts: dict[str, list[NDArray]] = {}  # layer -> [h (S, U), c (S, U)], the state each sample starts from
    for number in range(feed.chain_count):
        samples = feed.chain(number)
        initial = _broadcast(states, number, 1)
        ends = np.cumsum([s.values.shape[0] for s in samples])[:-1] - 1  # last step of every sample but the last
        rows = np.arange(number, count, feed.batch_size)  # the chain's samples among all samples
        x = np.concatenate([s.values for s in samples])[None]
        for block in program.run(x, trace=recurrent, states=initial, stop_after=recurrent):
            names = ["hidden", "cell"] if "cell" in block.values else ["hidden"]
            store = starts.setdefault(block.layer.name, [_zeros(count, block) for _ in names])
            given = initial.get(block.layer.name)
            for k in range(len(names)):  # the chain's first sample starts from the initial state
                store[k][rows[0]] = 0 if given is None else np.asarray(given[k]).reshape(-1)
            hit = np.isin(block.t, ends)
            if hit.any():
                at = np.searchsorted(ends, block.t[hit])  # which sample ends there: the next one starts from it
                for k, name in enumerate(names):
                    store[k][rows[at + 1]] = block.values[name][hit, 0]
    for begin in range(0, count, PREDICT_ROWS):
        group = feed.samples[begin : begin + PREDICT_ROWS]
        for lo, hi in _equal_length_runs(group):
            batch = group[lo:hi]
            start = {name: [array[begin + lo : begin + hi] for array in arrays] for name, arrays in starts.items()}
            run = program.run(_stack(batch), trace=[], states=start)
            for _ in run:
                pass
            yield [s.id for s in batch], run.outputs


def _zeros(count: int, block: StepBlock) -> NDArray:
    """(count, U) zeros in the block's dtype."""
    hidden = block.values["hidden"]
    return np.zeros((count, hidden.shape[-1]), dtype=hidden.dtype)


def _equal_length_runs(samples: Sequence[InputSequence]) -> Iterator[tuple[int, int]]:
    lo = 0
    for k in range(1, len(samples) + 1):
        if k == len(samples) or samples[k].values.shape[0] != samples[lo].values.shape[0]:
            yield lo, k
            lo = k


def _rows(states: Mapping[str, Sequence[NDArray]], start: int, count: int) -> dict[str, list[NDArray]]:
    """Rows ``start`` .. ``start + count - 1`` of per-row states ((U,) states stand for every row)."""
    return {name: [a[start : start + count] if np.ndim(a) == 2 else a for a in arrays] for name, arrays in states.items()}
