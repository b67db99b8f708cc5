"""A loaded model: the layer graph with each layer's weights attached.

``load_model`` reads a file (``reading``), flattens its config (``config``)
and finds every layer's stored tensors:

* legacy HDF5: the ``weight_names`` attribute of each layer group gives the
  tensors and their order; nested models keep all their layers' tensors in the
  outer model's group, told apart by the inner layer's name in the path;
* Keras 3 weight trees: groups are named after the layer's class in snake case
  with a counter (``lstm``, ``lstm_1``, ...) in config order, and hold
  positional ``vars/0..n``; Keras 3.5+ also writes the layer name on ``vars``,
  which is used when present;
* weights-only files: no config, so each layer's kind is recognised from its
  tensors' names and shapes, and activations are unknown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import (
    Edge,
    LayerSpec,
    ModelGraph,
    activation_name,
    parse_model_config,
)
from .errors import ModelFileError, UsageProblem
from .kinds import (
    CUDNN_CLASSES,
    RecurrentKind,
    RecurrentWeights,
    canonical_name,
    gate_count,
    guess_kind,
    kind_of,
)
from .reading import H5Group, ModelFile, StoredArray, keras_major, read_model_file

# A recurrent cell's positional Keras 3 vars.
_RECURRENT_VARS = ("kernel", "recurrent_kernel", "bias")


@dataclass(frozen=True)
class RecurrentLayer:
    """One recurrent layer (one direction of a Bidirectional) with its weights."""

    name: str  # "lstm", or "bi/forward" / "bi/backward"
    spec: LayerSpec  # the spec holding the recurrent config (the wrapped one for Bidirectional)
    weights: RecurrentWeights
    activation: str | None  # None: unknown (weights-only file)
    recurrent_activation: str | None
    go_backwards: bool
    return_sequences: bool
    stateful: bool
    use_bias: bool
    wrapper: str | None = None  # the Bidirectional layer's name
    direction: str | None = None  # "forward" / "backward"

    @property
    def kind(self) -> RecurrentKind:
        return self.weights.kind

    @property
    def units(self) -> int:
        return self.weights.units

    @property
    def gates(self) -> tuple[str, ...]:
        return self.weights.gates


@dataclass
class Model:
    """A model file read and interpreted, ready to label or replay."""

    path: str
    file: ModelFile
    graph: ModelGraph
    # Layer name (children of wrappers included, e.g. "td/dense") -> canonical weight name -> array.
    weights: dict[str, dict[str, StoredArray]]
    warnings: list[str] = field(default_factory=list)
    _recurrent: list[RecurrentLayer] | None = field(default=None, repr=False)
    # Called with each warning as it arises (the CLI prints them to stderr); None: collect only.
    on_warning: Callable[[str], None] | None = field(default=None, repr=False)

    def warn(self, message: str) -> None:
        """Record a warning once (and pass it to ``on_warning``)."""
        if message in self.warnings:
            return
        self.warnings.append(message)
        if self.on_warning is not None:
            self.on_warning(message)

    @property
    def keras_version(self) -> str | None:
        return self.file.keras_version

    @property
    def keras_major(self) -> int | None:
        return keras_major(self.file.keras_version)

    @property
    def weights_only(self) -> bool:
        return self.file.weights_only

    @property
    def label(self) -> str:
        return os.path.basename(self.path)

    def recurrent_layers(self) -> list[RecurrentLayer]:
        """Every recurrent layer in model order; a Bidirectional gives two (forward, backward)."""
        if self._recurrent is None:
            self._recurrent = _recurrent_layers(self)
        return self._recurrent

    def recurrent_layer(self, name: str) -> RecurrentLayer:
        for layer in self.recurrent_layers():
            if layer.name == name:
                return layer
        raise UsageProblem(f"no recurrent layer named '{name}' (have: {', '.join(self.recurrent_names()) or 'none'})")

    def recurrent_names(self) -> list[str]:
        return [layer.name for layer in self.recurrent_layers()]

    def select_recurrent(self, names: Sequence[str] | None) -> list[RecurrentLayer]:
        """The recurrent layers named in ``names`` (a Bidirectional's name selects both
        directions), in model order; all of them when ``names`` is empty."""
        layers = self.recurrent_layers()
        if not layers:
            raise ModelFileError(f"{self.label}: the model has no recurrent layers (LSTM, GRU, SimpleRNN)")
        if not names:
            return layers
        wanted = set()
        for name in names:
            matched = [layer.name for layer in layers if layer.name == name or layer.wrapper == name]
            if not matched:
                known = ", ".join(self.recurrent_names())
                raise UsageProblem(f"no recurrent layer named '{name}' in {self.label} (have: {known})")
            wanted.update(matched)
        return [layer for layer in layers if layer.name in wanted]


def load_model(path: str, *, isolate: bool = False, config: str | None = None) -> Model:
    """Read a Keras model file (.h5, .hdf5, .keras, .weights.h5) without TensorFlow.

    Nothing stored in the file is executed.  Raises ``ModelFileError`` for
    files that cannot be read or interpreted.  ``isolate``: read the file in a
    forked child first, so that a corrupt file crashing the HDF5 library is
    refused rather than fatal (see ``reading.read_model_file``).  ``config``:
    a ``model.to_json()`` file (Keras 1, 2, tf.keras or 3) giving the
    architecture of a weights-only file; its layers are bound to the stored
    weights by name, as Keras' ``load_weights`` does.
    """
    from dataclasses import replace

    model_file = read_model_file(path, isolate=isolate)
    label = os.path.basename(path)
    warnings: list[str] = []
    if config is not None:
        from .reading import read_config_file

        architecture, version = read_config_file(config)
        if model_file.config is not None:
            warnings.append(f"{label}: the file holds its own model config; using {os.path.basename(config)} instead")
        model_file = replace(model_file, config=architecture, keras_version=model_file.keras_version or version)
    if model_file.config is not None:
        graph = parse_model_config(model_file.config, label)
        binder = _Binder(model_file, graph, label)
        weights = binder.bind()
        if config is not None:
            _check_config_binding(model_file, graph, weights, label, os.path.basename(config))
    else:
        graph, weights = _weights_only_graph(model_file, label)
    model = Model(path=path, file=model_file, graph=graph, weights=weights,
                  warnings=list(model_file.warnings) + warnings)
    if model_file.config is None:
        model.warnings.append(
            f"{label}: weights-only file (no model config): layer kinds are recognised from the "
            "weights; activations and return_sequences are not recorded (give the architecture with --config)"
        )
    model.warnings.extend(nonfinite_warnings(weights, label))
    return model


def _check_config_binding(model_file: ModelFile, graph: ModelGraph, weights: Mapping[str, Mapping[str, StoredArray]],
                          label: str, config_label: str) -> None:
    """A --config must name every layer the weights file holds, and give weights to every layer
    that needs some: otherwise it describes another model."""
    from .ops import op_for

    named = {spec.keras_name for spec in graph.layers if not spec.container} | {
        spec.container[0] for spec in graph.layers if spec.container}
    stored_layers = [name for name in (model_file.h5_layer_order or list(model_file.h5_layers))
                     if model_file.h5_layers.get(name)]
    if model_file.keras_tree is not None:
        stored_layers = []  # a Keras 3 tree is bound by position: checked per layer below
    extra = [name for name in stored_layers if name not in named]
    if extra:
        raise ModelFileError(
            f"{label}: the weights file holds layer '{extra[0]}', which {config_label} does not name "
            f"(its layers: {', '.join(sorted(named)[:12])}); is it the architecture of another model?"
        )
    for spec in graph.layers:
        if spec.is_recurrent or spec.is_bidirectional:
            needs = True
        else:
            definition = op_for(spec.class_name)
            needs = bool(definition and definition.variable_names(spec.config))
            if spec.class_name == "TimeDistributed":
                inner = spec.children.get("layer")
                definition = op_for(inner.class_name) if inner else None
                needs = bool(definition and definition.variable_names(inner.config))
        has = bool(weights.get(spec.name)) or any(weights.get(child.name) for child in spec.children.values())
        if needs and not has:
            raise ModelFileError(
                f"{label}: {config_label} has a layer '{spec.keras_name}' ({spec.class_name}) with weights, "
                f"but the weights file holds none under that name (its layers: {', '.join(stored_layers[:12])})"
            )


def nonfinite_warnings(weights: Mapping[str, Mapping[str, StoredArray]], label: str) -> list[str]:
    """One warning per layer whose stored weights hold NaN or infinite values.

    Such a file is still read: the values are shown as stored and a replay
    carries them through (a NaN weight makes NaN gates), as Keras would.
    """
    import numpy as np

    messages = []
    for layer, tensors in weights.items():
        found = []
        for key, stored in tensors.items():
            if stored.array.dtype.kind != "f":
                continue
            counts = np.zeros(3, dtype=np.int64)  # NaN, inf, -inf
            flat = stored.array.reshape(-1)
            for start in range(0, flat.size, 1 << 22):  # in slices: no mask as large as a big tensor
                part = flat[start : start + (1 << 22)]
                if not np.isfinite(part).all():
                    counts += [np.isnan(part).sum(), np.isposinf(part).sum(), np.isneginf(part).sum()]
            if counts.any():
                found.append(f"{key}: " + ", ".join(f"{n} {what}" for n, what in zip(counts, ("NaN", "inf", "-inf")) if n))
        if found:
            messages.append(
                f"{label}: layer '{layer}' has non-finite weights ({'; '.join(found)}); "
                "they are shown as stored and carried through the replay"
            )
    return messages


# ------------------------------------------------------------------- binding


def to_snake_case(name: str) -> str:
    """Keras 3's group name for a class: ``SimpleRNN`` -> ``simple_rnn``, ``LSTM`` -> ``lstm``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class _Binder:
    def __init__(self, model_file: ModelFile, graph: ModelGraph, label: str) -> None:
        self.file = model_file
        self.graph = graph
        self.label = label
        self.weights: dict[str, dict[str, StoredArray]] = {}
        self.specs = {spec.name: spec for spec in graph.layers}

    def bind(self) -> dict[str, dict[str, StoredArray]]:
        if self.file.keras_tree is not None:
            self._bind_tree(self.file.keras_tree, ())
        else:
            self._bind_h5()
        return self.weights

    # -- legacy HDF5 ---------------------------------------------------------------

    def _bind_h5(self) -> None:
        layers = self.file.h5_layers
        for spec in self.graph.layers:
            if spec.container:
                group = layers.get(spec.container[0], [])
                arrays = [a for a in group if spec.keras_name in a.name.split("/")]
            else:
                arrays = layers.get(spec.keras_name, [])
            if arrays:
                self._assign_named(spec, arrays)

    def _assign_named(self, spec: LayerSpec, arrays: list[StoredArray]) -> None:
        if spec.class_name == "Bidirectional":
            forward, backward = _split_directions(arrays)
            self._assign_named(spec.children["forward"], forward)
            self._assign_named(spec.children["backward"], backward)
            return
        if spec.class_name == "TimeDistributed" and "layer" in spec.children:
            self._assign_named(spec.children["layer"], arrays)
            return
        keys = _unique_keys([a.name for a in arrays])
        if (self.file.keras_major or 1) < 2:  # only Keras 1 prefixed weight names with the layer's
            keys = [_keras1_key(key, spec) for key in keys]  # (Attention 'concat': 'concat_score_weight')
        self.weights[spec.name] = dict(zip(keys, arrays))

    # -- Keras 3 trees ---------------------------------------------------------------

    def _bind_tree(self, node: H5Group, container: tuple[str, ...]) -> None:
        members = self.graph.members.get(container, ())
        by_name = {child.name_attr: child for child in node.children.values() if child.name_attr}
        used: dict[str, int] = {}
        for class_name, ref in members:
            key = to_snake_case(class_name if class_name != "Model" else "Functional")
            if key in used:
                used[key] += 1
                key = f"{key}_{used[key]}"
            else:
                used[key] = 0
            if isinstance(ref, tuple):  # a nested model
                child = by_name.get(ref[-1]) or node.children.get(key)
                if child is not None and "layers" in child.children:
                    self._bind_tree(child.children["layers"], ref)
                continue
            spec = self.specs[ref]
            child = by_name.get(spec.keras_name) or node.children.get(key)
            if child is not None:
                self._assign_tree(spec, child)

    def _assign_tree(self, spec: LayerSpec, node: H5Group) -> None:
        if spec.class_name == "Bidirectional":
            for direction, key in (("forward", "forward_layer"), ("backward", "backward_layer")):
                if key in node.children:
                    self._assign_tree(spec.children[direction], node.children[key])
            return
        if spec.class_name == "TimeDistributed" and "layer" in spec.children:
            if "layer" in node.children:
                self._assign_tree(spec.children["layer"], node.children["layer"])
            return
        if spec.is_recurrent:
            cell = node.children.get("cell")
            stored = cell.vars if cell is not None else node.vars
            names = _RECURRENT_VARS
        else:
            stored = node.vars
            names = _var_names(spec)
        named = {}
        for index, array in enumerate(stored):
            key = names[index] if index < len(names) else str(index)
            named[key] = array
        if not spec.is_recurrent:  # sub-layers' weights (MultiHeadAttention's query, key, ...): "<path>/<index>"
            for path, child in _nested(node):
                for index, array in enumerate(child.vars):
                    named.setdefault(f"{path}/{index}", array)
        if named:
            self.weights[spec.name] = named


