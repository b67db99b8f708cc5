"""Hostile and broken model files: one clear line, exit status 2, nothing executed, nothing read outside.

Every case is made here, at test time, from the shipped sample models (real
Keras 3 and tf-keras saves) by cutting, overwriting or editing them with
h5py/zipfile: truncated and random files, broken .keras archives, zip
members that declare huge sizes or expand like a zip bomb, weights whose
shapes contradict the config, HDF5 external links, soft links, virtual and
externally stored datasets, absurd shapes, non-numeric dtypes, hard-link
loops, deeply nested and wrongly typed configs.  Each is given to every
command; each must be refused with exit status 2, nothing on stdout, one line
on stderr naming the problem, and no output file left behind.

Lambda layers carry marshalled Python code.  The payload used here creates a
marker file when it runs; a control test proves it does run when Keras itself
loads the file, and every lstm-inspect command (verify included) must leave
the marker uncreated.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import SAMPLES, run_cli_many
from hostile import (
    ARCHIVE_VARS,
    INPUT_CSV,
    KERAS3_ARCHIVE,
    KERAS3_H5,
    KERAS3_H5_CELL,
    MODEL_COMMANDS,
    REPLAY_COMMANDS,
    TFKERAS_H5,
    TFKERAS_H5_CELL,
    archive_members,
    assert_clean_stderr,
    assert_refused,
    command_args,
    edit_archive_config,
    edit_archive_weights,
    edit_h5,
    edit_model_config,
    patch_declared_size,
    replace_dataset,
    replace_link,
    set_attribute,
    set_encrypted_flag,
    write_archive,
)
from reference import invoke

import lstm_inspect as li
from lstm_inspect.errors import LstmInspectError


@dataclass
class Case:
    name: str  # the file name (and test id)
    build: Callable[[Path], Path]  # folder -> the file
    words: tuple[str, ...]  # the one-line message must contain these
    commands: tuple[str, ...] = MODEL_COMMANDS  # the commands that must refuse it
    data: Path = INPUT_CSV  # the input of trace, predict and stats


CASES: list[Case] = []


def case(name: str, words, commands=MODEL_COMMANDS):
    def register(build):
        CASES.append(Case(name, build, tuple(words), tuple(commands)))
        return build

    return register


def cut(source: Path, fraction: float, name: str):
    def build(folder: Path) -> Path:
        data = source.read_bytes()
        target = folder / name
        target.write_bytes(data[: max(1, int(len(data) * fraction))])
        return target

    return build


# ------------------------------------------------------------------ truncated and random files

for source, suffix in ((KERAS3_H5, "keras3.h5"), (TFKERAS_H5, "tfkeras.h5"), (KERAS3_ARCHIVE, "keras")):
    for fraction in (0.002, 0.05, 0.25, 0.5, 0.75, 0.95, 0.999):
        name = f"cut-{fraction:g}-{suffix}"
        small = len(source.read_bytes()) * fraction < 8
        words = ["not a Keras model file"] if small else ["corrupt or truncated"]
        CASES.append(Case(name, cut(source, fraction, name), (name, *words)))


def _noise(size: int, seed: int) -> bytes:
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    return b"\x00" + data[1:]  # never a signature by chance


@case("random.h5", ["random.h5", "not a Keras model file"])
def _(folder):
    (folder / "random.h5").write_bytes(_noise(8192, 1))
    return folder / "random.h5"


@case("random.keras", ["random.keras", "not a Keras model file"])
def _(folder):
    (folder / "random.keras").write_bytes(_noise(8192, 2))
    return folder / "random.keras"


@case("hdf5-signature-then-noise.h5", ["corrupt or truncated HDF5 file"])
def _(folder):
    (folder / "hdf5-signature-then-noise.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + _noise(8192, 3))
    return folder / "hdf5-signature-then-noise.h5"


@case("zip-signature-then-noise.keras", ["corrupt or truncated zip archive"])
def _(folder):
    (folder / "zip-signature-then-noise.keras").write_bytes(b"PK\x03\x04" + _noise(8192, 4))
    return folder / "zip-signature-then-noise.keras"


# ------------------------------------------------------------------ broken .keras archives


def member_case(name: str, member: str, replace: bytes | None, words) -> Case:
    """An archive with ``member`` left out (``replace`` None) or replaced by ``replace``."""

    def build(folder: Path) -> Path:
        members = archive_members()
        if replace is None:
            del members[member]
        else:
            members[member] = replace
        return write_archive(folder / name, members)

    return Case(name, build, tuple(words))


CASES += [
    member_case("no-config.keras", "config.json", None, ["has no config.json"]),
    member_case("config-not-json.keras", "config.json", b'{"class_name": "Sequential", ', ["config.json is not valid JSON"]),
    member_case("config-a-list.keras", "config.json", b"[1, 2, 3]", ["config.json is not a JSON object"]),
    member_case("config-null.keras", "config.json", b"null", ["config.json is not a JSON object"]),
    member_case("config-not-utf8.keras", "config.json", b"\xff\xfe{\x00}", ["config.json is not UTF-8"]),
    member_case("config-deeply-nested.keras", "config.json", b"[" * 100_000 + b"]" * 100_000, ["config.json is not valid JSON"]),
    member_case("metadata-not-json.keras", "metadata.json", b"{oops", ["metadata.json is not valid JSON"]),
    member_case("no-weights.keras", "model.weights.h5", None, ["has no model.weights.h5"]),
    member_case("weights-not-hdf5.keras", "model.weights.h5", b"this is not HDF5" * 100, ["model.weights.h5", "not an HDF5 file"]),
    member_case("weights-truncated.keras", "model.weights.h5", archive_members()["model.weights.h5"][:5000],
                ["model.weights.h5", "truncated"]),
]


@case("declares-1TB-weights.keras", ["model.weights.h5 declares 1,099,511,627,776 bytes", "limit"])
def _(folder):
    return write_archive(folder / "declares-1TB-weights.keras", archive_members(), declare={"model.weights.h5": 1 << 40})


@case("declares-1TB-config.keras", ["config.json declares 1,099,511,627,776 bytes", "limit"])
def _(folder):
    return write_archive(folder / "declares-1TB-config.keras", archive_members(), declare={"config.json": 1 << 40})


@case("declares-4GB-weights.keras", ["model.weights.h5 expands from", "4,294,967,280 bytes"])
def _(folder):
    data = patch_declared_size(KERAS3_ARCHIVE.read_bytes(), "model.weights.h5", 0xFFFFFFF0)
    (folder / "declares-4GB-weights.keras").write_bytes(data)
    return folder / "declares-4GB-weights.keras"


@case("declares-fewer-bytes.keras", ["config.json cannot be extracted"])
def _(folder):
    data = patch_declared_size(KERAS3_ARCHIVE.read_bytes(), "config.json", 10)
    (folder / "declares-fewer-bytes.keras").write_bytes(data)
    return folder / "declares-fewer-bytes.keras"


@case("zip-bomb-config.keras", ["config.json declares", "limit 67,108,864"])
def _(folder):
    """70 MB of JSON whitespace deflates to ~70 kB: refused from its declared size, never inflated."""
    members = archive_members()
    members["config.json"] += b" " * (70 << 20)
    return write_archive(folder / "zip-bomb-config.keras", members, zipfile.ZIP_DEFLATED)


@case("zip-bomb-config-lying.keras", ["config.json cannot be extracted"])
def _(folder):
    """The same bomb with its header claiming the original small size: reading stops at the claim."""
    members = archive_members()
    size = len(members["config.json"])
    members["config.json"] += b" " * (70 << 20)
    target = write_archive(folder / "zip-bomb-config-lying.keras", members, zipfile.ZIP_DEFLATED)
    target.write_bytes(patch_declared_size(target.read_bytes(), "config.json", size))
    return target


@case("zip-bomb-weights.keras", ["model.weights.h5 expands from"])
def _(folder):
    members = archive_members()
    members["model.weights.h5"] += bytes(40 << 20)
    return write_archive(folder / "zip-bomb-weights.keras", members, zipfile.ZIP_DEFLATED)


@case("duplicate-config.keras", ["config.json more than once"])
def _(folder):
    import warnings

    target = folder / "duplicate-config.keras"
    with warnings.catch_warnings(), zipfile.ZipFile(target, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        for name, data in archive_members().items():
            archive.writestr(name, data)
        archive.writestr("config.json", b'{"class_name": "Sequential", "config": {"layers": []}}')
    return target


@case("encrypted.keras", ["encrypted"])
def _(folder):
    (folder / "encrypted.keras").write_bytes(set_encrypted_flag(KERAS3_ARCHIVE.read_bytes()))
    return folder / "encrypted.keras"


# ------------------------------------------------------------------ weights that contradict the config

CASES += [
    Case("kernel-3x15-keras3.h5", lambda f: edit_h5(KERAS3_H5, f / "kernel-3x15-keras3.h5", replace_dataset(
        f"{KERAS3_H5_CELL}/kernel", np.zeros((3, 15), "f4"))), ("layer 'lstm'", "kernel has shape (3, 15)", "needs (features, 16)")),
    Case("kernel-3x15.keras", lambda f: edit_archive_weights(f / "kernel-3x15.keras", replace_dataset(
        f"{ARCHIVE_VARS}/0", np.zeros((3, 15), "f4"))), ("layer 'lstm'", "kernel has shape (3, 15)")),
    Case("recurrent-5x21-tfkeras.h5", lambda f: edit_h5(TFKERAS_H5, f / "recurrent-5x21-tfkeras.h5", replace_dataset(
        f"{TFKERAS_H5_CELL}/recurrent_kernel:0", np.zeros((5, 21), "f4"))), ("recurrent_kernel has shape (5, 21)", "(5, 20)")),
    Case("bias-17.h5", lambda f: edit_h5(KERAS3_H5, f / "bias-17.h5", replace_dataset(
        f"{KERAS3_H5_CELL}/bias", np.zeros(17, "f4"))), ("bias has shape (17,)", "needs (16,)")),
    Case("kernel-1d.h5", lambda f: edit_h5(KERAS3_H5, f / "kernel-1d.h5", replace_dataset(
        f"{KERAS3_H5_CELL}/kernel", np.zeros(48, "f4"))), ("kernel (48,)", "must have 2 axes for a LSTM")),
    Case("kernel-rank-5.h5", lambda f: edit_h5(KERAS3_H5, f / "kernel-rank-5.h5", replace_dataset(
        f"{KERAS3_H5_CELL}/kernel", np.zeros((1, 1, 1, 3, 16), "f4"))), ("kernel (1, 1, 1, 3, 16)", "must have 2 axes for a LSTM")),
    Case("weights-missing-tfkeras.h5", lambda f: edit_h5(TFKERAS_H5, f / "weights-missing-tfkeras.h5", set_attribute(
        "model_weights/lstm", "weight_names", np.array([b"lstm/lstm_cell/kernel:0"]))), ("recurrent_kernel not found",)),
    Case("weight-name-is-a-group.h5", lambda f: edit_h5(KERAS3_H5, f / "weight-name-is-a-group.h5", set_attribute(
        "model_weights/lstm", "weight_names", np.array([b"single_lstm"]))), ("'single_lstm' is not a dataset",)),
]


# ------------------------------------------------------------------ links and storage outside the file


def _victim(folder: Path) -> Path:
    victim = folder / "victim.h5"
    if not victim.exists():
        victim.write_bytes(KERAS3_H5.read_bytes())
    return victim


def _virtual(folder: Path, dataset: str, source_file: str, source_path: str):
    def edit(h5):
        layout = h5py.VirtualLayout(shape=(3, 16), dtype="f4")
        layout[:] = h5py.VirtualSource(source_file, source_path, shape=(3, 16))
        del h5[dataset]
        h5.create_virtual_dataset(dataset, layout)

    return edit


def _external_storage(folder: Path, dataset: str):
    def edit(h5):
        raw = folder / "raw-floats.bin"
        raw.write_bytes(np.ones(48, "f4").tobytes())
        del h5[dataset]
        h5.create_dataset(dataset, shape=(3, 16), dtype="f4", external=[(str(raw), 0, h5py.h5f.UNLIMITED)])

    return edit


CASES += [
    Case("external-link-dataset.h5", lambda f: edit_h5(KERAS3_H5, f / "external-link-dataset.h5", replace_link(
        f"{KERAS3_H5_CELL}/kernel", h5py.ExternalLink(str(_victim(f)), f"/{KERAS3_H5_CELL}/kernel"))),
        ("refused", "external link", "victim.h5")),
    Case("external-link-group.h5", lambda f: edit_h5(KERAS3_H5, f / "external-link-group.h5", replace_link(
        "model_weights", h5py.ExternalLink(str(_victim(f)), "/model_weights"))), ("refused", "external link")),
    Case("external-link-to-etc-passwd.keras", lambda f: edit_archive_weights(f / "external-link-to-etc-passwd.keras", replace_link(
        "layers", h5py.ExternalLink("/etc/passwd", "/layers"))), ("refused", "external link", "/etc/passwd")),
    Case("external-link-var.keras", lambda f: edit_archive_weights(f / "external-link-var.keras", replace_link(
        f"{ARCHIVE_VARS}/0", h5py.ExternalLink(str(_victim(f)), f"/{KERAS3_H5_CELL}/kernel"))), ("refused", "external link")),
    Case("soft-link.h5", lambda f: edit_h5(KERAS3_H5, f / "soft-link.h5", replace_link(
        f"{KERAS3_H5_CELL}/kernel", h5py.SoftLink(f"/{KERAS3_H5_CELL}/recurrent_kernel"))), ("refused", "soft link")),
    Case("virtual-dataset.h5", lambda f: edit_h5(KERAS3_H5, f / "virtual-dataset.h5", _virtual(
        f, f"{KERAS3_H5_CELL}/kernel", str(_victim(f)), f"/{KERAS3_H5_CELL}/kernel")), ("refused", "virtual dataset")),
    Case("virtual-dataset.keras", lambda f: edit_archive_weights(f / "virtual-dataset.keras", _virtual(
        f, f"{ARCHIVE_VARS}/0", str(_victim(f)), f"/{KERAS3_H5_CELL}/kernel")), ("refused", "virtual dataset")),
    Case("external-storage.h5", lambda f: edit_h5(KERAS3_H5, f / "external-storage.h5", _external_storage(
        f, f"{KERAS3_H5_CELL}/kernel")), ("refused", "stored in an external file")),
]


# ------------------------------------------------------------------ absurd shapes, dtypes and trees


def _loop(h5):
    group = h5["layers/lstm"]
    group["again"] = group  # a hard link to itself


def _diamonds(h5):
    """20 levels of groups each linked twice from the level above: 2**20 paths to the bottom."""
    parent = h5["layers"].create_group("zz")
    for level in range(20):
        child = h5.create_group(f"pool/level{level}")
        parent["a"] = child
        parent["b"] = child
        parent = child


CASES += [
    Case("shape-1e9x1e9.h5", lambda f: edit_h5(KERAS3_H5, f / "shape-1e9x1e9.h5", replace_dataset(
        f"{KERAS3_H5_CELL}/kernel", shape=(10**9, 10**9), dtype="f4", chunks=(1, 16))),
        ("refused", "declares shape (1000000000, 1000000000)")),
    Case("shape-1e9x1e9.keras", lambda f: edit_archive_weights(f / "shape-1e9x1e9.keras", replace_dataset(
        f"{ARCHIVE_VARS}/0", shape=(10**9, 10**9), dtype="f4", chunks=(1, 16))), ("refused", "declares shape")),
    Case("unwritten-200MB.keras", lambda f: edit_archive_weights(f / "unwritten-200MB.keras", replace_dataset(
        f"{ARCHIVE_VARS}/0", shape=(3, 1 << 24), dtype="f4", chunks=(1, 4096))), ("refused", "stores 0")),
    Case("unwritten-3GB.h5", lambda f: edit_h5(KERAS3_H5, f / "unwritten-3GB.h5", replace_dataset(
        f"{KERAS3_H5_CELL}/kernel", shape=(3, 1 << 28), dtype="f4", chunks=(1, 4096))), ("refused", "declares shape")),
    Case("hard-link-loop.keras", lambda f: edit_archive_weights(f / "hard-link-loop.keras", _loop), ("refused", "loop")),
    Case("hard-link-diamonds.keras", lambda f: edit_archive_weights(f / "hard-link-diamonds.keras", _diamonds),
         ("refused", "already read")),
    Case("layers-is-a-dataset.keras", lambda f: edit_archive_weights(f / "layers-is-a-dataset.keras", replace_dataset(
        "layers", np.zeros(3))), ("not a group",)),
]

DTYPES = {
    "fixed-strings": {"data": np.array([[b"abc"] * 16] * 3)},
    "vlen-strings": {"shape": (3, 16), "dtype": h5py.string_dtype()},
    "compound": {"data": np.zeros((3, 16), dtype=[("a", "f4"), ("b", "i4")])},
    "vlen-floats": {"shape": (3, 16), "dtype": h5py.vlen_dtype("f4")},
    "object-references": {"shape": (3, 16), "dtype": h5py.ref_dtype},
    "complex": {"data": np.zeros((3, 16), "c8")},
    "opaque": {"data": np.zeros((3, 16), "V4")},
    "array-of-16": {"shape": (3,), "dtype": np.dtype(("f4", (16,)))},
}
for dtype_name, spec in DTYPES.items():
    CASES.append(Case(
        f"dtype-{dtype_name}.h5",
        lambda f, n=dtype_name, s=spec: edit_h5(KERAS3_H5, f / f"dtype-{n}.h5", replace_dataset(f"{KERAS3_H5_CELL}/kernel", **s)),
        ("has dtype", "not a numeric weight tensor"),
    ))
CASES.append(Case(
    "dtype-vlen-strings.keras",
    lambda f: edit_archive_weights(f / "dtype-vlen-strings.keras", replace_dataset(f"{ARCHIVE_VARS}/2", shape=(16,), dtype=h5py.string_dtype())),
    ("has dtype object", "not a numeric weight tensor"),
))


# ------------------------------------------------------------------ configs with the wrong types


def _lstm(config: dict) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == "LSTM")["config"]


def _set_lstm(key, value):
    def edit(config):
        _lstm(config)[key] = value

    return edit


def _set_model(key, value):
    def edit(config):
        config["config"][key] = value

    return edit


def _set_top(key, value):
    def edit(config):
        config[key] = value

    return edit


def _duplicate_name(config):
    config["config"]["layers"].append(dict(config["config"]["layers"][1]))


def _nested_models(config):
    """300 Sequential models inside each other around the LSTM: nests deeper than JSON parsers go."""
    lstm = json.dumps(config["config"]["layers"][1])
    return '{"class_name": "Sequential", "config": {"name": "m", "layers": [' * 400 + lstm + "]}}" * 400


CONFIG_CASES = {
    "units-abc": (_set_lstm("units", "abc"), ["layer 'lstm' (LSTM)", "units is 'abc'"]),
    "units-1e300": (_set_lstm("units", 1e300), ["units is 1e+300"]),
    "units-negative": (_set_lstm("units", -4), ["units is -4"]),
    "units-true": (_set_lstm("units", True), ["units is True"]),
    "units-list": (_set_lstm("units", [4]), ["units is [4]"]),
    "units-5": (_set_lstm("units", 5), ["recurrent_kernel has shape (4, 16)", "5 units"]),
    "go_backwards-yes": (_set_lstm("go_backwards", "yes"), ["go_backwards is 'yes'", "not true or false"]),
    "use_bias-no": (_set_lstm("use_bias", "no"), ["use_bias is 'no'"]),
    "return_sequences-list": (_set_lstm("return_sequences", [1]), ["return_sequences is [1]"]),
    "activation-5": (_set_lstm("activation", 5), ["activation is 5", "not an activation name"]),
    "layers-5": (_set_model("layers", 5), ["no list of layers"]),
    "layers-of-numbers": (_set_model("layers", [1, 2]), ["not a JSON object"]),
    "layer-config-5": (lambda c: c["config"]["layers"][1].__setitem__("config", 5), ["not a JSON object"]),
    "class_name-null": (_set_top("class_name", None), ["top-level object is a None"]),
    "config-a-string": (_set_top("config", "x"), ["no list of layers"]),
    "config-null": (_set_top("config", None), ["no list of layers"]),
    "two-layers-one-name": (_duplicate_name, ["two layers are named 'lstm'"]),
    "nested-400-models": (_nested_models, ["not valid JSON"]),
}
for config_name, (edit, words) in CONFIG_CASES.items():
    CASES.append(Case(f"config-{config_name}.keras",
                      lambda f, n=config_name, e=edit: edit_archive_config(f / f"config-{n}.keras", e), tuple(words)))
CASES += [
    Case("model_config-not-json.h5", lambda f: edit_h5(KERAS3_H5, f / "model_config-not-json.h5", set_attribute(
        "/", "model_config", "{nope")), ("model_config is not valid JSON",)),
    Case("model_config-a-number.h5", lambda f: edit_h5(KERAS3_H5, f / "model_config-a-number.h5", set_attribute(
        "/", "model_config", 5)), ("model_config attribute is not text",)),
    Case("model_config-binary.h5", lambda f: edit_h5(KERAS3_H5, f / "model_config-binary.h5", set_attribute(
        "/", "model_config", np.bytes_(b"\xff\xfe"))), ("not UTF-8",)),
    Case("layer_names-numbers.h5", lambda f: edit_h5(KERAS3_H5, f / "layer_names-numbers.h5", set_attribute(
        "model_weights", "layer_names", np.array([1, 2]))), ("layer_names attribute is not text",)),
    Case("units-abc-tfkeras.h5", lambda f: edit_h5(TFKERAS_H5, f / "units-abc-tfkeras.h5", edit_model_config(
        _set_lstm("units", "abc"))), ("units is 'abc'",)),
]


# A Keras 3 functional model (stateful_lstm.keras: input -> lstm -> head) with its graph edited.
FUNCTIONAL = SAMPLES / "stateful_lstm.keras"


def _history(layer: int, value: list):
    def edit(config):
        config["config"]["layers"][layer]["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = value

    return edit


GRAPH_CASES = {
    "reads-a-later-layer": (_history(1, ["head", 0, 0]), REPLAY_COMMANDS, ["layer 'lstm' uses output 0 of 'head'", "does not exist"]),
    "reads-itself": (_history(1, ["lstm", 0, 0]), REPLAY_COMMANDS, ["layer 'lstm' uses output 0 of 'lstm'"]),
    "reads-output-7": (_history(2, ["lstm", 0, 7]), ("predict",), ["layer 'head' uses output 7 of 'lstm'"]),
    "output-is-a-ghost": (_set_model("output_layers", ["ghost", 0, 0]), ("predict",), ["a layer 'ghost' that it does not define"]),
}
for graph_name, (edit, commands, words) in GRAPH_CASES.items():
    CASES.append(Case(f"graph-{graph_name}.keras", lambda f, n=graph_name, e=edit: edit_archive_config(
        f / f"graph-{n}.keras", e, source=FUNCTIONAL), tuple(words), tuple(commands), SAMPLES / "stateful_lstm.csv"))


# ------------------------------------------------------------------ the corpus and the runs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return {entry.name: entry.build(folder) for entry in CASES}


def test_case_names_are_unique():
    names = [entry.name for entry in CASES]
    assert len(names) == len(set(names))


RUNS = [(entry, command) for entry in CASES for command in entry.commands]


@pytest.mark.parametrize("entry,command", RUNS, ids=[f"{e.name}-{c}" for e, c in RUNS])
def test_refused_in_one_line(corpus, tmp_path, entry, command):
    """Exit 2, one line naming the problem, nothing on stdout, and no output file (-o) left behind."""
    result = invoke(*command_args(command, corpus[entry.name], entry.data))
    assert_refused(result.exit_code, result.stdout, result.stderr, entry.words)
    if command not in ("trace", "export"):
        return
    target = tmp_path / "out.json"
    result = invoke(*command_args(command, corpus[entry.name], entry.data, output=target))
    assert_refused(result.exit_code, result.stdout, result.stderr, entry.words)
    assert list(tmp_path.iterdir()) == [], "a refused run left a file"


@pytest.mark.parametrize("entry", CASES, ids=[e.name for e in CASES])
def test_api_raises_the_tool_error(corpus, entry):
    """In Python, the same files raise LstmInspectError (nothing else) with the same words."""
    with pytest.raises(LstmInspectError) as caught:
        model = li.load_model(str(corpus[entry.name]))
        list(li.label_weights(model))
        li.trace(model, entry.data)
        li.predict(model, entry.data)
    for word in entry.words:
        assert word in str(caught.value)


# One case per kind of damage, through a real process: nothing but the one line reaches
# stderr (an HDF5 or zlib diagnostic printed by C code would not show in-process).
PROCESS_CASES = [
    "cut-0.5-keras3.h5", "random.keras", "weights-truncated.keras", "zip-bomb-weights.keras", "encrypted.keras",
    "kernel-3x15-keras3.h5", "external-link-to-etc-passwd.keras", "virtual-dataset.h5", "external-storage.h5",
    "shape-1e9x1e9.h5", "dtype-compound.h5", "hard-link-diamonds.keras", "config-units-abc.keras",
    "config-nested-400-models.keras", "model_config-binary.h5",
]


def test_refused_by_a_real_process(corpus):
    runs = [("trace", corpus[name], INPUT_CSV) for name in PROCESS_CASES]
    for name, result in zip(PROCESS_CASES, run_cli_many(runs)):
        words = next(entry.words for entry in CASES if entry.name == name)
        assert_refused(result.returncode, result.stdout, result.stderr, words)


# ------------------------------------------------------------------ odd but readable files


def _kernel_nan_inf(h5):
    kernel = h5[f"{KERAS3_H5_CELL}/kernel"]
    values = kernel[()]
    values[0, 1], values[2, 3] = np.nan, np.inf
    kernel[...] = values
    bias = h5[f"{KERAS3_H5_CELL}/bias"]
    values = bias[()]
    values[5] = -np.inf
    bias[...] = values


def _nan_in_two_layers(h5):
    for path in (f"{TFKERAS_H5_CELL}/kernel:0", "model_weights/out/out/kernel:0"):
        values = h5[path][()]
        values[0, 0] = np.nan
        h5[path][...] = values


@pytest.fixture(scope="module")
def nan_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nan")
    return {
        "keras3.h5": edit_h5(KERAS3_H5, folder / "nan-inf.h5", _kernel_nan_inf),
        "tfkeras.h5": edit_h5(TFKERAS_H5, folder / "nan-two-layers.h5", _nan_in_two_layers),
        "keras": edit_archive_weights(folder / "nan.keras", lambda h5: h5[f"{ARCHIVE_VARS}/0"].__setitem__((1, 2), np.nan)),
    }


NAN_RUNS = [(c, f) for c in MODEL_COMMANDS if c != "export" for f in ("csv", "json", "table")] + [("export", "json"), ("export", "npz")]


@pytest.mark.parametrize("command,fmt", NAN_RUNS, ids=[f"{c}-{f}" for c, f in NAN_RUNS])
def test_nan_weights_warn_once_per_layer_and_are_shown(nan_files, command, fmt):
    path = nan_files["keras3.h5"]
    args = command_args(command, path)
    args[args.index("--format") + 1] = fmt
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert_clean_stderr(result.stderr)
    warnings = result.stderr.splitlines()
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("lstm-inspect: warning: nan-inf.h5: layer 'lstm' has non-finite weights")
    assert "kernel: 1 NaN, 1 inf" in warnings[0] and "bias: 1 -inf" in warnings[0]
    if command == "weights" and fmt == "csv":
        rows = [line.split(",") for line in result.stdout.splitlines()[1:]]
        value = {(r[1], int(r[7]), r[8]): r[5] for r in rows}  # (tensor, column, row) -> value
        assert value[("kernel", 1, "0")] == ""  # NaN: an empty cell, as every missing number in CSV
        assert value[("kernel", 3, "2")] == "inf"
        assert value[("bias", 5, "")] == "-inf"
        assert float(value[("kernel", 0, "0")]) == pytest.approx(0.20735052)


def test_nan_weights_in_two_layers_give_two_warnings(nan_files):
    for command in ("weights", "trace"):
        result = invoke(*command_args(command, nan_files["tfkeras.h5"], data=SAMPLES / "keras2_hard_sigmoid.csv"))
        assert result.exit_code == 0, result.stderr
        lines = result.stderr.splitlines()
        assert [line.split("layer ")[1].split(" ")[0] for line in lines] == ["'lstm'", "'out'"], lines
    model = li.load_model(str(nan_files["keras"]))
    assert [w for w in model.warnings if "non-finite" in w] == [
        "nan.keras: layer 'lstm' has non-finite weights (kernel: 1 NaN); they are shown as stored and carried through the replay"
    ]
    frame = li.trace(model, INPUT_CSV)  # NaN weights make NaN gates; the rest is computed
    assert frame["i"].isna().any() and frame["i"].notna().any()


ODD_BUT_FINE = {
    "keras_version-5000-digits.h5": set_attribute("/", "keras_version", "9" * 5000),
    "keras_version-superscript.h5": set_attribute("/", "keras_version", "²"),
    "kernel-float16.h5": lambda h5: replace_dataset(f"{KERAS3_H5_CELL}/kernel", h5[f"{KERAS3_H5_CELL}/kernel"][()].astype("f2"))(h5),
    "kernel-big-endian.h5": lambda h5: replace_dataset(f"{KERAS3_H5_CELL}/kernel", h5[f"{KERAS3_H5_CELL}/kernel"][()].astype(">f8"))(h5),
    "kernel-uint64-extremes.h5": replace_dataset(f"{KERAS3_H5_CELL}/kernel", np.full((3, 16), 2**64 - 1, "u8")),
    "kernel-int64-min.h5": replace_dataset(f"{KERAS3_H5_CELL}/kernel", np.full((3, 16), np.iinfo(np.int64).min, "i8")),
}


@pytest.mark.parametrize("name", sorted(ODD_BUT_FINE))
def test_odd_but_readable_files_are_served(tmp_path, name):
    path = edit_h5(KERAS3_H5, tmp_path / name, ODD_BUT_FINE[name])
    for command in MODEL_COMMANDS:
        result = invoke(*command_args(command, path))
        assert result.exit_code == 0, f"{command}: {result.stderr}"
        assert result.stderr == ""
        assert result.stdout
    if "int" in name:
        weights = invoke("weights", path, "--format", "csv").stdout
        assert str(int(h5py.File(path)[f"{KERAS3_H5_CELL}/kernel"][0, 0])) in weights  # the stored integer, exactly


# ------------------------------------------------------------------ code in the file is never run

MARKER = "LSTM_INSPECT_MARKER"


# The Lambda's code: creates the file named by $LSTM_INSPECT_MARKER whenever it is called.
# It reaches everything through __import__, as Keras marshals the code object without globals.
PAYLOAD = lambda x: (
    __import__("pathlib").Path(__import__("os").environ["LSTM_INSPECT_MARKER"]).touch()
    if "LSTM_INSPECT_MARKER" in __import__("os").environ else None,
    x,
)[1]


@pytest.fixture(scope="module")
def lambda_files(tmp_path_factory, monkeypatch_module):
    """Real saves holding a Lambda whose code creates the marker: tf-keras .h5 (the Lambda
    before and after the LSTM) and Keras 3 .keras; plus a config edited to hide a Lambda
    inside a TimeDistributed wrapper after the LSTM."""
    import keras
    import tf_keras

    monkeypatch_module.delenv(MARKER, raising=False)
    folder = tmp_path_factory.mktemp("lambda")
    files = {}
    for name, order in (("before", "lambda-first"), ("after", "lstm-first")):
        layers = [tf_keras.layers.Lambda(PAYLOAD, name="payload"), tf_keras.layers.LSTM(4, return_sequences=True, name="lstm")]
        model = tf_keras.Sequential([tf_keras.Input((5, 3))] + (layers if order == "lambda-first" else layers[::-1]))
        files[f"tfkeras-{name}.h5"] = folder / f"tfkeras-{name}.h5"
        model.save(files[f"tfkeras-{name}.h5"])
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.Lambda(PAYLOAD, name="payload"), keras.layers.LSTM(4, name="lstm")])
    files["keras3-before.keras"] = folder / "keras3-before.keras"
    model.save(files["keras3-before.keras"])

    lambda_entry = json.loads(archive_members(files["keras3-before.keras"])["config.json"])["config"]["layers"][1]

    def hide(config):
        config["config"]["layers"].append(
            {"class_name": "TimeDistributed", "config": {"name": "hidden", "layer": lambda_entry}}
        )
        _lstm(config)["return_sequences"] = True

    files["hidden-in-wrapper.keras"] = edit_archive_config(folder / "hidden-in-wrapper.keras", hide)
    return files


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_payload_runs_when_keras_loads_the_file(lambda_files, tmp_path, monkeypatch):
    """Control: the stored code is live.  tf-keras runs it while loading the .h5."""
    import tf_keras

    marker = tmp_path / "ran"
    monkeypatch.setenv(MARKER, str(marker))
    tf_keras.models.load_model(lambda_files["tfkeras-before.h5"], compile=False)
    assert marker.exists()


LAMBDA_EXPECTED = {
    # file -> commands that must refuse it (naming the Lambda); the others succeed
    "tfkeras-before.h5": {"trace", "predict", "stats", "verify"},
    "tfkeras-after.h5": {"predict", "verify"},
    "keras3-before.keras": {"trace", "predict", "stats", "verify"},
    "hidden-in-wrapper.keras": {"predict", "verify"},
}


@pytest.mark.parametrize("name", sorted(LAMBDA_EXPECTED))
def test_lambda_code_is_never_run(lambda_files, tmp_path, monkeypatch, name):
    marker = tmp_path / "ran"
    monkeypatch.setenv(MARKER, str(marker))
    data = tmp_path / "x.csv"
    np.savetxt(data, np.random.default_rng(0).normal(size=(5, 3)), delimiter=",", header="a,b,c", comments="")
    for command in MODEL_COMMANDS + ("verify",):
        result = invoke(*command_args(command, lambda_files[name], data=data))
        if command in LAMBDA_EXPECTED[name]:
            line = assert_refused(result.exit_code, result.stdout, result.stderr, ["Lambda"])
            assert "'payload'" in line or "'hidden'" in line
        else:
            assert result.exit_code == 0, f"{command}: {result.stderr}"
            assert_clean_stderr(result.stderr)
        assert not marker.exists(), f"`{command}` ran the Lambda's code"


def test_verify_never_hands_code_to_keras(lambda_files, tmp_path):
    """verify's own check, on configs where the Lambda hides deeper than a layer list."""
    from lstm_inspect.verify import _holds_code

    config = json.loads(archive_members(lambda_files["hidden-in-wrapper.keras"])["config.json"])
    assert _holds_code(config)
    with h5py.File(lambda_files["tfkeras-after.h5"]) as h5:
        assert _holds_code(json.loads(h5.attrs["model_config"]))
    assert _holds_code({"layers": [{"class_name": "RNN", "config": {"cell": {"class_name": "Lambda"}}}]})
    assert _holds_code([{"config": {"function_type": "lambda", "class_name": ["x"]}}])
    assert not _holds_code(json.loads(archive_members()["config.json"]))


