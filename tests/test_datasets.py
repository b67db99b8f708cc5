"""Datasets as input, in one process: folders, globs and URLs of CSV, Parquet and .npy files.

Expected rows come from the ordinary single-file runs (``api.trace``,
``stats.compute_stats``) of the same sequences.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reference import invoke

import lstm_inspect as li
from lstm_inspect import datasets, partitions
from lstm_inspect.engine import ReplayOptions
from lstm_inspect.errors import InputDataError, UsageProblem
from lstm_inspect.inputs import CsvOptions, InputSequence
from lstm_inspect.stats import compute_stats, plan_stats

pq = pytest.importorskip("pyarrow.parquet", reason="needs pyarrow")
import pyarrow as pa

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
MODEL = str(SAMPLES / "single_lstm.keras")  # LSTM(4) over 3 features


def _arrays(seed: int, count: int, features: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(3, 12)), features)).astype(np.float32) for _ in range(count)]


def _csv(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(values, columns=[f"x{j}" for j in range(values.shape[1])]).to_csv(path, index=False, float_format="%.9g")


def test_folder_of_csv_files_one_sequence_each(tmp_path):
    arrays = _arrays(0, 3)
    for name, values in zip(["b.csv", "a.csv", "sub/c.csv"], arrays):
        _csv(tmp_path / "data" / name, values)
    (tmp_path / "data" / "_SUCCESS").write_text("")
    (tmp_path / "data" / ".hidden.csv").write_text("x\n1\n")
    dataset = datasets.open_dataset(str(tmp_path / "data"))
    assert [p.name for p in dataset.partitions] == ["a.csv", "b.csv", "sub/c.csv"]
    read = {name: seqs for name, seqs in dataset.sequences()}
    assert [s.id for s in read["sub/c.csv"]] == ["sub/c.csv"]
    np.testing.assert_array_equal(read["a.csv"][0].values, arrays[1])
    # A glob picks the same files; a folder's own root is where names start.
    globbed = datasets.open_dataset(str(tmp_path / "data" / "**" / "*.csv"))
    assert [p.name for p in globbed.partitions] == ["a.csv", "b.csv", "sub/c.csv"]


def test_npy_files_and_their_sequences(tmp_path):
    arrays = _arrays(1, 4)
    np.save(tmp_path / "one.npy", arrays[0])
    np.save(tmp_path / "many.npy", np.stack([a[:3] for a in arrays[1:]]))
    dataset = datasets.open_dataset(str(tmp_path / "*.npy"))
    ids = [s.id for _, seqs in dataset.sequences() for s in seqs]
    assert ids == ["many.npy:0", "many.npy:1", "many.npy:2", "one.npy"]
    with pytest.raises(UsageProblem, match="--sequence-column id: .npy files have no columns"):
        datasets.open_dataset(str(tmp_path / "*.npy"), datasets.ReadSettings(CsvOptions(sequence_column="id")))


def test_hive_partitioned_parquet_one_sequence_per_key(tmp_path):
    """sensor=K/ folders with --sequence-column sensor: each key's files, in name order, are one sequence."""
    arrays = _arrays(2, 4)
    layout = {"sensor=7/part-0.parquet": arrays[0], "sensor=7/part-1.parquet": arrays[1],
              "sensor=12/part-0.parquet": arrays[2], "sensor=12/_common_metadata": None}
    for name, values in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if values is None:
            (tmp_path / name).write_text("")
        else:
            pq.write_table(pa.table({f"x{j}": values[:, j] for j in range(3)}), tmp_path / name)
    settings = datasets.ReadSettings(CsvOptions(sequence_column="sensor"))
    dataset = datasets.open_dataset(str(tmp_path), settings)
    assert [(p.name, p.sequence, len(p.files)) for p in dataset.partitions] == [("sensor=12", 12, 1), ("sensor=7", 7, 2)]
    sequences = {s.id: s.values for _, seqs in dataset.sequences() for s in seqs}
    np.testing.assert_array_equal(sequences[7], np.concatenate(arrays[:2]))
    np.testing.assert_array_equal(sequences[12], arrays[2])
    # The same through the command: stats over the two sequences equals stats over them as one input.
    result = invoke("stats", MODEL, str(tmp_path), "--sequence-column", "sensor", "--dtype", "float64")
    assert result.exit_code == 0, result.stderr
    want = li.gate_stats(li.load_model(MODEL), [InputSequence(k, v) for k, v in sequences.items()],
                         options=ReplayOptions(dtype=np.float64))
    got = pd.read_csv(io.StringIO(result.stdout))
    np.testing.assert_allclose(got["std"], want["std"], rtol=1e-9)
    assert got["variability_rank"].tolist() == want["variability_rank"].tolist()