def _nested(node: H5Group, prefix: str = ""):
    """(relative path, group) for every group below ``node`` that holds vars."""
    for key, child in node.children.items():
        path = f"{prefix}{key}"
        if child.vars:
            yield path, child
        yield from _nested(child, f"{path}/")


def _unique_keys(names: list[str]) -> list[str]:
    """Each stored name by its shortest unique tail: ``lstm/lstm_cell/kernel:0`` -> ``kernel``, but
    ``mha/query/kernel:0`` and ``mha/key/kernel:0`` -> ``query/kernel``, ``key/kernel``."""
    parts = [name.split(":", 1)[0].split("/") for name in names]
    depth = [1] * len(parts)
    for _ in range(8):
        keys = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashes = {k for k in keys if keys.count(k) > 1}
        if not clashes:
            return keys
        depth = [d + 1 if k in clashes and d < len(p) else d for p, d, k in zip(parts, depth, keys)]
    keys = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
    return [k if keys.count(k) == 1 else f"{k}#{i}" for i, k in enumerate(keys)]


# Keras 1 named weights after their layer ("dense_1_W", "lstm_1_U_f"); these are the
# short names' meanings for layers that are not recurrent.
_KERAS1_PLAIN = {"Dense": {"W": "kernel", "b": "bias"}, "Embedding": {"W": "embeddings"}}


