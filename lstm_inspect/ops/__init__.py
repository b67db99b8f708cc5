"""Feed-forward layers replayed in NumPy, one small builder each, registered by Keras class name.

A builder takes a :class:`~.base.BuildContext` (the layer's config, its
weights, the replay's dtype and hard_sigmoid) and returns a
:class:`~.base.Layer`, whose ``apply`` maps input tensors to output tensors.
Register it with :func:`~.base.register` in the module of its family
(``core``, ``conv``, ``pooling``, ``reshaping``, ``normalization``,
``activation_layers``, ``merge``, ``attention``, ``wrappers``) and list the
module in ``MODULES``: the engine looks layers up here and nowhere else.
Recurrent layers are not here: they are kinds (``lstm_inspect.kinds``).
"""

from __future__ import annotations

import importlib

from .base import BuildContext, Layer, OpDef, Tensor, register, registered

# The modules whose builders register themselves when imported.
MODULES = (
    "core",
    "conv",
    "pooling",
    "reshaping",
    "normalization",
    "activation_layers",
    "merge",
    "attention",
    "wrappers",
)
_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        for name in MODULES:
            importlib.import_module(f"{__name__}.{name}")
        _loaded = True


def op_for(class_name: str) -> OpDef | None:
    """The registered builder of a Keras layer class, or None when it cannot be replayed."""
    _load()
    return registered().get(class_name)


def replayed_classes() -> list[str]:
    """Every Keras class name with a builder, sorted (the README's list is checked against this)."""
    _load()
    return sorted(registered())


__all__ = ["BuildContext", "Layer", "OpDef", "Tensor", "op_for", "register", "replayed_classes"]
