"""Helpers for the hostile-input tests (test_hostile_files, test_hostile_io, test_fuzz).

Everything here builds damaged or crafted files from the shipped sample
models (real Keras saves) at test time, into a temporary folder: nothing
large is committed.  ``assert_refused`` states the error contract: exit
status 2, nothing on stdout, one line on stderr that starts with
``lstm-inspect: error:``, and no traceback.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import numpy as np
from conftest import SAMPLES

# Real saves shipped with the project: Keras 3 .h5 and .keras, tf-keras .h5 (all LSTM(U) over 3 features).
KERAS3_H5 = SAMPLES / "single_lstm.h5"  # LSTM(4)
KERAS3_ARCHIVE = SAMPLES / "single_lstm.keras"  # LSTM(4)
TFKERAS_H5 = SAMPLES / "keras2_hard_sigmoid.h5"  # LSTM(5) -> Dense(1) "out"
INPUT_CSV = SAMPLES / "single_lstm.csv"  # 3 features

# Where the LSTM's tensors sit in each file.
KERAS3_H5_CELL = "model_weights/lstm/single_lstm/lstm/lstm_cell"
TFKERAS_H5_CELL = "model_weights/lstm/lstm/lstm_cell"
ARCHIVE_VARS = "layers/lstm/cell/vars"  # inside model.weights.h5: 0 kernel, 1 recurrent_kernel, 2 bias

MODEL_COMMANDS = ("layers", "weights", "trace", "predict", "stats", "export")
REPLAY_COMMANDS = ("trace", "predict", "stats")


def command_args(command: str, model: Path, data: Path = INPUT_CSV, output: Path | None = None) -> list:
    """The argument list running ``command`` on ``model`` (and ``data`` for the replaying commands)."""
    args: list = [command, model]
    if command in REPLAY_COMMANDS or command == "verify":
        args.append(data)
    if command == "export":
        args += ["--format", "json"]
    elif command != "plot":
        args += ["--format", "csv"]
    if output is not None:
        args += ["-o", output]
    return args


def assert_refused(code: int, stdout: str | bytes, stderr: str | bytes, words: Iterable[str] = ()) -> str:
    """Exit status 2, empty stdout, one line on stderr (``lstm-inspect: error: ...``) holding ``words``."""
    stderr = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert code == 2, f"exit {code}: {stderr}"
    assert not stdout, f"stdout not empty: {stdout[:200]!r}"
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lstm-inspect: error: "), lines[0]
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


def assert_clean_stderr(stderr: str | bytes) -> None:
    """Only lstm-inspect's own lines on stderr: no traceback, no Python/NumPy warnings."""
    stderr = stderr.decode() if isinstance(stderr, bytes) else stderr
    for line in stderr.splitlines():
        assert line.startswith("lstm-inspect: "), f"foreign line on stderr: {line!r}\n{stderr}"


# ------------------------------------------------------------------ HDF5 edits


def edit_h5(source: Path, target: Path, edit: Callable[[h5py.File], None]) -> Path:
    """Copy ``source`` to ``target`` and change it in place with h5py."""
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as h5:
        edit(h5)
    return target


def replace_dataset(path: str, data=None, **kwargs) -> Callable[[h5py.File], None]:
    """An edit that swaps the dataset at ``path`` for a new one (``data`` or h5py create_dataset kwargs)."""

    def edit(h5: h5py.File) -> None:
        del h5[path]
        if data is not None:
            h5.create_dataset(path, data=data, **kwargs)
        else:
            h5.create_dataset(path, **kwargs)

    return edit


def replace_link(path: str, link) -> Callable[[h5py.File], None]:
    """An edit that replaces the object at ``path`` by a link (h5py.ExternalLink, SoftLink, or a Group)."""

    def edit(h5: h5py.File) -> None:
        del h5[path]
        h5[path] = link

    return edit


def set_attribute(where: str, key: str, value) -> Callable[[h5py.File], None]:
    def edit(h5: h5py.File) -> None:
        h5[where].attrs[key] = value

    return edit


def edit_model_config(edit: Callable[[dict], object]) -> Callable[[h5py.File], None]:
    """An edit of a legacy .h5 file's ``model_config`` JSON (``edit`` changes the dict, or returns text)."""

    def apply(h5: h5py.File) -> None:
        config = json.loads(h5.attrs["model_config"])
        result = edit(config)
        h5.attrs["model_config"] = result if isinstance(result, str) else json.dumps(config)

    return apply


# ------------------------------------------------------------------ .keras archives


