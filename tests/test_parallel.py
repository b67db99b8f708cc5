"""A batch stepped in several threads gives the numbers of one thread, and leaves BLAS as it was.

That the split numbers equal Keras' is checked in test_trace_keras.py
(``threads=2`` and ``3`` on every model kind); here the split is compared
with the one-thread replay on batches wide enough for the automatic choice.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import SAMPLES
from reference import invoke
from threadpoolctl import threadpool_info

import lstm_inspect as li
from lstm_inspect import parallel
from lstm_inspect.engine import ReplayOptions, compile_model


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_plan_threads_needs_enough_work_per_step(monkeypatch):
    monkeypatch.setattr(parallel, "available_cpus", lambda: 2)
    assert parallel.plan_threads(1, 4 * 32, None) == 1  # one sequence
    assert parallel.plan_threads(32, 4 * 64, None) == 1  # 8,192 values a step: threads lose
    assert parallel.plan_threads(256, 4 * 64, None) == 2  # 65,536: two threads
    assert parallel.plan_threads(4096, 4 * 64, None) == 2  # never more than the CPUs
    monkeypatch.setattr(parallel, "available_cpus", lambda: 1)
    assert parallel.plan_threads(4096, 4 * 64, None) == 1
    assert parallel.plan_threads(3, 8, 5) == 3  # an explicit count, up to one sequence each
    assert parallel.plan_threads(3, 8, 1) == 1


@pytest.mark.parametrize("count, parts", [(7, 3), (3, 3), (256, 2), (5, 1)])
def test_slices_cover_the_batch_in_order(count, parts):
    pieces = parallel.slices(count, parts)
    covered = [k for piece in pieces for k in range(count)[piece]]
    assert covered == list(range(count))
    sizes = [piece.stop - piece.start for piece in pieces]
    assert max(sizes) - min(sizes) <= 1


def test_run_split_returns_in_order_and_raises_after_all_finish():
    ran = []

    def task(k):
        def run():
            ran.append((k, threading.current_thread() is threading.main_thread()))
            if k == 2:
                raise ValueError("task 2 failed")
            return k * 10

        return run

    assert parallel.run_split([task(0), task(1)]) == [0, 10]
    ran.clear()
    with pytest.raises(ValueError, match="task 2 failed"):
        parallel.run_split([task(0), task(1), task(2)])
    assert sorted(k for k, _ in ran) == [0, 1, 2]
    assert [main for k, main in ran if k == 0] == [True]  # the first runs in the caller's thread


def _wide_batch(features: int, sequences: int = 256, steps: int = 40, seed: int = 0):
    return np.random.default_rng(seed).normal(size=(sequences, steps, features)).astype(np.float32)


@pytest.mark.parametrize("sample, pre_activation", [
    ("single_lstm.keras", False),  # the plain LSTM loop
    ("single_lstm.keras", True),  # the general loop, with pre-activations
    ("gru_rnn.keras", True),  # GRU and SimpleRNN
    ("keras2_hard_sigmoid.h5", False),  # the clip (hard_sigmoid) loop
])
def test_split_batch_equals_one_thread(sample, pre_activation):
    model = li.load_model(str(SAMPLES / sample))
    x = _wide_batch(_features(model))
    one = li.trace_arrays(model, x, options=ReplayOptions(threads=1, chunk=16, pre_activation=pre_activation))
    two = li.trace_arrays(model, x, options=ReplayOptions(threads=2, chunk=16, pre_activation=pre_activation))
    assert one.keys() == two.keys()
    for layer in one:
        for name in one[layer]:
            np.testing.assert_allclose(two[layer][name], one[layer][name], rtol=0, atol=1e-6, err_msg=f"{layer} {name}")


def _features(model) -> int:
    first = model.recurrent_layers()[0]
    return int(first.weights.kernel.shape[0])


def test_split_with_masked_steps_equals_one_thread():
    model = li.load_model(str(SAMPLES / "embedding_lstm.keras"))
    ids = np.random.default_rng(1).integers(0, 20, size=(300, 30, 1))
    ids[::3, :5] = 0  # padding: masked steps
    one = li.trace_arrays(model, ids, options=ReplayOptions(threads=1, chunk=7))
    two = li.trace_arrays(model, ids, options=ReplayOptions(threads=2, chunk=7))
    for name in one["lstm"]:
        np.testing.assert_allclose(two["lstm"][name], one["lstm"][name], rtol=0, atol=1e-6, err_msg=name)
    assert one["lstm"]["masked"].any()


def test_blas_threads_are_restored_after_a_split_scan():
    before = blas_threads()
    model = li.load_model(str(SAMPLES / "single_lstm.keras"))
    x = _wide_batch(_features(model))
    li.trace_arrays(model, x, options=ReplayOptions(threads=2))
    assert blas_threads() == before
    # A run abandoned half way (a closed pipe, a consumer that stops) restores them too.
    program = compile_model(model, ReplayOptions(threads=2, chunk=4))
    run = iter(program.replay(x))
    next(run)
    if before and max(before) > 1:
        assert blas_threads() == [1] * len(before)  # held for the scan
    run.close()
    assert blas_threads() == before


def test_cli_threads_option_changes_nothing_in_the_output(tmp_path):
    x = _wide_batch(3, sequences=200, steps=12, seed=4)
    rows = [f"{s},{','.join(f'{v:.6g}' for v in step)}" for s in range(x.shape[0]) for step in x[s]]
    csv = tmp_path / "batch.csv"
    csv.write_text("seq,a,b,c\n" + "\n".join(rows) + "\n")
    model = str(SAMPLES / "single_lstm.keras")
    outputs = [
        invoke("trace", model, str(csv), "--sequence-column", "seq", "--format", "csv", *extra)
        for extra in ([], ["--threads", "1"], ["--threads", "2"], ["--threads", "5"])
    ]
    assert all(result.exit_code == 0 for result in outputs), [r.stderr for r in outputs]
    assert outputs[0].stdout.count("\n") == 200 * 12 * 4 + 1
    texts = {result.stdout for result in outputs}
    if len(texts) > 1:  # a last-digit difference is allowed, nothing more
        frames = [np.loadtxt(r.stdout.splitlines()[1:], delimiter=",", usecols=range(4, 10)) for r in outputs]
        for frame in frames[1:]:
            np.testing.assert_allclose(frame, frames[0], rtol=0, atol=1e-6)
    bad = invoke("trace", model, str(csv), "--sequence-column", "seq", "--threads", "0")
    assert bad.exit_code == 2 and "--threads" in bad.stderr
