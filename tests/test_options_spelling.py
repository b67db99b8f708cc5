"""One spelling across commands, and help that lists only what a command does (issue 10, point 4).

``--gates`` takes comma lists and repeats in every command (``--gate`` is a
hidden alias), ``--layer`` and ``--units`` too; an unknown gate is refused
with the layer's gates in their own order.  Each command's help epilog names
only the formats it accepts and the exit statuses it can return.
"""

from __future__ import annotations

import re

import click
import pytest
from conftest import SAMPLES
from reference import invoke, read_csv

from lstm_inspect.cli import cli

SINGLE = SAMPLES / "single_lstm.h5"
CSV = SAMPLES / "single_lstm.csv"
GRU = SAMPLES / "gru_rnn.keras"
ALL_FORMATS = {"table", "csv", "json", "ndjson", "parquet", "png", "svg", "pdf", "npz"}


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.mark.parametrize("spellings", [
    [["--gates", "i,f"], ["--gate", "i,f"], ["--gates", "f", "--gates", "i"], ["--gate", "f", "--gate", "i"],
     ["--gates", "f,i"]],
])
def test_weights_gates_all_spellings_agree(spellings):
    outputs = {ok("weights", SINGLE, *spelling, "--format", "csv").stdout for spelling in spellings}
    assert len(outputs) == 1
    frame = read_csv(outputs.pop())
    assert list(dict.fromkeys(frame["gate"])) == ["i", "f"]  # the layer's order, not the order given


@pytest.mark.parametrize("command", ["trace", "stats"])
def test_trace_and_stats_take_the_same_spellings(command):
    base = (command, SINGLE, CSV, "--format", "csv")
    outputs = {ok(*base, *spelling).stdout for spelling in (["--gates", "i,f"], ["--gate", "f", "--gate", "i"],
                                                           ["--gates", "f", "--gates", "i,f"])}
    assert len(outputs) == 1


def test_units_and_layers_repeat_and_take_comma_lists():
    a = ok("trace", GRU, SAMPLES / "gru_rnn.csv", "--units", "0,2", "--layer", "gru,rnn", "--format", "csv").stdout
    b = ok("trace", GRU, SAMPLES / "gru_rnn.csv", "--units", "2", "--units", "0", "--layer", "gru", "--layer", "rnn",
           "--format", "csv").stdout
    assert a == b
    frame = read_csv(a)
    assert sorted(set(frame["unit"])) == [0, 2] and list(dict.fromkeys(frame["layer"])) == ["gru", "rnn"]


@pytest.mark.parametrize("command, args", [
    ("weights", [SINGLE]),
    ("trace", [SINGLE, CSV]),
    ("stats", [SINGLE, CSV]),
])
def test_unknown_gate_lists_the_layers_gates_in_their_order(command, args):
    result = invoke(command, *args, "--gates", "i,x")
    assert result.exit_code == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "unknown gate(s) x" in line
    assert re.search(r"i, f, c, o", line), line


def test_weights_error_for_a_gru():
    result = invoke("weights", GRU, "--layer", "gru", "--gate", "o")
    [line] = result.stderr.splitlines()
    assert "unknown gate(s) o" in line and "z, r, c" in line


# ------------------------------------------------------------------ help


def _format_choices(command: click.Command) -> set[str]:
    for param in command.params:
        if param.name == "fmt":
            return set(param.type.choices)
    return set()


def _epilog_formats(text: str) -> set[str]:
    output = " ".join(text.split()).split("Output:", 1)[1]
    return {word for word in re.findall(r"[a-z]+", output) if word in ALL_FORMATS}


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_help_lists_only_the_commands_own_formats_and_statuses(name):
    command = cli.commands[name]
    result = invoke(name, "--help")
    assert result.exit_code == 0
    text = result.stdout
    accepted = _format_choices(command)
    if accepted:
        listed = _epilog_formats(text)
        assert listed <= accepted, (name, listed - accepted)
        assert accepted - {"table"} <= listed, (name, accepted - listed)
    statuses = " ".join(text.split()).split("Exit status:", 1)[1].split(".", 1)[0]
    assert ("1 verify" in statuses) is (name == "verify"), statuses
    assert "--gate " not in text and "--gate," not in text  # the alias is hidden
    assert "143" in text  # stopped by a signal


def test_gates_help_is_shown_under_its_one_name():
    text = invoke("weights", "--help").stdout
    assert "--gates" in text