def _keras1_key(key: str, spec: LayerSpec) -> str:
    """``lstm_1_W_i`` -> ``W_i`` and ``dense_1_W`` -> ``kernel``; other names unchanged."""
    name = spec.keras_name
    for prefix in (f"forward_{name}_", f"backward_{name}_", f"{name}_"):
        if key.startswith(prefix) and len(key) > len(prefix):
            short = key[len(prefix):]
            return _KERAS1_PLAIN.get(spec.class_name, {}).get(short, short)
    return key


def _var_names(spec: LayerSpec) -> tuple[str, ...]:
    """What a layer's positional Keras 3 ``vars/0, 1, ...`` are, as its builder declares them."""
    from .ops import op_for

    definition = op_for(spec.class_name)
    return definition.variable_names(spec.config) if definition is not None else ()


def _split_directions(arrays: list[StoredArray]) -> tuple[list[StoredArray], list[StoredArray]]:
    """Split a Bidirectional layer's tensors into forward and backward ones."""

    def direction(array: StoredArray) -> str | None:
        for part in array.name.split("/"):
            if part.startswith("forward"):
                return "forward"
            if part.startswith("backward"):
                return "backward"
        return None

    forward = [a for a in arrays if direction(a) == "forward"]
    backward = [a for a in arrays if direction(a) == "backward"]
    if len(forward) + len(backward) != len(arrays) or len(forward) != len(backward):
        half = len(arrays) // 2  # Keras stores the forward layer's tensors first
        forward, backward = arrays[:half], arrays[half:]
    return forward, backward


