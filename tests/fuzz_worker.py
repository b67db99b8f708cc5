"""The process that test_fuzz.py feeds mutated files to (one JSON request per line on stdin).

A request names a model file (``{"model": PATH, "data": CSV}``) or an input
file (``{"input": PATH, "model": MODEL}``) and whether to go through the
Python API, the command line (``"cli": [args]``), or both.  The answer (one
JSON line on stdout) is ``{"status": "ok" | "refused" | "bug", "detail": ...}``:
``refused`` is the tool's own one-line error, ``bug`` anything else (another
exception, a traceback or stray text on stderr, a wrong exit status).

It runs in its own process so that a crash inside a C library (HDF5, zlib)
or a hang is seen by the test as a finding instead of taking pytest down.
To replay a saved failing input by hand::

    python tests/fuzz_worker.py --model FILE [--data input.csv]
    python tests/fuzz_worker.py --input FILE --data-model model.keras
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lstm_inspect as li  # after the path is set
from lstm_inspect.errors import LstmInspectError


def _where(exc: BaseException) -> str:
    """The innermost lstm_inspect frame of a traceback, as file:line (for grouping findings)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "lstm_inspect" in f.filename]
    frame = frames[-1] if frames else traceback.extract_tb(exc.__traceback__)[-1]
    return f"{os.path.basename(frame.filename)}:{frame.lineno}"


def _bug(exc: BaseException, step: str) -> dict:
    return {
        "status": "bug",
        "kind": f"{type(exc).__name__} at {_where(exc)}",
        "detail": f"{step}: {type(exc).__name__}: {exc}"[:500],
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }


def exercise_model(path: str, data: str) -> dict:
    """Everything the API does with a model file, until the first refusal."""
    steps = [
        ("load_model", lambda m: None),
        ("layer_rows", lambda m: li.layer_rows(m)),
        ("label_weights", lambda m: list(li.label_weights(m))),
        ("weights_frame", lambda m: li.weights_frame(m)),
        ("export gates", lambda m: li.export_weights(m, "gates")),
        ("export onnx", lambda m: li.export_weights(m, "onnx")),
        ("trace", lambda m: li.trace(m, data)),
        ("trace_arrays", lambda m: li.trace_arrays(m, data)),
        ("predict", lambda m: li.predict(m, data)),
        ("gate_stats", lambda m: li.gate_stats(m, data)),
    ]
    try:
        # isolate: as the command line reads files (a crash or a loop inside the HDF5 C
        # library is then refused; without it, it would take this process down).
        model = li.load_model(path, isolate=True)
    except LstmInspectError as exc:
        return {"status": "refused", "detail": str(exc)}
    except BaseException as exc:  # anything else is the finding
        return _bug(exc, "load_model")
    refused = None
    for name, step in steps[1:]:
        try:
            step(model)
        except LstmInspectError as exc:
            refused = refused or f"{name}: {exc}"
            if name in ("layer_rows", "label_weights"):
                break
        except BaseException as exc:  # anything else is the finding
            return _bug(exc, name)
    return {"status": "refused" if refused else "ok", "detail": refused or ""}


def exercise_input(path: str, model_path: str) -> dict:
    """The input readers and a trace of the input through a model that fits the sample."""
    try:
        model = li.load_model(model_path)
        sequences = li.as_sequences(path)
        li.trace(model, sequences)
        li.predict(model, sequences)
    except LstmInspectError as exc:
        return {"status": "refused", "detail": str(exc)}
    except BaseException as exc:  # anything else is the finding
        return _bug(exc, "input")
    return {"status": "ok", "detail": ""}


def run_cli(args: list[str]) -> dict:
    """The real entry point in-process: exit 0 or 2, and stderr only lstm-inspect's own lines."""
    from click.testing import CliRunner

    from lstm_inspect.cli import main

    class Entry:
        name = "lstm-inspect"

        def main(self, args, prog_name=None, **extra):
            main(list(args))

    result = CliRunner().invoke(Entry(), args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return _bug(result.exception, f"cli {' '.join(args[:1])}")
    stderr, lines = result.stderr, result.stderr.splitlines()
    problem = None
    if result.exit_code not in (0, 2):
        problem = f"exit status {result.exit_code}"
    elif "Traceback" in stderr:
        problem = "a traceback on stderr"
    elif result.exit_code == 2:
        usage = bool(lines) and lines[0].startswith("Usage:")
        # Warnings about the file (NaN weights) may come before the one error line.
        errors = [line for line in lines if not line.startswith("lstm-inspect: warning: ")]
        if not usage and (len(errors) != 1 or not errors[0].startswith("lstm-inspect: error: ")):
            problem = "not one error line"
        elif result.stdout:
            problem = "output on stdout despite the error"
    elif any(not line.startswith(("lstm-inspect: warning: ", "lstm-inspect: note: ")) for line in lines):
        problem = "stray text on stderr"  # a served input may get warnings and notes (CSV detection), nothing else
    if problem:
        return {"status": "bug", "kind": f"cli {args[0]}: {problem}",
                "detail": f"{' '.join(map(str, args))}: {problem}: {stderr[-600:]}", "traceback": ""}
    return {"status": "refused" if result.exit_code == 2 else "ok", "detail": lines[0] if lines else ""}


def handle(request: dict) -> dict:
    answers = []
    if request.get("api", True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's notes on overflowing weights (API users see them)
            if "input" in request:
                answers.append(exercise_input(request["input"], request["model"]))
            else:
                answers.append(exercise_model(request["model"], request["data"]))
    if request.get("cli"):
        answers.append(run_cli([str(a) for a in request["cli"]]))
    for answer in answers:
        if answer["status"] == "bug":
            return answer
    return answers[-1] if answers else {"status": "ok", "detail": ""}


def serve() -> None:
    from lstm_inspect import reading

    reading.ISOLATION_SECONDS = 5.0  # a file the HDF5 library loops on costs 5 s of the budget, not 60
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers on the pipe
    for line in sys.stdin:
        try:
            answer = handle(json.loads(line))
        except BaseException as exc:  # report it and keep serving
            answer = _bug(exc, "worker")
        out.write(json.dumps(answer) + "\n")
        out.flush()


def main(argv: list[str]) -> int:
    if not argv:
        serve()
        return 0
    import argparse

    parser = argparse.ArgumentParser(description="Replay one fuzz input.")
    parser.add_argument("--model")
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "sample_models", "single_lstm.csv"))
    parser.add_argument("--input")
    parser.add_argument("--data-model", default=os.path.join(os.path.dirname(__file__), "..", "sample_models", "single_lstm.keras"))
    options = parser.parse_args(argv)
    if options.input:
        answer = exercise_input(options.input, options.data_model)
    else:
        answer = exercise_model(options.model, options.data)
    print(json.dumps(answer, indent=2))
    print(answer.get("traceback", ""))
    return 1 if answer["status"] == "bug" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
