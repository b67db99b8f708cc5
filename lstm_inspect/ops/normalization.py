"""Normalisation layers: BatchNormalization (inference: moving statistics) and LayerNormalization."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import BuildContext, Layer, Tensor, register


def _scale_center(config: Mapping[str, Any], extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    names = []
    if config.get("scale", True):
        names.append("gamma")
    if config.get("center", True):
        names.append("beta")
    return tuple(names) + extra


class BatchNorm(Layer):
    def __init__(self, mean, var, gamma, beta, eps) -> None:
        scale = 1.0 / np.sqrt(var + eps)
        if gamma is not None:
            scale = scale * gamma
        self.scale = scale
        self.shift = (beta if beta is not None else 0) - mean * scale

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        return self.wrap(inputs, (x * self.scale + self.shift).astype(x.dtype))


@register("BatchNormalization", variables=lambda config: _scale_center(config, ("moving_mean", "moving_variance")))
def build_batch_norm(ctx: BuildContext) -> Layer:
    axis = ctx.get("axis", -1)
    if axis not in (-1, [-1]):
        raise ctx.unsupported("only normalisation over the last axis is replayed")
    return BatchNorm(ctx.weight("moving_mean"), ctx.weight("moving_variance"), ctx.weight("gamma", required=False),
                     ctx.weight("beta", required=False), float(ctx.get("epsilon", 1e-3)))


class LayerNorm(Layer):
    def __init__(self, gamma, beta, eps) -> None:
        self.gamma, self.beta, self.eps = gamma, beta, eps

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        y = (x - mean) / np.sqrt(var + self.eps)
        if self.gamma is not None:
            y = y * self.gamma
        if self.beta is not None:
            y = y + self.beta
        return self.wrap(inputs, y.astype(x.dtype))


@register("LayerNormalization", variables=_scale_center)
def build_layer_norm(ctx: BuildContext) -> Layer:
    return LayerNorm(ctx.weight("gamma", required=False), ctx.weight("beta", required=False),
                     float(ctx.get("epsilon", 1e-3)))