# -------------------------------------------------------------- weights only


def _weights_only_graph(model_file: ModelFile, label: str) -> tuple[ModelGraph, dict[str, dict[str, StoredArray]]]:
    specs: list[LayerSpec] = []
    weights: dict[str, dict[str, StoredArray]] = {}
    if model_file.keras_tree is not None:
        entries = list(_tree_entries(model_file.keras_tree, ""))
        for name, key, node in entries:
            spec, named = _guess_tree_layer(name, key, node)
            specs.append(spec)
            weights.update(named)
        chain = False  # h5py lists groups alphabetically: the layer order is lost
    else:
        for group in model_file.h5_layer_order:
            for name, arrays in _h5_entries(group, model_file.h5_layers.get(group, [])):
                spec, named = _guess_named_layer(name, arrays)
                specs.append(spec)
                weights.update(named)
        chain = True
    previous: tuple[Edge, ...] = ()
    linked = []
    for spec in specs:
        if chain:
            spec = _with(spec, inbound=previous)
            previous = (Edge(spec.name),)
        linked.append(spec)
    graph = ModelGraph(
        name=os.path.splitext(label)[0],
        class_name="weights-only" if chain else "weights-only (unordered)",
        layers=tuple(linked),
        inputs=(linked[0].name,) if linked and chain else (),
        outputs=(Edge(linked[-1].name),) if linked and chain else (),
        input_shape=None,
        members={},
    )
    return graph, weights