def archive_members(path: Path = KERAS3_ARCHIVE) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_archive(target: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED,
                  declare: dict[str, int] | None = None) -> Path:
    """Write a zip of ``members``; ``declare`` overrides the uncompressed size the central
    directory states for a member (written as a zip64 field when it needs one)."""
    with zipfile.ZipFile(target, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for info in archive.filelist:
            if declare and info.filename in declare:
                info.file_size = declare[info.filename]
    return target


def edit_archive_weights(target: Path, edit: Callable[[h5py.File], None], source: Path = KERAS3_ARCHIVE) -> Path:
    """A .keras archive whose model.weights.h5 was changed in place with h5py."""
    members = archive_members(source)
    scratch = target.with_suffix(".weights-scratch.h5")
    scratch.write_bytes(members["model.weights.h5"])
    with h5py.File(scratch, "r+") as h5:
        edit(h5)
    members["model.weights.h5"] = scratch.read_bytes()
    scratch.unlink()
    return write_archive(target, members)


def edit_archive_config(target: Path, edit: Callable[[dict], object], source: Path = KERAS3_ARCHIVE) -> Path:
    """A .keras archive whose config.json was changed (``edit`` changes the dict, or returns the new text/bytes)."""
    members = archive_members(source)
    config = json.loads(members["config.json"])
    result = edit(config)
    if result is None:
        result = json.dumps(config)
    members["config.json"] = result.encode() if isinstance(result, str) else result
    return write_archive(target, members)


def patch_declared_size(data: bytes, member: str, size: int) -> bytes:
    """Overwrite a member's 32-bit uncompressed size in both its local header and the central directory."""
    buffer = bytearray(data)
    name = member.encode()
    for signature, size_at, name_len_at, name_at in ((b"PK\x01\x02", 24, 28, 46), (b"PK\x03\x04", 22, 26, 30)):
        start = 0
        while (start := buffer.find(signature, start)) >= 0:
            length = struct.unpack_from("<H", buffer, start + name_len_at)[0]
            if bytes(buffer[start + name_at : start + name_at + length]) == name:
                struct.pack_into("<I", buffer, start + size_at, size)
            start += 4
    return bytes(buffer)


def set_encrypted_flag(data: bytes) -> bytes:
    """Mark every member as encrypted (general purpose bit 0), in local headers and the central directory."""
    buffer = bytearray(data)
    for signature, flag_at in ((b"PK\x01\x02", 8), (b"PK\x03\x04", 6)):
        start = 0
        while (start := buffer.find(signature, start)) >= 0:
            flags = struct.unpack_from("<H", buffer, start + flag_at)[0]
            struct.pack_into("<H", buffer, start + flag_at, flags | 1)
            start += 4
    return bytes(buffer)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ------------------------------------------------------------------ hand-written model files


def write_lstm_h5(path: Path, layers: list[dict], *, features: int, keras_version: str = "2.15.0",
                  timesteps: int | None = None) -> Path:
    """A Sequential model of stacked LSTMs, written with h5py in the legacy HDF5 layout that
    tf-keras' ``model.save("x.h5")`` produces (``model_config`` JSON, ``model_weights/<layer>``
    groups with ``weight_names``): much faster than building each model with Keras.

    Each layer dict holds ``name``, ``kernel`` (F, 4U), ``recurrent_kernel`` (U, 4U), ``bias``
    (4U,) or None, and the config keys ``activation``, ``recurrent_activation``,
    ``go_backwards``, ``return_sequences``.
    """
    config_layers = [{"class_name": "InputLayer", "config": {
        "batch_input_shape": [None, timesteps, features], "dtype": "float32", "sparse": False,
        "ragged": False, "name": "input_1"}}]
    for layer in layers:
        units = layer["recurrent_kernel"].shape[0]
        config_layers.append({"class_name": "LSTM", "config": {
            "name": layer["name"], "trainable": True, "dtype": "float32",
            "return_sequences": layer.get("return_sequences", True), "return_state": False,
            "go_backwards": layer.get("go_backwards", False), "stateful": False, "unroll": False,
            "time_major": False, "units": units, "activation": layer.get("activation", "tanh"),
            "recurrent_activation": layer.get("recurrent_activation", "sigmoid"),
            "use_bias": layer.get("bias") is not None, "unit_forget_bias": True, "dropout": 0.0,
            "recurrent_dropout": 0.0, "implementation": 2}})
    model_config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": config_layers}}
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(model_config)
        h5.attrs["keras_version"] = keras_version
        h5.attrs["backend"] = "tensorflow"
        weights = h5.create_group("model_weights")
        weights.attrs["layer_names"] = [layer["name"].encode() for layer in layers]
        weights.attrs["keras_version"] = keras_version
        weights.attrs["backend"] = "tensorflow"
        for layer in layers:
            group = weights.create_group(layer["name"])
            names = []
            for tensor in ("kernel", "recurrent_kernel", "bias"):
                if layer.get(tensor) is None:
                    continue
                name = f"{layer['name']}/lstm_cell/{tensor}:0"
                group.create_dataset(name, data=np.asarray(layer[tensor], dtype=np.float32))
                names.append(name.encode())
            group.attrs["weight_names"] = names
    return path
