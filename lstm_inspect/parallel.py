"""Run the step loop of a wide batch in several threads.

NumPy releases the GIL inside BLAS products and ufunc inner loops, so the
sequences of a batch can be split into slices that separate threads step
through at the same time: a slice's recurrence never reads another slice.
Two conditions keep this a gain rather than a loss:

* each step must hold enough work (sequences x gate columns at least
  ``MIN_VALUES_PER_STEP``), or the threads spend their time taking turns at
  the GIL between small ufunc calls (measured on 2 cores: a 32-sequence batch
  of LSTM(64) ran 1.5x slower in two threads, a 256-sequence one 1.2-1.6x
  faster);
* BLAS must run single-threaded meanwhile, or its own threads and ours fight
  over the cores (two Python threads with OpenBLAS on 2 threads took about
  twice as long as one).  threadpoolctl sets that for the duration of the loop;
  without it, the loop stays in one thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # concurrent.futures costs ~12 ms to import: only when a batch is split
    from concurrent.futures import Future, ThreadPoolExecutor

MIN_VALUES_PER_STEP = 32768  # sequences x gate columns per step, per thread
_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_workers = 0
_controller = None


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def plan_threads(sequences: int, values_per_sequence: int, requested: int | None) -> int:
    """How many threads to step ``sequences`` through (1: no split).

    ``requested`` None means automatic: as many as there are CPUs and
    enough work per step for each; an explicit count is obeyed up to one
    sequence per thread.
    """
    if requested is not None:
        return max(1, min(int(requested), sequences))
    by_work = (sequences * values_per_sequence) // MIN_VALUES_PER_STEP
    parts = min(available_cpus(), by_work, sequences)
    if parts < 2 or _blas_controller() is None:  # threadpoolctl imported only when it matters
        return 1
    return parts


def slices(count: int, parts: int) -> list[slice]:
    """``parts`` contiguous slices of ``range(count)``, sizes differing by at most one."""
    bounds = [count * k // parts for k in range(parts + 1)]
    return [slice(bounds[k], bounds[k + 1]) for k in range(parts)]


def run_split(tasks: Sequence[Callable[[], object]]) -> list[object]:
    """Run ``tasks`` concurrently (the first in this thread) and return their results in order.

    An exception in any task is raised here, after all of them have finished.
    """
    if len(tasks) == 1:
        return [tasks[0]()]
    pool = _pool(len(tasks) - 1)
    futures: list[Future] = [pool.submit(task) for task in tasks[1:]]
    try:
        first = tasks[0]()
    finally:
        others = [_wait(future) for future in futures]
    results = [first]
    for value, error in others:
        if error is not None:
            raise error
        results.append(value)
    return results


def _wait(future: Future) -> tuple[object, BaseException | None]:
    try:
        return future.result(), None
    except BaseException as error:  # re-raised by run_split once every task is done
        return None, error


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS on one thread inside the block (no-op without threadpoolctl)."""
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


def _pool(workers: int) -> ThreadPoolExecutor:
    from concurrent.futures import ThreadPoolExecutor

    global _executor, _executor_workers
    with _lock:
        if _executor is None or _executor_workers < workers:
            if _executor is not None:
                _executor.shutdown(wait=False)
            _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lstm-inspect-step")
            _executor_workers = workers
        return _executor


def _blas_controller():
    """A cached threadpoolctl controller, or None when threadpoolctl is not installed."""
    global _controller
    with _lock:
        if _controller is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                _controller = False
            else:
                _controller = ThreadpoolController()
        return _controller or None
