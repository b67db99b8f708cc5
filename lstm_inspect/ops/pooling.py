"""Pooling layers."""

from __future__ import annotations

import numpy as np

from .base import BuildContext, Layer, Tensor, register


class GlobalPool1D(Layer):
    """(N, T, F) -> (N, F): mean or max over the unmasked steps."""

    keeps_mask = False

    def __init__(self, how: str) -> None:
        self.how = how

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        tensor = inputs[0]
        x, mask = tensor.value, tensor.mask
        if self.how == "mean":
            if mask is None:
                y = x.mean(axis=1)
            else:
                weights = mask[..., None].astype(x.dtype)
                y = (x * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1)
        else:
            y = np.where(mask[..., None], x, -np.inf).max(axis=1) if mask is not None else x.max(axis=1)
        return [Tensor(y.astype(x.dtype))]


@register("GlobalAveragePooling1D")
def build_global_average_1d(ctx: BuildContext) -> Layer:
    return GlobalPool1D("mean")


@register("GlobalMaxPooling1D")
def build_global_max_1d(ctx: BuildContext) -> Layer:
    return GlobalPool1D("max")
