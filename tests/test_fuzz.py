"""Fuzzing: mutated model files and CSVs fed to the readers for a bounded time.

Three targets share the ``--fuzz-seconds`` budget (10 s in ``make test``, a
minute in ``make fuzz``):

* model bytes: the shipped sample models (.h5 from Keras 3 and tf-keras,
  .keras) with bits flipped, bytes overwritten with edge values, cut,
  spliced with another sample, slices duplicated, deleted or inserted;
* model structure: .keras archives rebuilt with a mutated config.json (a
  random JSON tree edit: wrong types, NaN, huge numbers, deleted keys,
  swapped class names, deep nesting) or mutated member bytes, and .h5 files
  edited with h5py (model_config, layer_names / weight_names attributes,
  datasets replaced by random shapes and dtypes, links);
* CSV inputs: the sample inputs with bytes and tokens mutated (delimiters,
  quotes, line breaks, BOM, NUL, huge or non-finite numbers).

Each input goes through the Python API and, every few iterations, through the
command line (``fuzz_worker.py``, in a separate process, so a crash in a C
library or a hang is caught as a finding too).  Anything but the tool's own
one-line error (or a Click usage error) is a finding: the test fails with the
seed, the iteration, the traceback, and the input saved under the test's
tmp dir.  Iteration ``i`` of seed ``s`` is always the same input, so
``--fuzz-seed s`` replays a run; ``python tests/fuzz_worker.py --model FILE``
replays one saved input.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ROOT, SAMPLES

MODELS = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".h5", ".keras"))
# Each sample input that has a model of its name (the seq2seq decoder's h and c files have none).
INPUTS = sorted(p for p in SAMPLES.iterdir() if p.suffix == ".csv" and any(m.stem == p.stem for m in MODELS))
BUDGET_SHARE = {"model-bytes": 0.35, "model-structure": 0.4, "csv": 0.25}
CLI_EVERY = 3  # one iteration in CLI_EVERY also goes through the command line
STEP_TIMEOUT = 40.0  # seconds one input may take before it counts as a hang
COMMANDS = ["layers", "weights", "trace", "predict", "stats", "export"]
FORMATS = ["csv", "json", "ndjson", "table", "parquet"]


def data_for(model: Path) -> Path:
    """The sample input that fits a sample model (single_lstm.csv for the rest)."""
    own = model.with_suffix(".csv")
    return own if own.exists() else SAMPLES / "single_lstm.csv"


# ------------------------------------------------------------------ mutations

EDGE_BYTES = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE]
EDGE_WORDS = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 1 << 40]


class Mutator(random.Random):
    """Seeded mutations of bytes, JSON trees and text."""

    def bytes(self, data: bytes, others: list[bytes]) -> bytes:
        data = bytearray(data)
        for _ in range(self.choice([1, 1, 2, 3, 8])):
            if not data:
                break
            op = self.randrange(8)
            at = self.randrange(len(data))
            if op == 0:  # flip bits
                data[at] ^= 1 << self.randrange(8)
            elif op == 1:
                data[at] = self.choice(EDGE_BYTES)
            elif op == 2:  # an edge integer over a 4- or 8-byte field
                width = self.choice([4, 8])
                value = self.choice(EDGE_WORDS) & ((1 << (8 * width)) - 1)
                data[at : at + width] = value.to_bytes(width, "little")
            elif op == 3:  # cut
                del data[self.randrange(len(data)) :]
            elif op == 4:  # splice: this file's head, another's tail
                other = self.choice(others)
                data = data[:at] + other[self.randrange(len(other)) :]
            elif op == 5:  # duplicate a slice
                size = self.randrange(1, 512)
                data[at:at] = data[at : at + size]
            elif op == 6:  # delete a slice
                del data[at : at + self.randrange(1, 512)]
            else:  # random bytes
                data[at:at] = bytes(self.randrange(256) for _ in range(self.randrange(1, 32)))
        return bytes(data)

    def json_value(self):
        return self.choice([
            None, True, False, 0, -1, 1, 2, 2**31, 2**63, 10**400 // 10**300, 1e308, -1e308, float("nan"),
            float("inf"), 0.5, "", "abc", "LSTM", "GRU", "Lambda", "sigmoid", "hard_sigmoid", "tanh", "relu",
            "nonexistent", [], {}, [None, None, 3], {"class_name": "LSTM"}, {"class_name": "Sequential", "config": {}},
            [[[[[[[[[[[]]]]]]]]]]], "x" * 10000, -0.0, [1, 2, 3],
        ])

    def json(self, tree):
        """One random edit somewhere in a JSON tree (the tree is changed in place; the root is returned)."""
        nodes = []

        def walk(node, parent, key, depth):
            nodes.append((node, parent, key))
            if depth > 60:
                return
            if isinstance(node, dict):
                for k, v in list(node.items()):
                    walk(v, node, k, depth + 1)
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, node, i, depth + 1)

        walk(tree, None, None, 0)
        for _ in range(self.choice([1, 1, 2, 4])):
            node, parent, key = self.choice(nodes)
            if parent is None:
                if self.random() < 0.15:
                    return self.json_value()
                continue
            try:
                self._edit(node, parent, key)
            except (IndexError, KeyError, TypeError):  # an earlier edit moved this node: skip it
                continue
        return tree

    def _edit(self, node, parent, key) -> None:
        """Replace, delete, duplicate, rename, nest or nudge ``parent[key]`` (which is ``node``)."""
        op = self.randrange(7)
        if op in (0, 1):
            parent[key] = self.json_value()
        elif op == 2 and isinstance(parent, dict):
            parent.pop(key, None)
        elif op == 2 and isinstance(parent, list) and key < len(parent):
            parent.pop(key)
        elif op == 3 and isinstance(parent, list) and key < len(parent):
            parent.insert(key, parent[key])  # the same object twice
        elif op == 4 and isinstance(node, dict) and "class_name" in node:
            node["class_name"] = self.choice(["LSTM", "GRU", "SimpleRNN", "Bidirectional", "TimeDistributed",
                                              "Dense", "Embedding", "Masking", "Lambda", "InputLayer",
                                              "Sequential", "Functional", "Model", "RNN", "CuDNNLSTM",
                                              "Concatenate", "Add", "Flatten", "RepeatVector", None, 5])
        elif op == 5:
            value = node
            for _ in range(self.randrange(1, 400)):
                value = self.choice([[value], {"config": value}, {"class_name": "Sequential", "config": {"layers": [value]}}])
            parent[key] = value
        elif op == 6 and isinstance(node, (int, float)) and not isinstance(node, bool):
            parent[key] = self.choice([node + 1, node - 1, -node, node * 1000, 0, str(node)])

    def text(self, data: bytes, others: list[bytes]) -> bytes:
        """CSV-minded mutations: tokens that parsers trip on, then maybe some raw byte damage."""
        lines = data.split(b"\n")
        for _ in range(self.choice([1, 2, 3])):
            at = self.randrange(len(lines))
            op = self.randrange(9)
            if op == 0:
                lines[at] = lines[at] + self.choice([b",", b",,", b";", b"\t", b'"', b",1"])
            elif op == 1:
                cells = lines[at].split(b",")
                cells[self.randrange(len(cells))] = self.choice(
                    [b"", b"nan", b"inf", b"-inf", b"1e400", b"abc", b'"1,5"', b"0x10", b"\x00", b"NA", b" ", b"1" * 500,
                     b"-0", b"1e-400", b"\xef\xbb\xbf", b"\xff", b"9" * 40, b"True", b'"', b"'"])
                lines[at] = b",".join(cells)
            elif op == 2:
                lines.insert(at, lines[at])
            elif op == 3:
                del lines[at]
            elif op == 4:
                lines[at] = lines[at].replace(b",", self.choice([b";", b"\t", b"|", b" ", b""]))
            elif op == 5:
                lines.insert(0, b"\xef\xbb\xbf" + lines.pop(0))
            elif op == 6:
                lines = [line + b"\r" for line in lines]
            elif op == 7:
                lines[at] = b""
            else:
                lines[at] = b",".join([b"c%d" % k for k in range(self.randrange(1, 50))])
        result = b"\n".join(lines)
        if self.random() < 0.2:
            result = self.bytes(result, others)
        return result


# ------------------------------------------------------------------ structure-aware model edits


def dumps(tree, fallback: bytes) -> bytes:
    """JSON text of a mutated tree (NaN and Infinity as Python writes them), or ``fallback`` when
    the tree nests deeper than the encoder goes."""
    try:
        return json.dumps(tree).encode()
    except (RecursionError, ValueError):
        return fallback


def mutate_archive(rng: Mutator, source: Path, target: Path) -> None:
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    name = rng.choice(["config.json", "config.json", "config.json", "model.weights.h5", "metadata.json"])
    if name.endswith(".json") and rng.random() < 0.8:
        members[name] = dumps(rng.json(json.loads(members[name])), members[name])
    elif name == "model.weights.h5" and rng.random() < 0.6:
        scratch = target.with_suffix(".scratch.h5")
        scratch.write_bytes(members[name])
        edit_h5(rng, scratch)
        members[name] = scratch.read_bytes()
        scratch.unlink()
    else:
        members[name] = rng.bytes(members[name], list(members.values()))
    if rng.random() < 0.1:
        del members[rng.choice(sorted(members))]
    with zipfile.ZipFile(target, "w", rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])) as archive:
        for member, data in members.items():
            archive.writestr(member, data)


def edit_h5(rng: Mutator, path: Path) -> None:
    """One random h5py-level edit of an HDF5 model or weights file."""
    with h5py.File(path, "r+") as h5:
        datasets, groups = [], []
        h5.visititems(lambda name, obj: (datasets if isinstance(obj, h5py.Dataset) else groups).append(name))
        op = rng.randrange(7)
        if op == 0 and "model_config" in h5.attrs:
            h5.attrs["model_config"] = dumps(rng.json(json.loads(h5.attrs["model_config"])), b"{}").decode()
        elif op == 1 and datasets:  # a dataset replaced by a random shape / dtype / values
            name = rng.choice(datasets)
            del h5[name]
            shape = tuple(rng.choice([0, 1, 2, 3, 4, 5, 8, 16, 20, 32]) for _ in range(rng.choice([0, 1, 2, 2, 3])))
            dtype = rng.choice(["f4", "f4", "f8", "f2", "i4", "u8", "?", "c8", "S3"])
            values = np.random.default_rng(rng.randrange(2**32)).normal(size=shape) * rng.choice([1, 1e30, 1e-30])
            with np.errstate(all="ignore"):  # 1e30 cast to float16 or int: inf, or whatever the cast makes
                data = values.astype(dtype) if dtype != "S3" else np.full(shape, b"abc")
            h5.create_dataset(name, data=data)
        elif op == 2:  # a names attribute pointing elsewhere
            holders = [g for g in groups if "weight_names" in h5[g].attrs] or ["/"]
            where = h5[rng.choice(holders)]
            key = "weight_names" if "weight_names" in where.attrs else "layer_names"
            pool = datasets + groups + ["", "nowhere", "../x", "/", "a" * 300]
            h5[where.name].attrs[key] = np.array([s.encode() for s in rng.sample(pool, min(len(pool), rng.randrange(0, 4)))], dtype="S")
        elif op == 3 and (datasets or groups):  # delete something
            del h5[rng.choice(datasets + groups)]
        elif op == 4 and datasets:  # a link instead of a dataset
            name = rng.choice(datasets)
            del h5[name]
            h5[name] = rng.choice([h5py.SoftLink("/" + rng.choice(datasets or ["x"])), h5py.ExternalLink("other.h5", "/x"),
                                   h5py.SoftLink("/nowhere")])
        elif op == 5 and groups:  # a hard link from a group to one of its ancestors (or itself)
            name = rng.choice(groups)
            h5[name]["again"] = h5[name.rsplit("/", 1)[0] if "/" in name else "/"]
        elif datasets:  # values edited in place: NaN, inf, huge
            name = rng.choice(datasets)
            if h5[name].dtype.kind == "f" and h5[name].size:
                values = h5[name][()]
                values.flat[rng.randrange(values.size)] = rng.choice([np.nan, np.inf, -np.inf, 3e38, -0.0])
                h5[name][...] = values


# ------------------------------------------------------------------ the worker process


class Worker:
    """fuzz_worker.py in its own process; restarted after a crash or a hang."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("fuzz_worker.py"))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, cwd=ROOT,
            )

    def ask(self, request: dict, timeout: float) -> dict:
        if self.process is None or self.process.poll() is not None:
            self.start()
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout)
        selector.close()
        if not ready:
            self.stop()
            return {"status": "bug", "kind": "hang", "detail": f"no answer within {timeout:.0f} s", "traceback": ""}
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            self.stop()
            return {"status": "bug", "kind": f"crash (exit {code})", "detail": f"the process died with status {code}",
                    "traceback": ""}
        return json.loads(line)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    pipe.close()
            self.process = None


