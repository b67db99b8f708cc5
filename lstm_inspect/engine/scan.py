"""The loop over time, for any cell: chunks of steps, direction, masks, carried state, threads.

A recurrent layer's input is scanned in chunks of steps.  For each chunk the
cell projects the input side of all its steps at once (one product), then
steps through them; the scan hands each chunk over as a :class:`StepBlock`
(when the layer is traced), so a long sequence is written out while it is
computed.  Keras' rules, as its backends' ``rnn()`` applies them:

* ``go_backwards``: the steps run from the last input row to the first, and
  the output sequence is returned in processing order (reversed);
* a masked step keeps the state, and outputs the previous output (zeros
  before the first real step), or zeros with ``zero_output_for_mask``
  (Bidirectional sets it when it returns sequences);
* the state a scan ends in is kept (``last_state``): a stateful replay feeds
  it to the next call.

A wide batch is cut into slices of sequences that threads step through side
by side (see ``parallel``); the slices never read each other.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputDataError, UsageProblem
from ..kinds import Cell
from ..parallel import plan_threads, run_split, single_threaded_blas, slices

if TYPE_CHECKING:
    from ..model import RecurrentLayer

DEFAULT_CHUNK = 2048  # steps per block: large enough to amortise, small enough to stay in cache
CHUNK_BYTES = 4 << 20  # a block's buffers, at most (wide batches and maps: fewer steps per block)


@dataclass
class StepBlock:
    """A run of consecutive steps of one recurrent layer for a batch of sequences.

    ``t`` holds, per step, the index of the input row consumed (descending
    for a go_backwards layer).  ``values`` maps a column name (``i``, ``f``,
    ``c``, ``o``, ``cell``, ``hidden``, ``z_i``, ...) to an array of shape
    (S, N, *positions, U), time-major; ``positions`` is empty except for a
    convolutional layer ((y, x) for ConvLSTM2D).  ``masked`` is (S, N) or None.
    """

    layer: RecurrentLayer
    t: NDArray[np.int64]  # (S,)
    values: dict[str, NDArray]  # name -> (S, N, *positions, U)
    masked: NDArray[np.bool_] | None = None  # (S, N)

    @property
    def steps(self) -> int:
        return int(self.t.shape[0])

    @property
    def batch(self) -> int:
        return int(next(iter(self.values.values())).shape[1])

    @property
    def positions(self) -> tuple[int, ...]:
        """The spatial shape of a convolutional layer's maps; ``()`` otherwise."""
        return tuple(next(iter(self.values.values())).shape[2:-1])


def initial_state(cell: Cell, given: Sequence[Any] | None, n: int, spatial: tuple[int, ...], name: str) -> list[NDArray]:
    """The state a scan starts from: zeros, or ``given`` (one array per state, each (U,) or (N, U);
    (..., U) broadcast over the positions of a convolutional layer)."""
    state = cell.zero_state(n, spatial)
    if given is None:
        return state
    names = cell.kind.states
    if len(given) != len(state):
        raise UsageProblem(f"layer '{name}': an initial state needs {len(state)} array(s) ({', '.join(names)}), got {len(given)}")
    result = []
    for value, zero in zip(given, state):
        value = np.asarray(value, dtype=cell.dtype)
        try:
            value = np.broadcast_to(value, zero.shape)
        except ValueError:
            raise UsageProblem(
                f"layer '{name}': initial state of shape {value.shape}, expected ({cell.units},) or {zero.shape}"
            ) from None
        result.append(np.array(value, dtype=cell.dtype))
    return result


