"""Benchmark lstm-inspect against Keras and a naive NumPy loop (``make bench``).

Scenarios, each measured in this one run on this machine, same model and input:

* S1  LSTM(32), 8 features, one sequence of 100,000 steps;
* S2  LSTM(128), 32 features, one sequence of 20,000 steps;
* S3  LSTM(64), 16 features, 256 sequences of 1,000 steps (one batch);
  for S1-S3: the trace engine (all six values i, f, c, o, cell, hidden recorded
  at every step) against Keras 3 ``predict`` of the same layer with
  ``return_sequences=True`` (hidden only, after a warm-up call) and against a
  per-gate NumPy loop as people post it; ratios are times of the other over
  the engine's; the engine's hidden state must match Keras within 1e-5;
* S4  the CLI end to end: ``lstm-inspect trace model.keras input.csv -o out.csv``
  in a fresh process, LSTM(32) over 8 features: CSV at 20,000 / 200,000 /
  2,000,000 steps, float64 CSV (``--dtype float64``) and Parquet at 200,000
  steps: rows per second (wall time, start-up included), peak RSS, and CPU
  time (user + system, both cores) against wall time; plus, in this process at
  200,000 steps, the replay alone, the writer alone (the same rows, formatted
  and written) and the two together, to show how much they overlap;
* S5  start-up: wall time of ``lstm-inspect --help``, of ``lstm-inspect weights
  sample_models/single_lstm.h5 --format csv`` and of ``lstm-inspect trace`` of
  the 10-row ``sample_models/single_lstm.csv``.
* S6  ``lstm-inspect stats`` over a dataset of 20,000,000 steps (LSTM(32),
  8 features, 8 .npy files of 250 × 10,000 steps) in one process against
  ``--workers 2`` (a local Dask cluster, start-up included) and against
  ``--scheduler`` with two ``dask worker`` processes in sessions of their own;
  the outputs must agree.  Needs the dask extra.

Every figure is the median of several runs (fewer for the big ones).  The
machine may be busy with other work: the S1-S3 ratios compare runs made next
to each other, so they hold up better than absolute times.

    python bench/run.py            # everything (about 10 minutes on 2 cores)
    python bench/run.py --quick    # one run each, no 2,000,000-step S4 (also LSTM_INSPECT_BENCH_QUICK=1)
    python bench/run.py --only S4,S5 --output -
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOLERANCE = 1e-5
TARGETS = {  # scenario -> the target, as printed
    "S1": "≥ 3× Keras",
    "S2": "≥ 1.5× Keras",
    "S3": "≥ 3× Keras",
    "S4": "≥ 3,000,000 rows/s, peak RSS < 300 MB",
    "S4-f64": "≥ 1,500,000 rows/s, peak RSS < 300 MB",
    "S4-parquet": "≥ 10,000,000 rows/s, peak RSS < 300 MB",
    "S6": "2 workers ≥ 1.5× one process",
}
STARTUP_LIMITS = {"help": 0.3, "weights": 0.3, "trace": 0.35}  # seconds, wall


@dataclass
class Row:
    scenario: str
    what: str
    figures: str
    target: str = ""
    verdict: str = ""  # "pass" | "short" | ""
    notes: list[str] = field(default_factory=list)


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ models


def build_lstm(units: int, features: int, path: Path, seed: int) -> object:
    """A Keras 3 LSTM layer returning sequences, with seeded random weights, saved to ``path``."""
    import keras

    model = keras.Sequential([keras.Input((None, features)), keras.layers.LSTM(units, return_sequences=True, name="lstm")])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    model.save(path)
    return model


def naive_trace(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The per-gate loop people post: separate W_i, W_f, ... and np.dot per gate and step; (N, T, U) hidden."""
    units = recurrent.shape[0]
    W_i, W_f, W_c, W_o = (kernel[:, k * units : (k + 1) * units] for k in range(4))
    U_i, U_f, U_c, U_o = (recurrent[:, k * units : (k + 1) * units] for k in range(4))
    b_i, b_f, b_c, b_o = (bias[k * units : (k + 1) * units] for k in range(4))

    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    n, steps, _ = x.shape
    h = np.zeros((n, units), dtype=np.float32)
    c = np.zeros((n, units), dtype=np.float32)
    record = {name: np.empty((steps, n, units), dtype=np.float32) for name in ("i", "f", "c", "o", "cell", "hidden")}
    for t in range(steps):
        x_t = x[:, t, :]
        i = sigmoid(np.dot(x_t, W_i) + np.dot(h, U_i) + b_i)
        f = sigmoid(np.dot(x_t, W_f) + np.dot(h, U_f) + b_f)
        g = np.tanh(np.dot(x_t, W_c) + np.dot(h, U_c) + b_c)
        o = sigmoid(np.dot(x_t, W_o) + np.dot(h, U_o) + b_o)
        c = f * c + i * g
        h = o * np.tanh(c)
        record["i"][t], record["f"][t], record["c"][t], record["o"][t] = i, f, g, o
        record["cell"][t], record["hidden"][t] = c, h
    return record["hidden"].transpose(1, 0, 2)


