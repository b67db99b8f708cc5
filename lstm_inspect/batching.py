"""Drive the engine over many input samples: pairing inputs, batching, stateful carry, ordering.

A *sample* is what one row of ``model.predict``'s batch is: one array per
model input (a (T, F) sequence, a (D,) vector for an input without a time
axis, ...).  ``samples_for`` pairs the inputs a user gave (one list of
sequences per model input) into samples; ``feeding.plan_feed`` decides how a
stateful model's input is cut into samples and chains.

``trace_blocks`` yields :class:`TraceBlock` s ordered by sample (input
order), then layer (model order), then step (processing order), whatever the
batching: neighbouring samples of equal shapes are replayed together for
speed, and their blocks are re-emitted one sample at a time.  A single
sample streams straight through, one chunk of steps at a time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .engine import Program, ReplayOptions, StepBlock, compile_model
from .errors import InputDataError, ModelFileError, UsageProblem
from .feeding import Feed, check_features, check_state_rows, length_warning, plan_feed
from .inputs import InputSequence
from .model import Model, RecurrentLayer
from .progress import track

BATCH_BUFFER_BYTES = 64 << 20  # how much traced output a batch may hold before re-ordering


@dataclass(frozen=True)
class Sample:
    """One row of a batch: its id and one array per program input."""

    id: Any
    arrays: tuple[NDArray, ...]

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """The shape of each input array."""
        return tuple(a.shape for a in self.arrays)

    @property
    def values(self) -> NDArray:
        """The first input's array: the sequence a stateful model's samples are cut from."""
        return self.arrays[0]


@dataclass
class TraceBlock:
    """Steps of one recurrent layer for one or more sequences (ids in ``sequences``)."""

    sequences: list  # (N,) ids
    block: StepBlock

    @property
    def layer(self) -> RecurrentLayer:
        """The recurrent layer the block's steps belong to."""
        return self.block.layer


@dataclass(frozen=True)
class InputRequest:
    """The inputs as the user gave them, before they are planned into samples: the sequences of
    each model input by name, and the command line's ``--stateful/--no-stateful`` and
    ``--sequence-length``."""

    sequences: Mapping[str, Sequence[InputSequence]]
    stateful: bool | None = None
    sequence_length: int | None = None
    notes: tuple[str, ...] = ()  # said when reading them (how a CSV was read): announced with the plan


Inputs = Sequence[InputSequence] | Sequence[Sequence[InputSequence]] | Mapping[str, Sequence[InputSequence]] | InputRequest


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
        per_input = [list(inputs)]
    else:
        per_input = [list(group) for group in inputs]  # type: ignore[union-attr]
    if len(per_input) != len(names):
        raise UsageProblem(
            f"{len(per_input)} input(s) given; this needs {len(names)}, in this order: {', '.join(names)}"
        )
    columns: list[list[tuple[Any, NDArray]]] = []
    for spec, sequences in zip(program.inputs, per_input):
        if spec.has_time_axis and spec.shape is not None and len(spec.shape) == 2:
            check_features(spec.features, spec.token_ids, sequences)  # says what to change
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


def plan_inputs(model: Model, program: Program, sequences, stateful: bool | None = None, *, announce: bool = True) -> Feed:
    """The feed of a replay: samples paired from the inputs, and how the state carries between them.

    A model with one input is planned by :func:`feeding.plan_feed` (a stateful
    model's batch shape decides its samples and chains); with several inputs,
    each sample is one sequence of every input, carried on with ``stateful``.
    The plan's note and warning are printed once the inputs passed their checks (``announce``
    False leaves that to the caller, after checks of its own: ``feed.announce(model)``).
    """
    if isinstance(sequences, Feed):  # planned (and announced) already
        if sequences.samples and not isinstance(sequences.samples[0], Sample):
            return replace(sequences, samples=samples_for(program, sequences.samples))
        return sequences
    length = None
    read_notes: tuple[str, ...] = ()
    if isinstance(sequences, InputRequest):
        stateful = sequences.stateful if sequences.stateful is not None else stateful
        length = sequences.sequence_length
        read_notes = sequences.notes
        sequences = sequences.sequences
    single = _single(sequences, program) if len(program.inputs) == 1 else None
    if single is not None:
        planned = plan_feed(model, single, stateful=stateful, sequence_length=length)
        feed = replace(planned, samples=samples_for(program, planned.samples))
    else:
        if length is not None:
            sequences = _split_each(sequences, length)
        samples = samples_for(program, sequences)
        first = [InputSequence(s.id, s.arrays[0]) for s in samples if s.arrays[0].ndim >= 2]
        feed = Feed(samples, stateful=bool(stateful), warning=length_warning(model, first) if first else None)
    if read_notes:
        feed = replace(feed, read_notes=read_notes)
    if announce:
        feed.announce(model)
    return feed


