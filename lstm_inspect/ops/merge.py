"""Merge layers: Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, and Dot.

Inputs of lower rank are given axes of size 1 after the batch axis until all
ranks agree, as Keras' merge layers do, and then broadcast.

Masks (a (N, T) mask on a sequence input) follow the Keras that saved the
file, because Keras 3 changed the rules:

* tf-keras and Keras 2: an element-wise merge's output mask is the AND of
  its inputs' masks (unmasked inputs ignored); Concatenate ANDs them too,
  an unmasked input counting as all True.
* Keras 3: an element-wise merge's output mask is the OR of its inputs'
  masks, or no mask when any input has none; Concatenate ORs them, an
  unmasked input counting as all True.  Multiply, Maximum and Minimum also
  use the masks in the values: a masked step of one input does not count
  (Multiply puts 1 there, Maximum and Minimum the other inputs' value), and
  Multiply zeroes the steps masked in every input.
* Concatenate along the time axis concatenates the masks (both Kerases).
* Dot drops the mask (both).

Keras 3 merges look at the masks tensors carry while Keras runs
(``Tensor.live``), which a MultiHeadAttention upstream may have removed;
the recorded mask (``Tensor.mask``, what a recurrent layer after the merge
uses) follows the same rules from the recorded input masks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from ..errors import UnsupportedLayer
from .base import BuildContext, Layer, Tensor, register

ELEMENTWISE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
_FOLDS: dict[str, Callable[[NDArray, NDArray], NDArray]] = {
    "Add": np.add,
    "Subtract": np.subtract,
    "Multiply": np.multiply,
    "Average": np.add,
    "Maximum": np.maximum,
    "Minimum": np.minimum,
}
KERAS3_L2_EPSILON = 1e-7  # Keras 3's backend.epsilon(), the floor of Dot(normalize=True)'s norm
TF_KERAS_L2_EPSILON = 1e-12  # tf.linalg.l2_normalize's floor of the squared norm


def _same_rank(values: list[NDArray]) -> list[NDArray]:
    """Lower-rank inputs get axes of size 1 after the batch axis (Keras' merge layers)."""
    rank = max(v.ndim for v in values)
    return [v.reshape(v.shape[:1] + (1,) * (rank - v.ndim) + v.shape[1:]) for v in values]


def _step_mask(mask: NDArray[np.bool_] | None, value: NDArray) -> NDArray[np.bool_] | None:
    """An (N, T) mask when it lines up with ``value``'s first two axes."""
    return mask if mask is not None and value.ndim >= 2 and value.shape[:2] == mask.shape else None


def _output(y: NDArray, mask: NDArray[np.bool_] | None, live: NDArray[np.bool_] | None) -> Tensor:
    mask = _step_mask(mask, y)
    return Tensor(y, mask, _step_mask(live, y)) if mask is not None else Tensor(y)


def _spread(mask: NDArray[np.bool_], value: NDArray) -> NDArray[np.bool_]:
    """An (N, T) mask broadcast over the value's other axes."""
    return np.broadcast_to(mask.reshape(mask.shape + (1,) * (value.ndim - 2)), value.shape)


class ElementwiseMerge(Layer):
    """Add, Subtract, Multiply, Average, Maximum, Minimum of several same-shaped (or broadcastable) inputs."""

    def __init__(self, kind: str, keras3: bool, name: str) -> None:
        self.kind, self.keras3, self.name = kind, keras3, name

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        if not inputs or (self.kind == "Subtract" and len(inputs) != 2):
            wanted = "2 inputs" if self.kind == "Subtract" else "at least 1 input"
            raise UnsupportedLayer(f"layer '{self.name}' ({self.kind}) takes {wanted}; the model gives it {len(inputs)}")
        values = _same_rank([t.value for t in inputs])
        live = [_step_mask(t.live, v) for t, v in zip(inputs, values)]
        if self.keras3 and self.kind == "Multiply" and any(m is not None for m in live):
            y = self._keras3_multiply(values, live)
        elif self.keras3 and self.kind in ("Maximum", "Minimum") and any(m is not None for m in live):
            y = self._keras3_extreme(values, live)
        else:
            fold = _FOLDS[self.kind]
            y = values[0]
            for v in values[1:]:
                y = fold(y, v)
            if self.kind == "Average":
                y = y / y.dtype.type(len(values))
        y = np.asarray(y, dtype=values[0].dtype)
        recorded = [_step_mask(t.mask, v) for t, v in zip(inputs, values)]
        return [_output(y, self._mask(recorded), self._mask(live))]

    def _mask(self, masks: list[NDArray[np.bool_] | None]) -> NDArray[np.bool_] | None:
        present = [m for m in masks if m is not None]
        if not present:
            return None
        if self.keras3:
            return np.logical_or.reduce(present) if len(present) == len(masks) else None
        return np.logical_and.reduce(present)

    @staticmethod
    def _keras3_multiply(values: list[NDArray], masks: list[NDArray[np.bool_] | None]) -> NDArray:
        """Keras 3: masked steps count as 1; steps masked in every input (when all are masked) are 0."""
        every = all(m is not None for m in masks)
        y, kept = None, None
        for value, mask in zip(values, masks):
            if mask is not None:
                spread = _spread(mask, value)
                value = np.where(spread, value, value.dtype.type(1))
                if every:
                    kept = spread if kept is None else kept | spread
            y = value if y is None else y * value
        return np.where(kept, y, y.dtype.type(0)) if kept is not None else y

    def _keras3_extreme(self, values: list[NDArray], masks: list[NDArray[np.bool_] | None]) -> NDArray:
        """Keras 3's Maximum/Minimum: a masked step takes the other side's value before comparing."""
        fold = _FOLDS[self.kind]
        y, kept = values[0], (_spread(masks[0], values[0]) if masks[0] is not None else None)
        for value, mask in zip(values[1:], masks[1:]):
            spread = _spread(mask, value) if mask is not None else None
            if spread is not None:
                value = np.where(spread, value, y)
            if kept is not None:
                y = np.where(kept, y, value)
            kept = kept | spread if spread is not None and kept is not None else None
            y = fold(y, value)
        return y


@register(*ELEMENTWISE)
def build_elementwise(ctx: BuildContext) -> Layer:
    return ElementwiseMerge(ctx.class_name, _keras3(ctx), ctx.name)


def _keras3(ctx: BuildContext) -> bool:
    return ctx.keras_major is not None and ctx.keras_major >= 3


class Concatenate(Layer):
    """Inputs joined along ``axis`` (of the values with the batch axis, -1 by default)."""

    def __init__(self, axis: int, keras3: bool) -> None:
        self.axis, self.keras3 = axis, keras3

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        values = [t.value for t in inputs]
        y = np.concatenate(values, axis=self.axis)
        recorded = self._mask([_step_mask(t.mask, v) for t, v in zip(inputs, values)], values, y.ndim)
        return [_output(y, recorded, self._mask([_step_mask(t.live, v) for t, v in zip(inputs, values)], values, y.ndim))]

    def _mask(self, masks: list[NDArray[np.bool_] | None], values: list[NDArray], rank: int) -> NDArray[np.bool_] | None:
        if all(m is None for m in masks):
            return None
        filled = [m if m is not None else np.ones(v.shape[:2], dtype=bool) for m, v in zip(masks, values)]
        if self.axis % rank == 1:  # along the time axis: the masks are joined too
            return np.concatenate(filled, axis=1)
        return np.logical_or.reduce(filled) if self.keras3 else np.logical_and.reduce(filled)


@register("Concatenate")
def build_concatenate(ctx: BuildContext) -> Layer:
    axis = ctx.get("axis", -1)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -64 < axis < 64:
        raise ctx.bad_file(f"axis is {axis!r}, not an axis")
    if axis == 0:
        raise ctx.bad_file("axis 0 is the batch axis, which cannot be concatenated along")
    return Concatenate(axis, _keras3(ctx))


class Dot(Layer):
    """The dot product of two inputs along ``axes`` (one per input), batch by batch: x (N, ..., K)
    and y (N, ..., K) -> x's other axes then y's other axes ((N, 1) for two vectors)."""

    keeps_mask = False

    def __init__(self, axes: tuple[int, int] | int, normalize: bool, keras3: bool, name: str) -> None:
        self.axes, self.normalize, self.keras3, self.name = axes, normalize, keras3, name

    def _l2(self, x: NDArray, axis: int) -> NDArray:
        squares = np.sum(np.square(x), axis=axis, keepdims=True)
        with np.errstate(divide="ignore"):
            if self.keras3:  # x * min(1/sqrt(sum x²), 1/epsilon)
                return x * np.minimum(1.0 / np.sqrt(squares), x.dtype.type(1.0 / KERAS3_L2_EPSILON))
            return x * (1.0 / np.sqrt(np.maximum(squares, x.dtype.type(TF_KERAS_L2_EPSILON))))

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        if len(inputs) != 2:
            raise UnsupportedLayer(f"layer '{self.name}' (Dot) takes 2 inputs; the model gives it {len(inputs)}")
        x, y = inputs[0].value, inputs[1].value
        if x.ndim < 2 or y.ndim < 2:
            raise ValueError(f"Dot takes inputs of at least 2 axes, got {x.shape} and {y.shape}")
        if isinstance(self.axes, int):
            axes = [self.axes % x.ndim, self.axes % y.ndim] if self.axes < 0 else [self.axes, self.axes]
        else:
            axes = [a % v.ndim if a < 0 else a for a, v in zip(self.axes, (x, y))]
        if 0 in axes or axes[0] >= x.ndim or axes[1] >= y.ndim or x.shape[axes[0]] != y.shape[axes[1]]:
            raise ValueError(f"Dot axes {axes} do not pair the inputs {x.shape} and {y.shape}")
        if self.normalize:
            x, y = self._l2(x, axes[0]), self._l2(y, axes[1])
        x = np.moveaxis(x, axes[0], -1)  # (N, M..., K)
        y = np.moveaxis(y, axes[1], 1)  # (N, K, P...)
        n, k = x.shape[0], x.shape[-1]
        out = np.matmul(x.reshape(n, -1, k), y.reshape(n, k, -1))  # (N, M, P)
        out = out.reshape(x.shape[:-1] + y.shape[2:])
        if out.ndim == 1:
            out = out[:, None]
        return self.wrap(inputs, out)


@register("Dot")
def build_dot(ctx: BuildContext) -> Layer:
    axes = ctx.get("axes")
    if isinstance(axes, list) and len(axes) == 1:
        axes = axes[0]
    valid_int = isinstance(axes, int) and not isinstance(axes, bool) and -64 < axes < 64
    valid_pair = isinstance(axes, list) and len(axes) == 2 and all(
        isinstance(a, int) and not isinstance(a, bool) and -64 < a < 64 for a in axes)
    if not (valid_int or valid_pair):
        raise ctx.bad_file(f"axes is {axes!r}, not an axis or a pair of axes")
    normalize = ctx.get("normalize", False)
    if not isinstance(normalize, bool) and normalize not in (0, 1):
        raise ctx.bad_file(f"normalize is {normalize!r}, not true or false")
    return Dot(axes if valid_int else (axes[0], axes[1]), bool(normalize), _keras3(ctx), ctx.name)
