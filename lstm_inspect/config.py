"""Turn a Keras model config (plain JSON) into a flat graph of layer specs.

Handles Sequential configs (Keras 2.2's bare list, later dicts with
``layers``), Functional configs (the Keras 2 ``inbound_nodes`` lists and the
Keras 3 ``args``/``keras_history`` form), nested models (inlined, their layers
named ``<outer>/<inner>``), and the wrappers ``Bidirectional`` and
``TimeDistributed`` (kept as a spec with child specs).

Nothing is deserialised: a Lambda layer, a custom layer or a registered
object is kept as its class name and its JSON config, and is never run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ModelFileError
from .kinds import CELL_CLASSES, RECURRENT_CLASSES

MODEL_CLASSES = {"Sequential", "Functional", "Model"}
# Keras 1 config keys, by the name Keras 2 and 3 use.
KERAS1_NAMES = {"units": "output_dim", "recurrent_activation": "inner_activation", "use_bias": "bias"}
KERAS1_RENAMED = {"LSTM", "GRU", "SimpleRNN", "Dense"}  # (Embedding's output_dim kept its meaning)


@dataclass(frozen=True)
class Edge:
    """A tensor flowing into a layer: produced by ``layer`` as output number ``index``."""

    layer: str
    index: int = 0


@dataclass(frozen=True)
class LayerSpec:
    """One layer as described by the config.

    ``name`` is unique in the flattened graph (``<outer>/<inner>`` inside a
    nested model); ``keras_name`` is the name within its own container, which
    is what weight files use.  ``inbound`` lists the tensors fed in: the first
    is the layer's input, any more are (for recurrent layers) initial states.
    ``children`` holds the wrapped layers: ``forward``/``backward`` for
    Bidirectional, ``layer`` for TimeDistributed.
    """

    name: str
    class_name: str
    config: Mapping[str, Any]
    keras_name: str
    inbound: tuple[Edge, ...] = ()
    children: Mapping[str, LayerSpec] = field(default_factory=dict)
    container: tuple[str, ...] = ()  # enclosing nested models, outermost first
    shared: bool = False  # called more than once in the graph (not replayable)
    module: str | None = None  # Keras 3 configs: the defining module ("keras.layers"), or a custom one
    registered_name: str | None = None  # Keras 3 configs: set for registered (custom) classes
    # The keyword arguments of the layer's (first) call as the config records them, raw JSON:
    # flags such as {"use_causal_mask": true, "return_attention_scores": true}, and tensors
    # in their saved form (a Keras 3 "__keras_tensor__" dict, a Keras 2 [layer, node, index] list).
    call_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def custom(self) -> bool:
        """Recorded as a class from outside Keras (Keras 3 configs say; older ones do not)."""
        root = (self.module or "").split(".")[0]
        if root and root not in ("keras", "tf_keras", "tensorflow"):
            return True
        return bool(self.registered_name) and self.registered_name != self.class_name

    @property
    def kind(self) -> str:
        """The recurrent class (LSTM, GRU, SimpleRNN, CuDNNLSTM, ConvLSTM2D, ...; the cell's for
        ``RNN(cell)``), or the class name."""
        if self.class_name == "RNN":
            cell = self.config.get("cell")
            if isinstance(cell, dict):
                return CELL_CLASSES.get(str(cell.get("class_name", "")), "RNN")
        return self.class_name

    @property
    def is_recurrent(self) -> bool:
        return self.kind in RECURRENT_CLASSES

    @property
    def is_bidirectional(self) -> bool:
        return self.class_name == "Bidirectional"

    def get(self, key: str, default: Any = None) -> Any:
        """A config value; for ``RNN(cell)`` layers the cell's settings count too, and
        Keras 1's names stand in for today's (``output_dim`` for ``units``, ...)."""
        if key in self.config:
            return self.config[key]
        old = KERAS1_NAMES.get(key)
        if old is not None and old in self.config and self.class_name in KERAS1_RENAMED:
            return self.config[old]
        cell = self.config.get("cell")
        if self.class_name == "RNN" and isinstance(cell, dict):
            inner = cell.get("config")
            return inner.get(key, default) if isinstance(inner, Mapping) else default
        return default


@dataclass(frozen=True)
class ModelGraph:
    """The flattened model: layers in a valid execution order."""

    name: str
    class_name: str
    layers: tuple[LayerSpec, ...]
    inputs: tuple[str, ...]  # names of InputLayer specs (or of the first layer, when there is none)
    outputs: tuple[Edge, ...]
    input_shape: tuple[int | None, ...] | None  # without the batch axis, e.g. (T, F)
    batch_size: int | None = None  # fixed batch size (stateful models), if declared
    # Input name -> its declared shape without the batch axis ((T, F), (D,), ...), where the config says.
    input_shapes: Mapping[str, tuple[int | None, ...]] = field(default_factory=dict)
    # Each model (the top one is ``()``, a nested one its path of names) -> its direct
    # members in config order: (class name, flattened layer name or nested model path).
    # Keras 3 weight files name their groups by this order.
    members: Mapping[tuple[str, ...], tuple[tuple[str, str | tuple[str, ...]], ...]] = field(default_factory=dict)

    def layer(self, name: str) -> LayerSpec:
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def recurrent_layers(self) -> list[LayerSpec]:
        return [spec for spec in self.layers if spec.is_recurrent or _wraps_recurrent(spec)]


def _wraps_recurrent(spec: LayerSpec) -> bool:
    return spec.is_bidirectional and any(child.is_recurrent for child in spec.children.values())


def parse_model_config(model_config: Mapping[str, Any], label: str) -> ModelGraph:
    """Flatten a saved model config into a :class:`ModelGraph`.

    ``label`` names the file in error messages.
    """
    if not isinstance(model_config, Mapping):
        raise ModelFileError(f"{label}: the model config is not a JSON object")
    class_name = model_config.get("class_name")
    config = model_config.get("config")
    if not (isinstance(class_name, str) and class_name in MODEL_CLASSES):
        if isinstance(class_name, str) and isinstance(config, Mapping) and "layers" in config:
            # A subclass of Model/Sequential saved under its own name.
            class_name = "Sequential" if "inbound_nodes" not in str(config.get("layers"))[:4000] else "Functional"
        else:
            raise ModelFileError(
                f"{label}: the top-level object is a {_clip(class_name)}, not a Sequential or Functional model"
            )
    builder = _GraphBuilder(label)
    name = (config or {}).get("name", "model") if isinstance(config, Mapping) else "model"
    try:
        inputs, outputs = builder.add_model(class_name, config, prefix="", container=(), feed=None)
    except RecursionError:
        raise ModelFileError(f"{label}: the model config is nested too deeply") from None
    layers = builder.finish()
    shape, batch = builder.input_shape, builder.batch_size
    return ModelGraph(
        name=str(name),
        class_name=str(class_name),
        layers=tuple(layers),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        input_shape=shape,
        batch_size=batch,
        members={key: tuple(value) for key, value in builder.members.items()},
        input_shapes=dict(builder.input_shapes),
    )


class _GraphBuilder:
    def __init__(self, label: str) -> None:
        self.label = label
        self.specs: list[LayerSpec] = []
        self.names: set[str] = set()
        self.input_shape: tuple[int | None, ...] | None = None
        self.batch_size: int | None = None
        self.input_shapes: dict[str, tuple[int | None, ...]] = {}
        # Outer references to a nested model resolve to its output tensors.
        self.aliases: dict[str, tuple[Edge, ...]] = {}
        self.members: dict[tuple[str, ...], list[tuple[str, str | tuple[str, ...]]]] = {}

    def finish(self) -> list[LayerSpec]:
        resolved = []
        for spec in self.specs:
            inbound = tuple(self._resolve(edge) for edge in spec.inbound)
            resolved.append(_replace(spec, inbound=inbound))
        return resolved

    def _resolve(self, edge: Edge) -> Edge:
        seen = 0
        while edge.layer in self.aliases and seen < 1000:
            targets = self.aliases[edge.layer]
            if edge.index >= len(targets):
                raise ModelFileError(f"{self.label}: layer '{edge.layer}' has no output {edge.index}")
            edge = targets[edge.index]
            seen += 1
        return edge

    # -- models ---------------------------------------------------------------

    def add_model(
        self,
        class_name: str,
        config: Any,
        prefix: str,
        container: tuple[str, ...],
        feed: tuple[Edge, ...] | None,
    ) -> tuple[list[str], list[Edge]]:
        """Add a (possibly nested) model's layers; return its input names and output edges."""
        if class_name == "Sequential" or isinstance(config, list):
            return self._add_sequential(config, prefix, container, feed)
        return self._add_functional(config, prefix, container, feed)

    def _layer_list(self, config: Any) -> list[Mapping[str, Any]]:
        layers = config if isinstance(config, list) else config.get("layers") if isinstance(config, Mapping) else None
        if not isinstance(layers, list):
            raise ModelFileError(f"{self.label}: the model config has no list of layers")
        for entry in layers:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("config", {}), Mapping):
                raise ModelFileError(f"{self.label}: a layer entry in the model config is not a JSON object")
        return layers

    def _add_sequential(self, config, prefix, container, feed):
        layers = self._layer_list(config)
        previous: tuple[Edge, ...] | None = feed
        inputs: list[str] = []
        build_shape = None
        if feed is None and isinstance(config, Mapping):
            build_shape = config.get("build_input_shape")
            if isinstance(build_shape, list) and build_shape:
                self._note_shape(build_shape)
            else:
                build_shape = None
        for entry in layers:
            class_name = str(entry.get("class_name"))
            layer_config = entry.get("config") or {}
            if class_name == "InputLayer":
                if feed is None:
                    name = self._add(prefix, entry, container, inbound=())
                    inputs.append(name)
                    previous = (Edge(name),)
                    self._note_input_layer(layer_config, name)
                continue
            if previous is None and (class_name in MODEL_CLASSES or _looks_like_model(entry)):
                # A nested model first, without an InputLayer: its own input is the model's.
                inner_name = str(layer_config.get("name") or entry.get("name") or "model")
                self.members.setdefault(container, []).append((class_name, container + (inner_name,)))
                inner_inputs, outputs = self.add_model(
                    class_name, layer_config, f"{prefix}{inner_name}/", container + (inner_name,), None
                )
                inputs.extend(inner_inputs)
                previous = tuple(outputs)
                continue
            if previous is None:
                # Keras 2 Sequential without an InputLayer: the first layer takes the input.
                name = self._add(prefix, entry, container, inbound=())
                self._note_layer_shape(layer_config, name)
                if name not in self.input_shapes and build_shape is not None:
                    self.input_shapes[name] = self._dims(build_shape)
                inputs.append(name)
                previous = (Edge(name),)
                continue
            previous = self._add_any(prefix, entry, container, previous)
        return inputs, list(previous or ())

    def _add_any(self, prefix, entry, container, inbound: tuple[Edge, ...]) -> tuple[Edge, ...]:
        class_name = str(entry.get("class_name"))
        layer_config = entry.get("config") or {}
        if class_name in MODEL_CLASSES or _looks_like_model(entry):
            inner_name = str(layer_config.get("name") or entry.get("name") or "model")
            self.members.setdefault(container, []).append((class_name, container + (inner_name,)))
            _, outputs = self.add_model(
                class_name, layer_config, f"{prefix}{inner_name}/", container + (inner_name,), inbound
            )
            return tuple(outputs)
        name = self._add(prefix, entry, container, inbound=inbound)
        return (Edge(name),)

    def _add_functional(self, config, prefix, container, feed):
        layers = self._layer_list(config)
        local: dict[str, str] = {}  # keras name -> flattened name (or alias key)
        inputs: list[str] = []
        input_names = [e.layer for e in _edge_list(config.get("input_layers"), self.label)]
        feed_map: dict[str, Edge] = {}
        if feed is not None:
            for index, name in enumerate(input_names):
                if index < len(feed):
                    feed_map[name] = feed[index]
        # Count how often each layer is called, to flag shared layers.
        for entry in layers:
            class_name = str(entry.get("class_name"))
            layer_config = entry.get("config") or {}
            keras_name = str(entry.get("name") or layer_config.get("name"))
            nodes = _inbound_nodes(entry, self.label)
            if class_name == "InputLayer":
                if keras_name in feed_map:
                    alias = f"{prefix}{keras_name}"
                    self.aliases[alias] = (feed_map[keras_name],)
                    local[keras_name] = alias
                else:
                    name = self._add(prefix, entry, container, inbound=())
                    local[keras_name] = name
                    inputs.append(name)
                    self._note_input_layer(layer_config, name)
                continue
            inbound = tuple(
                Edge(local.get(edge.layer, f"{prefix}{edge.layer}"), edge.index) for edge in (nodes[0] if nodes else [])
            )
            if class_name in MODEL_CLASSES or _looks_like_model(entry):
                outputs = self._add_any(prefix, entry, container, inbound)
                alias = f"{prefix}{keras_name}"
                self.aliases[alias] = outputs
                local[keras_name] = alias
                continue
            name = self._add(prefix, entry, container, inbound=inbound, shared=len(nodes) > 1)
            local[keras_name] = name
        outputs = [
            Edge(local.get(edge.layer, f"{prefix}{edge.layer}"), edge.index)
            for edge in _edge_list(config.get("output_layers"), self.label)
        ]
        if feed is None:
            inputs = [local.get(name, f"{prefix}{name}") for name in input_names] or inputs
        return inputs, outputs

    # -- single layers --------------------------------------------------------

    def _add(self, prefix, entry, container, inbound, shared: bool = False) -> str:
        spec = self._spec(prefix, entry, container, inbound, shared)
        if spec.name in self.names:
            raise ModelFileError(f"{self.label}: two layers are named '{spec.name}'")
        self.names.add(spec.name)
        self.specs.append(spec)
        self.members.setdefault(container, []).append((spec.class_name, spec.name))
        return spec.name

    def _spec(self, prefix, entry, container, inbound, shared=False) -> LayerSpec:
        class_name = str(entry.get("class_name"))
        config = entry.get("config") or {}
        if not isinstance(config, Mapping):  # a wrapped layer's entry (top-level ones are checked in _layer_list)
            raise ModelFileError(f"{self.label}: the config of a {_clip(class_name)} layer in {prefix or 'the model'} is not a JSON object")
        keras_name = str(config.get("name") or entry.get("name") or class_name.lower())
        name = f"{prefix}{keras_name}"
        children: dict[str, LayerSpec] = {}
        if class_name == "Bidirectional":
            children = self._bidirectional_children(name, config, container)
        elif class_name == "TimeDistributed":
            inner = config.get("layer")
            if isinstance(inner, Mapping):
                children = {"layer": self._spec(f"{name}/", inner, container, ())}
        spec = LayerSpec(
            name=name,
            class_name=class_name,
            config=config,
            keras_name=keras_name,
            inbound=tuple(inbound),
            children=children,
            container=container,
            shared=shared,
            module=entry.get("module") if isinstance(entry.get("module"), str) else None,
            registered_name=entry.get("registered_name") if isinstance(entry.get("registered_name"), str) else None,
            call_kwargs=_call_kwargs(entry),
        )
        if spec.is_recurrent:
            check_recurrent_config(spec, self.label)
        return spec

    def _bidirectional_children(self, name, config, container) -> dict[str, LayerSpec]:
        forward = config.get("layer")
        if not isinstance(forward, Mapping):
            raise ModelFileError(f"{self.label}: Bidirectional layer '{name}' has no wrapped layer config")
        backward = config.get("backward_layer")
        if not isinstance(backward, Mapping):
            # Keras builds the backward layer as a copy with go_backwards flipped.
            inner_config = forward.get("config") or {}
            if not isinstance(inner_config, Mapping):
                raise ModelFileError(f"{self.label}: Bidirectional layer '{name}': the wrapped layer's config is not a JSON object")
            inner_config = dict(inner_config)
            inner_config["go_backwards"] = not bool(inner_config.get("go_backwards", False))
            backward = {"class_name": forward.get("class_name"), "config": inner_config}
        result = {}
        for direction, entry in (("forward", forward), ("backward", backward)):
            spec = self._spec("", entry, container, ())
            result[direction] = _replace(spec, name=f"{name}/{direction}")
        return result

    # -- input shape ------------------------------------------------------------

    def _note_input_layer(self, config: Mapping[str, Any], name: str) -> None:
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        if isinstance(shape, list) and shape:
            self._note_shape(shape)
            self.input_shapes[name] = self._dims(shape)

    def _note_layer_shape(self, config: Mapping[str, Any], name: str) -> None:
        shape = config.get("batch_input_shape") or config.get("batch_shape")
        if not (isinstance(shape, list) and shape):
            if isinstance(config.get("input_shape"), list):
                shape = [None] + list(config["input_shape"])
            elif config.get("input_dim") is not None:  # Keras 1
                shape = [None, config.get("input_length"), config["input_dim"]]
            else:
                return
        self._note_shape(shape)
        self.input_shapes[name] = self._dims(shape)

    def _dims(self, shape: list) -> tuple[int | None, ...]:
        if not all(d is None or (_is_int(d) and 0 <= d < 1 << 40) for d in shape):
            raise ModelFileError(f"{self.label}: the model's input shape {_clip(shape)} is not a list of sizes")
        return tuple(int(d) if isinstance(d, (int, float)) and d is not None else None for d in shape[1:])

    def _note_shape(self, shape: list) -> None:
        if self.input_shape is not None:
            return
        self.input_shape = self._dims(shape)
        if shape and isinstance(shape[0], int):
            self.batch_size = int(shape[0])