def test_parquet_sequence_column_and_bad_files(tmp_path):
    values = _arrays(3, 1)[0]
    table = {"id": np.array([5, 5, 9, 5, 9, 9, 9, 5, 9][: len(values)] + [9] * max(0, len(values) - 9)),
             **{f"x{j}": values[:, j] for j in range(3)}}
    pq.write_table(pa.table(table), tmp_path / "a.parquet")
    dataset = datasets.open_dataset(str(tmp_path / "a.parquet"), datasets.ReadSettings(CsvOptions(sequence_column="id")))
    (sequences,) = [seqs for _, seqs in dataset.sequences()]
    assert [s.id for s in sequences] == [5, 9]
    np.testing.assert_array_equal(sequences[0].values, values[table["id"] == 5])
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"x0": [1.0, float("nan")], "x1": ["a", "b"]}), bad / "n.parquet")
    with pytest.raises(InputDataError, match="n.parquet: row 2, column 'x0' is nan"):
        next(datasets.open_dataset(str(bad), datasets.ReadSettings(CsvOptions(columns=("x0",)))).sequences())
    with pytest.raises(InputDataError, match="column 'x1' holds string, not numbers"):
        next(datasets.open_dataset(str(bad), datasets.ReadSettings(CsvOptions(columns=("x1",)))).sequences())
    np.save(bad / "m.npy", values)
    with pytest.raises(InputDataError, match="mixes file formats"):
        datasets.open_dataset(str(bad))
    with pytest.raises(InputDataError, match="no CSV, Parquet or .npy files"):
        datasets.open_dataset(str(tmp_path / "*.nothing"))


def test_partitions_are_read_one_at_a_time(tmp_path, monkeypatch):
    """Each partition is read, replayed and dropped before the next is read."""
    for k, values in enumerate(_arrays(4, 3)):
        np.save(tmp_path / f"p{k}.npy", values)
    events = []
    read, replay = datasets.read_partition, partitions.partition_stats
    monkeypatch.setattr(datasets, "read_partition", lambda p, s: events.append(f"read {p.name}") or read(p, s))
    monkeypatch.setattr(partitions, "partition_stats", lambda *a: events.append("replay") or replay(*a))
    model = li.load_model(MODEL)
    dataset = datasets.open_dataset(str(tmp_path))
    partitions.serial_stats(model, dataset.sequences(), plan_stats(model), partitions.Replay(ReplayOptions()))
    assert events == ["read p0.npy", "replay", "read p1.npy", "replay", "read p2.npy", "replay"]


