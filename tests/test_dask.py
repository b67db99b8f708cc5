"""Dask runs (``lstm_inspect.dask``, ``--workers``) give the single-process answer.

One ``dask.distributed.LocalCluster`` (2 worker processes) serves the module.
Expected figures come from single-process replays of the same partitions
(``batching.trace_blocks``, ``api.trace``, ``api.predict``: the paths the rest
of the suite checks against Keras) summarised here with plain NumPy in
float64, never from the code under test.  The last test kills a worker while
it replays a partition.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask", reason="needs the dask extra: pip install 'lstm-inspect[dask]'")
distributed = pytest.importorskip("distributed", reason="needs the dask extra: pip install 'lstm-inspect[dask]'")
pq = pytest.importorskip("pyarrow.parquet", reason="needs pyarrow")
import pyarrow as pa
from reference import invoke

import lstm_inspect as li
import lstm_inspect.dask as lid
from lstm_inspect import datasets, inputs, stats
from lstm_inspect.batching import predict_batches, trace_blocks
from lstm_inspect.engine import ReplayOptions
from lstm_inspect.inputs import InputSequence
from lstm_inspect.partitions import Replay
from lstm_inspect.stats import plan_stats

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
RTOL = 1e-9


@pytest.fixture(scope="module")
def client():
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as c:
        yield c


# ------------------------------------------------------------------ data


def _chains(rng, parts: int, per_part: int, steps: tuple[int, int], features: int, *, tokens: int | None = None):
    """Per partition, a list of (id, values) with ids unique over the dataset and ragged lengths."""
    result = []
    for p in range(parts):
        part = []
        for k in range(per_part):
            length = int(rng.integers(*steps))
            if tokens:
                values = rng.integers(1, tokens, size=(length, 1)).astype(np.float32)
                values[: int(rng.integers(0, length // 2 + 1))] = 0  # leading padding: masked steps
                values[int(rng.integers(0, length))] = 0  # and one inside
            else:
                values = rng.normal(scale=1.5, size=(length, features)).astype(np.float32)
            part.append((p * 1000 + k, values))
        result.append(part)
    return result


def _write_parquet(folder: Path, parts) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p, part in enumerate(parts):
        ids = np.concatenate([np.full(len(v), i) for i, v in part])
        values = np.concatenate([v for _, v in part])
        columns = {"id": ids, **{f"x{j}": values[:, j] for j in range(values.shape[1])}}
        pq.write_table(pa.table(columns), folder / f"part{p}.parquet")
    return folder


def _sequences(part) -> list[InputSequence]:
    return [InputSequence(i, v) for i, v in part]


# ------------------------------------------------------------------ independent statistics


def _expected_stats(model, parts, options, stateful=False, gates=None):
    """Per (layer, value): every unmasked value of every partition's single-process trace, in float64."""
    plan = plan_stats(model, None, gates, options)
    values: dict = {}
    for part in parts:
        for tb in trace_blocks(model, _sequences(part), layers=list(plan.layers), options=plan.options, stateful=stateful):
            keep = None if tb.block.masked is None else ~tb.block.masked
            for name in plan.names[tb.layer.name]:
                value = tb.block.values[name]
                flat = value.reshape(-1, value.shape[-1]) if keep is None else value[keep].reshape(-1, value.shape[-1])
                values.setdefault((tb.layer.name, name), []).append(flat.astype(np.float64))
    return plan, {key: np.concatenate(chunks) for key, chunks in values.items()}


def _rank(score):
    ranks = np.array([1 + np.count_nonzero(score > s) for s in score], dtype=float)
    ranks[~np.isfinite(score)] = np.nan
    return ranks


