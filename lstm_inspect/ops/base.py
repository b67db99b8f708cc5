"""The pieces every feed-forward layer builder uses: tensors, layers, the build context, the registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..activations import Activation, get_activation
from ..errors import ModelFileError, UnsupportedLayer
from ..reading import StoredArray


@dataclass
class Tensor:
    """A value flowing between layers, batch first: (N, ...), with its time mask.

    ``mask`` is (N, T) booleans (True = a real step) for tensors with a time
    axis (axis 1) that carry a mask, else None.

    ``live_mask`` is the mask Keras 3 attaches to the tensor while it runs,
    where that differs from ``mask`` (``...``: no difference).  They differ
    after a Keras 3 MultiHeadAttention, which removes the mask of the tensors
    it reads at run time: layers that look at the tensor's mask then
    (Attention, MultiHeadAttention, the merges) see ``live_mask``, while
    recurrent layers take the mask the saved graph recorded for them, which
    is ``mask``.
    """

    value: NDArray
    mask: NDArray[np.bool_] | None = None
    live_mask: Any = ...

    @property
    def live(self) -> NDArray[np.bool_] | None:
        """The mask Keras attaches to this tensor at run time (see ``live_mask``)."""
        return self.mask if self.live_mask is ... else self.live_mask

    @property
    def rank(self) -> int:
        """Axes after the batch axis: 2 for (N, T, F)."""
        return self.value.ndim - 1


class Layer:
    """A compiled feed-forward layer.

    ``apply`` gets the layer's input tensors (one per inbound edge, in
    order) and returns its outputs.  ``keeps_mask``: the first input's mask
    passes to every output whose time axis is kept (what Keras layers with
    ``supports_masking`` do); layers that drop or compute masks override
    ``apply`` accordingly (:meth:`wrap` applies this rule).
    """

    keeps_mask = True
    makes_mask = False  # it can mask steps (Masking; Embedding with mask_zero)
    is_identity = False  # computes nothing at inference (Dropout, noise, InputLayer)
    token_vocabulary: int | None = None  # reads token ids from a vocabulary of this size (Embedding)

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        raise NotImplementedError

    def input_features(self) -> int | None:
        """The width of the last input axis this layer takes, where its weights fix it."""
        return None

    def wrap(self, inputs: Sequence[Tensor], *values: NDArray) -> list[Tensor]:
        """Output tensors for ``values``, carrying the first input's mask when this layer keeps it
        and the value still has the input's time axis."""
        mask = inputs[0].mask if inputs and self.keeps_mask else None
        result = []
        for value in values:
            keep = mask is not None and value.ndim >= 2 and value.shape[:2] == mask.shape
            result.append(Tensor(value, mask, inputs[0].live_mask) if keep else Tensor(value))
        return result


class FunctionLayer(Layer):
    """A layer that is one function of its first input's value (activations, identities, scalings)."""

    def __init__(self, fn: Callable[[NDArray], NDArray], keeps_mask: bool = True) -> None:
        self.fn = fn
        self.keeps_mask = keeps_mask

    def apply(self, inputs: list[Tensor]) -> list[Tensor]:
        return self.wrap(inputs, self.fn(inputs[0].value))


