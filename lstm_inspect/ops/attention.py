"""Attention layers: Attention (Luong), AdditiveAttention (Bahdanau), MultiHeadAttention, EinsumDense.

Inference only: attention dropout acts only in training.  Masks are the
ones Keras attaches to the tensors while it runs (a Masking or ``mask_zero``
Embedding upstream; ``Tensor.live``): the query's mask zeroes or masks the
output rows and travels on with the output; the value's (and key's) mask
keeps masked steps from being attended to.  A mask passed explicitly in the
call (``mask=``, ``attention_mask=``) is refused, as is anything else the
replay would have to guess.

EinsumDense lives here because MultiHeadAttention's four projections are
EinsumDense layers; it is also replayed as a layer of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..activations import Activation
from ..errors import UnsupportedLayer
from .base import BuildContext, Layer, Tensor, register

# Keras adds this to the scores of masked steps before the softmax (Attention, AdditiveAttention,
# tf-keras' Softmax); Keras 3's Softmax layer puts it in their place.
MASKED_SCORE = 1.0e9
# Keras 3's fused dot-product attention (TensorFlow backend) puts this in place of masked logits.
FUSED_MASKED_LOGIT = -0.7 * 3.38953e38
MAX_HEADS = 1 << 16  # num_heads, key_dim, value_dim at most


def _flag(ctx: BuildContext, value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool) and value not in (0, 1):
        raise ctx.bad_file(f"{name} is {value!r}, not true or false")
    return bool(value)


def _softmax(x: NDArray, axes: tuple[int, ...]) -> NDArray:
    """softmax over ``axes`` (all at once), computed as Keras does: shifted by the maximum."""
    shifted = x - np.max(x, axis=axes, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axes, keepdims=True)


def _scalar(ctx: BuildContext, key: str) -> NDArray:
    value = ctx.weight(key)
    if value.size != 1:
        raise ctx.bad_file(f"'{key}' has shape {value.shape}; a scalar was expected")
    return value.reshape(())


def _refuse_explicit(ctx: BuildContext, names: tuple[str, ...]) -> None:
    """Refuse masks given as tensors in the call: the replay carries the masks Keras attaches to
    tensors, not arbitrary mask inputs."""
    for name in names:
        if ctx.spec.call_kwargs.get(name) is not None:
            raise ctx.unsupported(f"its call takes an explicit {name} tensor, which is not replayed "
                                  "(masks from Masking or Embedding(mask_zero) are)")


def _query_value_key(name: str, inputs: list[Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
    """An attention layer's (query, value, key) inputs; key None when not given."""
    if len(inputs) not in (2, 3):
        raise UnsupportedLayer(f"layer '{name}' takes a query, a value and optionally a key; "
                               f"the model gives it {len(inputs)} input(s)")
    return inputs[0], inputs[1], inputs[2] if len(inputs) == 3 else None


def _causal(rows: int, cols: int) -> NDArray[np.bool_]:
    """(1, rows, cols): step i may attend to steps j <= i."""
    return np.tri(rows, cols, dtype=bool)[None]


# ------------------------------------------------------------------ Attention, AdditiveAttention


