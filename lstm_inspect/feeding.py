"""How the input sequences are fed to a model: one place for stateful models and fixed lengths.

A Keras model saved with ``stateful=True`` and a fixed batch input shape
(B, T, F) is run by ``model.predict(x, batch_size=B)`` on samples of T steps:
row i of batch k+1 continues, from the state where it stopped, row i of
batch k, and the states are never reset between batches.  So sample j
carries on from sample j - B: the samples fall into B *chains*.
:func:`plan_feed` turns the input into those samples by default (the input
cut into consecutive pieces of T steps), so that ``predict`` gives one row
per sample as Keras does, and ``trace`` shows each chain as one sequence in
time.  ``stateful=True/False`` and ``sequence_length`` override the plan,
as ``--stateful``, ``--no-stateful`` and ``--sequence-length`` do.

For a model whose input layer fixes T steps but is not stateful, an input of
another length is replayed as it is (the recurrence does not depend on it),
with a warning naming both lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import InputDataError, UsageProblem
from .inputs import InputSequence, split_sequences
from .model import Model
from .notes import note


@dataclass(frozen=True)
class Feed:
    """The samples a replay is fed, in order, and how the state carries between them.

    ``stateful`` False: every sample starts from the initial state (zeros).
    ``stateful`` True: sample j starts where sample j - ``batch_size`` ended
    (``batch_size`` 1: each sample continues the one before).  ``chains``
    True when the plan follows a stateful model's batch shape: the command
    line then traces each chain as one sequence (``sequence`` = chain number,
    ``t`` counting its input rows) and predicts one row per sample.
    """

    samples: list[Any]  # InputSequence, or batching.Sample once tracing has paired the model's inputs
    stateful: bool = False
    batch_size: int = 1
    chains: bool = False
    timesteps: int | None = None  # T of the model's batch shape, when the plan follows it
    inputs: list[InputSequence] | None = None  # the sequences before they were cut (checked, and named, in errors)
    note: str | None = None  # the plan, in one line, for the user (see :meth:`announce`)
    warning: str | None = None  # the input's length against the model's (see :meth:`announce`)
    read_notes: tuple[str, ...] = ()  # how the inputs were read (a CSV's header and delimiter)

    def announce(self, model: Model) -> None:
        """Report how the inputs were read, the plan's note and its warning: after the input has
        passed its checks, so that an input error stays the only line on stderr."""
        for text in self.read_notes:
            note(text)
        if self.warning:
            model.warn(self.warning)
        if self.note:
            note(self.note)

    @property
    def checked(self) -> list[InputSequence]:
        """What the input checks look at: the sequences as given (the samples hold the same rows)."""
        return self.inputs if self.inputs is not None else self.samples

    @property
    def chain_count(self) -> int:
        """The number of chains: the batch size, or fewer when there are fewer samples."""
        return min(self.batch_size, len(self.samples))

    def chain(self, number: int) -> list[Any]:
        """The samples of chain ``number`` (0-based), in the order they are fed."""
        return self.samples[number :: self.batch_size]

    def batches(self) -> list[list[Any]]:
        """Consecutive groups of ``batch_size`` samples (the last may be smaller): Keras' batches."""
        size = self.batch_size
        return [self.samples[k : k + size] for k in range(0, len(self.samples), size)]


def stateful_batch_shape(model: Model) -> tuple[int, int | None] | None:
    """(B, T) of a model with a stateful recurrent layer and a fixed batch size; None otherwise."""
    batch = model.graph.batch_size
    if batch is None or batch < 1:
        return None
    if not any(layer.stateful for layer in model.recurrent_layers()):
        return None
    shape = model.graph.input_shape
    steps = shape[0] if shape and len(shape) >= 2 else None
    return int(batch), (int(steps) if steps else None)


def plan_feed(
    model: Model,
    sequences: Sequence[InputSequence],
    *,
    stateful: bool | None = None,
    sequence_length: int | None = None,
) -> Feed:
    """Decide how ``sequences`` are fed to ``model`` (see the module docstring).

    ``stateful`` None follows the model: a stateful model with a fixed batch
    shape is fed as Keras' ``predict`` would (and a one-line note says so);
    any other model, each sequence on its own.  ``True`` carries the state
    from each sequence to the next, ``False`` never does; ``sequence_length``
    first cuts every sequence into pieces of that many steps.
    """
    if not sequences:
        raise InputDataError("the input holds no sequence")
    if sequence_length is not None:
        sequences = split_sequences(sequences, sequence_length)
    shape = stateful_batch_shape(model)
    if stateful is None and sequence_length is None and shape is not None:
        return _keras_feed(model, list(sequences), *shape)
    return Feed(list(sequences), stateful=bool(stateful), warning=length_warning(model, sequences))