def test_trace_and_predict_over_a_dataset(tmp_path, monkeypatch):
    """To stdout: every file's rows in turn; with -o DIR/: one Parquet part per file. Both as single-file runs."""
    arrays = _arrays(5, 3)
    for k, values in enumerate(arrays):
        _csv(tmp_path / "data" / f"s{k}.csv", values)
    monkeypatch.chdir(tmp_path)
    model = li.load_model(MODEL)
    csv_rows = invoke("trace", MODEL, "data/*.csv")
    assert csv_rows.exit_code == 0, csv_rows.stderr
    got = pd.read_csv(io.StringIO(csv_rows.stdout))
    wants = []
    for k in range(3):
        want = li.trace(model, f"data/s{k}.csv")
        want["sequence"] = f"s{k}.csv"
        wants.append(want)
    want = pd.concat(wants, ignore_index=True)
    assert got["sequence"].tolist() == want["sequence"].tolist()
    np.testing.assert_allclose(got[["i", "f", "c", "o", "cell", "hidden"]], want[["i", "f", "c", "o", "cell", "hidden"]],
                               rtol=1e-6)
    written = invoke("predict", MODEL, "data", "-o", "out/")
    assert written.exit_code == 0 and written.stdout == "", written.stderr
    assert "wrote 3 rows in 3 part(s) from 3 partition(s)" in written.stderr
    parts = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    for k, part in enumerate(parts):
        frame = pd.read_parquet(part)
        assert list(frame.columns) == ["sequence", "y_0", "y_1", "y_2", "y_3"]
        assert frame["sequence"].tolist() == [f"s{k}.csv"]
        np.testing.assert_array_equal(frame[["y_0", "y_1", "y_2", "y_3"]].to_numpy()[0], li.predict(model, f"data/s{k}.csv")[0])
    stats = compute_stats(model, [InputSequence(k, a) for k, a in enumerate(arrays)])
    result = invoke("stats", MODEL, "data", "--format", "json")
    assert result.exit_code == 0
    rows = pd.read_json(io.StringIO(result.stdout))
    np.testing.assert_allclose(rows["mean"], np.concatenate([g.mean for g in stats]), rtol=1e-5)


def test_urls_through_fsspec(tmp_path):
    pytest.importorskip("fsspec", reason="URLs need fsspec (the dask extra)")
    arrays = _arrays(6, 2)
    _csv(tmp_path / "a.csv", arrays[0])
    pq.write_table(pa.table({f"x{j}": arrays[1][:, j] for j in range(3)}), tmp_path / "b.parquet")
    for pattern, values in (("*.csv", arrays[0]), ("*.parquet", arrays[1])):
        dataset = datasets.open_dataset(f"file://{tmp_path}/{pattern}")
        ((name, (sequence,)),) = list(dataset.sequences())
        assert dataset.partitions[0].files[0].startswith("file://") and sequence.id == name
        np.testing.assert_allclose(sequence.values, values, rtol=1e-7)


# ------------------------------------------------------------------- with several inputs, --from, stateful models


