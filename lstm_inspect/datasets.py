"""Datasets as input: a folder or glob of CSV, Parquet or .npy files, read one partition at a time.

A dataset is never loaded whole.  It is cut into *partitions*, each read,
replayed and summarised (or written) before the next, or on a Dask worker
(``lstm_inspect.dask``):

* one partition per file, files in path order;
* Hive-style partitioned Parquet (``sensor=3/part-0.parquet``) with
  ``--sequence-column sensor``: one partition per value of the key, its files
  read in path order as one sequence whose id is the value.

The sequences of a partition:

* ``--sequence-column NAME`` naming a column of the files: the rows of each
  id, in the order the ids first appear.  An id must lie in one partition
  (checked: a sequence split across files would be replayed as two);
* otherwise each file is one sequence named after its path relative to the
  dataset's root (``2024/a.csv``); an .npy file of shape (N, T, F) holds N
  sequences, ``a.npy:0`` .. ``a.npy:N-1``.

A stateful chain (``--stateful``) is the sequences of one partition: each
partition starts again from the initial state.  Paths may be URLs that
fsspec understands (``s3://bucket/logs/*.parquet``): CSV and .npy files are
then copied to a local cache one at a time, Parquet files are streamed.
"""

from __future__ import annotations

import glob
import os
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InputDataError, UsageProblem
from .inputs import CsvOptions, InputSequence, read_input

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet", ".parq": "parquet",
           ".npy": "npy", ".npz": "npy"}
PARQUET_BATCH_ROWS = 1 << 18


@dataclass(frozen=True)
class Partition:
    """One unit of work: the files read together, in order."""

    name: str  # the path relative to the dataset's root, or "sensor=3" for a Hive key's files
    files: tuple[str, ...]  # local paths or fsspec URLs
    fmt: str  # "csv" | "parquet" | "npy"
    sequence: Any = None  # a Hive key's value: the whole partition is this one sequence


@dataclass(frozen=True)
class ReadSettings:
    """How a partition's files become sequences (picklable: workers read with it)."""

    csv: CsvOptions = field(default_factory=CsvOptions)  # header, delimiter, columns, sequence_column
    dtype: Any = np.float32
    sequence_length: int | None = None  # cut every sequence into pieces of K steps


@dataclass(frozen=True)
class Dataset:
    """The partitions of a folder or glob of files."""

    source: str
    root: str
    partitions: tuple[Partition, ...]
    settings: ReadSettings

    def read(self, partition: Partition) -> list[InputSequence]:
        """The sequences of one partition."""
        return read_partition(partition, self.settings)

    def sequences(self) -> Iterator[tuple[str, list[InputSequence]]]:
        """(partition name, its sequences), one partition at a time."""
        for partition in self.partitions:
            yield partition.name, self.read(partition)


def is_dataset(path: str) -> bool:
    """Whether an INPUT names a dataset (a folder, a glob or a URL) rather than one file."""
    if path == "-" or os.path.isfile(path):
        return False
    return "://" in path or glob.has_magic(path) or os.path.isdir(path)


def open_dataset(source: str, settings: ReadSettings | None = None) -> Dataset:
    """List the files of ``source`` (a folder, a glob, a file, or an fsspec URL of one of these) and
    group them into partitions.  Nothing is read yet."""
    settings = settings or ReadSettings()
    root, files = _list_files(source)
    if not files:
        raise InputDataError(f"{source}: no CSV, Parquet or .npy files")
    relative = {path: _relative(path, root) for path in files}
    formats: dict[str, str] = {}
    for path in files:
        fmt = FORMATS.get(os.path.splitext(path)[1].lower())
        if fmt is None:
            raise InputDataError(f"{relative[path]}: not a CSV, Parquet or .npy file (in dataset {source})")
        formats.setdefault(fmt, path)
    if len(formats) > 1:
        described = ", ".join(f"{fmt} ({relative[path]})" for fmt, path in formats.items())
        raise InputDataError(f"{source}: the dataset mixes file formats: {described}")
    fmt = next(iter(formats))
    key = settings.csv.sequence_column
    keyed = [_hive_keys(relative[path]) for path in files]
    if key and any(key in keys for keys in keyed):
        if not all(key in keys for keys in keyed):
            missing = next(relative[path] for path, keys in zip(files, keyed) if key not in keys)
            raise InputDataError(f"{missing}: not under a '{key}=VALUE' folder, as the dataset's other files are")
        groups: dict[str, list[str]] = {}
        for path, keys in zip(files, keyed):
            groups.setdefault(keys[key], []).append(path)
        partitions = tuple(Partition(f"{key}={value}", tuple(paths), fmt, _maybe_int(value))
                           for value, paths in groups.items())
    else:
        if key and fmt == "npy":
            raise UsageProblem(f"--sequence-column {key}: .npy files have no columns (and no '{key}=VALUE' folders)")
        partitions = tuple(Partition(relative[path], (path,), fmt) for path in files)
    return Dataset(source, root, partitions, settings)