def _check_stats(results, plan, values):
    assert [(g.layer, g.gate) for g in results] == [(layer, name) for layer in plan.layers for name in plan.names[layer]]
    for gs in results:
        x = values[(gs.layer, gs.gate)]
        assert gs.steps == x.shape[0]
        np.testing.assert_allclose(gs.mean, x.mean(axis=0), rtol=RTOL, atol=1e-15)
        np.testing.assert_allclose(gs.std, x.std(axis=0), rtol=RTOL, atol=1e-15)
        np.testing.assert_array_equal(gs.min, x.min(axis=0))
        np.testing.assert_array_equal(gs.max, x.max(axis=0))
        if gs.thresholds is None:
            assert np.isnan(gs.left).all() and np.isnan(gs.right).all()
        else:
            low, high = gs.thresholds
            np.testing.assert_array_equal(gs.left, (x < low).mean(axis=0))
            np.testing.assert_array_equal(gs.right, (x > high).mean(axis=0))
        np.testing.assert_array_equal(gs.saturation_rank().astype(float).filled(np.nan), _rank(gs.left + gs.right))
        np.testing.assert_array_equal(gs.variability_rank().astype(float).filled(np.nan), _rank(x.std(axis=0)))


CASES = {
    # id: (model file, partitions of data, stateful, sequence_length)
    "lstm-stacked": ("stacked_lstm.keras", {"parts": 3, "per_part": 7, "steps": (5, 40), "features": 3}, False, None),
    "gru-simplernn": ("gru_rnn.keras", {"parts": 3, "per_part": 6, "steps": (3, 30), "features": 2}, False, None),
    "bidirectional": ("bidirectional_lstm.keras", {"parts": 4, "per_part": 5, "steps": (4, 25), "features": 2}, False, None),
    "masking": ("embedding_lstm.keras", {"parts": 3, "per_part": 8, "steps": (6, 30), "features": 1, "tokens": 50}, False, None),
    "stateful-chains": ("stateful_lstm.keras", {"parts": 3, "per_part": 1, "steps": (30, 60), "features": 1}, True, 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_stats_equal_single_process(client, tmp_path, case):
    """gate statistics over a Parquet dataset on 2 workers == float64 NumPy over the single-process traces."""
    filename, shape, stateful, length = CASES[case]
    model = li.load_model(str(SAMPLES / filename))
    parts = _chains(np.random.default_rng(len(case)), **shape)
    folder = _write_parquet(tmp_path / "data", parts)
    options = ReplayOptions()
    if length:  # a stateful model fed one step per call: each partition is one chain of 1-step sequences
        parts = [[(f"{i}:{t}", v[t : t + 1]) for i, v in part for t in range(len(v))] for part in parts]
    plan, values = _expected_stats(model, parts, options, stateful=stateful)
    dataset = datasets.open_dataset(str(folder / "*.parquet"), datasets.ReadSettings(
        inputs.CsvOptions(sequence_column="id"), np.float32, length))
    results = lid.compute_stats(model, dataset, plan, Replay(options, stateful), split_every=2)
    _check_stats(results, plan, values)
    if stateful:  # the state did carry within each chain: a replay without it differs
        _, fresh = _expected_stats(model, parts, options, stateful=False)
        assert not np.allclose(fresh[("lstm", "cell")].mean(axis=0), values[("lstm", "cell")].mean(axis=0))


def test_stats_on_dask_dataframe_and_bag(client, capsys):
    """A dask DataFrame (rows are steps, grouped by id) and a Bag of (id, array) give the ordinary answer;
    the client's progress bar goes to stderr."""
    import dask.bag as db
    import dask.dataframe as dd
    import pandas as pd

    model = li.load_model(str(SAMPLES / "single_lstm.keras"))
    parts = _chains(np.random.default_rng(3), parts=3, per_part=4, steps=(5, 20), features=3)
    frames = [pd.DataFrame({"id": np.concatenate([np.full(len(v), i) for i, v in part]),
                            **{f"f{j}": np.concatenate([v[:, j] for _, v in part]) for j in range(3)}}) for part in parts]
    ddf = dd.from_pandas(pd.concat(frames, ignore_index=True), npartitions=1).repartition(
        divisions=[0, len(frames[0]), len(frames[0]) + len(frames[1]), sum(map(len, frames)) - 1])
    assert ddf.npartitions == 3
    _, values = _expected_stats(model, parts, ReplayOptions())
    from_frame = lid.gate_stats(model, ddf, sequence_column="id", sort="saturation")
    bag = db.from_sequence([(i, v) for part in parts for i, v in part], npartitions=3)
    capsys.readouterr()
    from_bag = lid.gate_stats(model, bag, sort="saturation", progress=True)
    shown = capsys.readouterr()
    assert shown.out == "" and "100% Completed" in shown.err
    single = li.gate_stats(model, [InputSequence(i, v) for part in parts for i, v in part], sort="saturation")
    for frame in (from_frame, from_bag):
        assert list(frame.columns) == list(single.columns)
        assert frame[["layer", "gate", "unit", "steps", "saturation_rank", "variability_rank"]].equals(
            single[["layer", "gate", "unit", "steps", "saturation_rank", "variability_rank"]])
        for column in ("mean", "std", "min", "max", "left_saturated", "right_saturated"):
            np.testing.assert_allclose(frame[column], single[column], rtol=1e-6, atol=1e-7)
    x = values[("lstm", "f")]
    f_rows = from_frame[from_frame.gate == "f"].sort_values("unit")
    np.testing.assert_allclose(f_rows["std"], x.std(axis=0), rtol=RTOL)


def _read_parts(folder: Path):
    import pandas as pd

    files = sorted(folder.glob("part-*.parquet"))
    return [pd.read_parquet(f) for f in files]


@pytest.mark.parametrize("filename", ["bidirectional_lstm.keras", "embedding_lstm.keras"])
def test_trace_and_predict_parts_equal_single_process(client, tmp_path, filename):
    """One Parquet part per partition whose rows are api.trace / api.predict of that partition."""
    model = li.load_model(str(SAMPLES / filename))
    tokens = 50 if "embedding" in filename else None
    parts = _chains(np.random.default_rng(7), parts=3, per_part=4, steps=(4, 15), features=2, tokens=tokens)
    folder = _write_parquet(tmp_path / "data", parts)
    summary = lid.trace(model, str(folder), str(tmp_path / "trace"), sequence_column="id")
    predicted = lid.predict(model, str(folder / "*.parquet"), str(tmp_path / "predict"), sequence_column="id")
    traced = _read_parts(tmp_path / "trace")
    outputs = _read_parts(tmp_path / "predict")
    assert len(traced) == len(outputs) == 3 and summary.parts == 3 and predicted.partitions == 3
    assert summary.rows == sum(len(t) for t in traced)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    for part, got, got_y in zip(parts, traced, outputs):
        want = li.trace(model, _sequences(part))
        assert list(got.columns) == list(want.columns)
        assert got["sequence"].tolist() == want["sequence"].tolist()
        for column in want.columns[1:]:
            if want[column].dtype.kind == "f":
                np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy())
            else:
                assert got[column].tolist() == want[column].tolist(), column
        # What `lstm-inspect predict` replays for this partition (outputs may be ragged: batch by batch)
        ys = [y.reshape(-1, y.shape[-1]) for _, (batch,) in predict_batches(model, _sequences(part)) for y in batch]
        assert got_y["sequence"].tolist() == [i for (i, _), y in zip(part, ys) for _ in range(len(y))]
        np.testing.assert_array_equal(got_y[[f"y_{k}" for k in range(ys[0].shape[1])]].to_numpy(), np.concatenate(ys))


def test_model_travels_as_data_not_code():
    """What is shipped to the workers unpickles into lstm-inspect's own dataclasses and NumPy arrays only."""
    allowed = ("lstm_inspect.", "numpy", "builtins", "copyreg", "collections", "_codecs")
    for filename in ("stacked_lstm.h5", "bidirectional_lstm.keras", "embedding_lstm.keras"):
        model = li.load_model(str(SAMPLES / filename))
        model.on_warning = print  # a caller's hook is not shipped
        payload = lid._model_node(model).compute(scheduler="sync")
        assert payload.on_warning is None
        found = []

        class Recording(pickle.Unpickler):
            def find_class(self, module, name, found=found):
                found.append(f"{module}.{name}")
                return super().find_class(module, name)

        copy = Recording(io.BytesIO(pickle.dumps(payload))).load()
        assert found and all(name.startswith(allowed) for name in found), found
        assert not [name for name in found if name.split(".")[-1] in ("eval", "exec", "compile", "getattr", "FunctionType", "CodeType")]
        x = str(SAMPLES / (filename.split(".")[0] + ".csv"))
        np.testing.assert_array_equal(li.predict(copy, x), li.predict(model, x))


# ------------------------------------------------------------------ the command line


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "lstm_inspect", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300, check=False)