def _keras_feed(model: Model, sequences: list[InputSequence], batch: int, steps: int | None) -> Feed:
    """The samples and chains of ``model.predict(x, batch_size=batch)`` for a stateful model."""
    rows = sum(s.values.shape[0] for s in sequences)
    if steps is None or all(s.values.shape[0] == steps for s in sequences):
        samples = list(sequences)  # already Keras' samples: keep their ids
    else:
        pieces = [s.values[k : k + steps] for s in sequences for k in range(0, s.values.shape[0], steps)]
        samples = [InputSequence(index, values) for index, values in enumerate(pieces)]
    feed = Feed(samples, stateful=True, batch_size=batch, chains=True, timesteps=steps, inputs=sequences)
    return replace(feed, note=_plan_note(model, feed, rows))


def _plan_note(model: Model, feed: Feed, rows: int) -> str:
    batch, steps = feed.batch_size, feed.timesteps
    features = model.graph.input_shape[-1] if model.graph.input_shape else None
    shape = ", ".join("None" if d is None else str(d) for d in (batch, steps, features))
    count = len(feed.samples)
    length = f" of {steps} step{'s' if steps != 1 else ''}" if steps else ""
    text = f"stateful model with batch shape ({shape}): the input's {rows} rows are fed as {count} sample(s){length}"
    if batch == 1:
        text += ", each continuing the state of the one before, as Keras' predict does"
    else:
        text += (f" in batches of {batch}; sample j continues the state of sample j-{batch}, as Keras' "
                 f"predict(x, batch_size={batch}) does, so trace shows {feed.chain_count} chain(s) as sequences")
    short = [s for s in feed.samples if steps and s.values.shape[0] != steps]
    if short:
        text += f"; the last sample has {short[-1].values.shape[0]} step(s)"
    if count % batch:
        text += f"; the last batch holds {count % batch} of {batch} samples"
    return text + " (--no-stateful: each sample from zeros)"


def length_warning(model: Model, sequences: Sequence[InputSequence]) -> str | None:
    """A one-line warning when the input's length differs from the steps the input layer fixes."""
    shape = model.graph.input_shape
    steps = shape[0] if shape and len(shape) >= 2 else None  # (D,) is one vector per sequence: no time axis
    if not steps:
        return None
    lengths = sorted({s.values.shape[0] for s in sequences})
    if lengths == [steps]:
        return None
    given = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]} to {lengths[-1]}"
    return (f"the model's input layer fixes {steps} step{'s' if steps != 1 else ''}; the input has {given} "
            f"step{'s' if lengths != [1] else ''} per sequence (replayed as given: the recurrence does not depend "
            "on the length)")


def check_state_rows(states, feed: Feed) -> None:
    """Initial states: one row for every sample, or one row per sample (per chain when chained)."""
    per = feed.chain_count if feed.chains else (1 if feed.stateful else len(feed.samples))
    for name, arrays in states.items():
        for array in arrays:
            rows = np.shape(array)[0] if np.ndim(array) == 2 else 1
            if rows in (1, per):
                continue
            if feed.chains:
                raise UsageProblem(f"initial state for '{name}' has {rows} rows; this stateful model runs "
                                   f"{per} chain(s): give one row, or one per chain")
            if feed.stateful:
                raise UsageProblem(f"initial state for '{name}' has {rows} rows; with --stateful it is one row "
                                   "(the state before the first sequence)")
            raise UsageProblem(f"initial state for '{name}' has {rows} rows; the input has {per} sequence(s)")


def check_features(features: int | None, token_ids: bool, sequences: Sequence[InputSequence]) -> None:
    """Refuse sequences whose column count the model cannot take, saying what to change."""
    if token_ids or features is None:
        return
    for sequence in sequences:
        columns = sequence.values.shape[-1]
        if columns == features:
            continue
        where = f"sequence {sequence.id}" if len(sequences) > 1 else "the input"
        hint = ""
        if features == 1 and columns > 1:
            hint = ("; an array of N sequences of T steps (token ids, or one value per step) needs the shape "
                    "(N, T, 1): x[..., None]")
        elif columns > features:
            hint = "; --columns chooses the feature columns of a CSV"
        raise InputDataError(
            f"the model takes {features} feature(s) per step; {where} has {columns} column(s){hint}"
        )