class DenseAttention(Layer):
    """Attention (``score_mode`` dot or concat) and AdditiveAttention on ``[query, value(, key)]``.

    query (N, Tq, D), value (N, Tv, D), key (N, Tv, D) (the value when absent)
    -> output (N, Tq, D) carrying the query's mask, and with
    ``return_attention_scores`` the weights (N, Tq, Tv) as a second output.
    """

    def __init__(self, ctx: BuildContext, additive: bool) -> None:
        self.name = ctx.name
        self.additive = additive
        self.use_scale = _flag(ctx, ctx.get("use_scale", additive), "use_scale")
        self.score_mode = "additive" if additive else ctx.get("score_mode", "dot")
        if self.score_mode not in ("dot", "concat", "additive"):
            raise ctx.bad_file(f"score_mode is {self.score_mode!r}, not 'dot' or 'concat'")
        self.scale: NDArray | None = None
        if self.use_scale:
            self.scale = ctx.weight("scale") if additive else _scalar(ctx, "scale")
            if additive and self.scale.ndim != 1:
                raise ctx.bad_file(f"'scale' has shape {self.scale.shape}; a vector (D,) was expected")
        self.concat_weight = _scalar(ctx, "concat_score_weight") if self.score_mode == "concat" else None
        # tf-keras before use_causal_mask took `causal=True` in the layer config.
        kwargs = ctx.spec.call_kwargs
        self.causal = _flag(ctx, ctx.get("causal", False), "causal") or _flag(
            ctx, kwargs.get("use_causal_mask"), "use_causal_mask")
        self.return_scores = _flag(ctx, kwargs.get("return_attention_scores"), "return_attention_scores")
        _refuse_explicit(ctx, ("mask",))

    def scores(self, query: NDArray, key: NDArray) -> NDArray:
        """(N, Tq, Tv) scores of every query step against every key step."""
        if self.score_mode == "dot":
            scores = query @ np.swapaxes(key, -2, -1)
            return scores * self.scale if self.scale is not None else scores
        total = query[..., :, None, :] + key[..., None, :, :]  # (N, Tq, Tv, D)
        if self.score_mode == "additive":
            if self.scale is not None and self.scale.shape[0] != total.shape[-1]:
                raise ValueError(f"scale has {self.scale.shape[0]} values for {total.shape[-1]} features")
            weighted = np.tanh(total) * self.scale if self.scale is not None else np.tanh(total)
            return np.sum(weighted, axis=-1)
        if self.scale is not None:
            total = total * self.scale
        return self.concat_weight * np.sum(np.tanh(total), axis=-1)

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        query, value, key = _query_value_key(self.name, inputs)
        key = key if key is not None else value
        scores = self.scores(query.value, key.value)  # (N, Tq, Tv)
        allowed = None  # (N or 1, Tq or 1, Tv)
        if value.live is not None:
            allowed = value.live[:, None, :]
        if self.causal:
            causal = _causal(*scores.shape[-2:])
            allowed = causal if allowed is None else allowed & causal
        if allowed is not None:
            scores = np.where(allowed, scores, scores - scores.dtype.type(MASKED_SCORE))
        weights = _softmax(scores, (-1,))
        output = weights @ value.value  # (N, Tq, D)
        if query.live is not None:
            output = np.where(query.live[..., None], output, output.dtype.type(0))
        keep = query.mask is not None and output.shape[:2] == query.mask.shape
        result = [Tensor(output, query.mask, query.live_mask) if keep else Tensor(output)]
        if self.return_scores:
            result.append(Tensor(weights))
        return result


def _attention_variables(config: Mapping[str, Any]) -> tuple[str, ...]:
    names = ("scale",) if config.get("use_scale", False) else ()
    return names + (("concat_score_weight",) if config.get("score_mode", "dot") == "concat" else ())


@register("Attention", variables=_attention_variables)
def build_attention(ctx: BuildContext) -> Layer:
    return DenseAttention(ctx, additive=False)


@register("AdditiveAttention", variables=lambda config: ("scale",) if config.get("use_scale", True) else ())
def build_additive_attention(ctx: BuildContext) -> Layer:
    return DenseAttention(ctx, additive=True)


# ------------------------------------------------------------------ EinsumDense

# The equations Keras accepts: "ab,bc->ac", "...b,bc->...c", "ab...,bc->ac...".
_EQUATION = re.compile(r"^(?:(\.\.\.)?([a-zA-Z]+),([a-zA-Z]+)->(\.\.\.)?([a-zA-Z]+)|([a-zA-Z]{2,})\.\.\.,([a-zA-Z]+)->([a-zA-Z]+)\.\.\.)$")


class EinsumDense(Layer):
    """``activation(einsum(equation, x, kernel) + bias)``; the bias has the shape Keras stored,
    which broadcasts against the output."""

    keeps_mask = False  # neither Keras propagates a mask through EinsumDense

    def __init__(self, ctx: BuildContext) -> None:
        equation = ctx.get("equation")
        match = _EQUATION.match(equation) if isinstance(equation, str) else None
        if match is None:
            raise ctx.bad_file(f"equation {equation!r} is not of the form 'ab,bc->ac' (optionally with '...')")
        kernel_spec = match.group(3) or match.group(7)
        if _quantized(ctx.config):
            raise ctx.unsupported("quantized kernels are not replayed")
        self.equation = equation
        self.kernel = ctx.weight("kernel")
        if self.kernel.ndim != len(kernel_spec):
            raise ctx.bad_file(f"kernel has shape {self.kernel.shape}; equation '{equation}' needs "
                               f"{len(kernel_spec)} axes")
        self.bias = ctx.weight("bias", required=bool(ctx.get("bias_axes")))
        self.activation: Activation = ctx.activation("activation", None)

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        y = np.einsum(self.equation, inputs[0].value, self.kernel, optimize=True)
        if self.bias is not None:
            y = y + self.bias
        return self.wrap(inputs, self.activation(y))


