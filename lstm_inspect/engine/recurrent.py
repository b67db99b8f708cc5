"""Recurrent layers in the graph: one direction (``RecurrentOp``), or both (``BidirectionalOp``).

An op holds its layer's cell (built by the layer's kind) and a :class:`Scan`,
feeds the scan its input tensor and initial state (given by the caller, by
other layers' outputs wired as ``initial_state``, or zeros), and returns
what Keras returns: the last output or the whole sequence, then the states
with ``return_state``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UnsupportedLayer
from ..ops import Tensor
from .scan import Scan, StepBlock, initial_state

if TYPE_CHECKING:
    from ..model import RecurrentLayer
    from .program import ReplayState


class GraphOp:
    """One compiled layer of the graph: reads ``inputs`` (edges), writes ``replay_state.outputs[name]``."""

    name: str = ""
    inputs: tuple = ()
    traced_names: tuple[str, ...] = ()  # recurrent layers (directions) this op steps

    def evaluate(self, inputs: list[Tensor], replay_state: ReplayState) -> Iterator[StepBlock]:
        """Compute this node's outputs from ``inputs`` into ``replay_state.outputs``, yielding the recorded steps of a recurrent layer as it goes."""
        raise NotImplementedError
        yield  # pragma: no cover


class RecurrentOp(GraphOp):
    """One recurrent layer (or one direction of a Bidirectional)."""

    def __init__(self, layer: RecurrentLayer, scan: Scan) -> None:
        self.layer = layer
        self.scan = scan
        spec = layer.spec
        self.return_state = bool(spec.get("return_state", False))
        self.zero_output_for_mask = bool(spec.get("zero_output_for_mask", False))
        self.channels_first = str(spec.get("data_format") or "channels_last") == "channels_first"
        self.traced_names = (layer.name,)

    def step(self, tensor: Tensor, replay_state: ReplayState, wired: list[Tensor], keep_sequence: bool,
             zero_output: bool) -> Iterator[StepBlock]:
        """Scan ``tensor`` from the state the caller gave, else the ``wired`` state tensors, else zeros."""
        x = tensor.value
        if self.channels_first and x.ndim > 3:
            x = np.moveaxis(x, 2, -1)  # (N, T, C, *positions) -> (N, T, *positions, C)
        given = replay_state.states.pop(self.layer.name, None)
        if given is None and wired:
            given = [self._to_channels_last(t.value) for t in wired]
        n = x.shape[0]
        state = initial_state(self.scan.cell, given, n, self.scan.spatial(x) if x.ndim > 3 else (), self.layer.name)
        record = replay_state.trace is None or self.layer.name in replay_state.trace
        yield from self.scan.run(x, tensor.mask, state, record=record, keep_sequence=keep_sequence,
                                 zero_output_for_mask=zero_output)
        replay_state.final_states[self.layer.name] = self.scan.last_state

    def _to_channels_last(self, value: np.ndarray) -> np.ndarray:
        return np.moveaxis(value, 1, -1) if self.channels_first and value.ndim > 2 else value

    def _to_channels_first(self, value: np.ndarray, time_axis: bool) -> np.ndarray:
        if not self.channels_first or value.ndim <= 2 + time_axis:
            return value
        return np.moveaxis(value, -1, 2 if time_axis else 1)

    def evaluate(self, inputs: list[Tensor], replay_state: ReplayState) -> Iterator[StepBlock]:
        tensor = inputs[0]
        return_sequences = self.layer.return_sequences
        keep = return_sequences and self.name not in replay_state.unused
        yield from self.step(tensor, replay_state, inputs[1:], keep, self.zero_output_for_mask)
        scan = self.scan
        if return_sequences:
            # Keras passes the input mask on unchanged, even for go_backwards outputs.
            out = Tensor(self._to_channels_first(scan.sequence, True) if keep else None, tensor.mask)
        else:
            out = Tensor(self._to_channels_first(scan.last_output, False))
        outputs = [out]
        if self.return_state:
            outputs += [Tensor(self._to_channels_first(s, False)) for s in scan.last_state]
        replay_state.outputs[self.name] = outputs


class BidirectionalOp(GraphOp):
    """A Bidirectional layer: both directions scanned, their outputs merged by ``merge_mode``."""

    def __init__(self, forward: RecurrentOp, backward: RecurrentOp, merge_mode: str | None, return_state: bool) -> None:
        self.forward, self.backward = forward, backward
        self.merge_mode = merge_mode
        self.return_state = return_state
        self.traced_names = (forward.layer.name, backward.layer.name)
        if merge_mode not in ("concat", "sum", "ave", "mul", None):
            raise UnsupportedLayer(f"layer '{forward.layer.wrapper}': merge_mode '{merge_mode}' is not supported")

    def evaluate(self, inputs: list[Tensor], replay_state: ReplayState) -> Iterator[StepBlock]:
        tensor = inputs[0]
        states = inputs[1:]
        half = len(states) // 2
        return_sequences = self.forward.layer.return_sequences
        # Keras zeroes a Bidirectional's outputs at masked steps when it returns sequences.
        zero = return_sequences
        keep = return_sequences and self.name not in replay_state.unused
        yield from self.forward.step(tensor, replay_state, states[:half], keep, zero)
        f_scan = self.forward.scan
        f_seq, f_last, f_state = f_scan.sequence, f_scan.last_output, f_scan.last_state
        yield from self.backward.step(tensor, replay_state, states[half:], keep, zero)
        b_scan = self.backward.scan
        b_seq, b_last, b_state = b_scan.sequence, b_scan.last_output, b_scan.last_state
        if return_sequences and not keep:  # nothing reads the merged sequence in this run
            replay_state.outputs[self.name] = []
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
        else:
            merged = [a, b]
        outputs = [Tensor(np.ascontiguousarray(v), mask) for v in merged]
        if self.return_state:
            outputs += [Tensor(s) for s in f_state] + [Tensor(s) for s in b_state]
        replay_state.outputs[self.name] = outputs