def test_cli_stats_workers_equals_single_process(tmp_path, monkeypatch):
    """`lstm-inspect stats MODEL 'data/*.parquet' --workers 2` prints what the single-process run prints."""
    import pandas as pd

    model = str(SAMPLES / "stacked_lstm.keras")
    _write_parquet(tmp_path / "data", _chains(np.random.default_rng(11), parts=3, per_part=5, steps=(5, 30), features=3))
    args = ["stats", model, "data/*.parquet", "--sequence-column", "id", "--sort", "variability"]
    spread = _cli(*args, "--workers", "2", cwd=tmp_path)  # the real command, with its own local cluster
    monkeypatch.chdir(tmp_path)
    single = invoke(*args)
    assert single.exit_code == 0 and spread.returncode == 0, (single.stderr, spread.stderr)
    assert spread.stderr == ""
    a, b = pd.read_csv(io.StringIO(single.stdout)), pd.read_csv(io.StringIO(spread.stdout))
    assert len(a) == 6 * (8 + 4) and list(a.columns) == list(b.columns)
    assert a[["layer", "gate", "unit", "steps", "saturation_rank", "variability_rank"]].equals(
        b[["layer", "gate", "unit", "steps", "saturation_rank", "variability_rank"]])
    for column in ("mean", "std", "min", "max", "left_saturated", "right_saturated"):
        np.testing.assert_allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=1e-6, equal_nan=True)