def _quantized(config: Mapping[str, Any]) -> bool:
    dtype = config.get("dtype")
    policy = dtype.get("class_name", "") if isinstance(dtype, Mapping) else ""
    return "Quantized" in str(policy) or config.get("quantization_config") is not None


@register("EinsumDense", variables=lambda config: ("kernel", "bias") if config.get("bias_axes") else ("kernel",))
def build_einsum_dense(ctx: BuildContext) -> Layer:
    return EinsumDense(ctx)


# ------------------------------------------------------------------ MultiHeadAttention

# MultiHeadAttention's sub-layers: the legacy .h5 names (tf-keras and Keras 3 alike) and the
# Keras 3 weight-tree groups (named after the attribute holding the sub-layer; positional vars
# 0 = kernel, 1 = bias).
_PROJECTIONS = {
    "query": ("query_dense",),
    "key": ("key_dense",),
    "value": ("value_dense",),
    "attention_output": ("output_dense",),
    "gate": ("_gate_dense", "gate_dense"),
}


class _Projection:
    """One of MultiHeadAttention's EinsumDense projections: the last ``bound`` axes of x
    contracted with the kernel's first ``bound`` axes, plus the bias."""

    def __init__(self, ctx: BuildContext, sub: str, bound: int, use_bias: bool) -> None:
        kernel = _first_weight(ctx, [f"{sub}/kernel"] + [f"{tree}/0" for tree in _PROJECTIONS[sub]])
        if kernel is None:
            found = ", ".join(ctx.weights) or "none"
            raise ctx.bad_file(f"no kernel for its '{sub}' projection in the file (found: {found})")
        bias = None
        if use_bias:
            bias = _first_weight(ctx, [f"{sub}/bias"] + [f"{tree}/1" for tree in _PROJECTIONS[sub]])
            if bias is None:
                raise ctx.bad_file(f"no bias for its '{sub}' projection in the file (use_bias is true)")
        if kernel.ndim <= bound or (bias is not None and bias.shape != kernel.shape[bound:]):
            raise ctx.bad_file(f"the '{sub}' projection's kernel {kernel.shape} and bias "
                               f"{None if bias is None else bias.shape} do not fit together")
        self.sub, self.kernel, self.bias, self.bound = sub, kernel, bias, bound

    def __call__(self, x: NDArray) -> NDArray:
        if x.shape[x.ndim - self.bound:] != self.kernel.shape[: self.bound]:
            raise ValueError(f"the '{self.sub}' projection takes (..., {self.kernel.shape[: self.bound]}); "
                             f"got {x.shape}")
        y = np.tensordot(x, self.kernel, axes=self.bound)
        return y + self.bias if self.bias is not None else y


def _first_weight(ctx: BuildContext, keys: list[str]) -> NDArray | None:
    for key in keys:
        value = ctx.weight(key, required=False)
        if value is not None:
            return value
    return None


def _positive(ctx: BuildContext, key: str, default: Any = None) -> int:
    value = ctx.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or not 1 <= value <= MAX_HEADS:
        raise ctx.bad_file(f"{key} is {value!r}, not a whole number from 1 to {MAX_HEADS:,}")
    return int(value)