def test_lambda_refused_by_a_real_process(lambda_files, tmp_path):
    """The whole command line, in a subprocess with the marker set: refused, and nothing ran."""
    marker = tmp_path / "ran"
    runs = [command_args(c, lambda_files["tfkeras-before.h5"]) for c in ("trace", "verify")]
    results = run_cli_many(runs, env={MARKER: str(marker)})
    for result in results:
        assert_refused(result.returncode, result.stdout, result.stderr, ["Lambda"])
    assert not marker.exists()


# ------------------------------------------------------------------ files that crash or hang the HDF5 library


def _crashing_h5(target: Path) -> Path:
    """single_lstm.h5 with the flags byte of its `weight_names` attributes' type (a variable-length
    string) set to 0xff: HDF5 1.14 dies with SIGSEGV reading it (found by test_fuzz.py)."""
    import re

    data = bytearray(KERAS3_H5.read_bytes())
    pattern = b"weight_names\x00\x00\x00\x00\x19\x01"
    for match in re.finditer(re.escape(pattern), bytes(data)):
        data[match.end() - 1] = 0xFF
    target.write_bytes(data)
    return target


def test_a_file_that_crashes_the_hdf5_library_is_one_line(tmp_path):
    import subprocess
    import sys

    path = _crashing_h5(tmp_path / "crashes-hdf5.h5")
    reader = ("import h5py, sys\n"
              "def walk(g):\n    [g.attrs[k] for k in g.attrs]\n    [walk(v) for v in g.values() if isinstance(v, h5py.Group)]\n"
              "walk(h5py.File(sys.argv[1], 'r'))\n")
    control = subprocess.run([sys.executable, "-c", reader, str(path)], capture_output=True, timeout=120, check=False)
    if control.returncode >= 0:
        pytest.skip(f"this HDF5 build reads the file without crashing (status {control.returncode})")
    runs = [command_args(command, path) for command in ("layers", "weights", "trace")]
    for result in run_cli_many(runs):
        assert_refused(result.returncode, result.stdout, result.stderr,
                       ["crashes-hdf5.h5", "corrupt HDF5 file", "crashed reading it", "SIGSEGV"])


