"""Read Keras model files into plain Python data, without TensorFlow.

Three containers are understood:

* legacy HDF5 (``.h5``/``.hdf5``) written by Keras 1, Keras 2, tf-keras and
  Keras 3, with or without a ``model_config`` attribute (``save_weights``
  files have none);
* Keras 3 ``.keras`` zip archives (``config.json``, ``metadata.json``,
  ``model.weights.h5``), read from memory;
* Keras 3 ``.weights.h5`` files (the archive's weight file on its own).

The result is a :class:`ModelFile`: the parsed JSON config (never
deserialised, so nothing in the file runs), the Keras version that wrote it,
and the stored arrays.  Which array belongs to which layer is worked out later
(``model.py``); this module only reads, and refuses anything that could make a
read unbounded or leave the file: external links, virtual or externally stored
datasets, absurd shapes, non-numeric dtypes, oversized zip members.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar

import numpy as np

from .errors import ModelFileError

# Bounds on what a model file may make us read.  A real recurrent model is a
# few MB; these leave room for large ones while refusing crafted files.
MAX_ARRAY_BYTES = 2 << 30  # one weight tensor
MAX_TOTAL_BYTES = 8 << 30  # all weight tensors together
MAX_JSON_BYTES = 64 << 20  # config.json / model_config attribute
MAX_ARRAY_RANK = 5  # a Conv3D or ConvLSTM3D kernel: (kz, ky, kx, in, out)
# A dataset above MAX_SPARSE_BYTES must occupy at least 1/MAX_EXPANSION of its size in the
# file: Keras writes weights uncompressed, so a larger ratio is an unwritten (fill value) or
# compression-bomb dataset that would only cost memory.
MAX_SPARSE_BYTES = 16 << 20
MAX_EXPANSION = 64
MAX_TREE_GROUPS = 100_000  # groups in a Keras 3 weights tree
H5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class StoredArray:
    """One weight tensor as stored in the file."""

    name: str  # the name Keras gave it: "lstm/lstm_cell/kernel:0", or "0" for Keras 3 vars
    path: str  # where it lives in the file, for display
    array: np.ndarray


@dataclass
class H5Group:
    """A Keras 3 weights tree node (``layers/<key>``): its vars and sub-groups."""

    key: str
    name_attr: str | None  # the layer name Keras 3.5+ writes on ``vars``; None before
    vars: list[StoredArray] = field(default_factory=list)
    children: dict[str, H5Group] = field(default_factory=dict)


@dataclass
class ModelFile:
    """Everything read from a model file, before layers are interpreted."""

    path: str
    container: str  # "h5" | "keras" | "keras-weights"
    keras_version: str | None
    backend: str | None
    config: dict[str, Any] | None  # {"class_name": ..., "config": ...}; None for weights-only files
    # Legacy HDF5: layer name -> arrays in ``weight_names`` order, and the layer order.
    h5_layers: dict[str, list[StoredArray]] = field(default_factory=dict)
    h5_layer_order: list[str] = field(default_factory=list)
    # Keras 3 weight trees (.keras and .weights.h5): the ``layers`` group.
    keras_tree: H5Group | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def weights_only(self) -> bool:
        return self.config is None

    @property
    def keras_major(self) -> int | None:
        return keras_major(self.keras_version)


def keras_major(version: str | None) -> int | None:
    """The major version number of a Keras version string, or None."""
    if not version:
        return None
    head = version.strip().split(".")[0]
    # ASCII digits only ("²".isdigit() is true) and few of them (int() refuses > 4300 digits).
    return int(head) if head.isascii() and head.isdigit() and len(head) <= 6 else None


def read_model_file(path: str, *, isolate: bool = False) -> ModelFile:
    """Read a model file (.h5, .hdf5, .keras, .weights.h5) from ``path``.

    Raises :class:`ModelFileError` with a one-line reason for anything that is
    missing, unreadable, corrupt or refused.  With ``isolate`` (the command
    line), the file is read in a forked child process, which hands the result
    back through a pipe: some corrupt HDF5 files make the HDF5 C library crash
    or loop forever, which no Python code can catch; a child that dies or
    hangs becomes a one-line refusal instead.  The file is parsed once, in the
    child (h5py is not even imported here).  (Forking is safe in a
    single-threaded program only, so the Python API leaves it off by default.)
    """
    name = os.path.basename(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelFileError(
            f"{path}: is a directory (a TensorFlow SavedModel folder is not supported; "
            "save the model as .keras or .h5)"
        )
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not head:
        raise ModelFileError(f"{path}: the file is empty")
    if isolate:
        read = _read_in_a_child(path, name)
        if read is not None:
            return read
    if head.startswith(ZIP_MAGIC):
        return _read_keras_archive(path)
    if head == H5_MAGIC:
        return _read_h5_path(path)
    # HDF5 allows a user block before the signature (at 512, 1024, ... bytes).
    if _has_offset_h5_signature(path):
        return _read_h5_path(path)
    raise ModelFileError(
        f"{name}: not a Keras model file (neither HDF5 nor a .keras zip archive)"
    )


ISOLATION_SECONDS = 60.0  # plus one second per 20 MB of file, for the child's read
_SURVIVED: set[tuple] = set()  # files (path, inode, size, mtime) a child has read without dying


def _read_in_a_child(path: str, label: str) -> ModelFile | None:
    """Read the file in a forked child; refuse it if the child crashes or hangs.

    Returns what the child read, or None when this process should read the
    file itself (no fork on this platform, a file already read safely, or a
    child that failed in some other way, whose error the parent's own read
    then reports).
    """
    if not hasattr(os, "fork"):
        return None
    import select
    import signal
    import time

    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key in _SURVIVED:  # a long-lived process (the test suite) reading the same file again
        return None

    timeout = ISOLATION_SECONDS + os.path.getsize(path) / (20 << 20)
    read_end, write_end = os.pipe()  # the result; closed by the child's exit, however it ends
    pid = os.fork()
    if pid == 0:  # the child: read, send, then leave without running any cleanup or flushing any buffer
        os.close(read_end)
        with contextlib.suppress(BaseException):  # anything else: the parent's own read reports it
            try:
                result = ("read", read_model_file(path))
            except ModelFileError as exc:
                result = ("refused", str(exc))
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        os._exit(0)
    os.close(write_end)
    chunks: list[bytes] = []
    finished = False
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                break
            chunk = os.read(read_end, 1 << 20)
            if not chunk:
                finished = True
                break
            chunks.append(chunk)
    finally:  # also on Ctrl-C: never leave the child behind
        os.close(read_end)
        if not finished:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if not finished:
        raise ModelFileError(
            f"{label}: refused: reading it did not finish within {timeout:.0f} s "
            "(a corrupt HDF5 file can make the HDF5 library loop)"
        )
    if os.WIFSIGNALED(status):
        raise ModelFileError(
            f"{label}: corrupt HDF5 file: the HDF5 library crashed reading it "
            f"({signal.Signals(os.WTERMSIG(status)).name})"
        )
    _SURVIVED.add(key)
    try:
        kind, value = _ResultUnpickler(io.BytesIO(b"".join(chunks))).load()
    except Exception:
        return None
    if kind == "refused" and isinstance(value, str):
        raise ModelFileError(value)
    return value if kind == "read" and isinstance(value, ModelFile) else None


class _ResultUnpickler(pickle.Unpickler):
    """Loads only what a child's ``ModelFile`` is made of: our dataclasses, NumPy arrays and plain data."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        (__name__, "ModelFile"), (__name__, "StoredArray"), (__name__, "H5Group"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a model file")