def _tree_entries(tree: H5Group, prefix: str):
    """(name, key, node) per layer of a Keras 3 weights tree; a nested model's layers are
    ``<model>/<layer>`` (its group holds a ``layers`` sub-group instead of weights)."""
    for key, node in tree.children.items():
        name = f"{prefix}{node.name_attr or key}"
        if "layers" in node.children and not node.vars:
            yield from _tree_entries(node.children["layers"], f"{name}/")
        else:
            yield name, key, node


def _h5_entries(group: str, arrays: list[StoredArray]):
    """(name, arrays) per layer of a legacy HDF5 layer group.  A nested model's group holds
    the tensors of several layers, named after each inner layer (tf-keras:
    ``enc_lstm/lstm_cell/kernel:0``): split them into ``<model>/<layer>``."""
    firsts = list(dict.fromkeys(a.name.split("/", 1)[0] for a in arrays if "/" in a.name))
    if len(firsts) < 2 or group in firsts or any("/" not in a.name for a in arrays):
        yield group, arrays
        return
    for first in firsts:
        yield f"{group}/{first}", [a for a in arrays if a.name.split("/", 1)[0] == first]


def _with(spec: LayerSpec, **changes: Any) -> LayerSpec:
    from dataclasses import replace

    return replace(spec, **changes)


def _infer(stored: Mapping[str, StoredArray]) -> tuple[RecurrentKind, int, bool] | None:
    """(kind, units, reset_after) of a layer from its weights alone, or None when not recurrent."""
    found = gate_count(stored)
    if found is None:
        return None
    gates, units, rank = found
    kind = guess_kind(gates, rank)
    if kind is None:
        return None
    bias = stored.get("bias")
    reset_after = bool(kind.two_biases and bias is not None and bias.array.ndim == 2)
    return kind, units, reset_after


def _keras1_arrays(name: str, arrays: list[StoredArray]) -> dict[str, StoredArray]:
    """Keras 1 per-gate arrays named after their layer (``gru_1_W_z``) by their short names (``W_z``)."""
    named = {}
    for array in arrays:
        key = canonical_name(array.name)
        base = name.rsplit("/", 1)[-1]
        for prefix in (f"{base}_",):
            key = key.removeprefix(prefix)
        named[key] = array
    return named


def _keras1_kind(named: Mapping[str, StoredArray]) -> tuple[RecurrentKind, int] | None:
    """A Keras 1 recurrent layer from its per-gate arrays (``W_i``... LSTM, ``W_z``... GRU), or None."""
    from .kinds import KINDS

    for kind in KINDS:
        letters = kind.keras1_letters
        if letters and all(f"W_{g}" in named and f"U_{g}" in named for g in letters):
            units = named[f"U_{letters[0]}"].array.shape[-1]
            return kind, int(units)
    return None