@pytest.mark.parametrize("behaviour,words", [
    ("import os, signal\ndef _read(path):\n    os.kill(os.getpid(), signal.SIGSEGV)\n", ["crashed reading it", "SIGSEGV"]),
    ("import time\ndef _read(path):\n    time.sleep(3600)\n", ["did not finish within 1 s", "loop"]),
])
def test_the_child_read_turns_a_crash_or_a_hang_into_a_refusal(tmp_path, behaviour, words):
    """The command line reads each file in a forked child first: a child that dies or never
    finishes becomes a one-line refusal (simulated here in the child's read)."""
    import subprocess

    from conftest import CLI, ROOT

    (tmp_path / "sitecustomize.py").write_text(
        behaviour
        + "import os\nfrom lstm_inspect import reading\n"
        "reading.ISOLATION_SECONDS = 1.0\n"
        "_parent = os.getpid()\n_real = reading._read_h5_path\n"
        "reading._read_h5_path = lambda path: _read(path) if os.getpid() != _parent else _real(path)\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    result = subprocess.run(CLI + ["weights", str(KERAS3_H5)], capture_output=True, env=env, timeout=120, check=False)
    assert_refused(result.returncode, result.stdout, result.stderr, ["single_lstm.h5", *words])
    assert not list(tmp_path.glob("core*"))