def read_partition(partition: Partition, settings: ReadSettings) -> list[InputSequence]:
    """The sequences of one partition (see the module's docstring for their ids)."""
    if partition.sequence is not None:
        plain = CsvOptions(header=settings.csv.header, columns=settings.csv.columns, delimiter=settings.csv.delimiter)
        pieces = [s.values for path in partition.files
                  for s in _read_file(path, partition.fmt, plain, settings, _relative_name(partition, path))]
        sequences = [InputSequence(partition.sequence, pieces[0] if len(pieces) == 1 else np.concatenate(pieces))]
    else:
        sequences = _read_file(partition.files[0], partition.fmt, settings.csv, settings, partition.name)
    return cut_sequences(sequences, settings.sequence_length)


def cut_sequences(sequences: list[InputSequence], length: int | None) -> list[InputSequence]:
    """Every sequence cut into consecutive pieces of ``length`` steps, named ``<id>:0``, ``<id>:1``, ...
    (``--sequence-length``); unchanged when ``length`` is None."""
    if not length:
        return sequences
    return [InputSequence(f"{s.id}:{k}", s.values[start : start + length])
            for s in sequences for k, start in enumerate(range(0, s.values.shape[0], length))]


class SequenceRegistry:
    """Checks that no sequence id appears in two partitions (its steps would be replayed as two sequences)."""

    def __init__(self) -> None:
        self._where: dict[Any, str] = {}

    def add(self, partition: str, ids: Sequence[Any]) -> None:
        """Record that ``partition`` holds ``ids``; InputDataError when one of them is in another partition."""
        for sequence_id in ids:
            seen = self._where.setdefault(sequence_id, partition)
            if seen != partition:
                raise InputDataError(
                    f"sequence '{sequence_id}' is in both {seen} and {partition}: a sequence must lie in one partition "
                    "(one file, or one KEY=VALUE folder with --sequence-column KEY)"
                )


# ------------------------------------------------------------------- listing


def _list_files(source: str) -> tuple[str, list[str]]:
    """(root, files in path order) of a folder, glob or file; hidden and ``_``-prefixed entries
    (``_SUCCESS``, ``_metadata``) are left out."""
    if "://" in source:
        return _list_remote(source)
    if glob.has_magic(source):
        root = _static_prefix(source)
        matched = sorted(glob.glob(source, recursive=True))
        files = []
        for path in matched:
            files.extend(_walk(path) if os.path.isdir(path) else [path])
    elif os.path.isdir(source):
        root = source
        files = _walk(source)
    elif os.path.isfile(source):
        root, files = os.path.dirname(source) or ".", [source]
    else:
        raise InputDataError(f"{source}: no such file or folder")
    files = [path for path in files if not _hidden(_relative(path, root))]
    # Absolute paths: a worker process may run in another folder.
    return os.path.abspath(root), sorted(dict.fromkeys(os.path.abspath(path) for path in files))


def _walk(folder: str) -> list[str]:
    found: list[str] = []
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        found.extend(os.path.join(here, name) for name in sorted(names))
    return found


def _list_remote(source: str) -> tuple[str, list[str]]:
    fs, path = _filesystem(source)
    if glob.has_magic(path):
        root = _static_prefix(path)
        files: list[str] = []
        for match in sorted(fs.glob(path)):
            files.extend(fs.find(match) if fs.isdir(match) else [match])
    elif fs.isdir(path):
        root, files = path, fs.find(path)
    elif fs.exists(path):
        root, files = posixpath.dirname(path), [path]
    else:
        raise InputDataError(f"{source}: no such file or folder")
    files = [f for f in sorted(files) if not _hidden(_relative(f, root))]
    return fs.unstrip_protocol(root), [fs.unstrip_protocol(f) for f in files]


def _filesystem(url: str) -> Any:
    try:
        import fsspec
    except ImportError:
        raise UsageProblem(f"{url}: reading URLs needs fsspec: pip install 'lstm-inspect[dask]'") from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise UsageProblem(f"{url}: {' '.join(str(exc).split())[:200]}") from None


def _static_prefix(pattern: str) -> str:
    """The folder part of a glob before its first wildcard: ``data/2024/*/x.csv`` -> ``data/2024``."""
    parts = pattern.replace(os.sep, "/").split("/")
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return "/".join(fixed) or "."


def _relative(path: str, root: str) -> str:
    if "://" in path:
        root = root.rstrip("/") + "/"
        return path.removeprefix(root)
    return os.path.relpath(path, root).replace(os.sep, "/")


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split("/") if part not in ("", ".", ".."))


def _hive_keys(relative: str) -> dict[str, str]:
    keys = {}
    for part in relative.split("/")[:-1]:
        name, sep, value = part.partition("=")
        if sep and name:
            keys[name] = value
    return keys


def _relative_name(partition: Partition, path: str) -> str:
    return f"{partition.name}/{os.path.basename(path)}"


def _maybe_int(value: str) -> int | str:
    try:
        number = int(value)
    except ValueError:
        return value
    return number if str(number) == value.strip() else value


