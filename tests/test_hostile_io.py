"""Output safety and the exit-status contract.

* ``… | head`` ends quietly, status 0, for every command and format (real
  shell pipelines; outputs far larger than a pipe buffer).
* ``-o FILE`` is written to a temporary file and renamed only on success: a
  run that fails, even after rows were written (forced here by making the
  writer's source fail mid-stream), leaves no file and never replaces a good
  one; ``-o`` refuses to overwrite the model, the input or the initial-state
  file, however it is spelt (symlink, another relative path, a hard link).
* Exit statuses: the README table, ``--help`` of every command and
  ``ExitStatus`` agree, and the statuses are the ones actually returned
  (0, 2, 3 here; 1 in test_verify.py).
"""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import CLI, ROOT, SAMPLES
from hostile import INPUT_CSV, KERAS3_ARCHIVE, assert_refused, write_lstm_h5
from reference import invoke

import lstm_inspect as li
from lstm_inspect.errors import ExitStatus, InputDataError

# ------------------------------------------------------------------ | head

BIG_UNITS, BIG_FEATURES, BIG_STEPS = 96, 32, 2000


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict[str, Path]:
    """An LSTM(96) over 32 features (50k weight rows) and 2000 input rows (192k trace rows)."""
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    layer = {"name": "lstm", "return_sequences": False,
             "kernel": rng.normal(size=(BIG_FEATURES, 4 * BIG_UNITS)) * 0.2,
             "recurrent_kernel": rng.normal(size=(BIG_UNITS, 4 * BIG_UNITS)) * 0.2,
             "bias": rng.normal(size=4 * BIG_UNITS) * 0.2}
    model = write_lstm_h5(folder / "big.h5", [layer], features=BIG_FEATURES)
    data = folder / "big.csv"
    np.savetxt(data, rng.normal(size=(BIG_STEPS, BIG_FEATURES)), delimiter=",", fmt="%.4f",
               header=",".join(f"x{k}" for k in range(BIG_FEATURES)), comments="")
    return {"model": model, "data": data}


def _command(args: list) -> str:
    return " ".join(f"'{part}'" for part in CLI + [str(a) for a in args])


FORMATS = ["csv", "json", "ndjson", "table", "parquet"]
# (command, extra args) x format; trace's csv/json/ndjson/--wide are in test_cli_trace.py.
PIPES = [(command, fmt) for command in ("layers", "weights", "predict", "stats") for fmt in FORMATS]
PIPES += [("trace", "table"), ("trace", "parquet"), ("export", "npz"), ("export", "json"), ("verify", "csv")]


def _pipe_args(command: str, fmt: str, big) -> list:
    args = [command, big["model"]]
    if command in ("trace", "predict", "stats", "verify"):
        args.append(big["data"])
    if command == "predict":
        args += ["--sequence-length", "1"]  # 2000 one-step sequences: 2000 rows of output
    return args + ["--format", fmt]


@pytest.fixture(scope="module")
def pipe_runs(big):
    """Every (command, format) piped into `head -c 100`, run up front in parallel."""

    def run(case):
        command, fmt = case
        script = f'{_command(_pipe_args(command, fmt, big))} | head -c 100 > /dev/null; echo "status=${{PIPESTATUS[0]}}" >&2'
        env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")
        return subprocess.run(["bash", "-c", script], capture_output=True, env=env, cwd=ROOT, timeout=300, check=False)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(PIPES, pool.map(run, PIPES)))


@pytest.mark.parametrize("command,fmt", PIPES, ids=[f"{c}-{f}" for c, f in PIPES])
def test_head_closes_the_pipe_quietly(pipe_runs, command, fmt):
    result = pipe_runs[(command, fmt)]
    stderr = result.stderr.decode()
    lines = [line for line in stderr.splitlines() if not line.startswith("verify: ")]  # verify's summary line
    assert lines == ["status=0"], stderr
    assert "Broken" not in stderr and "Traceback" not in stderr


def test_the_pipe_outputs_are_large(big):
    """The pipe tests mean something only if the output outlasts the pipe buffer (64 kB)."""
    for command, fmt in [("weights", "csv"), ("predict", "ndjson"), ("stats", "json")]:
        result = invoke(*_pipe_args(command, fmt, big))
        assert result.exit_code == 0, result.stderr
        assert len(result.stdout) > 65536, (command, len(result.stdout))


# ------------------------------------------------------------------ -o: atomic, even mid-stream


def _fail_after_first(blocks, error):
    iterator = iter(blocks)
    yield next(iterator)
    raise error


@pytest.fixture
def break_writer(monkeypatch):
    """Make the writer's blocks fail after the first one has been written."""
    from lstm_inspect import writers

    def arm(error: BaseException):
        original = writers.write_blocks

        def failing(blocks, columns, fmt, stream):
            return original(_fail_after_first(blocks, error), columns, fmt, stream)

        monkeypatch.setattr(writers, "write_blocks", failing)

    return arm