def _guess_named_layer(name: str, arrays: list[StoredArray]) -> tuple[LayerSpec, dict[str, dict[str, StoredArray]]]:
    named = {canonical_name(a.name): a for a in arrays}
    forward, backward = _split_directions(arrays) if arrays else ([], [])
    has_directions = any("forward" in a.name for a in arrays) and any("backward" in a.name for a in arrays)
    if has_directions:
        f_named = {canonical_name(a.name): a for a in forward}
        b_named = {canonical_name(a.name): a for a in backward}
        f_guess, b_guess = _infer(f_named), _infer(b_named)
        if f_guess and b_guess:
            children = {
                "forward": _guessed_recurrent(f"{name}/forward", name, f_guess, f_named, go_backwards=False),
                "backward": _guessed_recurrent(f"{name}/backward", name, b_guess, b_named, go_backwards=True),
            }
            spec = LayerSpec(
                name=name,
                class_name="Bidirectional",
                config={"name": name, "merge_mode": None},
                keras_name=name,
                children=children,
            )
            return spec, {f"{name}/forward": f_named, f"{name}/backward": b_named}
    guess = _infer(named)
    if guess:
        return _guessed_recurrent(name, name, guess, named, go_backwards=False), {name: named}
    keras1 = _keras1_arrays(name, arrays)
    old = _keras1_kind(keras1)
    if old:
        kind, units = old
        return _guessed_recurrent(name, name, (kind, units, False), keras1, go_backwards=False), {name: keras1}
    class_name = "Unknown"
    if set(named) == {"embeddings"}:
        class_name = "Embedding"
    elif "kernel" in named and set(named) <= {"kernel", "bias"} and named["kernel"].array.ndim == 2:
        class_name = "Dense"
    elif set(keras1) in ({"W", "b"}, {"W"}) and keras1["W"].array.ndim == 2:  # Keras 1 Dense
        class_name, named = "Dense", {"kernel": keras1["W"], **({"bias": keras1["b"]} if "b" in keras1 else {})}
    elif not arrays:
        class_name = "NoWeights"
    config: dict[str, Any] = {"name": name}
    if class_name == "Dense":
        config.update(units=int(named["kernel"].array.shape[1]), activation=None, use_bias="bias" in named)
    spec = LayerSpec(name=name, class_name=class_name, config=config, keras_name=name)
    return spec, ({name: named} if named else {})


def _guessed_recurrent(name, keras_name, guess, named, go_backwards) -> LayerSpec:
    kind, units, reset_after = guess
    class_name = kind.keras_classes[0]
    bias = named.get("bias")
    cudnn = f"CuDNN{kind.name}"
    if cudnn in CUDNN_CLASSES and bias is not None and bias.array.shape == (2 * len(kind.gates) * units,):
        class_name = cudnn  # a cuDNN layer keeps an input and a recurrent bias side by side
    config = {
        "name": keras_name,
        "units": units,
        "activation": None,
        "recurrent_activation": None,
        "use_bias": "bias" in named or "b_" + (kind.keras1_letters or ("",))[0] in named,
        "return_sequences": None,
        "go_backwards": go_backwards,
        "stateful": None,
        "reset_after": reset_after,
        "_guessed": True,
    }
    return LayerSpec(name=name, class_name=class_name, config=config, keras_name=keras_name)


def _class_from_key(base: str) -> str:
    """The Keras class a Keras 3 weights group is named after (``lstm`` -> LSTM, ``dense`` -> Dense)."""
    from .kinds import KINDS
    from .ops import replayed_classes

    for class_name in [name for kind in KINDS for name in kind.keras_classes] + ["Bidirectional"] + replayed_classes():
        if to_snake_case(class_name) == base:
            return class_name
    return "Unknown"