def test_cli_trace_on_a_scheduler_and_bad_requests(client, tmp_path, monkeypatch):
    """`trace ... --scheduler ADDRESS -o DIR/` writes the parts `trace ... -o DIR/` writes; bad requests on a
    dataset fail in one line with status 2, leaving nothing behind."""
    model = str(SAMPLES / "gru_rnn.keras")
    _write_parquet(tmp_path / "data", _chains(np.random.default_rng(13), parts=2, per_part=3, steps=(5, 12), features=2))
    monkeypatch.chdir(tmp_path)
    address = client.scheduler.address
    here = invoke("trace", model, "data", "--sequence-column", "id", "-o", "here/")
    there = invoke("trace", model, "data", "--sequence-column", "id", "-o", "there/", "--scheduler", address)
    assert here.exit_code == 0 and there.exit_code == 0, (here.stderr, there.stderr)
    assert there.stderr.startswith("lstm-inspect: wrote ") and " in 2 part(s) from 2 partition(s) " in there.stderr
    for a, b in zip(_read_parts(tmp_path / "here"), _read_parts(tmp_path / "there"), strict=True):
        assert a.equals(b)

    # A sequence split across two files; a trace on workers without -o DIR/; a non-empty -o DIR/; no scheduler there.
    pq.write_table(pa.table({"id": [0, 0], "x0": [0.1, 0.2], "x1": [0.1, 0.2]}), tmp_path / "data" / "part9.parquet")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    for bad, message in [
        (["trace", model, "data", "--sequence-column", "id", "-o", "out/", "--scheduler", address],
         "sequence '0' is in both part0.parquet and part9.parquet"),
        (["stats", model, "data", "--sequence-column", "id"], "sequence '0' is in both part0.parquet and part9.parquet"),
        (["trace", model, "data/part1.parquet", "--workers", "2"], "give -o DIR/"),
        (["predict", model, "data/part1.parquet", "--sequence-column", "id", "-o", "full/"], "not empty"),
        (["stats", model, "data/part1.parquet", "--sequence-column", "id", "--scheduler", "tcp://127.0.0.1:9"],
         "cannot connect"),
    ]:
        result = invoke(*bad)
        assert result.exit_code == 2 and result.stdout == "", (bad, result.stdout, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "full", "here", "there"]  # no staging left


