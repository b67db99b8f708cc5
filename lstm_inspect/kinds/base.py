"""What every recurrent kind provides, and the parts of a cell they share.

A kind (LSTM, GRU, SimpleRNN, ConvLSTM) is one :class:`RecurrentKind`
subclass in its own module.  It owns:

* its names: the gates in Keras' column order, the state arrays, the values a
  trace records at each step, and which activation each value comes out of;
* its stored layouts (``weights``: Keras, CuDNN, Keras 1 -> canonical);
* its step equations (``cell`` returns a :class:`Cell`; ``equations`` says
  them in words);
* its export orders (``torch`` and ``onnx``, or None where no such layer exists).

The loop over time (chunks, direction, masks, carried state, threads) is not
here: ``engine.scan`` runs any cell, as Keras keeps its RNN loop apart from its
cells.  Everything else (frames, stats, views, export) asks the kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..activations import Activation
from ..reading import StoredArray
from .layout import RecurrentWeights, build_weights


@dataclass(frozen=True)
class ExportOrder:
    """How another framework lays out this kind's gates."""

    module: str  # torch.nn module / ONNX operator name
    order: tuple[int, ...]  # that framework's gate blocks, as indices into the kind's gates
    text: str  # the order spelled out, e.g. "i,f,g,o"


class RecurrentKind:
    """One recurrent layer kind: its names, layouts, equations and export orders."""

    name: ClassVar[str]  # "LSTM"
    gates: ClassVar[tuple[str, ...]]  # in Keras' column order
    gate_names: ClassVar[Mapping[str, str]]  # "i" -> "input gate"
    states: ClassVar[tuple[str, ...]] = ("h",)  # state arrays, in Keras' order (initial-state keys)
    extra_values: ClassVar[tuple[str, ...]] = ()  # recorded besides the gates and hidden ("cell")
    records_gates: ClassVar[bool] = True  # SimpleRNN: its one block is the hidden state itself
    recurrent_gates: ClassVar[tuple[str, ...]] = ()  # gates that go through recurrent_activation
    keras1_letters: ClassVar[tuple[str, ...]] = ()  # Keras 1 per-gate array suffixes, in gate order
    two_biases: ClassVar[bool] = False  # reset_after GRU: an input and a recurrent bias
    spatial_rank: ClassVar[int] = 0  # ConvLSTM1D/2D/3D: 1/2/3
    keras_classes: ClassVar[tuple[str, ...]] = ()  # config class names served (LSTM, CuDNNLSTM, ...)
    cell_classes: ClassVar[tuple[str, ...]] = ()  # generic RNN(cell) wrappers served (LSTMCell)
    torch: ClassVar[ExportOrder | None] = None
    onnx: ClassVar[ExportOrder | None] = None

    # -- names ----------------------------------------------------------------------

    def value_names(self, pre_activation: bool = False) -> list[str]:
        """The recorded columns, in output order: gates, extras, hidden, then z_<gate>."""
        names = list(self.gates) if self.records_gates else []
        names += list(self.extra_values) + ["hidden"]
        if pre_activation:
            names += [f"z_{gate}" for gate in self.gates]
        return names

    def value_activation(self, name: str, activation: str | None, recurrent_activation: str | None) -> str | None:
        """The activation whose output the recorded value ``name`` is (None: not an activation's output)."""
        if name in self.recurrent_gates:
            return recurrent_activation
        if name == "c":
            return activation
        return None

    def gate_name(self, gate: str) -> str:
        return self.gate_names.get(gate, gate)

    # -- stored layouts -------------------------------------------------------------------

    def weights(
        self, units: int | None, stored: Mapping[str, StoredArray], *, use_bias: bool, reset_after: bool,
        cudnn: bool, where: str,
    ) -> RecurrentWeights:
        """The canonical weights from what the file stores (see ``layout``)."""
        return build_weights(self, units, stored, use_bias=use_bias, reset_after=reset_after, cudnn=cudnn, where=where)

    def default_reset_after(self, keras_major: int | None) -> bool:
        return False

    # -- equations --------------------------------------------------------------------------

    def cell(
        self, weights: RecurrentWeights, activation: Activation, recurrent_activation: Activation, dtype: np.dtype,
        config: Mapping[str, Any],
    ) -> Cell:
        """The weights arranged for stepping, with this kind's step equations."""
        raise NotImplementedError

    def equations(self, activation: str, recurrent_activation: str, use_bias: bool, reset_after: bool) -> list[str]:
        """The step equations in words, with this layer's activations."""
        raise NotImplementedError

    def step_source(self, name: str, activation: str, recurrent_activation: str, use_bias: bool,
                    reset_after: bool) -> str:
        """NumPy source of one step, for ``lstm-inspect code``: ``def name(x, state, w)``.

        ``x`` is (N, F), ``state`` the list of this kind's state arrays ((N, U)
        each, in ``states`` order), ``w`` the layer's canonical arrays by name
        (``kernel``, ``recurrent_kernel``, ``bias``, ``recurrent_bias``).  It
        returns ``(new_state, gates)``: the new state list and the recorded
        gates by trace column (``{}`` for a kind that records none).  The
        activations are called by their Keras names, which the script defines.
        Raises NotImplementedError for a kind the code generator cannot write.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<kind {self.name}>"

    def __str__(self) -> str:
        return self.name

    # A kind equals its name, so ``layer.kind == "LSTM"`` reads as it always did.
    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return other == self.name
        return isinstance(other, RecurrentKind) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


class Cell:
    """A recurrent layer's weights laid out for the step loop, and the loop itself.

    The scan (``engine.scan``) calls, per chunk of S steps of N sequences:
    ``project`` (the input side, one matrix product for the whole chunk),
    ``buffers`` (where the steps' values go), then ``steps`` (the recurrence,
    step by step), and ``values`` to name what was recorded.  Arrays are
    time-major: (S, N, *spatial, width).
    """

    def __init__(self, weights: RecurrentWeights, activation: Activation, recurrent_activation: Activation,
                 dtype: np.dtype) -> None:
        self.weights = weights
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.dtype = np.dtype(dtype)
        self.units = weights.units
        self.kind = weights.kind

    @property
    def features(self) -> int:
        return self.weights.features

    def output_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """The state's positions for an input of positions ``spatial`` (``()`` for dense kinds)."""
        return ()

    def zero_state(self, n: int, spatial: tuple[int, ...] = ()) -> list[NDArray]:
        return [np.zeros((n,) + spatial + (self.units,), dtype=self.dtype) for _ in self.kind.states]

    def project(self, x: NDArray) -> NDArray:
        """The input side of every step of a chunk: x (S, N, ..., F) -> (S, N, ..., G*U)."""
        raise NotImplementedError

    def buffers(self, steps: int, n: int, spatial: tuple[int, ...], pre: bool) -> dict[str, NDArray]:
        """Preallocated arrays for one chunk: ``hidden`` always, plus what the kind records."""
        shape = (steps, n) + spatial
        buffers = {"hidden": np.empty(shape + (self.units,), dtype=self.dtype)}
        width = len(self.kind.gates) * self.units
        if self.kind.records_gates:
            buffers["gates"] = np.empty(shape + (width,), dtype=self.dtype)
        for extra in self.kind.extra_values:
            buffers[extra] = np.empty(shape + (self.units,), dtype=self.dtype)
        if pre:
            buffers["pre"] = np.empty(shape + (width,), dtype=self.dtype)
        return buffers

    def steps(self, xw: NDArray, state: list[NDArray], buffers: dict[str, NDArray], keep: NDArray | None) -> list[NDArray]:
        """Step through a chunk from ``state``; fill ``buffers``; return the final state.

        ``keep`` (S, N) is False at masked steps, which leave the state as it
        was (their gates and pre-activations are NaN), or None.
        """
        raise NotImplementedError

    def values(self, buffers: dict[str, NDArray]) -> dict[str, NDArray]:
        """The recorded values of a chunk by column name, (S, N, *spatial, U) each."""
        U = self.units
        values: dict[str, NDArray] = {}
        if self.kind.records_gates:
            for g, gate in enumerate(self.kind.gates):
                values[gate] = buffers["gates"][..., g * U : (g + 1) * U]
        for extra in self.kind.extra_values:
            values[extra] = buffers[extra]
        values["hidden"] = buffers["hidden"]
        if "pre" in buffers:
            for g, gate in enumerate(self.kind.gates):
                values[f"z_{gate}"] = buffers["pre"][..., g * U : (g + 1) * U]
        return values


def hold(keep: NDArray, arrays_now: list[NDArray | None], arrays_before: list[NDArray | None],
         blanks: list[NDArray | None]) -> None:
    """A masked step leaves the state as it was: for the sequences where ``keep`` (N,) is False,
    copy each of ``arrays_before`` into ``arrays_now`` and set each of ``blanks`` to NaN."""
    drop = ~keep
    for now, before in zip(arrays_now, arrays_before):
        if now is not None and before is not None:
            now[drop] = before[drop]
    for blank in blanks:
        if blank is not None:
            blank[drop] = np.nan