TABULAR = [
    ("layers", [KERAS3_ARCHIVE]),
    ("weights", [KERAS3_ARCHIVE]),
    ("trace", [KERAS3_ARCHIVE, INPUT_CSV]),
    ("trace", [KERAS3_ARCHIVE, INPUT_CSV, "--wide"]),
    ("predict", [KERAS3_ARCHIVE, INPUT_CSV, "--sequence-length", "2"]),
    ("stats", [KERAS3_ARCHIVE, INPUT_CSV]),
]


@pytest.mark.parametrize("suffix", ["csv", "json", "ndjson", "parquet"])
@pytest.mark.parametrize("command,args", TABULAR, ids=[f"{c}{'-wide' if '--wide' in a else ''}" for c, a in TABULAR])
def test_failure_after_rows_were_written_keeps_the_old_file(tmp_path, break_writer, command, args, suffix):
    target = tmp_path / f"out.{suffix}"
    good = invoke(command, *args, "-o", target)
    assert good.exit_code == 0, good.stderr
    before = target.read_bytes()
    break_writer(InputDataError("failed mid-stream"))
    result = invoke(command, *args, "-o", target)
    assert_refused(result.exit_code, result.stdout, result.stderr, ["failed mid-stream"])
    assert target.read_bytes() == before, "the good file was replaced"
    fresh = tmp_path / f"fresh.{suffix}"
    result = invoke(command, *args, "-o", fresh)
    assert result.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out.{suffix}"], "a partial or temporary file was left"


def test_internal_error_mid_stream_exits_3_and_leaves_nothing(tmp_path, break_writer):
    target = tmp_path / "trace.csv"
    target.write_text("precious\n")
    break_writer(RuntimeError("a bug"))
    result = invoke("trace", KERAS3_ARCHIVE, INPUT_CSV, "-o", target)
    assert result.exit_code == 3
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("lstm-inspect: internal error: RuntimeError: a bug") and "--debug" in line
    assert target.read_text() == "precious\n"
    assert [p.name for p in tmp_path.iterdir()] == ["trace.csv"]


def test_interrupt_mid_stream_leaves_nothing(tmp_path, break_writer):
    target = tmp_path / "trace.json"
    break_writer(KeyboardInterrupt())
    result = invoke("trace", KERAS3_ARCHIVE, INPUT_CSV, "-o", target)
    assert result.exit_code == 130
    assert list(tmp_path.iterdir()) == []