def engine_hidden(program, x: np.ndarray) -> np.ndarray:
    n, steps, _ = x.shape
    units = program.recurrent["lstm"].layer.units
    out = np.empty((n, steps, units), dtype=np.float32)
    for block in program.replay(x):
        out[:, block.t, :] = block.values["hidden"].transpose(1, 0, 2)
    return out


def blas_floor(sequences: int, units: int, steps: int, runs: int = 5) -> float:
    """Seconds for ``steps`` products (N, U) x (U, 4U) in float32 with BLAS on one thread: what a step
    of the batch replay cannot go below on one core."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    h = rng.normal(size=(sequences, units)).astype(np.float32)
    recurrent = rng.normal(size=(units, 4 * units)).astype(np.float32)
    out = np.empty((sequences, 4 * units), dtype=np.float32)

    def products() -> None:
        for _ in range(steps):
            np.matmul(h, recurrent, out=out)

    with threadpool_limits(1, user_api="blas"):
        products()
        return median_time(products, runs)


def engine_run(program, x: np.ndarray) -> None:
    for block in program.replay(x):  # every block holds i, f, c, o, cell and hidden for its steps
        pass


# ------------------------------------------------------------------ S1-S3


def bench_engine(name: str, units: int, features: int, sequences: int, steps: int, runs: int, work: Path) -> Row:
    from threadpoolctl import threadpool_limits

    import lstm_inspect as li
    from lstm_inspect.engine import ReplayOptions, compile_model
    from lstm_inspect.parallel import plan_threads

    log(f"{name}: LSTM({units}), {features} features, {sequences} × {steps:,} steps")
    path = work / f"{name}.keras"
    keras_model = build_lstm(units, features, path, seed=int(name[1:]))
    x = np.random.default_rng(100).normal(size=(sequences, steps, features)).astype(np.float32)
    model = li.load_model(str(path))
    program = compile_model(model)
    kernel, recurrent, bias = (np.asarray(w, dtype=np.float32) for w in keras_model.layers[0].get_weights())

    keras_out = np.asarray(keras_model.predict(x, batch_size=sequences, verbose=0))  # warm-up (and the reference)
    ours = engine_hidden(program, x)
    diff = float(np.max(np.abs(ours - keras_out)))

    # A batch is stepped in several threads when it is wide enough; its one-thread time is shown too.
    threads = plan_threads(sequences, 4 * units, None)
    one_thread = compile_model(model, ReplayOptions(threads=1)) if threads > 1 else None
    engine_runs, keras_runs, naive_runs, one_runs = [], [], [], []
    for _ in range(runs):  # interleaved, so that load from elsewhere hits all alike
        engine_runs.append(median_time(lambda: engine_run(program, x), 1))
        keras_runs.append(median_time(lambda: keras_model.predict(x, batch_size=sequences, verbose=0), 1))
        naive_runs.append(median_time(lambda: naive_trace(x, kernel, recurrent, bias), 1))
        if one_thread is not None:  # the split's own gain: one thread, BLAS held to one thread as in the split
            with threadpool_limits(1, user_api="blas"):
                one_runs.append(median_time(lambda: engine_run(one_thread, x), 1))
    # One thread with OpenBLAS left at its default thread count (what threadpoolctl prevents), once.
    default_blas = median_time(lambda: engine_run(one_thread, x), 1) if one_thread is not None else None
    t_engine, t_keras, t_naive = (statistics.median(r) for r in (engine_runs, keras_runs, naive_runs))
    total = sequences * steps
    vs_keras, vs_naive = t_keras / t_engine, t_naive / t_engine
    need = 1.5 if name == "S2" else 3.0
    ok = vs_keras >= need and diff <= TOLERANCE
    per_step = "µs/sequence-step" if sequences > 1 else "µs/step"
    split = ""
    if one_runs:
        t_one = statistics.median(one_runs)
        split = (f"; {threads} threads, one thread {t_one:.2f} s: the split gains {t_one / t_engine:.2f}×; "
                 f"one thread with OpenBLAS at its default thread count {default_blas:.2f} s")
    if sequences > 1:
        floor = blas_floor(sequences, units, steps)
        split += f"; BLAS floor (the step products h·recurrent_kernel alone, one thread) {floor:.2f} s"
    figures = (
        f"engine {t_engine:.2f} s ({t_engine / total * 1e6:.2f} {per_step}{split}); "
        f"Keras predict {t_keras:.2f} s → **{vs_keras:.1f}×**; naive loop {t_naive:.2f} s → {vs_naive:.1f}×; "
        f"hidden vs Keras: max diff {diff:.1e}"
    )
    log(f"  {figures}")
    what = f"LSTM({units}), {features} features, {sequences:,} × {steps:,} steps"
    return Row(name, what, figures, TARGETS[name], "pass" if ok else "short")


# ------------------------------------------------------------------ S4


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "lstm-inspect"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lstm_inspect"]


def measured_run(argv: list[str], cwd: Path | None = None) -> tuple[float, float, float]:
    """Wall time (s), peak RSS (MB) and CPU time (user + system, s) of one fresh process running ``argv``."""
    time_tool = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if time_tool:
        start = time.perf_counter()
        done = subprocess.run([time_tool, "-v", *argv], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", done.stderr))
        return wall, int(match.group(1)) / 1024 if match else float("nan"), cpu
    # No /usr/bin/time: a fresh Python child runs the command and reports its children's usage.
    probe = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "wall = time.perf_counter() - start\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "peak = usage.ru_maxrss * (1 if sys.platform == 'darwin' else 1024)\n"
        "print(wall, peak, usage.ru_utime + usage.ru_stime, code)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, *argv], cwd=cwd, capture_output=True, text=True, check=True)
    wall, peak, cpu, code = done.stdout.split()
    if int(code) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed")
    return float(wall), int(peak) / 2**20, float(cpu)


def write_input_csv(path: Path, steps: int, features: int, seed: int) -> None:
    from lstm_inspect.columns import Block
    from lstm_inspect.writers import write_blocks

    rng = np.random.default_rng(seed)
    columns = [f"x{k}" for k in range(features)]

    def blocks():
        for start in range(0, steps, 1 << 18):
            block = np.round(rng.normal(size=(min(1 << 18, steps - start), features)), 4).astype(np.float32)
            yield Block(columns, [block[:, k] for k in range(features)])

    with open(path, "wb") as handle:
        write_blocks(blocks(), columns, "csv", handle)


def disk_alone(path: Path, size: int) -> float:
    """Seconds to write ``size`` bytes from memory to ``path`` in 8 MB pieces and close it (then removed)."""
    piece = np.random.default_rng(0).integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()
    start = time.perf_counter()
    with open(path, "wb") as handle:
        handle.writelines(piece for _ in range(size // len(piece)))
    wall = time.perf_counter() - start
    path.unlink()
    return wall


@dataclass
class CliCase:
    label: str
    steps: int
    suffix: str | None  # output file extension: picks the format; None: CSV to stdout, which is /dev/null
    extra: tuple[str, ...] = ()
    target: str = "S4"  # key in TARGETS; "" for RSS only
    runs: int = 3
    disk: bool = False  # also time the same bytes written alone from memory (is the disk or the CPU the limit?)


def bench_cli(cases: list[CliCase], work: Path) -> list[Row]:
    log("S4: lstm-inspect trace, LSTM(32), 8 features, 32 rows per step, to a file")
    model_path = work / "S4.keras"
    build_lstm(32, 8, model_path, seed=4)
    result = []
    for case in cases:
        input_path = work / f"S4_{case.steps}.csv"
        if not input_path.exists():
            write_input_csv(input_path, case.steps, 8, seed=case.steps)
        output = work / f"S4_out{case.suffix or '.csv'}"
        where = ["-o", str(output)] if case.suffix else ["--format", "csv"]  # measured_run's stdout is /dev/null
        argv = [*cli_command(), "trace", str(model_path), str(input_path), *where, *case.extra]
        walls, peaks, cpus = [], [], []
        size = 0
        for _ in range(case.runs):
            wall, peak, cpu = measured_run(argv)
            walls.append(wall)
            peaks.append(peak)
            cpus.append(cpu)
            if case.suffix:
                size = output.stat().st_size
                output.unlink()
        rows = case.steps * 32
        wall, peak, cpu = statistics.median(walls), max(peaks), statistics.median(cpus)
        rate = rows / wall
        log(f"  {case.label}: {rows:,} rows in {wall:.2f} s = {rate / 1e6:.2f} M rows/s, CPU {cpu:.2f} s, "
            f"peak RSS {peak:.0f} MB")
        need = {"S4": 3e6, "S4-f64": 1.5e6, "S4-parquet": 10e6}.get(case.target, 0.0)
        ok = peak < 300 and rate >= need
        written = f"({size / 2**20:,.0f} MB)" if case.suffix else "(to /dev/null)"
        figures = (f"{rows:,} rows {written} in {wall:.2f} s → **{rate / 1e6:.2f} M rows/s**; "
                   f"CPU {cpu:.2f} s ({cpu / wall:.0%} of wall); peak RSS **{peak:.0f} MB**"
                   + (f" (median of {case.runs})" if case.runs > 1 else " (one run)"))
        if case.disk and size:  # is the disk or the CPU the limit? The same bytes written alone:
            disk = statistics.median(disk_alone(output, size) for _ in range(1 if size > 2**30 else case.runs))
            amount = f"{size / 2**30:.1f} GB" if size > 2**30 else f"{size / 2**20:,.0f} MB"
            figures += (f"; the same {amount} written alone from memory: {disk:.2f} s "
                        f"({size / disk / 2**20:,.0f} MB/s)")
            log(f"  the same bytes written alone: {disk:.2f} s")
        target = TARGETS[case.target] if case.target else "peak RSS < 300 MB"
        result.append(Row("S4", case.label, figures, target, "pass" if ok else "short"))
    for path in work.glob("S4_*.csv"):
        path.unlink()
    return result


def bench_overlap(steps: int, runs: int, work: Path) -> Row:
    """In this process, 200,000 steps: the replay alone, the writer alone, both (as the CLI runs them)."""
    import lstm_inspect as li
    from lstm_inspect.batching import trace_blocks
    from lstm_inspect.columns import TRACE_KEYS, long_blocks, trace_columns
    from lstm_inspect.engine import compile_model
    from lstm_inspect.writers import write_blocks

    log(f"S4 parts: replay and writer at {steps:,} steps, apart and together")
    model_path = work / "S4.keras"
    if not model_path.exists():
        build_lstm(32, 8, model_path, seed=4)
    model = li.load_model(str(model_path))
    x = np.round(np.random.default_rng(7).normal(size=(1, steps, 8)), 4).astype(np.float32)
    sequences = li.as_sequences(x)
    layers = model.select_recurrent(None)
    spec = trace_columns(layers, gates=None, pre_activation=False, masked=False)
    columns = TRACE_KEYS + list(spec.names)
    output = work / "S4_parts.csv"

    def rows():
        program = compile_model(model)
        return long_blocks(trace_blocks(model, sequences, program=program), spec, np.float32)

    def replay_alone() -> None:
        for _ in rows():
            pass

    kept = list(itertools.islice(rows(), 4))  # the writer alone: the first blocks, again and again

    def writer_alone(fmt: str) -> None:
        total = steps * 32
        repeated = (kept[k % len(kept)] for k in range(-(-total // kept[0].rows)))
        with open(output, "wb") as handle:
            write_blocks(repeated, columns, fmt, handle)

    def together(fmt: str) -> None:
        with open(output, "wb") as handle:
            write_blocks(rows(), columns, fmt, handle)

    parts = {
        "replay": replay_alone,
        "CSV writer": lambda: writer_alone("csv"),
        "CSV together": lambda: together("csv"),
        "Parquet writer": lambda: writer_alone("parquet"),
        "Parquet together": lambda: together("parquet"),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(runs):  # interleaved
        for name, fn in parts.items():
            times[name].append(median_time(fn, 1))
    output.unlink()
    total = steps * 32
    t = {name: statistics.median(values) for name, values in times.items()}

    def rate(name: str) -> str:
        return f"{t[name]:.2f} s ({total / t[name] / 1e6:.1f} M rows/s)"

    figures = (f"replay alone {rate('replay')}; CSV: writer alone {rate('CSV writer')}, together "
               f"**{rate('CSV together')}** against {t['replay'] + t['CSV writer']:.2f} s one after the other; "
               f"Parquet: writer alone **{rate('Parquet writer')}**, together {rate('Parquet together')}")
    log(f"  {figures}")
    verdict = "pass" if total / t["Parquet writer"] >= 10e6 else "short"
    return Row("S4", f"in-process parts, {steps:,} steps (no start-up)", figures,
               "Parquet writer ≥ 10,000,000 rows/s", verdict)


# ------------------------------------------------------------------ S5


def bench_startup(runs: int) -> list[Row]:
    log("S5: start-up")
    samples = ROOT / "sample_models"
    result = []
    for key, label, args in (
        ("help", "lstm-inspect --help", ["--help"]),
        ("weights", "lstm-inspect weights single_lstm.h5 --format csv", ["weights", str(samples / "single_lstm.h5"), "--format", "csv"]),
        ("trace", "lstm-inspect trace single_lstm.keras single_lstm.csv --format csv (10 rows)",
         ["trace", str(samples / "single_lstm.keras"), str(samples / "single_lstm.csv"), "--format", "csv"]),
    ):
        argv = [*cli_command(), *args]
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)  # warm the file cache
        wall = median_time(lambda argv=argv: subprocess.run(argv, stdout=subprocess.DEVNULL, check=True), runs)
        limit = STARTUP_LIMITS[key]
        log(f"  {label}: {wall:.3f} s")
        result.append(Row("S5", label, f"**{wall:.3f} s** (median of {runs})", f"≤ {limit} s", "pass" if wall <= limit else "short"))
    return result


# ------------------------------------------------------------------ S6


def bench_dask(steps_total: int, work: Path) -> list[Row]:
    """``stats`` over a dataset of ``steps_total`` steps: one process against 2 local Dask workers.

    Each command runs in a session of its own (``setsid``).  Linux's autogroup scheduling shares the
    CPU between sessions, so on a machine busy with other work a session's processes split one share
    whatever their number; the third run therefore also gives each worker a session of its own, as
    separate machines would be: ``dask scheduler`` and two ``dask worker`` processes, then
    ``stats --scheduler``.
    """
    try:
        import distributed  # noqa: F401
    except ImportError:
        log("S6: skipped (needs the dask extra: pip install 'lstm-inspect[dask]')")
        return [Row("S6", "stats on Dask", "skipped: dask not installed", TARGETS["S6"], "")]
    files, per_file, steps = 8, 250, steps_total // (8 * 250)
    log(f"S6: lstm-inspect stats over {files} .npy files of {per_file} × {steps:,} steps, one process vs 2 workers")
    model_path = work / "S6.keras"
    build_lstm(32, 8, model_path, seed=6)
    data = work / "S6"
    data.mkdir()
    rng = np.random.default_rng(6)
    for k in range(files):
        np.save(data / f"part{k}.npy", rng.normal(size=(per_file, steps, 8)).astype(np.float32))
    total = files * per_file * steps
    command = [*cli_command(), "stats", str(model_path), str(data)]
    walls, outputs = {}, {}

    def run(label: str, extra: list[str]) -> None:
        out = work / f"S6_{len(walls)}.csv"
        walls[label], peak, _cpu = measured_run(["setsid", "--wait", *command, "-o", str(out), *extra])
        outputs[label] = np.genfromtxt(out, delimiter=",", skip_header=1, usecols=range(3, 10))
        log(f"  {label}: {walls[label]:.1f} s = {total / walls[label] / 1e6:.2f} M steps/s, peak RSS {peak:.0f} MB")

    run("one process", [])
    run("--workers 2", ["--workers", "2"])
    with _own_sessions_cluster(work) as address:
        run("2 worker sessions", ["--scheduler", address])
    shutil.rmtree(data)
    single = outputs["one process"]
    # Figures are printed in float32: compare them relative to their size, or to 1 for those near zero.
    difference = max(np.nanmax(np.abs(single - other) / np.maximum(np.abs(single), 1.0)) for other in outputs.values())
    figures = [f"one process {walls['one process']:.1f} s ({total / walls['one process'] / 1e6:.2f} M steps/s)"]
    for label in ("--workers 2", "2 worker sessions"):
        figures.append(f"{label} {walls[label]:.1f} s → **{walls['one process'] / walls[label]:.2f}×**")
    figures.append(f"largest difference of the printed figures {difference:.1e}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    figures.append(f"load average {load:.1f} on {os.cpu_count()} cores")
    ratio = max(walls["one process"] / walls[label] for label in ("--workers 2", "2 worker sessions"))
    verdict = "pass" if ratio >= 1.5 and difference < 1e-6 else "short"
    return [Row("S6", f"stats, LSTM(32), {total:,} steps in {files} files", "; ".join(figures), TARGETS["S6"], verdict)]


@contextlib.contextmanager
def _own_sessions_cluster(work: Path):
    """A scheduler and two single-threaded workers, each in a session of its own; yields the address."""
    dask_cli = [str(Path(sys.executable).parent / "dask")]
    scheduler_file = work / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [subprocess.Popen([*dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)], start_new_session=True, **quiet)]
    try:
        deadline = time.monotonic() + 120
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            processes.append(subprocess.Popen([*dask_cli, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                               "--no-dashboard", "--memory-limit", "4GB"], start_new_session=True, **quiet))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


# ------------------------------------------------------------------ report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import keras

    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, NumPy {np.__version__}, "
        f"Keras {keras.__version__} ({keras.backend.backend()} backend); load average {load}"
    )


def table(rows: list[Row]) -> str:
    lines = ["| scenario | what | measured | target | result |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row.scenario} | {row.what} | {row.figures} | {row.target} | {row.verdict} |")
    return "\n".join(lines)


def plain(rows: list[Row]) -> str:
    out = []
    for row in rows:
        out.append(f"{row.scenario:3} {row.verdict:5} {row.what}")
        out.append(f"          {row.figures.replace('**', '')}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("LSTM_INSPECT_BENCH_QUICK") == "1",
                        help="one run per figure and no 2,000,000-step S4 (env LSTM_INSPECT_BENCH_QUICK=1)")
    parser.add_argument("--only", default="S1,S2,S3,S4,S5,S6", help="comma-separated scenarios (default: all)")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results.md"),
                        help="Markdown report ('-' for none; default bench/results.md)")
    args = parser.parse_args(argv)
    only = {s.strip().upper() for s in args.only.split(",")}
    quick = args.quick
    runs = 1 if quick else 3

    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="lstm-inspect-bench-") as tmp:
        work = Path(tmp)
        # Start-up first: after S4 the kernel is still writing gigabytes of CSV back to the disk,
        # which slowed a 0.25 s start-up to 0.5 s in the run of 2026-12-02 19:56.
        if "S5" in only:
            rows += bench_startup(3 if quick else 7)
        if "S1" in only:
            rows.append(bench_engine("S1", 32, 8, 1, 100_000, runs, work))
        if "S2" in only:
            rows.append(bench_engine("S2", 128, 32, 1, 20_000, runs, work))
        if "S3" in only:
            rows.append(bench_engine("S3", 64, 16, 256, 1_000, runs, work))
        if "S4" in only:
            n = 1 if quick else 3
            cases = [
                CliCase("CSV, 20,000 steps", 20_000, ".csv", target="", runs=1 if quick else 5),
                CliCase("CSV, 200,000 steps", 200_000, ".csv", runs=n, disk=True),
                CliCase("CSV to /dev/null (stdout; no disk), 200,000 steps", 200_000, None, target="", runs=n),
                CliCase("float64 CSV (--dtype float64), 200,000 steps", 200_000, ".csv", ("--dtype", "float64"),
                        target="S4-f64", runs=n),
                CliCase("Parquet, 200,000 steps", 200_000, ".parquet", target="S4-parquet", runs=n),
            ]
            if not quick:
                cases.append(CliCase("CSV, 2,000,000 steps", 2_000_000, ".csv", target="", runs=1, disk=True))
            rows += bench_cli(cases, work)
            rows.append(bench_overlap(200_000, n, work))
        if "S6" in only:
            rows += bench_dask(2_000_000 if quick else 20_000_000, work)
    rows.sort(key=lambda row: row.scenario)  # stable: each scenario's rows keep their order
    about = machine()
    print()
    print(f"lstm-inspect benchmark, {started}; {about}")
    print(plain(rows))
    if args.output != "-":
        report = (
            f"# Benchmark results\n\n`make bench` (`python bench/run.py{' --quick' if quick else ''}`), {started}.  \n"
            f"{about}.\n\n{table(rows)}\n\n"
            "Ratios are Keras' (or the naive loop's) time over the engine's, measured side by side in this run; "
            "S4 rows per second include process start-up, reading the input CSV and writing the output file.\n"
        )
        Path(args.output).write_text(report, encoding="utf-8")
        log(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