# Settings of a recurrent layer that lstm-inspect acts on, and what each must be.
RECURRENT_FLAGS = ("use_bias", "return_sequences", "go_backwards", "stateful", "reset_after", "return_state")
MAX_UNITS = 1 << 24


def check_recurrent_config(spec: LayerSpec, label: str) -> None:
    """Refuse a recurrent layer whose settings have the wrong type (``units: "abc"``,
    ``go_backwards: "yes"``), rather than guess what a damaged or crafted file means."""
    where = f"{label}: layer '{spec.name}' ({spec.class_name})"
    units = spec.get("units", spec.get("filters"))
    if units is not None and not (_is_int(units) and 1 <= units <= MAX_UNITS):
        raise ModelFileError(f"{where}: units is {_clip(units)}, not a whole number from 1 to {MAX_UNITS:,}")
    for key in RECURRENT_FLAGS:
        value = spec.get(key)
        if value is not None and not isinstance(value, bool) and value not in (0, 1):
            raise ModelFileError(f"{where}: {key} is {_clip(value)}, not true or false")
    for key in ("activation", "recurrent_activation"):
        value = spec.get(key)
        if value is not None and not isinstance(value, (str, Mapping)):
            raise ModelFileError(f"{where}: {key} is {_clip(value)}, not an activation name")