def _split_each(sequences, length: int):
    """``--sequence-length`` for several inputs: every input's sequences cut alike."""
    from .inputs import split_sequences

    if isinstance(sequences, Mapping):
        return {name: split_sequences(list(group), length) for name, group in sequences.items()}
    return [split_sequences(list(group), length) for group in sequences]


def _single(sequences, program: Program) -> list[InputSequence] | None:
    """The sequences of the one input, however they were given (list, or dict by name)."""
    if isinstance(sequences, Mapping):
        name = program.input_names[0]
        return list(sequences[name]) if name in sequences else None
    if sequences and isinstance(sequences[0], InputSequence):
        return list(sequences)
    if sequences and isinstance(sequences[0], Sample):
        return None
    if len(sequences) == 1 and not isinstance(sequences[0], InputSequence):
        return list(sequences[0])
    return None


def trace_blocks(
    model: Model,
    sequences: Inputs | Feed,
    *,
    layers: Sequence[str] | None = None,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    program: Program | None = None,
    start: str | None = None,
) -> Iterator[TraceBlock]:
    """Replay each input sequence and yield the recorded steps of the selected layers.

    ``layers`` names recurrent layers (a Bidirectional's name selects both
    directions); all when empty.  ``sequences`` is planned with
    :func:`feeding.plan_feed` (``stateful`` None follows the model), or is a
    :class:`Feed` already planned.  Without state, every sequence starts from
    ``initial_states`` (or zeros); with ``stateful``, each starts from the
    state the previous one ended in.  A stateful model fed by its batch shape
    yields each chain of samples as one sequence: ``sequences`` holds the
    chain number and ``t`` counts the chain's input rows.  ``start`` feeds
    the input to that layer (``--from``).
    """
    selected = [layer.name for layer in model.select_recurrent(layers)]
    program = program or compile_model(model, options, upto=selected, start=start)
    feed = plan_inputs(model, program, sequences, stateful, announce=False)
    states = dict(initial_states or {})
    check_state_rows(states, feed)
    with track("replay", total=_total_steps(feed.samples) * len(selected), unit="steps") as task:
        for tb in _announcing(feed, model, _trace_feed(model, feed, selected, program, states), sequences):
            task.advance(tb.block.steps * len(tb.sequences))
            yield tb


def _total_steps(samples: Sequence[Any]) -> int:
    """The steps of all samples (a sample without a time axis counts one)."""
    return sum(sample.values.shape[0] if sample.values.ndim >= 2 else 1 for sample in samples)


def _trace_feed(model: Model, feed: Feed, selected: list[str], program: Program,
                states: Mapping[str, Sequence[NDArray]]) -> Iterator[TraceBlock]:
    """The blocks of a planned feed: chains of a stateful model, or batches of samples."""
    if feed.chains:
        yield from _trace_chains(model, feed, selected, program, states)
        return
    width = _values_per_step(model, selected, program.options, feed.samples)
    row = 0
    for batch in _batches(feed.samples, feed.stateful, width, np.dtype(program.options.dtype).itemsize):
        ids = [s.id for s in batch]
        run = program.replay(_stack(batch), trace=selected, states=_broadcast(states, row, len(batch)), stop_after=selected)
        row += len(batch)
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


def chain_as_sample(feed: Feed, number: int) -> Sample:
    """Chain ``number`` of a stateful feed as one sample (id: the chain number): its samples' rows in
    order, one array per input; a chain of one sample is not copied."""
    samples = feed.chain(number)
    if len(samples) == 1:
        return Sample(number, tuple(samples[0].arrays))
    return Sample(number, tuple(np.concatenate(arrays) for arrays in zip(*(s.arrays for s in samples))))


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
            x = chain_as_sample(feed, number).values[None]
            for block in program.replay(x, trace=selected, states=start, stop_after=selected):
                yield TraceBlock([number], block)
            continue
        offset = 0
        for sample in samples:
            run = program.replay(sample.values[None], trace=selected, states=start, stop_after=selected)
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


