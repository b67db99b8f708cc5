"""``trace --format lstmvis -o DIR/``: the files LSTMVis reads, gates included.

LSTMVis (Strobelt et al., 2018) shows any per-step vectors it is given, from a
project folder that its README describes:

* ``states.h5``: one dataset per traced value, (positions, units) float32,
  named ``<layer>/<value>`` (``lstm/f``, ``bi/backward/hidden``); the
  positions are every step of every sequence, one sequence after the other,
  in input-row order (also for go_backwards layers);
* ``words.h5``: dataset ``word_ids`` (positions,) int32, the token of each
  position (an Embedding input), else the step's index in its sequence;
* ``words.dict``: ``<word> <id>`` per line: the ``--vocab`` texts (LSTMVis
  splits each line on whitespace, so whitespace tokens are written as
  ``<space>``, ``<newline>``, ``<tab>``), the ids themselves without a
  vocabulary, or ``t<k>`` for feature inputs;
* ``lstm.yml``: the config naming them: ``files``, ``word_sequence``, and one
  ``states.types`` entry per dataset: ``type`` (``output`` for hidden,
  ``state`` for the rest), ``layer`` (1-based, model order), ``path``.
  Values a bounded activation keeps in range (sigmoid gates in 0..1, tanh
  candidate and hidden state in -1..1) say ``transform: none`` (gates also
  ``unsigned: true``), so LSTMVis does not squash them with its default tanh;
  ``cell`` keeps that default, since it is unbounded.

Masked steps have no gates; LSTMVis cannot show an empty value, so they are
written as 0 there (``trace`` leaves them empty).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import UsageProblem
from .model import Model, RecurrentLayer

STATES = "states.h5"
WORDS = "words.h5"
DICT = "words.dict"
CONFIG = "lstm.yml"
_SPACES = {" ": "<space>", "\n": "<newline>", "\t": "<tab>", "\r": "<return>", "": "<empty>"}


def write_lstmvis(
    folder: str,
    model: Model,
    inputs: Any,
    layers: Sequence[RecurrentLayer],
    *,
    program,
    values: Sequence[str] | None = None,
    vocab: Mapping[int, str] | None = None,
    options=None,
    stateful: bool = False,
    initial_states: Mapping[str, Sequence[NDArray]] | None = None,
) -> list[str]:
    """Trace ``inputs`` and write an LSTMVis project into ``folder`` (created if needed).

    ``values`` keeps only those trace columns (``--gates``).  Returns the paths
    written.  Each file is written to a temporary name and renamed when done.
    """
    import h5py

    from .batching import plan_inputs, trace_blocks

    if not folder or folder == "-":
        raise UsageProblem("--format lstmvis writes a folder of files: give -o DIR")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageProblem(f"-o {folder}: --format lstmvis writes a folder, and this is a file")
    feed = plan_inputs(model, program, inputs, stateful)
    samples = feed.samples
    if not samples:
        raise UsageProblem("the input holds no sequence")
    spec = next((s for s in program.inputs if s.has_time_axis), program.inputs[0])
    time_input = program.inputs.index(spec)
    names = {layer.name: [v for v in layer.kind.value_names(False) if not values or v in values] for layer in layers}
    created = not os.path.exists(folder)
    os.makedirs(folder, exist_ok=True)
    states_tmp = _temporary(folder, STATES)
    try:
        with h5py.File(states_tmp, "w") as h5:
            datasets = {(layer.name, value): h5.create_dataset(f"{layer.name}/{value}", shape=(0, layer.units),
                                                               maxshape=(None, layer.units), dtype="<f4",
                                                               chunks=(min(4096, 64 * 1024 // layer.units + 1), layer.units))
                        for layer in layers for value in names[layer.name]}
            steps = {s.id: int(s.arrays[time_input].shape[0]) for s in samples}
            current, traced = None, {}

            def flush() -> None:  # one sample's values, appended at the end of every dataset
                for key, dataset in datasets.items():
                    start = dataset.shape[0]
                    dataset.resize(start + steps[current], axis=0)
                    dataset[start:] = np.nan_to_num(traced[key], nan=0.0)

            for tb in trace_blocks(model, feed, layers=[layer.name for layer in layers], options=options,
                                   initial_states=initial_states, program=program):
                block = tb.block
                for row, sample_id in enumerate(tb.sequences):
                    if sample_id != current:
                        if current is not None:
                            flush()
                        current = sample_id
                        traced = {key: np.full((steps[current], d.shape[1]), np.nan, dtype=np.float32)
                                  for key, d in datasets.items()}
                    for value in names[block.layer.name]:
                        array = block.values[value][:, row]
                        if array.ndim > 2:  # a ConvLSTM's maps: each filter's mean over the positions
                            array = np.nanmean(array, axis=tuple(range(1, array.ndim - 1)))
                        traced[(block.layer.name, value)][block.t] = array
            if current is not None:
                flush()
        ids = np.concatenate([_word_ids(s.arrays[time_input], steps[s.id], spec.token_ids) for s in samples])
        dictionary = _dictionary(ids, vocab, spec.token_ids)
        written = [_publish(states_tmp, folder, STATES)]
        states_tmp = None
        written.append(_write(folder, WORDS, lambda path: _write_words(path, ids.astype(np.int32))))
        written.append(_write(folder, DICT, lambda path: _write_text(path, dictionary)))
        written.append(_write(folder, CONFIG, lambda path: _write_text(path, _config(model, layers, names))))
    except BaseException:
        if created and not os.listdir(folder):
            os.rmdir(folder)  # nothing was written: leave no empty folder behind
        raise
    finally:
        if states_tmp is not None and os.path.exists(states_tmp):
            os.unlink(states_tmp)
    return written


def _word_ids(array: NDArray, steps: int, token_ids: bool) -> NDArray:
    if token_ids:
        return np.asarray(array).reshape(steps, -1)[:, 0].astype(np.int64)
    return np.arange(steps, dtype=np.int64)


def _word(text: str) -> str:
    """A token as one whitespace-free word (LSTMVis splits each dict line on whitespace)."""
    if text in _SPACES:
        return _SPACES[text]
    return "_".join(text.split()) if any(c.isspace() for c in text) else text


def _dictionary(ids: NDArray, vocab: Mapping[int, str] | None, token_ids: bool) -> str:
    lines = []
    for word_id in sorted({int(i) for i in ids}):
        if not token_ids:
            word = f"t{word_id}"
        elif vocab is not None:
            word = _word(vocab.get(word_id, f"<{word_id}>"))
        else:
            word = str(word_id)
        lines.append(f"{word} {word_id}")
    return "\n".join(lines) + "\n"


def _config(model: Model, layers: Sequence[RecurrentLayer], names: Mapping[str, Sequence[str]]) -> str:
    """lstm.yml.  Strings are written as JSON strings, which YAML reads as they are."""
    q = json.dumps
    types = []
    for number, layer in enumerate(layers, start=1):
        for value in names[layer.name]:
            entry = f"{{type: {'output' if value == 'hidden' else 'state'}, layer: {number}, path: {q(f'{layer.name}/{value}')}"
            bounds = _bounds(layer, value)
            if bounds == (0.0, 1.0):
                entry += ", unsigned: true, transform: none"  # in 0..1 already (sigmoid)
            elif bounds == (-1.0, 1.0):
                entry += ", transform: none"  # in -1..1 already (tanh)
            types.append(f"    {entry}}},  # {layer.kind.gate_name(value) if value in layer.kind.gates else value}")
    return (
        f"name: {q(model.label)}\n"
        f"description: {q(f'{model.label}: every traced value of every recurrent layer, by lstm-inspect')}\n"
        "\n"
        "files:\n"
        f"  states: {STATES}\n"
        f"  words: {WORDS}\n"
        f"  words_dict: {DICT}\n"
        "\n"
        "word_sequence:\n"
        "  file: words\n"
        "  path: word_ids\n"
        "  dict_file: words_dict\n"
        "\n"
        "states:\n"
        "  file: states\n"
        "  types: [\n" + "\n".join(types) + "\n  ]\n"
    )


def _bounds(layer: RecurrentLayer, value: str) -> tuple[float, float] | None:
    """The range a value stays in: its activation's, and for hidden that of the activation
    (o·tanh(cell), or a GRU's mix of tanh values, stays within tanh's range); None: unbounded."""
    from .stats import ACTIVATION_RANGE

    activation = layer.activation if value == "hidden" else layer.kind.value_activation(
        value, layer.activation, layer.recurrent_activation)
    return ACTIVATION_RANGE.get(activation or "")


def _temporary(folder: str, name: str) -> str:
    fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    os.close(fd)
    return path


def _publish(temporary: str, folder: str, name: str) -> str:
    target = os.path.join(folder, name)
    os.replace(temporary, target)
    return target


def _write(folder: str, name: str, write) -> str:
    temporary = _temporary(folder, name)
    try:
        write(temporary)
        return _publish(temporary, folder, name)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _write_words(path: str, ids: NDArray) -> None:
    import h5py

    with h5py.File(path, "w") as h5:
        h5.create_dataset("word_ids", data=ids)


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)