def test_table_view_failing_mid_render_leaves_nothing(tmp_path, monkeypatch):
    from lstm_inspect import terminal_views

    def failing(blocks, spec, console):
        console.print("half a table")
        raise InputDataError("failed while drawing")

    monkeypatch.setattr(terminal_views, "render_trace", failing)
    target = tmp_path / "trace.txt"
    result = invoke("trace", KERAS3_ARCHIVE, INPUT_CSV, "-o", target, "--format", "table")
    assert_refused(result.exit_code, result.stdout, result.stderr, ["failed while drawing"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["export", "plot"])
def test_binary_outputs_failing_mid_write_keep_the_old_file(tmp_path, monkeypatch, command):
    from lstm_inspect import api, export

    target = tmp_path / ("weights.npz" if command == "export" else "trace.png")
    target.write_bytes(b"the good one")

    def half_then_fail(first, stream, *args, **kwargs):  # ExportedWeights.write(self, stream, fmt) / save_figure(figure, stream, ...)
        stream.write(b"PK\x03\x04 half of it")
        raise InputDataError("failed while writing")

    if command == "export":
        monkeypatch.setattr(export.ExportedWeights, "write", half_then_fail)
        args = ["export", KERAS3_ARCHIVE, "-o", target]
    else:
        monkeypatch.setattr(api, "save_figure", half_then_fail)
        args = ["plot", KERAS3_ARCHIVE, INPUT_CSV, "-o", target]
    result = invoke(*args)
    assert_refused(result.exit_code, result.stdout, result.stderr, ["failed while writing"])
    assert target.read_bytes() == b"the good one"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_per_sequence_initial_states_over_ragged_batches(tmp_path):
    """Sequences of unequal length are replayed in several batches; an initial state given per
    sequence (N, U) still reaches each sequence (once refused after the first batch was written)."""
    model = li.load_model(str(KERAS3_ARCHIVE))
    rng = np.random.default_rng(2)
    lengths = [5, 5, 5, 2]
    xs = [rng.normal(size=(n, 3)).astype(np.float32) for n in lengths]
    h0, c0 = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    data = tmp_path / "ragged.csv"
    data.write_text("id,x0,x1,x2\n" + "".join(f"s{k},{a},{b},{c}\n" for k, x in enumerate(xs) for a, b, c in x.tolist()))
    state = tmp_path / "state.npz"
    np.savez(state, **{"lstm/h": h0, "lstm/c": c0})
    result = invoke("trace", KERAS3_ARCHIVE, data, "--sequence-column", "id", "--initial-state", state,
                    "--format", "csv", "--dtype", "float64")
    assert result.exit_code == 0, result.stderr
    from reference import read_csv

    frame = read_csv(result.stdout)
    for k, x in enumerate(xs):
        alone = li.trace_arrays(model, x, options=li.ReplayOptions(dtype=np.float64),
                                initial_states={"lstm": [h0[k], c0[k]]})["lstm"]["hidden"][0]
        rows = frame[frame["sequence"] == f"s{k}"].sort_values(["t", "unit"])
        np.testing.assert_allclose(rows["hidden"].to_numpy().reshape(len(x), 4), alone, rtol=1e-12)
    wrong = tmp_path / "three.npz"
    np.savez(wrong, **{"lstm/h": h0[:3], "lstm/c": c0[:3]})
    target = tmp_path / "out.csv"
    result = invoke("trace", KERAS3_ARCHIVE, data, "--sequence-column", "id", "--initial-state", wrong, "-o", target)
    assert_refused(result.exit_code, result.stdout, result.stderr, ["has 3 rows", "4 sequence(s)"])
    assert not target.exists()


# ------------------------------------------------------------------ -o never replaces an input


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """Copies of a model, an input and an initial state in tmp_path/work, and cwd there."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.keras").write_bytes(KERAS3_ARCHIVE.read_bytes())
    (work / "data.csv").write_bytes(INPUT_CSV.read_bytes())
    (work / "state.json").write_text('{"lstm": {"h": [0, 0, 0, 0], "c": [0, 0, 0, 0]}}')
    (work / "sub").mkdir()
    os.symlink(work / "model.keras", work / "link.keras")
    os.link(work / "data.csv", work / "hard.csv")
    monkeypatch.chdir(work)
    return work


PROTECTED = {
    "the model": "model.keras",
    "the input": "data.csv",
    "the initial state": "state.json",
    "the model by another path": "sub/../model.keras",
    "the model by an absolute path": None,  # filled in by the test
    "the model through a symlink": "link.keras",
    "the input through a hard link": "hard.csv",
}


@pytest.mark.parametrize("what", sorted(PROTECTED))
@pytest.mark.parametrize("command", ["trace", "predict", "stats", "plot"])
def test_output_never_replaces_an_input(inputs, what, command):
    target = PROTECTED[what] or str(inputs / "model.keras")
    before = {p.name: p.read_bytes() for p in inputs.iterdir() if p.is_file()}
    args = [command, "model.keras", "data.csv", "--initial-state", "state.json", "-o", target]
    if command == "plot":
        args += ["--format", "png"]  # else plot refuses the file name's extension first
    result = invoke(*args)
    assert_refused(result.exit_code, result.stdout, result.stderr, ["refusing to overwrite", "input of this command"])
    assert {p.name: p.read_bytes() for p in inputs.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("command", ["layers", "weights", "export"])
def test_output_never_replaces_the_model(inputs, command):
    before = (inputs / "model.keras").read_bytes()
    for target in ("model.keras", "./sub/../link.keras", str(inputs / "model.keras")):
        result = invoke(command, "model.keras", "-o", target)
        assert_refused(result.exit_code, result.stdout, result.stderr, ["refusing to overwrite"])
    assert (inputs / "model.keras").read_bytes() == before
    assert (inputs / "link.keras").is_symlink()


@pytest.mark.parametrize("target,words", [("missing/out.csv", ["does not exist"]), ("sub", ["is a directory"])])
def test_output_into_nowhere_is_one_line(inputs, target, words):
    result = invoke("weights", "model.keras", "-o", target)
    assert_refused(result.exit_code, result.stdout, result.stderr, words)


# ------------------------------------------------------------------ exit statuses, documented and real


def _readme_statuses() -> dict[int, str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Exit status", 1)[1].split("\n## ", 1)[0]
    return {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.+) \|$", section, re.MULTILINE)}


def _help_statuses(text: str) -> dict[int, str]:
    flat = " ".join(text.split())
    sentence = flat.split("Exit status: ", 1)[1].split(".", 1)[0]
    return {int(code): meaning.strip() for code, meaning in re.findall(r"(\d) ([^,]+)", sentence)}


COMMANDS = ["layers", "weights", "trace", "predict", "verify", "stats", "plot", "export"]


def test_readme_help_and_exit_status_enum_agree():
    readme = _readme_statuses()
    assert sorted(readme) == sorted(int(s) for s in ExitStatus) == [0, 1, 2, 3, 130]
    assert "143" in readme[130] and "129" in readme[130]
    for command in [None] + COMMANDS:
        result = invoke(*([command] if command else []), "--help")
        assert result.exit_code == 0
        documented = _help_statuses(result.stdout)
        # Each command lists the statuses it can return (1 only for verify); the group, all of them;
        # the statuses of a stopped run on a line of their own.
        assert "130, 143 or 129" in " ".join(result.stdout.split())
        statuses = [s for s in sorted(readme) if s != ExitStatus.INTERRUPTED]
        expected = statuses if command in (None, "verify") else [s for s in statuses if s != 1]
        assert sorted(documented) == expected, (command, documented)
        # The same meaning in both places: the words that tell the statuses apart.
        meanings = {0: ["success"], 1: ["verify"], 2: ["usage", "input"], 3: ["internal", "--debug"]}
        for code, words in meanings.items():
            if code not in documented:
                continue
            for word in words:
                assert word in documented[code], (command, code, word, documented[code])
                assert word in readme[code] or (word == "input" and "input file" in readme[code]), (code, word, readme[code])


def test_statuses_returned(tmp_path, monkeypatch):
    assert invoke("layers", KERAS3_ARCHIVE, "--format", "csv").exit_code == ExitStatus.OK
    usage = invoke("trace", KERAS3_ARCHIVE, INPUT_CSV, "--units", "x")  # Click's own usage error
    assert usage.exit_code == ExitStatus.ERROR and usage.stdout == "" and "Traceback" not in usage.stderr
    missing = invoke("layers", tmp_path / "nothing.h5")
    assert_refused(missing.exit_code, missing.stdout, missing.stderr, ["no such file"])

    import lstm_inspect.model as model_module

    def boom(path, **options):
        raise ZeroDivisionError("a bug somewhere")

    monkeypatch.setattr(model_module, "load_model", boom)
    result = invoke("layers", KERAS3_ARCHIVE)
    assert result.exit_code == ExitStatus.INTERNAL == 3
    assert result.stderr == ("lstm-inspect: internal error: ZeroDivisionError: a bug somewhere "
                             "(rerun with --debug for the traceback)\n")
    with pytest.raises(ZeroDivisionError):  # --debug: the exception itself, for its traceback
        invoke("--debug", "layers", KERAS3_ARCHIVE)


def test_internal_error_in_a_real_process_is_one_line(tmp_path):
    """A bug provoked from outside (a module that raises on import, put first on the path)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import lstm_inspect.model as m\n"
        "def _boom(path, **options):\n    raise ZeroDivisionError('provoked')\n"
        "m.load_model = _boom\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    result = subprocess.run(CLI + ["layers", str(SAMPLES / "single_lstm.h5")], capture_output=True, env=env, timeout=120, check=False)
    assert result.returncode == 3
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "lstm-inspect: internal error: ZeroDivisionError: provoked (rerun with --debug for the traceback)"
    ]
    debug = subprocess.run(CLI + ["--debug", "layers", str(SAMPLES / "single_lstm.h5")], capture_output=True, env=env, timeout=120, check=False)
    assert debug.returncode != 0 and b"Traceback" in debug.stderr and b"ZeroDivisionError: provoked" in debug.stderr


