"""Keras' own results, kept on disk from one run of the suite to the next (``tests/.cache/``).

Building the fixture models with Keras 3 and tf-keras, saving them, and running
``model.predict`` on them (a tf.function traced per model) is the slow part of the
suite, and it gives the same answer until Keras, TensorFlow, NumPy or h5py, or the
code that builds the models, changes.  So the saved files and Keras' outputs are
kept, in a folder named by a hash of those packages' versions and of the
generators' source (``conftest.py`` and ``reference.py``, which build and randomise
the models and make their inputs); an output's file name also hashes the source of
the function that computed it.  An entry made by another Keras or by edited
generators is never read: its name differs, and it is computed again.  Entries are
written under a temporary name and renamed, so a run stopped half-way leaves none.

The numbers are still Keras': computed by Keras on a previous run with the same
versions and code, never written by lstm-inspect.  ``LSTM_INSPECT_TEST_CACHE=off``
computes everything afresh (nothing is kept); ``LSTM_INSPECT_TEST_CACHE=DIR`` keeps
the cache in DIR.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
GENERATORS = ("conftest.py", "reference.py", "keras_cache.py")
PACKAGES = ("keras", "tf_keras", "tensorflow", "numpy", "h5py")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


@cache
def cache_folder() -> Path | None:
    """The folder for this combination of versions and generators (None: caching is off)."""
    setting = os.environ.get("LSTM_INSPECT_TEST_CACHE", "")
    if setting.lower() in ("off", "0", "no"):
        return None
    digest = hashlib.sha256()
    for package in PACKAGES:
        digest.update(f"{package}={_version(package)}\n".encode())
    for name in GENERATORS:
        digest.update((TESTS / name).read_bytes())
    root = Path(setting) if setting else TESTS / ".cache"
    return root / f"keras-{digest.hexdigest()[:16]}"


def _source_digest(functions: Sequence[Callable]) -> str:
    digest = hashlib.sha256()
    for function in functions:
        digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()[:12]


def cached_files(name: str, write: Callable[[Path], None]) -> Path:
    """The folder ``name`` holding what ``write(folder)`` saves there; written once per cache.

    Without a cache (``LSTM_INSPECT_TEST_CACHE=off``) every call writes a fresh temporary folder.
    """
    root = cache_folder()
    if root is None:
        folder = Path(tempfile.mkdtemp(prefix=f"lstm-inspect-{name}-"))
        write(folder)
        return folder
    final = root / name
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        write(partial)
        partial.rename(final)
    except OSError:
        if not final.is_dir():  # not a concurrent run that finished first
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def cached_arrays(name: str, compute: Callable[[], Sequence[np.ndarray]], *functions: Callable) -> list[np.ndarray]:
    """``compute()`` (a list of arrays, e.g. Keras' outputs), stored under ``name`` and the source
    of ``functions`` (those that compute it, beyond the generators); read back on later runs."""
    root = cache_folder()
    if root is None:
        return [np.asarray(a) for a in compute()]
    path = root / f"{name}-{_source_digest(functions)}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:
            return [stored[f"a{index}"] for index in range(len(stored.files))]
    arrays = [np.asarray(a) for a in compute()]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **{f"a{index}": array for index, array in enumerate(arrays)})
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return arrays