def _guess_tree_layer(name: str, key: str, node: H5Group):
    base = re.sub(r"_\d+$", "", key)
    class_name = _class_from_key(base)
    if class_name == "Bidirectional":
        children = {}
        named = {}
        for direction, child_key in (("forward", "forward_layer"), ("backward", "backward_layer")):
            child = node.children.get(child_key)
            cell = child.children.get("cell") if child else None
            vars_ = cell.vars if cell else []
            stored = {n: a for n, a in zip(_RECURRENT_VARS, vars_)}
            guess = _infer(stored)
            if guess:
                children[direction] = _guessed_recurrent(
                    f"{name}/{direction}", name, guess, stored, go_backwards=direction == "backward"
                )
                named[f"{name}/{direction}"] = stored
        spec = LayerSpec(name=name, class_name="Bidirectional", config={"name": name}, keras_name=name, children=children)
        return spec, named
    if kind_of(class_name) is not None:
        cell = node.children.get("cell")
        stored = {n: a for n, a in zip(_RECURRENT_VARS, cell.vars if cell else [])}
        guess = _infer(stored)
        if guess:
            return _guessed_recurrent(name, name, guess, stored, go_backwards=False), {name: stored}
    stored = {str(i): a for i, a in enumerate(node.vars)}
    names = _var_names(LayerSpec(name=name, class_name=class_name, config={}, keras_name=name))
    if names:
        stored = {names[i] if i < len(names) else str(i): a for i, a in enumerate(node.vars)}
    spec = LayerSpec(name=name, class_name=class_name, config={"name": name}, keras_name=name)
    return spec, ({name: stored} if stored else {})


# ----------------------------------------------------------- recurrent layers


def _recurrent_layers(model: Model) -> list[RecurrentLayer]:
    result = []
    for spec in model.graph.layers:
        if spec.is_bidirectional:
            for direction in ("forward", "backward"):
                child = spec.children.get(direction)
                if child is not None and child.is_recurrent:
                    result.append(_recurrent_layer(model, child, f"{spec.name}/{direction}", spec.name, direction))
        elif spec.is_recurrent:
            result.append(_recurrent_layer(model, spec, spec.name, None, None))
    return result


def _recurrent_layer(model: Model, spec: LayerSpec, name: str, wrapper: str | None, direction: str | None) -> RecurrentLayer:
    stored = model.weights.get(name)
    where = f"{model.label}: layer '{name}'"
    if stored is None:
        raise ModelFileError(f"{where}: no weights for this layer were found in the file")
    kind = kind_of(spec.kind)
    if kind is None:
        raise ModelFileError(f"{where}: unknown recurrent layer kind {spec.kind}")
    units = spec.get("units", spec.get("filters"))
    use_bias = spec.get("use_bias", True)
    if use_bias is None:
        use_bias = "bias" in stored
    reset_after = spec.get("reset_after")
    if reset_after is None:
        reset_after = kind.default_reset_after(model.keras_major)
    weights = kind.weights(
        int(units) if isinstance(units, (int, float)) else None,
        stored,
        use_bias=bool(use_bias),
        reset_after=bool(reset_after),
        cudnn=spec.kind in CUDNN_CLASSES,
        where=where,
    )
    activation = activation_name(spec.get("activation", "tanh"))
    recurrent_activation = activation_name(spec.get("recurrent_activation", default_recurrent_activation(model)))
    if spec.config.get("_guessed"):
        activation = recurrent_activation = None
    if spec.kind in CUDNN_CLASSES:  # cuDNN's kernels are fixed to these
        activation, recurrent_activation = "tanh", "sigmoid"
    return RecurrentLayer(
        name=name,
        spec=spec,
        weights=weights,
        activation=activation,
        recurrent_activation=recurrent_activation,
        go_backwards=bool(spec.get("go_backwards", False)),
        # Unknown in weights-only files: a replay then passes the whole sequence on.
        return_sequences=bool(spec.get("return_sequences", False) if spec.get("return_sequences") is not None else True),
        stateful=bool(spec.get("stateful", False)),
        use_bias=bool(use_bias),
        wrapper=wrapper,
        direction=direction,
    )


def default_recurrent_activation(model: Model) -> str:
    """Keras 1 and Keras 2.0-2.2 defaulted to hard_sigmoid, later versions to sigmoid."""
    version = model.keras_version or ""
    parts = [int(p) for p in re.findall(r"[0-9]{1,6}", version)[:2]] or [0]
    if parts[0] < 2 or (parts[0] == 2 and len(parts) > 1 and parts[1] < 3):
        return "hard_sigmoid"
    return "sigmoid"