@pytest.mark.parametrize("args, names", [
    (["trace", "{model}", "{csv}", "--threads", "0"], ["--threads", "trace --help"]),
    (["trace", "{model}", "{csv}", "--dtype", "float16"], ["--dtype", "float16"]),
    (["trace", "{model}"], ["INPUT", "trace --help"]),
    (["weights", "{model}", "--no-such-option"], ["--no-such-option", "weights --help"]),
    (["frobnicate"], ["frobnicate", "lstm-inspect --help"]),
    (["plot", "{model}", "{csv}"], ["--output"]),
])
def test_usage_errors_are_one_line_with_status_2(args, names):
    model, csv = SAMPLES / "single_lstm.keras", SAMPLES / "single_lstm.csv"
    argv = [a.format(model=model, csv=csv) for a in args]
    result = subprocess.run(CLI + argv, capture_output=True, timeout=120, check=False)
    stderr = result.stderr.decode()
    assert result.returncode == ExitStatus.ERROR
    assert result.stdout == b""
    assert len(stderr.splitlines()) == 1 and stderr.startswith("lstm-inspect: error: "), stderr
    for name in names:
        assert name in stderr


def test_no_arguments_shows_the_help():
    result = subprocess.run(CLI, capture_output=True, timeout=120, check=False)
    assert result.returncode == ExitStatus.ERROR
    assert b"Usage: lstm-inspect" in result.stdout + result.stderr and b"Commands:" in result.stdout + result.stderr