@pytest.fixture
def fuzz(request, tmp_path):
    """Runs one target for its share of the budget; fails with every distinct finding."""
    seconds = request.config.getoption("--fuzz-seconds")
    seed = request.config.getoption("--fuzz-seed")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    worker = Worker(tmp_path / "worker-stderr.log")
    findings: dict[str, dict] = {}
    saved = tmp_path / "findings"

    def run(target: str, make_request) -> None:
        budget = seconds * BUDGET_SHARE[target]
        start = time.monotonic()
        iterations = 0
        counts = {"ok": 0, "refused": 0, "bug": 0}
        work = tmp_path / target
        work.mkdir()
        try:
            while time.monotonic() - start < budget or iterations == 0:
                rng = Mutator(f"{seed}:{target}:{iterations}")
                request_, files = make_request(rng, work, iterations)
                if iterations % CLI_EVERY == 0:
                    request_["cli"] = cli_args(rng, request_)
                answer = worker.ask(request_, STEP_TIMEOUT)
                counts[answer["status"]] += 1
                if answer["status"] == "bug" and answer["kind"] not in findings:
                    saved.mkdir(exist_ok=True)
                    kept = []
                    for file in files:
                        copy = saved / f"{target}-{seed}-{iterations}-{file.name}"
                        shutil.copyfile(file, copy)
                        kept.append(str(copy))
                    replay = dict(request_, **{key: kept[0] for key in ("model", "input") if request_.get(key) == str(files[0])})
                    (saved / f"{target}-{seed}-{iterations}-request.json").write_text(json.dumps(replay, indent=1))
                    findings[answer["kind"]] = dict(answer, iteration=iterations, files=kept, request=request_)
                for file in files:
                    file.unlink(missing_ok=True)
                iterations += 1
        finally:
            worker.stop()
        elapsed = time.monotonic() - start
        rate = iterations / elapsed if elapsed else 0.0
        summary = (f"fuzz {target}: seed {seed}, {iterations} inputs in {elapsed:.1f} s ({rate:.1f}/s): "
                   f"{counts['ok']} served, {counts['refused']} refused, {counts['bug']} findings")
        print(summary)
        request.node.user_properties.append(("fuzz", summary))
        if findings:
            report = [summary, f"rerun with --fuzz-seed={seed}; inputs saved in {saved}"]
            for kind, finding in findings.items():
                report.append(f"\n--- {kind} (iteration {finding['iteration']}; {', '.join(finding['files'])})\n"
                              f"{finding['detail']}\n{finding['traceback']}")
            pytest.fail("\n".join(report), pytrace=False)

    return run