def _announcing(feed: Feed, model: Model, items: Iterator, given) -> Iterator:
    """``items``, with the feed's note and warning just before the first (or at the end, when there
    is none): once the replay has begun, so that an error in the input or the model stays the only
    line on stderr.  A :class:`Feed` ``given`` planned already was announced by its planner."""
    if isinstance(given, Feed):
        yield from items
        return
    announced = False
    for item in items:
        if not announced:
            feed.announce(model)
            announced = True
        yield item
    if not announced:
        feed.announce(model)


def _stack(batch: Sequence[Sample]) -> list[NDArray]:
    """One (N, ...) array per input; a lone sample is not copied (on a long input it is the largest array)."""
    if len(batch) == 1:
        return [array[None] for array in batch[0].arrays]
    return [np.stack(arrays) for arrays in zip(*(s.arrays for s in batch))]


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
    sequences: Inputs | Feed,
    *,
    options: ReplayOptions | None = None,
    stateful: bool | None = None,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
    start: str | None = None,
) -> Iterator[tuple[list, list[NDArray]]]:
    """The model's outputs per batch of samples: (ids, [output arrays]).

    Planned as :func:`trace_blocks` plans; a stateful model fed by its batch
    shape gives one row per sample, as ``model.predict(x, batch_size=B)``.
    """
    if not model.graph.outputs:
        raise ModelFileError(f"{model.label}: the model config names no output layer, so there is nothing to predict")
    program = compile_model(model, options, start=start)
    feed = plan_inputs(model, program, sequences, stateful, announce=False)
    states = dict(initial_states or {})
    check_state_rows(states, feed)
    steps = {id(sample): _total_steps([sample]) for sample in feed.samples}
    with track("replay", total=sum(steps.values()), unit="steps") as task:
        for ids, outputs, batch in _announcing(feed, model, _predict_feed(program, feed, states), sequences):
            task.advance(sum(steps.get(id(sample), 0) for sample in batch))
            yield ids, outputs


def _predict_feed(program: Program, feed: Feed, states: Mapping[str, Sequence[NDArray]]
                  ) -> Iterator[tuple[list, list[NDArray], Sequence[Any]]]:
    """(ids, outputs, the samples replayed) per batch of a planned feed."""
    if feed.chains:
        yield from _predict_chained(program, feed, states)
        return
    row = 0
    for batch in _batches(feed.samples, feed.stateful, 1, 1):
        run = program.replay(_stack(batch), trace=[], states=_broadcast(states, row, len(batch)))
        row += len(batch)
        for _ in run:
            pass
        yield [s.id for s in batch], run.outputs, batch
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
            run = program.replay(_stack(batch), trace=[], states=_rows(states, 0, rows))
            for _ in run:
                pass
            outputs, states = run.outputs, run.final_states
        else:  # a shorter last sample: its row on its own
            parts, finals = [], []
            for row, sample in enumerate(batch):
                run = program.replay(sample.values[None], trace=[], states=_rows(states, row, 1))
                for _ in run:
                    pass
                parts.append(run.outputs)
                finals.append(run.final_states)
            outputs = [np.concatenate([part[k] for part in parts]) for k in range(len(parts[0]))]
            states = {name: [np.concatenate([f[name][k] for f in finals]) for k in range(len(finals[0][name]))]
                      for name in finals[0]}
        states = _carry(states, initial, carried)
        yield [s.id for s in batch], outputs, batch


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
        for block in program.replay(x, trace=recurrent, states=initial, stop_after=recurrent):
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
            run = program.replay(_stack(batch), trace=[], states=start)
            for _ in run:
                pass
            yield [s.id for s in batch], run.outputs, batch


def _zeros(count: int, block: StepBlock) -> NDArray:
    """(count, U) zeros in the block's dtype."""
    hidden = block.values["hidden"]
    return np.zeros((count, hidden.shape[-1]), dtype=hidden.dtype)


def _equal_length_runs(samples: Sequence[Sample]) -> Iterator[tuple[int, int]]:
    lo = 0
    for k in range(1, len(samples) + 1):
        if k == len(samples) or samples[k].values.shape[0] != samples[lo].values.shape[0]:
            yield lo, k
            lo = k


def _rows(states: Mapping[str, Sequence[NDArray]], start: int, count: int) -> dict[str, list[NDArray]]:
    """Rows ``start`` .. ``start + count - 1`` of per-row states ((U,) states stand for every row)."""
    return {name: [a[start : start + count] if np.ndim(a) == 2 else a for a in arrays] for name, arrays in states.items()}