class MultiHeadAttention(Layer):
    """``layer(query, value, key=None)``: num_heads scaled dot-product attentions of projected
    query, key and value, concatenated and projected back (Vaswani et al. 2017).

    query (N, T, F), value/key (N, S, Fv/Fk) -> (N, T, F) or (N, T, *output_shape); with
    ``return_attention_scores``, the weights (N, heads, T, S) as a second output.  Inputs with
    more axes attend over ``attention_axes``.  Three computations, as Keras runs them:

    * Keras 3 on (N, T, F) inputs without dropout or returned scores calls its fused
      dot-product attention: masked logits become -0.7 * float32 max, so a query step with
      nothing to attend to averages every value step;
    * otherwise Keras 3 scales the query first and masks in its Softmax layer, whose masked
      weights are zero;
    * tf-keras (and Keras 2) scale the query first and add -1e9 to masked scores.

    The output carries the query's mask.  Keras 3 also removes the masks of the tensors the
    layer reads while it runs, which later readers of those tensors see (their ``live_mask``).
    """

    def __init__(self, ctx: BuildContext) -> None:
        self.name = ctx.name
        self.heads = _positive(ctx, "num_heads")
        self.key_dim = _positive(ctx, "key_dim")
        self.value_dim = _positive(ctx, "value_dim", self.key_dim) if ctx.get("value_dim") else self.key_dim
        use_bias = _flag(ctx, ctx.get("use_bias", True), "use_bias")
        self.query = _Projection(ctx, "query", 1, use_bias)
        self.key = _Projection(ctx, "key", 1, use_bias)
        self.value = _Projection(ctx, "value", 1, use_bias)
        self.output = _Projection(ctx, "attention_output", 2, use_bias)
        self.gate = _Projection(ctx, "gate", 1, use_bias) if _flag(ctx, ctx.get("use_gate"), "use_gate") else None
        for projection, width in ((self.query, self.key_dim), (self.key, self.key_dim), (self.value, self.value_dim)):
            if projection.kernel.shape[1:] != (self.heads, width):
                raise ctx.bad_file(f"the '{projection.sub}' kernel has shape {projection.kernel.shape}; "
                                   f"(features, {self.heads}, {width}) was expected")
        if self.output.kernel.shape[:2] != (self.heads, self.value_dim):
            raise ctx.bad_file(f"the 'attention_output' kernel has shape {self.output.kernel.shape}; "
                               f"({self.heads}, {self.value_dim}, ...) was expected")
        axes = ctx.get("attention_axes")
        if isinstance(axes, int) and not isinstance(axes, bool):
            axes = [axes]
        if axes is not None and not (isinstance(axes, list) and axes and all(
                isinstance(a, int) and not isinstance(a, bool) and abs(a) < 64 for a in axes)):
            raise ctx.bad_file(f"attention_axes is {axes!r}, not a list of axes")
        self.attention_axes = tuple(axes) if axes else None
        window = ctx.get("sliding_window")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ctx.bad_file(f"sliding_window is {window!r}, not a positive whole number")
        self.window = window
        dropout = ctx.get("dropout", 0.0)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ctx.bad_file(f"dropout is {dropout!r}, not a rate from 0 to 1")
        kwargs = ctx.spec.call_kwargs
        self.causal = _flag(ctx, kwargs.get("use_causal_mask"), "use_causal_mask")
        self.return_scores = _flag(ctx, kwargs.get("return_attention_scores"), "return_attention_scores")
        _refuse_explicit(ctx, ("attention_mask", "query_mask", "value_mask", "key_mask"))
        self.keras3 = ctx.keras_major is not None and ctx.keras_major >= 3
        # Keras 3 takes its fused path unless dropout is set (even at inference) or scores are returned.
        self.fused_allowed = self.keras3 and not dropout and not self.return_scores

    def _mask(self, query: Tensor, value: Tensor, key: Tensor | None, t: int, s: int) -> NDArray[np.bool_] | None:
        """(N or 1, T or 1, S): which (query step, value step) pairs may attend."""
        allowed = None
        if query.live is not None:
            allowed = query.live[:, :, None]
        for tensor in (value, key):
            if tensor is not None and tensor.live is not None:
                part = tensor.live[:, None, :]
                allowed = part if allowed is None else allowed & part
        if self.causal:
            allowed = _causal(t, s) if allowed is None else allowed & _causal(t, s)
        if self.window is not None and self.keras3:
            rows, cols = np.arange(t)[:, None], np.arange(s)[None, :]
            band = (np.abs(rows - cols) < self.window)[None]
            allowed = band if allowed is None else allowed & band
        return allowed

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        query, value, key = _query_value_key(self.name, inputs)
        q_in, v_in = query.value, value.value
        k_in = key.value if key is not None else v_in
        if v_in.shape[1:-1] != k_in.shape[1:-1]:
            raise ValueError(f"value {v_in.shape} and key {k_in.shape} differ before the last axis")
        rank = q_in.ndim + 1  # of the projected tensors: (N, positions..., heads, dim)
        masked = any(t is not None and t.live is not None for t in (query, value, key))
        if rank != 4 and (masked or self.causal or self.window is not None):
            raise UnsupportedLayer(f"layer '{self.name}': masks on inputs with more than one step axis "
                                   "are not replayed")
        allowed = self._mask(query, value, key, q_in.shape[1], v_in.shape[1]) if rank == 4 else None
        out_mask, out_live = query.mask, query.live
        if self.keras3:
            # Keras 3 removes the mask of the tensors it is called on (set_keras_mask(x, None)) as it
            # runs: layers that look at them later see none (in x + mha(x, x) the Add's mask is gone),
            # while recurrent layers keep the mask recorded in the saved graph.
            for tensor in (query, value, key):
                if tensor is not None:
                    tensor.live_mask = None
        q = self.query(q_in)  # (N, T, H, Dk)
        k = self.key(k_in)  # (N, S, H, Dk)
        v = self.value(v_in)  # (N, S, H, Dv)
        scale = 1.0 / np.sqrt(float(self.key_dim))
        weights = None
        if self.fused_allowed and rank == 4:
            logits = np.einsum("btnh,bsnh->bnts", q, k, optimize=True) * q.dtype.type(scale)
            if allowed is not None:
                logits = np.where(allowed[:, None], logits, logits.dtype.type(FUSED_MASKED_LOGIT))
            combined = np.einsum("bnts,bsnh->btnh", _softmax(logits, (-1,)), v, optimize=True)
        else:
            dot, combine, axes = _attention_equations(rank, self.attention_axes)
            scores = np.einsum(dot, k, q * q.dtype.type(scale), optimize=True)
            mask = allowed[:, None] if allowed is not None else None  # (N, 1, T, S) against (N, H, T, S)
            if mask is not None and self.keras3:  # Keras 3's Softmax layer
                weights = _softmax(np.where(mask, scores, scores.dtype.type(-MASKED_SCORE)), axes)
                weights = np.where(mask, weights, weights.dtype.type(0))
            else:
                if mask is not None:  # tf-keras' Softmax layer
                    scores = scores + (1.0 - mask.astype(scores.dtype)) * scores.dtype.type(-MASKED_SCORE)
                weights = _softmax(scores, axes)
            combined = np.einsum(combine, weights, v, optimize=True)
        if self.gate is not None:
            combined = combined * (1.0 / (1.0 + np.exp(-self.gate(q_in))))
        output = self.output(combined)
        output = output.astype(q_in.dtype, copy=False)
        keep = out_mask is not None and output.shape[:2] == out_mask.shape
        result = [Tensor(output, out_mask, out_live) if keep else Tensor(output)]
        if self.return_scores:
            result.append(Tensor(weights))
        return result


