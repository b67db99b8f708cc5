"""The commands in a real terminal: tmux gives each a shell in a terminal of 80 or 120 columns (TERM
xterm-256color), the command is typed into it (``send-keys``), and the screen is read back
(``capture-pane``) as a person would read it.

These are the failures a new user met on a real screen: numbers split across lines and cut to
``0.…``, headers wrapped into fragments, a trace view whose ``t`` column had no width and whose
title named units it did not show, a ``…`` row where nothing was left out, and long work with no
sign of progress.  tmux runs on a server of its own (``-L``), which the test stops.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLES
from hostile import write_lstm_h5
from screens import ANSI, NUMBER, assert_fits, body_rows, header

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")

START = "__lstm_inspect_start__"
END = "__lstm_inspect_done__"


class Tmux:
    """A private tmux server: one window per command, read back with capture-pane."""

    def __init__(self) -> None:
        self.socket = f"lstm-inspect-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30,
                              check=False)
        return done.stdout

    def start(self, name: str, argv: list[str], width: int, height: int = 50) -> None:
        """Open a shell in a new terminal ``width`` columns wide and type ``lstm-inspect ARGV`` into it."""
        env = {"PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "TF_CPP_MIN_LOG_LEVEL": "3"}
        command = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), "env -u COLUMNS -u LINES -u NO_COLOR",
                            shlex.quote(sys.executable), "-m lstm_inspect", *map(shlex.quote, map(str, argv))])
        self.tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), "bash --norc --noprofile")
        # The markers are typed with quotes inside them, so that only their output matches START and END.
        typed = f"printf '%s\\n' {START[:-2]}''__; {command}; printf '%s\\n' {END[:-2]}''__"
        self.tmux("send-keys", "-t", name, typed, "Enter")

    def screen(self, name: str, escapes: bool = False) -> str:
        """What the command has printed so far (from the START line on, scrollback included; with colour
        escapes when ``escapes``): the typed command line is left out."""
        text = self.tmux("capture-pane", "-p", "-t", name, "-S", "-", *(["-e"] if escapes else []))
        lines = text.splitlines(keepends=True)
        starts = [k for k, line in enumerate(lines) if ANSI.sub("", line).strip() == START]
        return "".join(lines[starts[0] + 1:]) if starts else ""

    def wait(self, name: str, timeout: float = 120) -> str:
        """The screen once the command has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen(name)
            if END in text:
                return text.split(END)[0]
            time.sleep(0.2)
        raise AssertionError(f"{name} did not end in {timeout} s:\n{self.screen(name)}")

    def stop(self) -> None:
        self.tmux("kill-server")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("terminal")
    rng = np.random.default_rng(3)
    U, F = 32, 3
    model = write_lstm_h5(folder / "lstm32.h5", [{"name": "lstm", "kernel": rng.normal(0, 0.5, (F, 4 * U)),
                                                   "recurrent_kernel": rng.normal(0, 0.3, (U, 4 * U)),
                                                   "bias": rng.normal(0, 0.2, 4 * U)}], features=F)
    np.save(folder / "x15.npy", rng.normal(size=(15, F)).astype(np.float32))
    np.save(folder / "long.npy", rng.normal(size=(300_000, F)).astype(np.float32))
    return {"lstm32": model, "x15": folder / "x15.npy", "long": folder / "long.npy", "folder": folder}


@pytest.fixture(scope="module")
def screens(files):
    """Every command of the module started at once (they run side by side), then read back."""
    tmux = Tmux()
    runs = {
        "layers-80": (["layers", SAMPLES / "stacked_lstm.keras"], 80),
        "weights-80": (["weights", SAMPLES / "single_lstm.h5"], 80),
        "weights-120": (["weights", files["lstm32"]], 120),
        "stats-80": (["stats", SAMPLES / "single_lstm.h5", SAMPLES / "single_lstm.csv"], 80),
        "trace-80": (["trace", files["lstm32"], files["x15"]], 80),
        "trace-120": (["trace", files["lstm32"], files["x15"]], 120),
        "progress": (["trace", files["lstm32"], files["long"], "-o", files["folder"] / "long.csv"], 120),
        "quiet": (["trace", files["lstm32"], files["long"], "-o", files["folder"] / "quiet.csv", "--quiet"], 120),
    }
    try:
        for name, (argv, width) in runs.items():
            tmux.start(name, argv, width)
        seen = _watch_progress(tmux, ["progress", "quiet"])
        yield {name: tmux.wait(name) for name in runs}, seen, tmux
    finally:
        tmux.stop()


