"""Layers that move values around without arithmetic: Flatten, RepeatVector."""

from __future__ import annotations

import numpy as np

from .base import BuildContext, Layer, Tensor, register

MAX_REPEAT = 1_000_000  # RepeatVector's n, at most


class Flatten(Layer):
    keeps_mask = False

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        return [Tensor(x.reshape(x.shape[0], -1))]


@register("Flatten")
def build_flatten(ctx: BuildContext) -> Layer:
    return Flatten()


class RepeatVector(Layer):
    """(N, D) -> (N, n, D)."""

    keeps_mask = False

    def __init__(self, n: int) -> None:
        self.n = n

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        return [Tensor(np.repeat(x[:, None, :], self.n, axis=1))]


@register("RepeatVector")
def build_repeat_vector(ctx: BuildContext) -> Layer:
    n = ctx.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPEAT:
        raise ctx.bad_file(f"n is {n!r}, not a count from 1 to {MAX_REPEAT:,}")
    return RepeatVector(n)
