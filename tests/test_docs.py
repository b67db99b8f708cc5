"""The README's examples run as written and print what the README shows.

``console`` blocks: each ``$ command`` line runs in bash from the repository
root (with this interpreter's bin folder first on PATH) and must print the
lines under it: the same text, except that decimal numbers are compared as
numbers (relative 1e-5), because the last digits of a float32 depend on the
BLAS kernel (OpenBLAS picks one per processor; ``OPENBLAS_CORETYPE`` forces
one).  Headers, names, integers (indices, counts, exit statuses) and every
other character must be identical.  ``text`` blocks that start with ``$ `` are
run and must succeed (their output is a terminal table, shown for reading).
Python blocks in the README run too.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ROOT

pytestmark = pytest.mark.docs

README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = os.path.dirname(sys.executable)


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def _examples() -> list[tuple[str, list[str] | None]]:
    return [example for block in _example_blocks() for example in block]


def _example_blocks() -> list[list[tuple[str, list[str] | None]]]:
    """The README's commands, block by block: a block's commands may build on each other's files."""
    blocks = []
    for block in _blocks("console"):
        examples, command, expected = [], None, []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command:
                    examples.append((command, expected))
                command, expected = line[2:], []
            else:
                expected.append(line)
        if command:
            examples.append((command, expected))
        blocks.append(examples)
    for block in _blocks("text"):
        first = block.splitlines()[0] if block.strip() else ""
        if first.startswith("$ "):
            blocks.append([(first[2:], None)])
    return blocks


# Examples on the shared real-world corpus run where it is (beside the checkout), else skip.
CORPUS = "../shared/wild_models"
HAVE_CORPUS = (ROOT / CORPUS / "manifest.json").exists()


# A decimal number standing alone: not part of a name (lstm_1), a version (3.15.1) or a path.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
RELATIVE = 1e-5  # float32 carries ~7 digits; BLAS kernels differ in the last one or two
ABSOLUTE = 1e-7  # for values near 0, where one float32 rounding of a sum is far above 1e-5 relative


def _numbers_differ(got: str, want: str) -> bool:
    """Two number tokens differ: integers as text, decimals beyond the tolerance."""
    if not any(mark in token for token in (got, want) for mark in ".eE"):
        return got != want
    return not math.isclose(float(got), float(want), rel_tol=RELATIVE, abs_tol=ABSOLUTE)


def line_mismatch(got: str, want: str) -> str | None:
    """Why ``got`` is not the README line ``want`` (None when it is): text exactly, numbers as numbers."""
    if NUMBER.split(got) != NUMBER.split(want):
        return f"text differs:\n  got:  {got}\n  want: {want}"
    for a, b in zip(NUMBER.findall(got), NUMBER.findall(want)):
        if _numbers_differ(a, b):
            return f"{a} is not {b} (relative {RELATIVE:g}):\n  got:  {got}\n  want: {want}"
    return None


def assert_output_matches(got: list[str], want: list[str]) -> None:
    assert len(got) == len(want), f"{len(got)} lines, the README shows {len(want)}:\n" + "\n".join(got)
    problems = [why for a, b in zip(got, want) if (why := line_mismatch(a, b))]
    assert not problems, "\n".join(problems)


def _run(command: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(["bash", "-c", "set -o pipefail; " + command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


EXAMPLES = _examples()


def _runnable(command: str) -> bool:
    return HAVE_CORPUS or CORPUS not in command


@pytest.fixture(scope="module")
def example_runs() -> dict[str, subprocess.CompletedProcess]:
    """Every README command, run up front: blocks two at a time, a block's commands in order."""

    def run_block(block):
        return {command: _run(command) for command, _ in block if _runnable(command)}

    runs: dict[str, subprocess.CompletedProcess] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for results in pool.map(run_block, _example_blocks()):
            runs.update(results)
    return runs


@pytest.mark.parametrize("command,expected", EXAMPLES, ids=lambda v: v if isinstance(v, str) else None)
def test_readme_example(example_runs, command, expected):
    if not _runnable(command):
        pytest.skip(f"the real-world corpus is not at {CORPUS} beside the checkout")
    result = example_runs[command]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if expected is not None:
        assert_output_matches(result.stdout.splitlines(), expected)


@pytest.mark.parametrize(
    "got,want,same",
    [
        ("0,0.8165959,0.10060618,0.08279788", "0,0.8165959,0.10060618,0.08279785", True),  # 4e-7 relative
        ("0,0.8165959,0.10060618,0.0828", "0,0.8165959,0.10060618,0.08279785", False),  # 3e-5 relative
        ("1,0.8165959", "0,0.8165959", False),  # an index is an integer: exact
        ("lstm_2,0.5", "lstm_1,0.5", False),  # a name is text, digits included
        ("lstm_1,LSTM,3.15.0", "lstm_1,LSTM,3.15.1", False),  # a version is text
        ("t=6 unit=1 f=0.85523786", "t=6 unit=1 f=0.85523784", True),
        ("a,b", "a;b", False),
        ("lstm,1.5e-08", "lstm,-2e-08", True),  # both within 1e-7 of each other, near 0
        ("0.5,1", "0.5,1,2", False),
    ],
)
def test_readme_lines_compare_numbers_with_a_tolerance_and_text_exactly(got, want, same):
    assert (line_mismatch(got, want) is None) == same


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python(index, tmp_path):
    code = _blocks("python")[index]
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_readme_leads_with_make_demo_and_make_test():
    head = README[:1500]
    assert "make demo" in head and "make test" in head


@pytest.mark.parametrize("command", ["layers", "weights", "trace", "predict"])
def test_every_command_has_help_and_is_documented(command):
    result = subprocess.run([sys.executable, "-m", "lstm_inspect", command, "--help"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0
    assert "Usage:" in result.stdout and "Exit status" in result.stdout
    assert f"`{command} " in README or f"lstm-inspect {command}" in README


def test_readme_lists_exactly_the_layers_replayed():
    """The README's "Layers replayed" names every registered builder and recurrent class, and nothing else."""
    from lstm_inspect.kinds import KINDS
    from lstm_inspect.ops import replayed_classes

    section = README.split("### Layers replayed", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"`([A-Z]\w+)`", section)) - {"RNN", "Bidirectional"}
    known = set(replayed_classes()) | {name for kind in KINDS for name in kind.keras_classes}
    assert listed == known, (sorted(listed - known), sorted(known - listed))