def _values_csv(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(values, columns=["value"]).to_csv(path, index=False, float_format="%.9g")


def test_dataset_feeds_a_model_with_one_input_or_the_layer_of_from(tmp_path, monkeypatch):
    """A dataset is one INPUT (NAME=PATH too) for one model input, or for --from LAYER; a model of several
    inputs, or --format lstmvis, is refused in one line; -o DIR/ is Parquet only."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(7)
    below = [rng.normal(size=(int(rng.integers(3, 9)), 8)).astype(np.float32) for _ in range(3)]  # lstm_2's input
    for k, values in enumerate(below):
        np.save(tmp_path / f"h{k}.npy", values)
    stacked = str(SAMPLES / "stacked_lstm.keras")
    result = invoke("stats", stacked, "h*.npy", "--from", "lstm_2", "--layer", "lstm_2", "--dtype", "float64", "--format", "json")
    assert result.exit_code == 0, result.stderr
    want = compute_stats(li.load_model(stacked), [InputSequence(k, v) for k, v in enumerate(below)], start="lstm_2", layers=["lstm_2"],
                         options=ReplayOptions(dtype=np.float64))
    got = pd.read_json(io.StringIO(result.stdout))
    assert sorted(set(got["layer"])) == ["lstm_2"]
    np.testing.assert_allclose(got["std"], np.concatenate([g.std for g in want]), rtol=1e-9)
    traced = invoke("trace", stacked, "h*.npy", "--from", "lstm_2", "--layer", "lstm_2")
    assert traced.exit_code == 0, traced.stderr
    rows = pd.read_csv(io.StringIO(traced.stdout))
    assert list(dict.fromkeys(rows["sequence"])) == ["h0.npy", "h1.npy", "h2.npy"]
    one = pd.read_csv(io.StringIO(invoke("trace", stacked, "h1.npy", "--from", "lstm_2", "--layer", "lstm_2").stdout))
    np.testing.assert_array_equal(rows[rows["sequence"] == "h1.npy"][["i", "f", "hidden"]], one[["i", "f", "hidden"]])

    for k, values in enumerate(_arrays(8, 2)):
        _csv(tmp_path / "data" / f"s{k}.csv", values)
    named = invoke("stats", MODEL, "input_layer=data")
    assert named.exit_code == 0 and named.stdout == invoke("stats", MODEL, "data").stdout, named.stderr
    for bad, message in [
        (["stats", str(SAMPLES / "seq2seq.keras"), "data"], "this one has 2 (encoder_inputs, decoder_inputs)"),
        (["trace", MODEL, "data", "--format", "lstmvis", "-o", "vis"], "--format lstmvis takes INPUT files"),
        (["trace", MODEL, "data", "--format", "csv", "-o", "out/"], "-o DIR/ writes a partitioned Parquet dataset"),
        (["predict", MODEL, "data", "data"], "2 INPUT(s) given"),
    ]:
        result = invoke(*bad)
        assert result.exit_code == 2 and result.stdout == "", (bad, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    # -o DIR with --format lstmvis on a file is LSTMVis' folder, not a partitioned dataset.
    (tmp_path / "vis").mkdir()
    vis = invoke("trace", MODEL, "data/s0.csv", "--format", "lstmvis", "-o", "vis/")
    assert vis.exit_code == 0 and (tmp_path / "vis" / "lstm.yml").exists(), vis.stderr


def test_stateful_model_with_a_batch_shape_is_fed_as_keras_per_partition(tmp_path, monkeypatch):
    """stateful_lstm (batch shape (1, 1, 1)): each file fed as Keras' predict feeds it, as the single-file run
    does (tests/test_stateful_feed.py holds that to Keras), its samples and chain named <file>:<number>."""
    monkeypatch.chdir(tmp_path)
    model = str(SAMPLES / "stateful_lstm.keras")
    rng = np.random.default_rng(9)
    lengths = {"a.csv": 6, "b.csv": 4}
    for name, length in lengths.items():
        _values_csv(tmp_path / "data" / name, rng.normal(size=(length, 1)).astype(np.float32))
    predicted = invoke("predict", model, "data")
    assert predicted.exit_code == 0, predicted.stderr
    got = pd.read_csv(io.StringIO(predicted.stdout))
    assert got["sequence"].tolist() == [f"{name}:{k}" for name, length in lengths.items() for k in range(length)]
    assert predicted.stderr.count("stateful model with batch shape (1, 1, 1)") == 2  # one plan per file
    traced = invoke("trace", model, "data")
    assert traced.exit_code == 0, traced.stderr
    trace = pd.read_csv(io.StringIO(traced.stdout))
    assert list(dict.fromkeys(trace["sequence"])) == ["a.csv:0", "b.csv:0"]
    for name in lengths:
        one = pd.read_csv(io.StringIO(invoke("predict", model, f"data/{name}").stdout))
        np.testing.assert_array_equal(got[got["sequence"].str.startswith(name)].filter(like="y_"), one.filter(like="y_"))
        chain = pd.read_csv(io.StringIO(invoke("trace", model, f"data/{name}").stdout))
        assert chain["sequence"].unique().tolist() == [0]
        np.testing.assert_array_equal(trace[trace["sequence"] == f"{name}:0"][["t", "i", "cell", "hidden"]],
                                      chain[["t", "i", "cell", "hidden"]])
    # --sequence-length alone: pieces from zeros, as for a file (no Keras feed, no plan note).
    cut = invoke("predict", model, "data", "--sequence-length", "2")
    assert cut.exit_code == 0 and "batch shape" not in cut.stderr, cut.stderr
    pieces = pd.read_csv(io.StringIO(cut.stdout))
    assert pieces["sequence"].tolist() == ["a.csv:0", "a.csv:1", "a.csv:2", "b.csv:0", "b.csv:1"]
    one = pd.read_csv(io.StringIO(invoke("predict", model, "data/a.csv", "--sequence-length", "2").stdout))
    np.testing.assert_array_equal(pieces.filter(like="y_").to_numpy()[:3], one.filter(like="y_").to_numpy())