class BuildContext:
    """What a builder knows about the layer it builds.

    ``spec`` is the layer's :class:`~lstm_inspect.config.LayerSpec`;
    ``weights`` its stored tensors by name (see ``model.py`` for how names
    are given: Keras' own names, ``kernel``, ``bias``, ... or positional
    ``0, 1, ...`` mapped through the builder's ``variables``).
    ``keras_major``: the major version of the Keras that saved the file (None
    when unknown), for layers whose maths or masks differ between Keras 2
    and Keras 3 (the merge layers' masks).
    """

    def __init__(
        self,
        spec: Any,
        weights: Mapping[str, StoredArray],
        *,
        label: str,
        dtype: np.dtype,
        hard_sigmoid: str,
        warn: Callable[[str], None],
        child_weights: Callable[[str], Mapping[str, StoredArray]] = lambda name: {},
        keras_major: int | None = None,
    ) -> None:
        self.spec = spec
        self.weights = weights
        self.label = label
        self.dtype = np.dtype(dtype)
        self.hard_sigmoid = hard_sigmoid
        self.warn = warn
        self._child_weights = child_weights
        self.keras_major = keras_major

    @property
    def config(self) -> Mapping[str, Any]:
        return self.spec.config

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def class_name(self) -> str:
        return self.spec.class_name

    @property
    def where(self) -> str:
        """``layer 'conv1d' (Conv1D)``, the start of every message about this layer."""
        return f"layer '{self.spec.name}' ({self.spec.class_name})"

    def get(self, key: str, default: Any = None) -> Any:
        """A config value (Keras 1 names stand in for today's where they differ)."""
        return self.spec.get(key, default)

    def weight(self, key: str, required: bool = True) -> NDArray | None:
        """The stored tensor ``key`` in the replay's dtype; None when absent and not required."""
        stored = self.weights.get(key)
        if stored is None:
            if required:
                found = ", ".join(self.weights) or "none"
                raise ModelFileError(f"{self.label}: {self.where} has no '{key}' weight in the file (found: {found})")
            return None
        return np.asarray(stored.array, dtype=self.dtype)

    def activation(self, key: str = "activation", default: str | None = None) -> Activation:
        """The activation named by config ``key`` (a missing one is ``default``; None is linear)."""
        from ..config import activation_name

        return get_activation(activation_name(self.spec.get(key, default)), self.hard_sigmoid, self.where)

    def unsupported(self, message: str) -> UnsupportedLayer:
        """An error naming this layer: raise it for settings lstm-inspect does not replay."""
        return UnsupportedLayer(f"{self.where}: {message}")

    def bad_file(self, message: str) -> ModelFileError:
        """An error naming the file and this layer: raise it for weights or settings that make no sense."""
        return ModelFileError(f"{self.label}: {self.where}: {message}")

    def child(self, spec: Any) -> BuildContext:
        """The context of a wrapped layer (TimeDistributed's ``layer``)."""
        return BuildContext(spec, self._child_weights(spec.name), label=self.label, dtype=self.dtype,
                            hard_sigmoid=self.hard_sigmoid, warn=self.warn, child_weights=self._child_weights,
                            keras_major=self.keras_major)

    def build_child(self, spec: Any) -> Layer:
        """Build a wrapped layer with its own registered builder."""
        from . import op_for

        definition = op_for(spec.class_name)
        if definition is None:
            raise UnsupportedLayer(f"{self.where}: the wrapped layer '{spec.name}' ({spec.class_name}) cannot be replayed")
        return definition.build(self.child(spec))


Variables = tuple[str, ...] | Callable[[Mapping[str, Any]], tuple[str, ...]]


@dataclass(frozen=True)
class OpDef:
    """A registered builder.

    ``variables`` names a Keras 3 layer's positional ``vars/0, 1, ...`` (a
    tuple, or a function of the config when they depend on it, e.g. no
    ``bias`` with ``use_bias=False``).
    """

    class_name: str
    build: Callable[[BuildContext], Layer]
    variables: Variables = ()

    def variable_names(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        return self.variables(config) if callable(self.variables) else tuple(self.variables)


_REGISTRY: dict[str, OpDef] = {}


def register(*class_names: str, variables: Variables = ()) -> Callable[[Callable[[BuildContext], Layer]], Callable[[BuildContext], Layer]]:
    """Register a builder for Keras layer classes: ``@register("Conv1D", "Conv2D", variables=("kernel", "bias"))``."""

    def decorate(build: Callable[[BuildContext], Layer]) -> Callable[[BuildContext], Layer]:
        for class_name in class_names:
            if class_name in _REGISTRY:
                raise RuntimeError(f"two builders for {class_name}")
            _REGISTRY[class_name] = OpDef(class_name, build, variables)
        return build

    return decorate


def registered() -> Mapping[str, OpDef]:
    return _REGISTRY


def with_bias(*names: str) -> Callable[[Mapping[str, Any]], tuple[str, ...]]:
    """``variables`` for layers whose last var is a bias they keep only with ``use_bias``."""

    def variables(config: Mapping[str, Any]) -> tuple[str, ...]:
        return names + (("bias",) if config.get("use_bias", True) else ())

    return variables
