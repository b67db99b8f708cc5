"""The README's examples run as written and print what the README shows.

``console`` blocks: each ``$ command`` line runs in bash from the repository
root (with this interpreter's bin folder first on PATH) and must print
exactly the lines under it.  ``text`` blocks that start with ``$ `` are run
and must succeed (their output is a terminal table, shown for reading).
Python blocks in the README run too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = os.path.dirname(sys.executable)


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _examples() -> list[tuple[str, list[str] | None]]:
    examples = []
    for block in _blocks("console"):
        command, expected = None, []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command:
                    examples.append((command, expected))
                command, expected = line[2:], []
            else:
                expected.append(line)
        if command:
            examples.append((command, expected))
    for block in _blocks("text"):
        first = block.splitlines()[0] if block.strip() else ""
        if first.startswith("$ "):
            examples.append((first[2:], None))
    return examples


def _run(command: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(["bash", "-c", "set -o pipefail; " + command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command,expected", _examples(), ids=lambda v: v if isinstance(v, str) else None)
def test_readme_example(command, expected):
    result = _run(command)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if expected is not None:
        assert result.stdout.splitlines() == expected


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python(index, tmp_path):
    code = _blocks("python")[index]
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_readme_leads_with_make_demo_and_make_test():
    head = README[:1500]
    assert "make demo" in head and "make test" in head


@pytest.mark.parametrize("command", ["layers", "weights", "trace", "predict"])
def test_every_command_has_help_and_is_documented(command):
    result = subprocess.run([sys.executable, "-m", "lstm_inspect", command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "Usage:" in result.stdout and "Exit status" in result.stdout
    assert f"`{command} " in README or f"lstm-inspect {command}" in README
