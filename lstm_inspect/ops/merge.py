"""Merge layers: Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum."""

from __future__ import annotations

import numpy as np

from .base import BuildContext, Layer, Tensor, register

MERGES = ("Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


class Merge(Layer):
    def __init__(self, kind: str, axis: int) -> None:
        self.kind, self.axis = kind, axis

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        values = [t.value for t in inputs]
        if self.kind == "Concatenate":
            y = np.concatenate(values, axis=self.axis)
        elif self.kind == "Add":
            y = np.sum(values, axis=0)
        elif self.kind == "Subtract":
            y = values[0] - values[1]
        elif self.kind == "Multiply":
            y = np.prod(values, axis=0)
        elif self.kind == "Average":
            y = np.mean(values, axis=0)
        elif self.kind == "Maximum":
            y = np.max(values, axis=0)
        else:
            y = np.min(values, axis=0)
        masks = [t.mask for t in inputs if t.mask is not None]
        mask = np.logical_and.reduce(masks) if masks and y.ndim == 3 else None
        return [Tensor(y.astype(values[0].dtype), mask)]


@register(*MERGES)
def build_merge(ctx: BuildContext) -> Layer:
    return Merge(ctx.class_name, int(ctx.get("axis", -1)))