# ------------------------------------------------------------------- reading


def _read_file(path: str, fmt: str, csv: CsvOptions, settings: ReadSettings, name: str) -> list[InputSequence]:
    """One file's sequences; a file without a sequence column is one sequence named ``name``."""
    if fmt == "parquet":
        return _read_parquet(path, csv, settings.dtype, name)
    sequences = read_input(_local_copy(path), csv, dtype=settings.dtype)
    if fmt == "npy":
        if len(sequences) == 1:
            return [InputSequence(name, sequences[0].values)]
        return [InputSequence(f"{name}:{s.id}", s.values) for s in sequences]
    if csv.sequence_column:
        return sequences
    return [InputSequence(name, sequences[0].values)]


def _local_copy(path: str) -> str:
    """A local path for ``path``: itself, or a URL's file copied to fsspec's cache (named as the original)."""
    if "://" not in path:
        return path
    import fsspec

    try:
        return fsspec.open_local(f"simplecache::{path}", simplecache={"same_names": True})
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: cannot be read ({' '.join(str(exc).split())[:160]})") from None


def _open(path: str) -> Any:
    if "://" in path:
        import fsspec

        return fsspec.open(path, "rb").open()
    return open(path, "rb")


def _read_parquet(path: str, csv: CsvOptions, dtype: Any, name: str) -> list[InputSequence]:
    """A Parquet file's sequences, read a batch of rows at a time."""
    try:
        import pyarrow as pa
    except ImportError:
        raise UsageProblem(f"{name}: reading Parquet needs pyarrow: pip install 'lstm-inspect[dask]' (or pyarrow)") from None
    import pyarrow.parquet as pq

    label = name
    try:
        handle = _open(path)
    except OSError as exc:
        raise InputDataError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    with handle:
        try:
            parquet = pq.ParquetFile(handle)
        except (pa.ArrowException, OSError) as exc:
            raise InputDataError(f"{label}: not a readable Parquet file ({' '.join(str(exc).split())[:160]})") from None
        names = list(parquet.schema_arrow.names)
        key = csv.sequence_column
        if key is not None:
            key = _parquet_column(key, names, label)
        features = [_parquet_column(c, names, label) for c in csv.columns] if csv.columns else [n for n in names if n != key]
        if not features:
            raise InputDataError(f"{label}: no feature columns")
        values: list[NDArray] = []
        ids: list[NDArray] = []
        row = 0
        try:
            batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=features + ([key] if key else []))
            for batch in batches:
                values.append(_numeric(batch, features, dtype, label, row))
                if key is not None:
                    column = batch.column(batch.schema.get_field_index(key))
                    if column.null_count:
                        at = row + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]) + 1
                        raise InputDataError(f"{label}: row {at}, column '{key}': empty sequence id")
                    ids.append(column.to_numpy(zero_copy_only=False))
                row += batch.num_rows
        except pa.ArrowException as exc:
            raise InputDataError(f"{label}: cannot be read ({' '.join(str(exc).split())[:160]})") from None
    if row == 0:
        raise InputDataError(f"{label}: no rows")
    data = values[0] if len(values) == 1 else np.concatenate(values)
    if key is None:
        return [InputSequence(name, data)]
    return group_rows(np.concatenate(ids), data)


def _parquet_column(name: str, names: list[str], label: str) -> str:
    if name in names:
        return name
    if name.isdigit() and 1 <= int(name) <= len(names):
        return names[int(name) - 1]
    raise InputDataError(f"{label}: no column '{name}' (columns: {', '.join(names[:20])})")


def _numeric(batch: Any, features: list[str], dtype: Any, label: str, first_row: int) -> NDArray:
    """A record batch's feature columns as a (rows, F) array of ``dtype``; nulls and non-finite
    numbers are refused, naming the row (1-based) and column."""
    import pyarrow as pa

    out = np.empty((batch.num_rows, len(features)), dtype=dtype)
    for j, name in enumerate(features):
        column = batch.column(batch.schema.get_field_index(name))
        kind = column.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
            raise InputDataError(f"{label}: column '{name}' holds {kind}, not numbers")
        if column.null_count:
            at = first_row + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]) + 1
            raise InputDataError(f"{label}: row {at}, column '{name}' is empty")
        numbers = column.to_numpy(zero_copy_only=False)
        bad = ~np.isfinite(numbers) if numbers.dtype.kind == "f" else None
        if bad is not None and bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise InputDataError(f"{label}: row {first_row + at + 1}, column '{name}' is {numbers[at]}: inputs must be finite numbers")
        out[:, j] = numbers
    return out


def group_rows(ids: NDArray, values: NDArray) -> list[InputSequence]:
    """Rows grouped by id, ids in order of first appearance, rows in file order."""
    import pandas as pd

    codes, uniques = pd.factorize(ids, sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    keys = [u.item() if hasattr(u, "item") else u for u in uniques]
    return [InputSequence(keys[k], values[order[bounds[k] : bounds[k + 1]]]) for k in range(len(uniques))]
