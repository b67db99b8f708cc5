"""Activation functions by their Keras name, as vectorised NumPy functions.

The one trap: ``hard_sigmoid`` changed meaning between Keras versions.
Keras 1, Keras 2 and tf-keras compute ``clip(0.2*x + 0.5, 0, 1)``; Keras 3
computes ``clip(x/6 + 0.5, 0, 1)`` (relu6(x + 3) / 6).  The definition is
picked from the Keras version that saved the file, unless overridden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import UnsupportedLayer

Array = NDArray[np.floating]

# hard_sigmoid(x) = clip(slope * x + offset, 0, 1) in each Keras generation.
HARD_SIGMOID = {"keras2": (0.2, 0.5), "keras3": (1.0 / 6.0, 0.5)}


@dataclass(frozen=True)
class Activation:
    """A named activation.

    ``affine`` is set for activations of the form ``clip(a*x + b, lo, hi)`` or
    ``a*tanh(x)``-style rewrites the engine can fold into the weights:
    ``("clip", a, b)`` for hard_sigmoid, ``("tanh", 0.5, 0.5)`` for sigmoid
    (sigmoid(x) = 0.5 * tanh(x/2) + 0.5), ``None`` otherwise.
    """

    name: str
    fn: Callable[[Array], Array]
    affine: tuple[str, float, float] | None = None

    def __call__(self, x: Array) -> Array:
        return self.fn(x)


def _sigmoid(x: Array) -> Array:
    # 0.5*tanh(x/2)+0.5 is exact where exp() would overflow for large |x|.
    return 0.5 * np.tanh(0.5 * x) + 0.5


def _softplus(x: Array) -> Array:
    return np.logaddexp(np.zeros((), dtype=x.dtype), x)


def _elu(x: Array) -> Array:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _selu(x: Array) -> Array:
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0)))


def _gelu(x: Array) -> Array:
    from math import erf, sqrt

    # Exact (erf) form, the default in tf-keras and Keras 3.  NumPy has no erf
    # ufunc; gelu is rare in recurrent models, so a scalar loop is acceptable.
    erf_x = np.vectorize(erf, otypes=[x.dtype])(x / x.dtype.type(sqrt(2.0)))
    return x * x.dtype.type(0.5) * (1 + erf_x)


def _softmax(x: Array) -> Array:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def _log_softmax(x: Array) -> Array:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _hard_sigmoid(slope: float, offset: float) -> Callable[[Array], Array]:
    def fn(x: Array) -> Array:
        return np.clip(x * x.dtype.type(slope) + x.dtype.type(offset), 0.0, 1.0)

    return fn


def _make(name: str, hard_sigmoid: str) -> Activation:
    slope, offset = HARD_SIGMOID[hard_sigmoid]
    simple: dict[str, Callable[[Array], Array]] = {
        "linear": lambda x: x,
        "tanh": np.tanh,
        "relu": lambda x: np.maximum(x, 0),
        "relu6": lambda x: np.clip(x, 0, 6),
        "softsign": lambda x: x / (1 + np.abs(x)),
        "softplus": _softplus,
        "elu": _elu,
        "selu": _selu,
        "exponential": np.exp,
        "swish": lambda x: x * _sigmoid(x),
        "silu": lambda x: x * _sigmoid(x),
        "gelu": _gelu,
        "mish": lambda x: x * np.tanh(_softplus(x)),
        "softmax": _softmax,
        "log_softmax": _log_softmax,
        "leaky_relu": lambda x: np.where(x > 0, x, x * x.dtype.type(0.2)),
        "hard_silu": lambda x: x * _hard_sigmoid(1 / 6, 0.5)(x),
        "hard_swish": lambda x: x * _hard_sigmoid(1 / 6, 0.5)(x),
    }
    if name == "sigmoid":
        return Activation(name, _sigmoid, ("tanh", 0.5, 0.5))
    if name == "hard_sigmoid":
        return Activation(name, _hard_sigmoid(slope, offset), ("clip", slope, offset))
    if name in simple:
        return Activation(name, simple[name])
    raise KeyError(name)


KNOWN = [
    "linear", "tanh", "sigmoid", "hard_sigmoid", "relu", "relu6", "softsign", "softplus", "elu", "selu", "exponential",
    "swish", "silu", "gelu", "mish", "softmax", "log_softmax", "leaky_relu", "hard_silu", "hard_swish",
]


# The same activations as NumPy source, for the scripts `lstm-inspect code` writes (each one is
# checked against the function above in the tests).  ``{slope}``/``{offset}``: hard_sigmoid's.
_SOURCE = {
    "linear": "def linear(x):\n    return x\n",
    "tanh": "tanh = np.tanh\n",
    "sigmoid": (
        "def sigmoid(x):\n"
        "    # 1 / (1 + exp(-x)), written with tanh so that a large |x| cannot overflow exp.\n"
        "    return 0.5 * np.tanh(0.5 * x) + 0.5\n"
    ),
    "hard_sigmoid": (
        "def hard_sigmoid(x):\n"
        "    # {origin}\n"
        "    return np.clip({slope!r} * x + {offset!r}, 0.0, 1.0)\n"
    ),
    "relu": "def relu(x):\n    return np.maximum(x, 0)\n",
    "relu6": "def relu6(x):\n    return np.clip(x, 0, 6)\n",
    "softsign": "def softsign(x):\n    return x / (1 + np.abs(x))\n",
    "softplus": "def softplus(x):\n    return np.logaddexp(np.zeros((), x.dtype), x)\n",
    "elu": "def elu(x):\n    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))\n",
    "exponential": "exponential = np.exp\n",
    "softmax": (
        "def softmax(x):\n"
        "    e = np.exp(x - np.max(x, axis=-1, keepdims=True))  # shifted: exp cannot overflow\n"
        "    return e / np.sum(e, axis=-1, keepdims=True)\n"
    ),
}
_HARD_SIGMOID_ORIGIN = {
    "keras2": "Keras 1, Keras 2 and tf-keras: clip(0.2·x + 0.5, 0, 1) (Keras 3 changed it to x/6 + 0.5).",
    "keras3": "Keras 3: clip(x/6 + 0.5, 0, 1) (Keras 1, Keras 2 and tf-keras use 0.2·x + 0.5).",
}


def activation_source(name: str | None, hard_sigmoid: str) -> str | None:
    """NumPy source defining the activation ``name`` (a function or alias of that name), or None
    when ``lstm-inspect code`` cannot write it.  ``hard_sigmoid``: ``"keras2"`` or ``"keras3"``."""
    key = "linear" if name in (None, "", "None") else str(name)
    text = _SOURCE.get(key)
    if text is None or key != "hard_sigmoid":
        return text
    slope, offset = HARD_SIGMOID[hard_sigmoid]
    return text.format(slope=slope, offset=offset, origin=_HARD_SIGMOID_ORIGIN[hard_sigmoid])


def get_activation(name: str | None, hard_sigmoid: str, where: str) -> Activation:
    """The activation called ``name`` (``None`` means linear, as in Keras).

    ``hard_sigmoid`` is ``"keras2"`` or ``"keras3"``; ``where`` names the layer
    for the error message.
    """
    key = "linear" if name in (None, "", "None") else str(name)
    try:
        return _make(key, hard_sigmoid)
    except KeyError:
        raise UnsupportedLayer(
            f"{where}: activation '{key}' cannot be replayed (known: {', '.join(KNOWN)})"
        ) from None


def hard_sigmoid_for(keras_major: int | None, override: str | None = None) -> str:
    """Which hard_sigmoid definition applies: the override, else the saving Keras' own."""
    if override:
        return override
    return "keras3" if keras_major is not None and keras_major >= 3 else "keras2"
