"""Core layers: the inference-time identities (dropout, noise, Identity, image augmentations), Dense, Activation,
Masking and Embedding."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import InputDataError
from .base import BuildContext, FunctionLayer, Layer, Tensor, register, with_bias

# Layers that compute nothing at inference time (noise and dropout act only in training).
IDENTITIES = (
    "InputLayer",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",  # keras.layers.Identity (Keras 3 and tf-keras)
)


# Image augmentation layers: they act only in training; at inference they return their input
# (Keras 3 and tf-keras: RandomFlip ... RandomBrightness; the rest Keras 3 only).  They do not support
# masking, so a mask ends there.  (RandomCrop is not one of them: tf-keras crops at inference.)
AUGMENTATIONS = (
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "RandomContrast",
    "RandomBrightness",
    "RandomGrayscale",
    "RandomHue",
    "RandomSaturation",
    "RandomSharpness",
    "RandomShear",
    "RandomColorJitter",
    "RandomColorDegeneration",
    "RandomInvert",
    "RandomPosterization",
    "RandomErasing",
    "RandomGaussianBlur",
    "RandomPerspective",
    "RandomElasticTransform",
    "AugMix",
    "CutMix",
    "MixUp",
    "RandAugment",
)


class Identity(Layer):
    is_identity = True

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        return [inputs[0]]


@register(*IDENTITIES)
def build_identity(ctx: BuildContext) -> Layer:
    return Identity()


@register(*AUGMENTATIONS)
def build_augmentation(ctx: BuildContext) -> Layer:
    return FunctionLayer(lambda x: x, keeps_mask=False)


class Dense(Layer):
    """``activation(x·kernel + bias)`` over the last axis, whatever the rank of x."""

    def __init__(self, ctx: BuildContext) -> None:
        self.kernel = ctx.weight("kernel")
        self.bias = ctx.weight("bias", required=bool(ctx.get("use_bias", True)))
        if self.kernel.ndim != 2 or (self.bias is not None and self.bias.shape != (self.kernel.shape[1],)):
            raise ctx.bad_file(
                f"kernel {self.kernel.shape} and bias {None if self.bias is None else self.bias.shape} "
                "do not make a Dense layer (in, out) + (out,)"
            )
        self.activation = ctx.activation("activation", None)
        self.name = ctx.name

    def input_features(self) -> int | None:
        return int(self.kernel.shape[0])

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        if x.shape[-1] != self.kernel.shape[0]:
            raise InputDataError(
                f"layer '{self.name}': kernel has {self.kernel.shape[0]} rows but its input has {x.shape[-1]} features"
            )
        y = x @ self.kernel
        if self.bias is not None:
            y += self.bias
        return self.wrap(inputs, self.activation(y))


@register("Dense", variables=with_bias("kernel"))
def build_dense(ctx: BuildContext) -> Layer:
    return Dense(ctx)


@register("Activation")
def build_activation(ctx: BuildContext) -> Layer:
    return FunctionLayer(ctx.activation("activation", None))


class Masking(Layer):
    """Steps whose features all equal ``mask_value`` are masked (and zeroed, as Keras does)."""

    makes_mask = True

    def __init__(self, mask_value: float) -> None:
        self.mask_value = mask_value

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        x = inputs[0].value
        if x.ndim != 3:
            raise InputDataError(f"Masking replays (N, T, F) inputs; this one has shape {x.shape}")
        keep = np.any(x != x.dtype.type(self.mask_value), axis=-1)  # (N, T)
        return [Tensor(x * keep[..., None].astype(x.dtype), keep)]


@register("Masking")
def build_masking(ctx: BuildContext) -> Layer:
    return Masking(float(ctx.get("mask_value", 0.0)))


class Embedding(Layer):
    """Token ids (N, T) -> vectors (N, T, D); with ``mask_zero`` id 0 masks its step."""

    def __init__(self, table: NDArray, mask_zero: bool, name: str) -> None:
        self.table, self.mask_zero, self.layer_name = table, mask_zero, name
        self.makes_mask = mask_zero
        self.token_vocabulary = int(table.shape[0])

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        ids = inputs[0].value
        if ids.ndim == 3 and ids.shape[-1] == 1:
            ids = ids[..., 0]
        if ids.dtype.kind == "f":
            if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
                raise InputDataError(f"layer '{self.layer_name}' (Embedding) takes whole-number token ids")
            ids = ids.astype(np.int64)
        bad = (ids < 0) | (ids >= self.table.shape[0])
        if np.any(bad):
            where = np.argwhere(bad)[0]
            raise InputDataError(
                f"token id {ids[tuple(where)]} at step {where[-1]} of sequence {where[0]} is outside the Embedding's "
                f"vocabulary (0..{self.table.shape[0] - 1}) of layer '{self.layer_name}'"
            )
        mask = ids != 0 if self.mask_zero and ids.ndim == 2 else None
        return [Tensor(self.table[ids], mask)]


@register("Embedding", variables=("embeddings",))
def build_embedding(ctx: BuildContext) -> Layer:
    table = ctx.weight("embeddings")
    if table.ndim != 2 or table.shape[0] == 0:
        raise ctx.bad_file(f"embeddings {table.shape} is not a (vocabulary, size) table")
    return Embedding(table, bool(ctx.get("mask_zero", False)), ctx.name)