def _watch_progress(tmux: Tmux, names: list[str], timeout: float = 240) -> dict[str, str]:
    """What each screen showed while its command ran: the first frame with a progress bar, or ''."""
    seen = dict.fromkeys(names, "")
    deadline = time.monotonic() + timeout
    running = set(names)
    while running and time.monotonic() < deadline:
        for name in list(running):
            text = tmux.screen(name)
            if "steps/s" in text and not seen[name]:
                seen[name] = text
            if END in text:
                running.discard(name)
        time.sleep(0.1)
    return seen


def test_weights_at_80_columns_numbers_whole_path_named(screens):
    text = screens[0]["weights-80"]
    assert_fits(text, 80)
    names = header(text)
    rows = body_rows(text)
    assert len(rows) == 12  # one line per (tensor, gate)
    for row in rows:
        for name in ("mean", "std", "min", "max"):
            assert NUMBER.match(row[names.index(name)]), row
    assert "not shown at 80 columns: path in file" in " ".join(text.split())


def test_weights_at_120_columns_of_an_lstm32(screens):
    text = screens[0]["weights-120"]
    assert_fits(text, 120)
    assert len(body_rows(text)) == 12


def test_stats_at_80_columns_numbers_never_cut(screens):
    text = screens[0]["stats-80"]
    assert_fits(text, 80)
    names = header(text)
    for row in body_rows(text):
        for name in ("mean", "std", "min", "max"):
            assert NUMBER.match(row[names.index(name)]), row


def test_layers_at_80_columns_one_line_per_layer(screens):
    text = screens[0]["layers-80"]
    assert_fits(text, 80)
    header(text)
    assert [row[0] for row in body_rows(text)] == ["input_layer_1", "lstm_1", "lstm_2", "head"]


@pytest.mark.parametrize("width", [80, 120])
def test_trace_of_an_lstm32_names_what_it_shows(screens, width):
    text = screens[0][f"trace-{width}"]
    assert_fits(text, width)
    rows = body_rows(text)
    assert [row[0] for row in rows] == [str(t) for t in range(15)]  # t never zero-width; no … row
    title = " ".join(text.split("┏")[0].split())
    assert "of 32 (--units to choose)" in title and "all 15 steps" in title
    first, last = title.split("units ")[1].split(" ")[0].split("–")
    shown = int(last) - int(first) + 1
    assert all(len(cell) == shown for row in rows for cell in row[1:])  # one shaded cell per unit named


def test_trace_shades_are_256_colours_in_the_terminal(screens):
    tmux = screens[2]
    raw = tmux.screen("trace-80", escapes=True)
    legend = [line for line in raw.splitlines() if "viridis" in ANSI.sub("", line)]
    assert legend
    colours = set(re.findall(r"\x1b\[38;5;(\d+)m(?:\x1b\[[0-9;]*m)*█", legend[0]))
    assert len(colours) == 18  # 9 distinct shades for the gates, 9 for the diverging values


def test_progress_shows_on_a_terminal_and_then_goes(screens):
    final, seen, _ = screens
    frame = " ".join(seen["progress"].split())
    assert "replay" in frame and "steps/s" in frame and "ETA" in frame, seen["progress"]
    assert "ETA" not in final["progress"] and "error" not in final["progress"]  # erased when the work is done


def test_quiet_shows_no_progress(screens):
    final, seen, _ = screens
    assert seen["quiet"] == "" and "ETA" not in final["quiet"]