def _is_int(value: Any) -> bool:
    """A whole number as JSON writes one (``4``, also ``4.0``), but not ``true``."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()


def _clip(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _replace(spec: LayerSpec, **changes) -> LayerSpec:
    from dataclasses import replace

    return replace(spec, **changes)


def _looks_like_model(entry: Mapping[str, Any]) -> bool:
    config = entry.get("config")
    return isinstance(config, Mapping) and isinstance(config.get("layers"), list) and (
        "input_layers" in config or str(entry.get("class_name")) not in RECURRENT_CLASSES
    )


def _edge_list(value: Any, label: str) -> list[Edge]:
    """``input_layers``/``output_layers``: ``[name, node, index]`` or a list of them."""
    if value is None:
        return []
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        value = [value]
    edges = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list) and item and isinstance(item[0], str):
            edges.append(Edge(item[0], int(item[2]) if len(item) > 2 and isinstance(item[2], int) else 0))
    return edges


# Keyword arguments that carry a layer's data, in the order their tensors join the inbound
# edges after the positional ones: MultiHeadAttention's query/value/key (tf-keras records
# `layer(query, value)` as the query plus a `value` keyword), a recurrent layer's initial_state.
DATA_KWARGS = ("query", "value", "key", "initial_state")


def _inbound_nodes(entry: Mapping[str, Any], label: str) -> list[list[Edge]]:
    """Each call of a layer, as the list of tensors it consumed (inputs first, then the
    tensors of ``DATA_KWARGS``)."""
    nodes = entry.get("inbound_nodes") or []
    if not isinstance(nodes, list):
        raise ModelFileError(f"{label}: layer '{entry.get('name')}' has malformed inbound_nodes")
    result = []
    for node in nodes:
        if isinstance(node, Mapping):  # Keras 3: {"args": [...], "kwargs": {...}}
            edges = list(_keras3_tensors(node.get("args")))
            kwargs = node.get("kwargs") or {}
            if isinstance(kwargs, Mapping):
                for key in DATA_KWARGS:
                    edges.extend(_keras3_tensors(kwargs.get(key)))
        elif isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
            edges = []
            for item in node:
                if isinstance(item, list) and item and isinstance(item[0], str):
                    edges.append(Edge(item[0], int(item[2]) if len(item) > 2 and isinstance(item[2], int) else 0))
                    kwargs = item[3] if len(item) > 3 and isinstance(item[3], Mapping) else {}
                    for key in DATA_KWARGS:
                        edges.extend(_keras2_kwarg_tensors(kwargs.get(key)))
        else:
            edges = []
        result.append(edges)
    return result


def _call_kwargs(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """The keyword arguments of a layer's first call: a Keras 3 node's ``kwargs``, or the dict
    a Keras 2 node attaches to its first tensor (tf-keras repeats it on every tensor)."""
    nodes = entry.get("inbound_nodes")
    node = nodes[0] if isinstance(nodes, list) and nodes else None
    if isinstance(node, Mapping):
        kwargs = node.get("kwargs")
    elif isinstance(node, list) and node and isinstance(node[0], list) and len(node[0]) > 3:
        kwargs = node[0][3]
    else:
        kwargs = None
    return kwargs if isinstance(kwargs, Mapping) else {}


def _keras2_kwarg_tensors(value: Any) -> Iterator[Edge]:
    if isinstance(value, list):
        if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[2], int):
            yield Edge(value[0], value[2])
            return
        for item in value:
            yield from _keras2_kwarg_tensors(item)


def _keras3_tensors(value: Any) -> Iterator[Edge]:
    if isinstance(value, Mapping):
        if value.get("class_name") == "__keras_tensor__":
            config = value.get("config")
            history = config.get("keras_history") if isinstance(config, Mapping) else None
            if isinstance(history, list) and history and isinstance(history[0], str):
                yield Edge(history[0], int(history[2]) if len(history) > 2 and isinstance(history[2], int) else 0)
            return
        for item in value.values():
            yield from _keras3_tensors(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keras3_tensors(item)


def activation_name(value: Any) -> str | None:
    """The activation's name from a config value: ``"tanh"`` or a serialised function dict."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = value.get("config")
        if isinstance(inner, str):
            return inner
        if isinstance(inner, Mapping) and isinstance(inner.get("name"), str):
            return inner["name"]
        if isinstance(value.get("class_name"), str):
            return value["class_name"]
    return str(value)
