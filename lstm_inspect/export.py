"""Export recurrent weights in the layouts other tools load: gate-split, PyTorch, ONNX.

Every layout is a flat mapping of names to arrays, written as ``.npz`` (one
array per name, plus ``__metadata__``: a JSON string describing each layer)
or as JSON (the same names; arrays as nested lists, ``__metadata__`` as an
object).  Arrays keep the dtype they were stored with.

``gates``
    The Keras tensors cut by gate: ``<layer>/kernel_<g>`` (F, U),
    ``<layer>/recurrent_kernel_<g>`` (U, U), ``<layer>/bias_<g>`` (U,) and,
    for a reset_after GRU, ``<layer>/recurrent_bias_<g>`` (U,); gates
    ``i, f, c, o`` (LSTM), ``z, r, c`` (GRU), ``h`` (SimpleRNN).  A
    Bidirectional's directions are ``<name>/forward`` and ``<name>/backward``.

``pytorch``
    ``torch.nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` state-dict arrays, one module
    per Keras layer: ``<layer>/weight_ih_l0`` (G·U, F), ``weight_hh_l0``
    (G·U, U), ``bias_ih_l0``, ``bias_hh_l0``; a Bidirectional's backward
    direction adds the ``_reverse`` arrays.  LSTM gate order i, f, g, o
    (Keras' i, f, c, o, transposed); the Keras bias goes to ``bias_ih_l0``
    and ``bias_hh_l0`` is zeros (PyTorch adds both).  GRU order r, z, n;
    only ``reset_after=True`` maps exactly (PyTorch applies the reset gate
    after the recurrent product): ``bias_ih`` = input bias, ``bias_hh`` =
    recurrent bias.  PyTorch's LSTM and GRU are fixed to sigmoid/tanh, and
    nn.RNN to tanh or relu: other activations are refused.

``onnx``
    The W, R, B inputs of the ONNX ``LSTM`` / ``GRU`` / ``RNN`` operators,
    one node per Keras layer: ``<layer>/W`` [dirs, G·U, F], ``<layer>/R``
    [dirs, G·U, U], ``<layer>/B`` [dirs, 2·G·U] (input biases, then
    recurrent biases).  LSTM gate order i, o, f, c (the Keras bias in Wb,
    zeros in Rb); GRU z, r, h with ``linear_before_reset`` = 1 for
    reset_after=True (Rb = recurrent bias) and 0 for reset_after=False
    (Rb = zeros), both exact.  ``direction`` is ``bidirectional`` for a
    Bidirectional, ``reverse`` for a go_backwards layer.  The node's
    attributes (``hidden_size``, ``direction``, ``activations``,
    ``activation_alpha``/``activation_beta`` for hard_sigmoid,
    ``linear_before_reset``) are recorded in the metadata.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from .activations import HARD_SIGMOID, hard_sigmoid_for
from .errors import UnsupportedLayer, UsageProblem
from .kinds import ExportOrder
from .model import Model, RecurrentLayer
from .weights import equations

LAYOUTS = ("gates", "pytorch", "onnx")
FORMATS = ("npz", "json")
METADATA_KEY = "__metadata__"

_ONNX_ACTIVATIONS = {
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "relu": "Relu",
    "softsign": "Softsign",
    "softplus": "Softplus",
    "elu": "Elu",  # alpha 1.0 in both
    "hard_sigmoid": "HardSigmoid",  # alpha/beta of the saving Keras version
    "linear": "Affine",  # alpha 1, beta 0
    "leaky_relu": "LeakyRelu",  # Keras' negative slope 0.2
}


@dataclass
class ExportedWeights:
    """Named arrays in one layout, with a metadata dict describing every layer."""

    layout: str
    arrays: dict[str, NDArray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def write(self, stream: BinaryIO, fmt: str = "npz") -> None:
        """Write as ``npz`` (``__metadata__`` a JSON string) or ``json`` (nested lists) to a binary stream."""
        if fmt == "npz":
            payload = dict(self.arrays)
            payload[METADATA_KEY] = np.array(json.dumps(self.metadata))
            np.savez(stream, **payload)
        elif fmt == "json":
            stream.write(b"{" + json.dumps(METADATA_KEY).encode() + b": ")
            stream.write(json.dumps(self.metadata).encode("utf-8"))
            for name, array in self.arrays.items():
                stream.write(b",\n" + json.dumps(name).encode("utf-8") + b": ")
                stream.write(_json_array(array))
            stream.write(b"\n}\n")
        else:
            raise UsageProblem(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")


def export_weights(
    model: Model,
    layout: str = "gates",
    layers: Sequence[str] | None = None,
    *,
    hard_sigmoid: str | None = None,
    assume_activation: str | None = None,
    assume_recurrent_activation: str | None = None,
) -> ExportedWeights:
    """The recurrent weights of ``model`` in ``layout`` (gates, pytorch or onnx).

    ``layers`` selects recurrent layers by name (a Bidirectional's name
    selects both directions).  ``assume_*`` give the activations of a
    weights-only file, which does not record them.  Raises ``UsageProblem``
    or ``UnsupportedLayer`` when a layer cannot be expressed exactly in the
    layout (one line naming the layer and the reason).
    """
    if layout not in LAYOUTS:
        raise UsageProblem(f"unknown layout '{layout}' (choose from {', '.join(LAYOUTS)})")
    selected = model.select_recurrent(layers)
    context = _Context(model, hard_sigmoid_for(model.keras_major, hard_sigmoid), assume_activation, assume_recurrent_activation)
    result = ExportedWeights(layout)
    described = []
    for group in _keras_layers(selected):
        if layout == "gates":
            for layer in group:
                described.append(_gates(layer, context, result.arrays))
        elif layout == "pytorch":
            described.append(_pytorch(group, context, result.arrays))
        else:
            described.append(_onnx(group, context, result.arrays))
    result.metadata = {
        "format": "lstm-inspect weight export",
        "version": 1,
        "layout": layout,
        "layout_description": _LAYOUT_TEXT[layout],
        "source": model.label,
        "keras_version": model.keras_version,
        "layers": described,
    }
    return result


_LAYOUT_TEXT = {
    "gates": "Keras tensors cut by gate: <layer>/kernel_<g> (features, units), <layer>/recurrent_kernel_<g> "
             "(units, units), <layer>/bias_<g> (units,); gates i,f,c,o (LSTM), z,r,c (GRU), h (SimpleRNN)",
    "pytorch": "torch.nn.LSTM/GRU/RNN state-dict arrays per layer (num_layers=1): <layer>/weight_ih_l0, "
               "weight_hh_l0, bias_ih_l0, bias_hh_l0 (+ _reverse for a Bidirectional's backward direction); "
               "LSTM gates i,f,g,o, GRU r,z,n",
    "onnx": "ONNX LSTM/GRU/RNN operator inputs per layer: <layer>/W [dirs, gates*units, features], <layer>/R "
            "[dirs, gates*units, units], <layer>/B [dirs, 2*gates*units] (Wb then Rb); LSTM gates i,o,f,c, "
            "GRU z,r,h; node attributes under 'attributes'",
}


@dataclass(frozen=True)
class _Context:
    model: Model
    hard: str  # "keras2" | "keras3"
    assume_activation: str | None
    assume_recurrent_activation: str | None

    def activations(self, layer: RecurrentLayer, needs: str) -> tuple[str, str]:
        """(activation, recurrent_activation), refusing when the file does not record them."""
        activation = layer.activation or self.assume_activation
        recurrent = layer.recurrent_activation or self.assume_recurrent_activation
        if not layer.kind.recurrent_gates:
            recurrent = recurrent or "sigmoid"  # not used by the kind
        if activation is None or recurrent is None:
            raise UsageProblem(
                f"layer '{layer.name}': the file does not record its activations, which the {needs} layout "
                "needs; give them with --activation and --recurrent-activation"
            )
        return activation, recurrent


def _keras_layers(selected: Sequence[RecurrentLayer]) -> list[list[RecurrentLayer]]:
    """Group directions of one Bidirectional together, in model order."""
    groups: list[list[RecurrentLayer]] = []
    index: dict[str, int] = {}
    for layer in selected:
        key = layer.wrapper or layer.name
        if key in index:
            groups[index[key]].append(layer)
        else:
            index[key] = len(groups)
            groups.append([layer])
    return groups


def _blocks(array: NDArray, units: int, order: Sequence[int]) -> NDArray:
    """Reorder the gate blocks along the last axis."""
    return np.concatenate([array[..., g * units : (g + 1) * units] for g in order], axis=-1)


def _bias(layer: RecurrentLayer) -> NDArray:
    w = layer.weights
    if w.bias is not None:
        return np.asarray(w.bias)
    return np.zeros(w.kernel.shape[1], dtype=w.kernel.dtype)


def _recurrent_bias(layer: RecurrentLayer) -> NDArray:
    w = layer.weights
    if w.recurrent_bias is not None:
        return np.asarray(w.recurrent_bias)
    return np.zeros(w.kernel.shape[1], dtype=w.kernel.dtype)


def _describe(layer: RecurrentLayer, activation: str | None = None, recurrent: str | None = None) -> dict[str, Any]:
    w = layer.weights
    info: dict[str, Any] = {
        "name": layer.name,
        "kind": layer.kind.name,
        "units": w.units,
        "features": w.features,
        "activation": activation or layer.activation,
        "recurrent_activation": (recurrent or layer.recurrent_activation) if layer.kind.recurrent_gates else None,
        "go_backwards": layer.go_backwards,
        "use_bias": w.bias is not None,
    }
    if layer.kind.two_biases:
        info["reset_after"] = w.reset_after
    return info


# ----------------------------------------------------------------------- gates


def _gates(layer: RecurrentLayer, context: _Context, arrays: dict[str, NDArray]) -> dict[str, Any]:
    w = layer.weights
    keys = []
    for tensor, array in w.tensors():
        for gate in w.gates:
            key = f"{layer.name}/{tensor}_{gate}"
            arrays[key] = np.ascontiguousarray(np.asarray(array)[..., w.columns(gate)])
            keys.append(key)
    info = _describe(layer)
    info.update(gates=list(w.gates), keys=keys, equations=equations(layer))
    if w.taps:
        info["kernel_taps"] = list(w.taps)
    return info


# --------------------------------------------------------------------- pytorch


def _pytorch(group: list[RecurrentLayer], context: _Context, arrays: dict[str, NDArray]) -> dict[str, Any]:
    first = group[0]
    name = first.wrapper or first.name
    kind = first.kind
    layout = _layout_of(first, kind.torch, "pytorch", "PyTorch")
    keys = []
    nonlinearity = None
    for layer in group:
        activation, recurrent = context.activations(layer, "pytorch")
        where = f"layer '{layer.name}'"
        if kind.recurrent_gates and (recurrent, activation) != ("sigmoid", "tanh"):
            raise UnsupportedLayer(
                f"{where}: torch.nn.{layout.module} computes sigmoid gates and tanh; this layer uses "
                f"recurrent_activation={recurrent}, activation={activation} (the onnx layout records other activations)"
            )
        if not kind.recurrent_gates:
            if activation not in ("tanh", "relu"):
                raise UnsupportedLayer(f"{where}: torch.nn.RNN supports tanh or relu; this layer uses {activation}")
            nonlinearity = activation
        if kind.two_biases and not layer.weights.reset_after:
            raise UnsupportedLayer(
                f"{where}: a GRU with reset_after=False applies the reset gate before the recurrent product, "
                "which torch.nn.GRU cannot express (it applies it after); use the onnx layout "
                "(linear_before_reset=0) or gates"
            )
        w = layer.weights
        order = layout.order
        suffix = "_reverse" if layer.direction == "backward" else ""
        tensors = {
            f"weight_ih_l0{suffix}": _blocks(np.asarray(w.kernel), w.units, order).T,  # (G·U, F)
            f"weight_hh_l0{suffix}": _blocks(np.asarray(w.recurrent_kernel), w.units, order).T,  # (G·U, U)
            f"bias_ih_l0{suffix}": _blocks(_bias(layer), w.units, order),
            f"bias_hh_l0{suffix}": _blocks(_recurrent_bias(layer), w.units, order),
        }
        for key, array in tensors.items():
            arrays[f"{name}/{key}"] = np.ascontiguousarray(array)
            keys.append(f"{name}/{key}")
    _check_directions(group, "pytorch")
    info = _describe(first, *context.activations(first, "pytorch"))
    info["name"] = name
    kwargs: dict[str, Any] = {
        "input_size": first.weights.features,
        "hidden_size": first.units,
        "num_layers": 1,
        "bias": True,
        "batch_first": True,
        "bidirectional": len(group) == 2,
    }
    if nonlinearity:
        kwargs["nonlinearity"] = nonlinearity
    info.update(
        module=f"torch.nn.{layout.module}",
        module_kwargs=kwargs,
        gate_order=layout.text,
        keys=keys,
    )
    if len(group) == 1 and first.go_backwards:
        info["note"] = "go_backwards: feed the input reversed in time (torch.flip) and flip the outputs back"
    return info


def _layout_of(layer: RecurrentLayer, order: ExportOrder | None, layout: str, framework: str) -> ExportOrder:
    if order is None:
        raise UnsupportedLayer(f"layer '{layer.name}': {framework} has no {layer.kind.name} layer (the {layout} layout "
                               "cannot hold it; the gates layout can)")
    return order


def _check_directions(group: list[RecurrentLayer], layout: str) -> None:
    if len(group) == 2:
        forward, backward = group
        if forward.go_backwards or not backward.go_backwards or forward.kind != backward.kind or forward.units != backward.units:
            raise UnsupportedLayer(
                f"layer '{forward.wrapper}': a Bidirectional whose directions are not a forward and a "
                f"go_backwards layer of the same kind and size cannot be written in the {layout} layout"
            )


# ------------------------------------------------------------------------ onnx


def _onnx(group: list[RecurrentLayer], context: _Context, arrays: dict[str, NDArray]) -> dict[str, Any]:
    first = group[0]
    name = first.wrapper or first.name
    kind = first.kind
    layout = _layout_of(first, kind.onnx, "onnx", "ONNX")
    _check_directions(group, "onnx")
    order = layout.order
    W, R, B = [], [], []
    names: list[str] = []
    alphas: list[float] = []
    betas: list[float] = []
    for layer in group:
        activation, recurrent = context.activations(layer, "onnx")
        # ONNX lists f (gates), g (candidate) and, where the kind has a cell, h (the cell's activation).
        functions = [recurrent, activation] if kind.recurrent_gates else [activation]
        if kind.extra_values:
            functions.append(activation)
        for function in functions:
            onnx_name, alpha, beta = _onnx_activation(function, context.hard, layer.name)
            names.append(onnx_name)
            alphas += alpha
            betas += beta
        w = layer.weights
        W.append(_blocks(np.asarray(w.kernel), w.units, order).T)  # (G·U, F)
        R.append(_blocks(np.asarray(w.recurrent_kernel), w.units, order).T)  # (G·U, U)
        bias = _blocks(_bias(layer), w.units, order)
        recurrent_bias = _blocks(_recurrent_bias(layer), w.units, order)
        B.append(np.concatenate([bias, recurrent_bias]))  # (2·G·U,)
    for key, stack in (("W", W), ("R", R), ("B", B)):
        arrays[f"{name}/{key}"] = np.ascontiguousarray(np.stack(stack))
    if len(group) == 2:
        direction = "bidirectional"
    else:
        direction = "reverse" if first.go_backwards else "forward"
    attributes: dict[str, Any] = {"hidden_size": first.units, "direction": direction, "activations": names}
    if alphas:
        attributes["activation_alpha"] = alphas
    if betas:
        attributes["activation_beta"] = betas
    if kind.two_biases:
        attributes["linear_before_reset"] = int(first.weights.reset_after)
    info = _describe(first, *context.activations(first, "onnx"))
    info["name"] = name
    info.update(
        op_type=layout.module,
        attributes=attributes,
        gate_order=layout.text,
        keys=[f"{name}/W", f"{name}/R", f"{name}/B"],
    )
    return info


def _onnx_activation(name: str, hard: str, layer: str) -> tuple[str, list[float], list[float]]:
    """ONNX activation name and the alpha/beta values it consumes (onnxruntime reads them in order)."""
    onnx_name = _ONNX_ACTIVATIONS.get(name)
    if onnx_name is None:
        raise UnsupportedLayer(
            f"layer '{layer}': activation '{name}' has no ONNX recurrent-operator equivalent "
            f"(supported: {', '.join(_ONNX_ACTIVATIONS)})"
        )
    if name == "hard_sigmoid":
        slope, offset = HARD_SIGMOID[hard]
        return onnx_name, [slope], [offset]
    if name == "linear":
        return onnx_name, [1.0], [0.0]
    if name == "elu":
        return onnx_name, [1.0], []
    if name == "leaky_relu":
        return onnx_name, [0.2], []
    return onnx_name, [], []


# ------------------------------------------------------------------------ json


def _json_array(array: NDArray) -> bytes:
    """An array as nested JSON lists; float32 values in their shortest round-trip form."""
    from .writers import json_numbers

    array = np.asarray(array)
    if array.ndim == 0:
        return json.dumps(array.item()).encode()
    if array.size == 0:
        return json.dumps(array.tolist()).encode()
    if array.dtype == np.float32:
        cells = json_numbers(array)
    else:
        cells = [json.dumps(v if isinstance(v, (int, bool)) or np.isfinite(v) else None).encode()
                 for v in array.reshape(-1).tolist()]
    return _nest(cells, array.shape)


def _nest(cells: list[bytes], shape: tuple[int, ...]) -> bytes:
    if len(shape) == 1:
        return b"[" + b",".join(cells) + b"]"
    step = len(cells) // shape[0]
    inner = [_nest(cells[k * step : (k + 1) * step], shape[1:]) for k in range(shape[0])]
    return b"[" + b",".join(inner) + b"]"