def _has_offset_h5_signature(path: str) -> bool:
    size = os.path.getsize(path)
    offset = 512
    with open(path, "rb") as handle:
        while offset + 8 <= size and offset <= 1 << 20:
            handle.seek(offset)
            if handle.read(8) == H5_MAGIC:
                return True
            offset *= 2
    return False


# --------------------------------------------------------------------------- HDF5


def _open_h5(source: str | BinaryIO, label: str):
    import h5py

    try:
        return h5py.File(source, "r")
    except Exception as exc:  # h5py raises OSError, ValueError, KeyError ... for corrupt files
        raise ModelFileError(f"{label}: corrupt or truncated HDF5 file ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text.replace("Unable to synchronously open file", "cannot open")
    text = text.replace("Unable to open file", "cannot open")
    return text[:160] or type(exc).__name__


def _read_h5_path(path: str) -> ModelFile:
    with _open_h5(path, os.path.basename(path)) as h5:
        return _read_h5_file(h5, path)


def _read_h5_file(h5, path: str) -> ModelFile:
    label = os.path.basename(path)
    try:
        if "layers" in h5 and "layer_names" not in h5.attrs and "model_weights" not in h5:
            # A Keras 3 ``save_weights`` file: the same tree as inside a .keras archive.
            tree = _read_keras_tree(h5, label, "")
            return ModelFile(
                path=path,
                container="keras-weights",
                keras_version=None,
                backend=None,
                config=None,
                keras_tree=tree,
            )
        attrs = h5.attrs
        config = None
        if "model_config" in attrs:
            config = _parse_json(_attr_text(attrs["model_config"], label, "model_config"), label, "model_config")
        has_weights_group = "model_weights" in h5
        weights_root = h5["model_weights"] if has_weights_group else h5
        if has_weights_group:
            _require_hard_link(h5, "model_weights", label)
        version = _attr_text(attrs.get("keras_version", weights_root.attrs.get("keras_version")), label, "keras_version")
        backend = _attr_text(attrs.get("backend", weights_root.attrs.get("backend")), label, "backend")
        if "layer_names" not in weights_root.attrs:
            if config is None:
                raise ModelFileError(
                    f"{label}: an HDF5 file, but not a Keras model or weights file "
                    "(no model_config, layer_names or layers group)"
                )
            raise ModelFileError(f"{label}: the model_weights group has no layer_names attribute")
        order = [_attr_text(n, label, "layer_names") for n in _attr_list(weights_root.attrs["layer_names"])]
        layers: dict[str, list[StoredArray]] = {}
        budget = _Budget(label)
        prefix = "model_weights/" if weights_root.name != "/" else ""
        for layer_name in order:
            if layer_name not in weights_root:
                layers[layer_name] = []
                continue
            group = _child(weights_root, layer_name, label)
            names = group.attrs.get("weight_names", [])
            arrays = []
            for weight_name in _attr_list(names):
                weight_name = _attr_text(weight_name, label, "weight_names")
                dataset = _dataset(group, weight_name, label)
                arrays.append(
                    StoredArray(weight_name, f"{prefix}{layer_name}/{weight_name}", budget.read(dataset, weight_name))
                )
            layers[layer_name] = arrays
        return ModelFile(
            path=path,
            container="h5",
            keras_version=version or None,
            backend=backend or None,
            config=config,
            h5_layers=layers,
            h5_layer_order=order,
        )
    except ModelFileError:
        raise
    except Exception as exc:  # corrupt internals surface as assorted h5py errors
        raise ModelFileError(f"{label}: corrupt HDF5 model file ({_short(exc)})") from None


def _attr_list(value: Any) -> list:
    if isinstance(value, (str, bytes)):
        return [value]
    return list(np.asarray(value).ravel())


def _attr_text(value: Any, label: str, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value)
        if len(value) > MAX_JSON_BYTES:
            raise ModelFileError(f"{label}: the {what} attribute is too large")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{label}: the {what} attribute is not UTF-8 text") from None
    if isinstance(value, str):
        if len(value) > MAX_JSON_BYTES:
            raise ModelFileError(f"{label}: the {what} attribute is too large")
        return value
    raise ModelFileError(f"{label}: the {what} attribute is not text")


def _parse_json(text: str | None, label: str, what: str) -> dict[str, Any]:
    if text is None:
        raise ModelFileError(f"{label}: {what} is missing")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{label}: {what} is not valid JSON ({_short(exc)})") from None
    if not isinstance(value, dict):
        raise ModelFileError(f"{label}: {what} is not a JSON object")
    return value


def read_config_file(path: str) -> tuple[dict[str, Any], str | None]:
    """A model architecture saved beside the weights (``model.to_json()``, or a ``get_config()``
    dump): (the model config as a .h5 file's ``model_config`` holds it, the Keras version it names).

    Read as plain JSON within the same bounds as a model file's own config; nothing is deserialised.
    """
    label = os.path.basename(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such file (--config)")
    try:
        size = os.path.getsize(path)
        if size > MAX_JSON_BYTES:
            raise ModelFileError(f"{label}: refused: {size:,} bytes of architecture JSON (limit {MAX_JSON_BYTES:,})")
        with open(path, "rb") as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelFileError(f"{label}: the architecture file is not UTF-8 JSON") from None
    config = _parse_json(text, label, "the architecture file")
    version = config.get("keras_version") if isinstance(config.get("keras_version"), str) else None
    if "class_name" not in config and isinstance(config.get("layers"), list):
        # A bare get_config() of a Functional/Sequential model.
        kind = "Functional" if "input_layers" in config else "Sequential"
        config = {"class_name": kind, "config": config}
    return config, version


def _require_hard_link(group, name: str, label: str) -> None:
    import h5py

    link = group.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        raise ModelFileError(
            f"{label}: refused: '{name}' is an external link to {link.filename} (a model file must be self-contained)"
        )
    if isinstance(link, h5py.SoftLink):
        raise ModelFileError(f"{label}: refused: '{name}' is a soft link to {link.path}")


def _child(group, name: str, label: str):
    """A sub-group or dataset by a (possibly multi-part) name, refusing links that leave the file."""
    node = group
    for part in [p for p in name.split("/") if p]:
        if part not in node:
            raise ModelFileError(f"{label}: '{name}' is listed in the file but missing from it")
        _require_hard_link(node, part, label)
        node = node[part]
    return node


def _dataset(group, name: str, label: str):
    import h5py

    node = _child(group, name, label)
    if not isinstance(node, h5py.Dataset):
        raise ModelFileError(f"{label}: '{name}' is not a dataset")
    return node


class _Budget:
    """Reads datasets while checking shape, dtype, storage and the total size."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.total = 0

    def read(self, dataset, what: str) -> np.ndarray:
        label = self.label
        if dataset.is_virtual:
            raise ModelFileError(f"{label}: refused: '{what}' is a virtual dataset that maps other files")
        if dataset.external:
            raise ModelFileError(f"{label}: refused: '{what}' is stored in an external file")
        dtype = dataset.dtype
        if dtype.kind not in "fiub" or dtype.itemsize > 8:
            raise ModelFileError(f"{label}: '{what}' has dtype {dtype}, not a numeric weight tensor")
        shape = dataset.shape
        if shape is None or len(shape) > MAX_ARRAY_RANK:
            raise ModelFileError(f"{label}: '{what}' has an unsupported shape {shape}")
        count = 1
        for dim in shape:
            count *= int(dim)
        nbytes = count * dtype.itemsize
        if nbytes > MAX_ARRAY_BYTES:
            raise ModelFileError(f"{label}: refused: '{what}' declares shape {shape} ({nbytes:,} bytes)")
        if nbytes > MAX_SPARSE_BYTES:
            stored = _storage_size(dataset)
            if stored * MAX_EXPANSION < nbytes:
                raise ModelFileError(
                    f"{label}: refused: '{what}' declares {nbytes:,} bytes but the file stores {stored:,} for it "
                    "(an unwritten or highly compressed dataset of this size is not a weight tensor)"
                )
        self.total += nbytes
        if self.total > MAX_TOTAL_BYTES:
            raise ModelFileError(f"{label}: refused: the weights add up to more than {MAX_TOTAL_BYTES:,} bytes")
        try:
            array = np.asarray(dataset[()])
        except Exception as exc:
            raise ModelFileError(f"{label}: '{what}' cannot be read: corrupt or truncated file ({_short(exc)})") from None
        if array.dtype.kind == "f" and array.dtype.itemsize < 4:
            array = array.astype(np.float32)
        return array


def _storage_size(dataset) -> int:
    try:
        return int(dataset.id.get_storage_size())
    except Exception:  # not all layouts report it
        return 0


# ------------------------------------------------------------------ Keras 3 trees


def _read_keras_tree(h5, label: str, prefix: str) -> H5Group:
    budget = _Budget(label)
    if "layers" not in h5:
        if any(key.startswith("layers\\") for key in h5):
            return _read_backslash_tree(h5, label, prefix, budget)
        return H5Group(key="", name_attr=None)
    _require_hard_link(h5, "layers", label)
    import h5py

    layers = h5["layers"]
    if not isinstance(layers, h5py.Group):
        raise ModelFileError(f"{label}: '{prefix}layers' is not a group of layer weights")
    return _walk_group(layers, "", f"{prefix}layers", label, budget, depth=0, seen=set())


def _read_backslash_tree(h5, label: str, prefix: str, budget: _Budget) -> H5Group:
    """A weights file written on Windows by tf.keras 2.13-2.15: its groups are named with
    backslashes (``layers\\lstm\\cell`` is one group at the root, holding ``vars``).  They are
    read into the tree the '/'-separated names would have made."""
    import h5py

    root = H5Group(key="", name_attr=None)
    seen: set = set()
    for key in sorted(k for k in h5 if k.startswith("layers\\")):
        _require_hard_link(h5, key, label)
        group = h5[key]
        if not isinstance(group, h5py.Group):
            raise ModelFileError(f"{label}: '{prefix}{key}' is not a group of layer weights")
        parts = key.split("\\")[1:]
        if not parts or any(part in ("", ".", "..") for part in parts):
            raise ModelFileError(f"{label}: refused: weight group name '{_clip_text(key)}'")
        node = root
        for part in parts[:-1]:
            node = node.children.setdefault(part, H5Group(key=part, name_attr=None))
        read = _walk_group(group, parts[-1], f"{prefix}{key}", label, budget, depth=len(parts), seen=seen)
        target = node.children.setdefault(parts[-1], H5Group(key=parts[-1], name_attr=None))
        target.vars.extend(read.vars)
        target.name_attr = target.name_attr or read.name_attr
        for child_key, child in read.children.items():
            target.children.setdefault(child_key, child)
    return root


def _clip_text(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _walk_group(group, key: str, path: str, label: str, budget: _Budget, depth: int, seen: set) -> H5Group:
    import h5py

    if depth > 32:
        raise ModelFileError(f"{label}: the weight tree is nested too deeply")
    # HDF5 hard links can make a group its own descendant, or reach one group by many paths
    # (2^depth walks); Keras writes a tree, so a group met twice is refused.
    if group.id in seen:
        raise ModelFileError(f"{label}: refused: '{path}' links back to a group already read (a loop in the file)")
    seen.add(group.id)
    if len(seen) > MAX_TREE_GROUPS:
        raise ModelFileError(f"{label}: refused: the weight tree has more than {MAX_TREE_GROUPS:,} groups")
    node = H5Group(key=key, name_attr=None)
    for child_key in group:
        _require_hard_link(group, child_key, label)
        child = group[child_key]
        child_path = f"{path}/{child_key}"
        if child_key == "vars" and isinstance(child, h5py.Group):
            name = child.attrs.get("name")
            node.name_attr = _attr_text(name, label, "name") if name is not None else None
            indices = []
            for var_key in child:
                _require_hard_link(child, var_key, label)
                if not var_key.isdigit():
                    raise ModelFileError(f"{label}: unexpected entry '{child_path}/{var_key}' in the weights")
                indices.append(int(var_key))
            for index in sorted(indices):
                dataset = _dataset(child, str(index), label)
                node.vars.append(StoredArray(str(index), f"{child_path}/{index}", budget.read(dataset, f"{child_path}/{index}")))
        elif isinstance(child, h5py.Group):
            node.children[child_key] = _walk_group(child, child_key, child_path, label, budget, depth + 1, seen)
    return node


def _read_member(archive, member: str, limit: int, label: str) -> bytes:
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise ModelFileError(f"{label}: the .keras archive has no {member}") from None
    if info.file_size > limit:
        raise ModelFileError(
            f"{label}: refused: {member} declares {info.file_size:,} bytes (limit {limit:,})"
        )
    if info.file_size > MAX_SPARSE_BYTES and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
        raise ModelFileError(
            f"{label}: refused: {member} expands from {info.compress_size:,} to {info.file_size:,} bytes "
            "(a compression ratio no model file has)"
        )
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{label}: {member} is encrypted")
    try:
        with archive.open(info) as handle:
            data = handle.read(limit + 1)  # never trust the declared size alone
    # Corrupt compressed data raises zlib.error, lzma.LZMAError, OSError (bz2), EOFError ...:
    # whatever the decompressor, the member cannot be used.
    except Exception as exc:
        raise ModelFileError(f"{label}: {member} cannot be extracted ({_short(exc)})") from None
    if len(data) > limit:
        raise ModelFileError(f"{label}: refused: {member} expands beyond {limit:,} bytes")
    if len(data) != info.file_size:
        raise ModelFileError(
            f"{label}: {member} declares {info.file_size:,} bytes but holds {len(data):,} (a corrupt or crafted archive)"
        )
    return data


def _read_keras_archive(path: str) -> ModelFile:
    import zipfile  # here: the command line's parent process never reads an archive itself

    label = os.path.basename(path)
    try:
        archive = zipfile.ZipFile(path)
    # BadZipFile, OSError, EOFError, ValueError, NotImplementedError ("zip file version 12.8") ...:
    # whatever zipfile makes of a damaged directory, the archive cannot be used.
    except Exception as exc:
        raise ModelFileError(f"{label}: corrupt or truncated zip archive ({_short(exc)})") from None
    with archive:
        listed = archive.namelist()
        names = set(listed)
        if len(names) != len(listed):
            from collections import Counter

            twice = sorted(name for name, count in Counter(listed).items() if count > 1)
            # Tools disagree on which copy counts: a classic way to show one file to a checker
            # and another to the loader.
            raise ModelFileError(f"{label}: refused: the archive holds {twice[0]} more than once")
        for name in listed:
            parts = name.replace("\\", "/").split("/")
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise ModelFileError(f"{label}: refused: the archive holds a member named '{_clip_text(name)}', "
                                     "which points outside the archive")
        if "config.json" not in names:
            if "saved_model.pb" in names or any(n.endswith("saved_model.pb") for n in names):
                raise ModelFileError(f"{label}: a zipped TensorFlow SavedModel, not a .keras archive")
            raise ModelFileError(f"{label}: the .keras archive has no config.json")
        config_text = _read_member(archive, "config.json", MAX_JSON_BYTES, label)
        try:
            config = _parse_json(config_text.decode("utf-8"), label, "config.json")
        except UnicodeDecodeError:
            raise ModelFileError(f"{label}: config.json is not UTF-8 text") from None
        version = None
        if "metadata.json" in names:
            meta_text = _read_member(archive, "metadata.json", MAX_JSON_BYTES, label)
            try:
                meta = json.loads(meta_text.decode("utf-8"))
                if isinstance(meta, dict) and isinstance(meta.get("keras_version"), str):
                    version = meta["keras_version"]
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise ModelFileError(f"{label}: metadata.json is not valid JSON") from None
        if "model.weights.h5" not in names:
            if "model.weights.npz" in names:
                raise ModelFileError(f"{label}: weights stored as model.weights.npz are not supported")
            raise ModelFileError(f"{label}: the .keras archive has no model.weights.h5")
        weights = _read_member(archive, "model.weights.h5", MAX_TOTAL_BYTES, label)
    if not weights.startswith(H5_MAGIC):
        raise ModelFileError(f"{label}: model.weights.h5 inside the archive is not an HDF5 file")
    with _open_h5(io.BytesIO(weights), f"{label}: model.weights.h5") as h5:
        try:
            tree = _read_keras_tree(h5, label, "model.weights.h5:")
        except ModelFileError:
            raise
        except Exception as exc:
            raise ModelFileError(f"{label}: corrupt model.weights.h5 ({_short(exc)})") from None
    return ModelFile(
        path=path,
        container="keras",
        keras_version=version,
        backend=None,
        config=config,
        keras_tree=tree,
    )
