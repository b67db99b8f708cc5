"""The recurrent layer kinds, one module each, and the table everything else asks.

Adding a kind: write its module (a :class:`~.base.RecurrentKind` subclass and
its :class:`~.base.Cell`), add it to ``KINDS`` below, and test it against
Keras.  Nothing else in the project names a kind.
"""

from __future__ import annotations

from .base import Cell, ExportOrder, RecurrentKind
from .conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from .gru import GRU
from .layout import ROW_MEANING, RecurrentWeights, StoredLocation, canonical_name, gate_count
from .lstm import LSTM
from .simple_rnn import SimpleRNN

KINDS: tuple[RecurrentKind, ...] = (LSTM(), GRU(), SimpleRNN(), ConvLSTM1D(), ConvLSTM2D(), ConvLSTM3D())

# Keras class name (layer or RNN cell) -> kind.
_BY_CLASS = {name: kind for kind in KINDS for name in kind.keras_classes + kind.cell_classes}
RECURRENT_CLASSES = frozenset(name for kind in KINDS for name in kind.keras_classes)
CELL_CLASSES = {name: kind.keras_classes[0] for kind in KINDS for name in kind.cell_classes}
CUDNN_CLASSES = frozenset(name for name in RECURRENT_CLASSES if name.startswith("CuDNN"))


def kind_of(class_name: str) -> RecurrentKind | None:
    """The kind serving a Keras class (``LSTM``, ``CuDNNGRU``, ``ConvLSTM2D``, ``GRUCell``), or None."""
    return _BY_CLASS.get(class_name)


def kind_named(name: str) -> RecurrentKind:
    """The kind called ``name`` (``LSTM``, ``GRU``, ...)."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(name)


def guess_kind(gates: int, spatial_rank: int) -> RecurrentKind | None:
    """The kind a weights-only layer has, from its gate count and kernel rank (None: not recurrent).

    Four gates are an LSTM (or ConvLSTM), three a GRU, one a SimpleRNN.
    """
    for kind in KINDS:
        if len(kind.gates) == gates and kind.spatial_rank == spatial_rank:
            return kind
    return None


__all__ = [
    "CELL_CLASSES",
    "CUDNN_CLASSES",
    "KINDS",
    "RECURRENT_CLASSES",
    "ROW_MEANING",
    "Cell",
    "ExportOrder",
    "RecurrentKind",
    "RecurrentWeights",
    "StoredLocation",
    "canonical_name",
    "gate_count",
    "guess_kind",
    "kind_named",
    "kind_of",
]