def cli_args(rng: Mutator, request_: dict) -> list:
    """A random command line for the request's files, in a random format."""
    command = rng.choice(COMMANDS)
    if "input" in request_:
        command = rng.choice(["trace", "predict", "stats"])
        args = [command, request_["model"], request_["input"]]
    else:
        args = [command, request_["model"]]
        if command in ("trace", "predict", "stats"):
            args.append(request_["data"])
    if command == "export":
        return args + ["--format", rng.choice(["json", "npz"])]
    args += ["--format", rng.choice(FORMATS)]
    if command == "trace" and rng.random() < 0.3:
        args.append("--wide")
    return args


# ------------------------------------------------------------------ the targets


def _sample_bytes() -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in MODELS}


def test_fuzz_model_bytes(fuzz):
    samples = _sample_bytes()
    others = list(samples.values())

    def make(rng: Mutator, work: Path, index: int):
        source = rng.choice(MODELS)
        target = work / f"mutant-{index}{source.suffix}"
        target.write_bytes(rng.bytes(samples[source], others))
        return {"model": str(target), "data": str(data_for(source))}, [target]

    fuzz("model-bytes", make)


def test_fuzz_model_structure(fuzz):
    def make(rng: Mutator, work: Path, index: int):
        source = rng.choice(MODELS)
        target = work / f"mutant-{index}{source.suffix}"
        if source.suffix == ".keras":
            mutate_archive(rng, source, target)
        else:
            shutil.copyfile(source, target)
            edit_h5(rng, target)
        return {"model": str(target), "data": str(data_for(source))}, [target]

    fuzz("model-structure", make)


