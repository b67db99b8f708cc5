"""TimeDistributed: a layer applied to every step on its own.

(Bidirectional wraps a recurrent layer and lives with the recurrent ops in
``engine.recurrent``.)
"""

from __future__ import annotations

from .base import BuildContext, Layer, Tensor, register


class TimeDistributed(Layer):
    """(N, T, ...) -> fold the steps into the batch, apply the inner layer, unfold: (N, T, ...)."""

    def __init__(self, inner: Layer) -> None:
        self.inner = inner

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        n, steps = x.shape[:2]
        folded = Tensor(x.reshape((n * steps,) + x.shape[2:]))
        (out,) = self.inner.apply([folded])[:1]
        value = out.value.reshape((n, steps) + out.value.shape[1:])
        return [Tensor(value, inputs[0].mask)]


@register("TimeDistributed")
def build_time_distributed(ctx: BuildContext) -> Layer:
    """The replayed TimeDistributed layer from its config (and weights)."""
    inner = ctx.spec.children.get("layer")
    if inner is None:
        raise ctx.bad_file("TimeDistributed without a wrapped layer config")
    return TimeDistributed(ctx.build_child(inner))