def test_workers_notes_and_warnings_come_back_once_each(client, tmp_path, monkeypatch):
    """Notes and warnings given on the workers (CSVs without a header, a stateful model's feed, an input longer than
    the model's fixed length) are printed as the single-process run prints them, each once; a stateful model
    with a batch shape names its samples <file>:<number> on the workers too."""
    import pandas as pd

    model = str(SAMPLES / "stateful_lstm.keras")  # batch shape (1, 1, 1)
    rng = np.random.default_rng(17)
    (tmp_path / "data").mkdir()
    for name in ("a.csv", "b.csv"):
        np.savetxt(tmp_path / "data" / name, rng.normal(size=(5, 1)), fmt="%.6f")  # no header row
    monkeypatch.chdir(tmp_path)
    address = client.scheduler.address
    here = invoke("predict", model, "data", "-o", "here/")
    there = invoke("predict", model, "data", "-o", "there/", "--scheduler", address)
    assert here.exit_code == 0 and there.exit_code == 0, (here.stderr, there.stderr)
    lines = there.stderr.splitlines()
    assert lines[:-1] == here.stderr.splitlines()[:-1] and lines[-1].startswith("lstm-inspect: wrote 10 rows")
    assert [line.split(":")[1].strip() for line in lines[:-1]] == ["note"] * 3, lines
    assert "reading a.csv: no header row" in lines[0] and "reading b.csv: no header row" in lines[2]
    assert "stateful model with batch shape (1, 1, 1): the input's 5 rows" in lines[1]  # the same for both files
    for a, b in zip(_read_parts(tmp_path / "here"), _read_parts(tmp_path / "there"), strict=True):
        assert a.equals(b)
    assert pd.concat(_read_parts(tmp_path / "there"))["sequence"].tolist() == [f"{f}.csv:{k}" for f in "ab" for k in range(5)]
    summary = invoke("stats", model, "data", "--no-stateful", "--scheduler", address)
    assert summary.exit_code == 0, summary.stderr
    warnings = [line for line in summary.stderr.splitlines() if ": warning: " in line]
    fixed = ("lstm-inspect: warning: the model's input layer fixes 1 step; the input has 5 steps per sequence "
             "(replayed as given: the recurrence does not depend on the length)")
    assert warnings == [fixed]
    assert summary.stderr == invoke("stats", model, "data", "--no-stateful").stderr


# ------------------------------------------------------------------ a worker dies mid-run (keep last: it restarts one)


def test_killed_worker_is_retried_and_the_result_is_unchanged(client, tmp_path):
    model = li.load_model(str(SAMPLES / "stacked_lstm.keras"))
    parts = _chains(np.random.default_rng(5), parts=4, per_part=4, steps=(2000, 3000), features=3)
    folder = _write_parquet(tmp_path / "data", parts)
    options = ReplayOptions()
    plan, values = _expected_stats(model, parts, options)
    dataset = datasets.open_dataset(str(folder), datasets.ReadSettings(inputs.CsvOptions(sequence_column="id")))
    tree = lid.stats_reduction(model, dataset, plan, Replay(options))
    pids = client.run(os.getpid)
    future = client.compute(tree)
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        for address, keys in client.processing().items():
            # the first tasks past the model's are partition replays (the merge needs them all first)
            if any("lstm-inspect-model" not in str(key) for key in keys) and address in pids:
                victim = address
                break
        time.sleep(0.05)
    assert victim is not None and not future.done(), "no partition was being replayed"
    time.sleep(0.1)  # inside the replay of a partition
    os.kill(pids[victim], signal.SIGKILL)
    merged = future.result(timeout=240)
    assert victim not in client.scheduler_info()["workers"]  # that worker is gone; its tasks ran elsewhere
    _check_stats(stats.finish_stats(model, plan, lid._running_sums(merged)), plan, values)
    client.wait_for_workers(2, timeout=120)