def test_fuzz_csv(fuzz):
    texts = {path: path.read_bytes() for path in INPUTS}
    others = list(texts.values())

    def make(rng: Mutator, work: Path, index: int):
        source = rng.choice(INPUTS)
        model = next((m for m in MODELS if m.stem == source.stem and m.suffix == ".keras"),
                     next(m for m in MODELS if m.stem == source.stem))
        target = work / f"mutant-{index}.csv"
        target.write_bytes(rng.text(texts[source], others))
        return {"input": str(target), "model": str(model)}, [target]

    fuzz("csv", make)


# ------------------------------------------------------------------ the harness itself


def test_the_harness_reports_a_bug(tmp_path):
    """A request the worker cannot serve without an unexpected exception comes back as a finding."""
    worker = Worker(tmp_path / "log")
    try:
        answer = worker.ask({"model": 5, "data": None}, STEP_TIMEOUT)  # not a path: TypeError inside
        assert answer["status"] == "bug" and "TypeError" in answer["kind"]
        good = worker.ask({"model": str(SAMPLES / "single_lstm.keras"), "data": str(SAMPLES / "single_lstm.csv"),
                           "cli": ["trace", str(SAMPLES / "single_lstm.keras"), str(SAMPLES / "single_lstm.csv")]}, STEP_TIMEOUT)
        assert good["status"] == "ok", good
        refused = worker.ask({"model": str(tmp_path / "missing.h5"), "data": "x", "cli": ["layers", str(tmp_path / "missing.h5")]},
                             STEP_TIMEOUT)
        assert refused["status"] == "refused", refused
    finally:
        worker.stop()


def test_mutations_are_reproducible():
    a, b = Mutator("7:csv:3"), Mutator("7:csv:3")
    data = (SAMPLES / "single_lstm.csv").read_bytes()
    assert a.text(data, [data]) == b.text(data, [data])
    tree = json.loads(zipfile.ZipFile(SAMPLES / "single_lstm.keras").read("config.json"))
    assert json.dumps(Mutator("1").json(json.loads(json.dumps(tree)))) == json.dumps(Mutator("1").json(tree))