def _attention_equations(rank: int, attention_axes: tuple[int, ...] | None) -> tuple[str, str, tuple[int, ...]]:
    """The einsum equations of MultiHeadAttention for projected tensors of ``rank`` axes
    (N, positions..., heads, dim): scores from (key, query), output from (weights, value),
    and the score axes the softmax runs over.

    The query's axes are letters a, b, c, ...; the key's and value's attended axes get letters
    of their own.  Scores keep the other axes (batch, unattended positions, heads) first, then
    the query's attended axes, then the key's.
    """
    letters = "abcdefghijklmnopqrstuvwxyz"
    if rank > 13:
        raise UnsupportedLayer(f"MultiHeadAttention on inputs of {rank - 1} axes is not replayed")
    if attention_axes is None:
        attended = tuple(range(1, rank - 2))
    else:
        attended = tuple(a if a >= 0 else rank - 1 + a for a in attention_axes)
    if not attended or any(not 0 < a < rank - 1 for a in attended) or len(set(attended)) != len(attended):
        raise UnsupportedLayer(f"MultiHeadAttention: attention_axes {attention_axes} do not fit inputs "
                               f"of {rank - 1} axes")
    query = letters[:rank]
    source = list(query)
    extra = iter(letters[rank:])
    for axis in attended:
        source[axis] = next(extra)
    key = "".join(source)
    kept = [query[i] for i in range(rank) if i not in attended and i != rank - 1]
    scores = "".join(kept) + "".join(query[a] for a in attended) + "".join(key[a] for a in attended)
    softmax_axes = tuple(range(len(scores) - len(attended), len(scores)))
    return f"{key},{query}->{scores}", f"{scores},{key}->{query}", softmax_axes


# No vars of its own: its weights belong to its sub-layers ("query/kernel", "query_dense/0", ...).
@register("MultiHeadAttention")
def build_multi_head_attention(ctx: BuildContext) -> Layer:
    return MultiHeadAttention(ctx)
