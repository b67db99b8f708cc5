"""Stopped runs leave nothing behind (issue 10, point 7).

A real process traces a long input to ``-o out.csv``; once its temporary
file exists (it is writing), it receives SIGTERM, SIGHUP or SIGINT.  It must
remove the temporary file, leave no ``out.csv``, print one line in the
tool's format and end with 128 + the signal number, the status a shell
reports for a process that signal ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import CLI, ROOT, SAMPLES

SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]


@pytest.fixture(scope="module")
def long_input(tmp_path_factory):
    """300,000 steps of 3 features: seconds of tracing, a file of tens of MB."""
    path = tmp_path_factory.mktemp("long") / "long.npy"
    np.save(path, np.random.default_rng(0).normal(size=(300_000, 3)).astype("float32"))
    return path


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_mid_write_leaves_nothing(tmp_path, long_input, signum):
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(CLI + ["trace", str(SAMPLES / "single_lstm.keras"), str(long_input), "-o", "out.csv"],
                               cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.endswith(".part") for p in work.iterdir()):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never started writing"
            time.sleep(0.02)
        time.sleep(0.3)  # well into the writing
        assert process.poll() is None, "the run ended before it could be stopped: make the input longer"
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signum, stderr
    assert stdout == b""
    assert stderr.decode().splitlines() == [
        f"lstm-inspect: interrupted by {signal.Signals(signum).name}; nothing written to out.csv"
    ]
    assert list(work.iterdir()) == []


def test_a_signal_before_any_output_is_one_line(tmp_path):
    """Stopped while reading a long input from a pipe that never ends: one line, nothing else."""
    process = subprocess.Popen(CLI + ["trace", str(SAMPLES / "single_lstm.keras"), "-"],
                               cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Far more than a pipe holds: once written, the process is reading (its handlers are set).
        process.stdin.write(b"x0,x1,x2\n" + b"0.5,1,2\n" * 200_000)
        process.stdin.flush()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM
    assert stdout == b""
    assert stderr.decode().splitlines() == ["lstm-inspect: interrupted by SIGTERM"]