class Scan:
    """One pass of a cell over a batch of sequences.

    Iterate over :meth:`run` for the recorded blocks; afterwards
    ``last_state`` holds the final state, ``last_output`` the output of the
    last step, and (with ``keep_sequence``) ``sequence`` the outputs
    (N, T, *positions, U) in processing order.
    """

    def __init__(self, layer: RecurrentLayer, cell: Cell, *, chunk: int = DEFAULT_CHUNK, threads: int | None = None,
                 pre_activation: bool = False) -> None:
        self.layer = layer
        self.cell = cell
        self.chunk = chunk
        self.threads = threads
        self.pre_activation = pre_activation
        self.last_state: list[NDArray] = []
        self.last_output: NDArray | None = None
        self.sequence: NDArray | None = None

    def spatial(self, x: NDArray) -> tuple[int, ...]:
        """The positions of the state maps for input ``x`` (N, T, *positions, F)."""
        return self.cell.output_spatial(tuple(x.shape[2:-1]))

    def run(self, x: NDArray, mask: NDArray | None, state: list[NDArray], *, record: bool, keep_sequence: bool,
            zero_output_for_mask: bool) -> Iterator[StepBlock]:
        """Scan ``x`` (N, T, *positions, F) from ``state``; yield a block per chunk when ``record``."""
        cell = self.cell
        rank = cell.kind.spatial_rank
        if x.ndim != 3 + rank:
            expected = "(sequences, steps, features)" if rank == 0 else f"(sequences, steps, {rank} position axes, channels)"
            raise InputDataError(f"layer '{self.layer.name}' expects input of shape {expected}; it was given {x.shape[1:]} per sequence")
        n, total = x.shape[:2]
        if x.shape[-1] != cell.features:
            raise InputDataError(
                f"layer '{self.layer.name}' takes {cell.features} features per step; it was given {x.shape[-1]}"
            )
        spatial = self.spatial(x)
        if rank and min(spatial, default=1) < 1:
            raise InputDataError(f"layer '{self.layer.name}': its kernel does not fit an input of positions {x.shape[2:-1]}")
        positions = math.prod(spatial)
        order = np.arange(total - 1, -1, -1) if self.layer.go_backwards else np.arange(total)
        self.sequence = np.empty((n, total) + spatial + (cell.units,), dtype=cell.dtype) if keep_sequence else None
        width = (2 * len(cell.kind.gates) + 2 + len(cell.kind.extra_values)) * cell.units  # values held per position
        step_bytes = n * positions * width * cell.dtype.itemsize
        chunk = max(1, min(int(self.chunk), max(1 if rank else 16, CHUNK_BYTES // max(step_bytes, 1))))
        threads = plan_threads(n, positions * len(cell.kind.gates) * cell.units, self.threads) if total else 1
        # BLAS stays on one thread for the whole scan when the batch is split.
        with single_threaded_blas() if threads > 1 else contextlib.nullcontext():
            yield from self._chunks(x, mask, state, record, order, chunk, threads, spatial, zero_output_for_mask)

    def _chunks(self, x, mask, state, record, order, chunk, threads, spatial, zero_output_for_mask):
        cell = self.cell
        n, total = x.shape[:2]
        pre_wanted = record and self.pre_activation
        last_output = np.zeros((n,) + spatial + (cell.units,), dtype=cell.dtype)
        for start in range(0, total, chunk):
            idx = order[start : start + chunk]
            keep = mask[:, idx].T if mask is not None else None  # (S, N)
            buffers = cell.buffers(idx.shape[0], n, spatial, pre_wanted)
            if threads > 1:
                state = self._advance_in_threads(threads, x, idx, state, buffers, keep)
            else:
                state = self._advance(x, idx, state, buffers, keep)
            hidden = buffers["hidden"]
            partly_masked = keep is not None and not keep.all()
            if self.sequence is not None:
                out = self._masked_outputs(hidden, keep, last_output, zero_output_for_mask) if partly_masked else hidden
                self.sequence[:, start : start + idx.shape[0]] = np.moveaxis(out, 0, 1)
            if partly_masked:
                last_output = self._masked_outputs(hidden, keep, last_output, zero_output_for_mask)[-1]
            else:
                last_output = hidden[-1]
            if record:
                yield StepBlock(self.layer, idx.astype(np.int64), cell.values(buffers), None if keep is None else ~keep)
        self.last_state = state
        self.last_output = last_output if total else state[0]

    def _advance(self, x, idx, state, buffers, keep):
        """Steps ``idx`` of ``x``: the input projection, then the loop."""
        xw = self.cell.project(np.moveaxis(x[:, idx], 0, 1))  # (S, N, ..., F) -> (S, N, ..., G·U)
        return self.cell.steps(xw, state, buffers, keep)

    def _advance_in_threads(self, threads, x, idx, state, buffers, keep):
        """``_advance`` on slices of the batch, one per thread."""

        def task(rows: slice):
            return lambda: self._advance(
                x[rows], idx, [s[rows] for s in state], {name: buffer[:, rows] for name, buffer in buffers.items()},
                None if keep is None else keep[:, rows],
            )

        parts = run_split([task(rows) for rows in slices(x.shape[0], threads)])
        return [np.concatenate(pieces) for pieces in zip(*parts)]

    @staticmethod
    def _masked_outputs(hidden: NDArray, keep: NDArray, last_output: NDArray, zero: bool) -> NDArray:
        """Keras' output at a masked step: zeros, or the previous output repeated."""
        keep = keep.reshape(keep.shape + (1,) * (hidden.ndim - 2))
        if zero:
            return np.where(keep, hidden, 0).astype(hidden.dtype)
        out = np.empty_like(hidden)
        previous = last_output
        for s in range(hidden.shape[0]):
            out[s] = np.where(keep[s], hidden[s], previous)
            previous = out[s]
        return out
