"""The command line's isolated read parses a model file once, in the forked child, and hands it back."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_inspect import reading

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
PROBE = """
import json, os, sys
from lstm_inspect import reading
parent = os.getpid()
parsed_here = []
for name in ("_read_h5_path", "_read_keras_archive"):
    real = getattr(reading, name)
    def counted(path, real=real):
        if os.getpid() == parent:
            parsed_here.append(path)
        return real(path)
    setattr(reading, name, counted)
model = reading.read_model_file(sys.argv[1], isolate=True)
print(json.dumps({"parsed_here": parsed_here, "h5py_imported": "h5py" in sys.modules,
                  "container": model.container}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolated read needs os.fork")
@pytest.mark.parametrize("name", ["single_lstm.h5", "single_lstm.keras", "bidirectional_lstm.keras"])
def test_the_parent_does_not_parse_the_file(name):
    path = SAMPLES / name
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SAMPLES.parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, env=env, timeout=120, check=True)
    report = json.loads(done.stdout)
    assert report == {"parsed_here": [], "h5py_imported": False, "container": "keras" if name.endswith(".keras") else "h5"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolated read needs os.fork")
@pytest.mark.parametrize("name", ["stacked_lstm.h5", "stacked_lstm.keras"])
def test_the_child_read_equals_a_direct_read(name, monkeypatch):
    path = str(SAMPLES / name)
    monkeypatch.setattr(reading, "_SURVIVED", set())
    isolated = reading.read_model_file(path, isolate=True)
    direct = reading.read_model_file(path)
    assert isolated.config == direct.config and isolated.keras_version == direct.keras_version
    assert isolated.h5_layer_order == direct.h5_layer_order

    def arrays(model):
        found = [(a.name, a.path, a.array) for arrays in model.h5_layers.values() for a in arrays]
        stack = [model.keras_tree] if model.keras_tree else []
        while stack:
            group = stack.pop()
            found += [(a.name, a.path, a.array) for a in group.vars]
            stack += list(group.children.values())
        return sorted(found, key=lambda item: item[1])

    ours, theirs = arrays(isolated), arrays(direct)
    assert len(ours) == len(theirs) > 0
    for (n1, p1, a1), (n2, p2, a2) in zip(ours, theirs):
        assert (n1, p1, a1.dtype, a1.shape) == (n2, p2, a2.dtype, a2.shape)
        assert np.array_equal(a1, a2)


def test_a_refusal_in_the_child_is_the_same_line(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(reading.ModelFileError) as isolated:
        reading.read_model_file(str(bad), isolate=True)
    with pytest.raises(reading.ModelFileError) as direct:
        reading.read_model_file(str(bad))
    assert str(isolated.value) == str(direct.value)


def test_only_model_file_parts_are_unpickled():
    allowed = pickle.dumps(("read", reading.StoredArray("k", "a/k", np.arange(3.0, dtype=np.float32))))
    kind, value = reading._ResultUnpickler(io.BytesIO(allowed)).load()
    assert kind == "read" and value.array.tolist() == [0.0, 1.0, 2.0]
    for payload in (pickle.dumps(("read", os.system)), pickle.dumps(("read", subprocess.Popen))):
        with pytest.raises(pickle.UnpicklingError):
            reading._ResultUnpickler(io.BytesIO(payload)).load()
