"""The terminal views as a person reads them: Rich consoles of 80, 120, 200 and 300 columns, in every
colour system (none, 16, 256, true colour).

What is asserted, at every width:

* every line fits the width and every table row keeps its right border;
* a number is never split across lines nor cut (``0.…``): each number cell parses, and equals the
  value computed here independently (the LSTM equations in float64, the weights as written);
* a table row is one line (one per layer, per gate slice, per unit);
* what a view leaves out is named below it with the option that shows it, and nothing else is;
* the trace view says exactly which units and steps it shows, and a ``…`` row appears only when
  steps were left out; no column has zero width;
* colour carries values (distinct shades along each map), and where there is no colour to carry
  them (16 colours, NO_COLOR, a file or a pipe) the view shows numbers.

The model is a hand-written LSTM(32) file (``hostile.write_lstm_h5``), so no Keras is needed here;
``test_real_terminal.py`` drives the command itself in a real terminal.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from conftest import SAMPLES
from hostile import write_lstm_h5
from screens import ANSI, NUMBER, assert_fits, body_rows, header

from lstm_inspect import outputs
from lstm_inspect.inputs import InputFiles
from lstm_inspect.model import load_model
from lstm_inspect.terminal import Terminal, make_console
from lstm_inspect.terminal_views import COOL_WARM, VIRIDIS, Painter

WIDTHS = [80, 120, 200, 300]
SYSTEMS = [None, "standard", "256", "truecolor"]
U, F = 32, 3


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture(scope="module")
def lstm32(tmp_path_factory):
    """(model path, {tensor: array}, inputs folder): an LSTM(32) of 3 features, sequences returned."""
    folder = tmp_path_factory.mktemp("views")
    rng = np.random.default_rng(12)
    arrays = {"kernel": rng.normal(0, 0.5, (F, 4 * U)), "recurrent_kernel": rng.normal(0, 0.3, (U, 4 * U)),
              "bias": rng.normal(0, 0.2, 4 * U)}
    path = write_lstm_h5(folder / "lstm32.h5", [{"name": "lstm", **arrays}], features=F)
    for steps in (15, 16, 17, 100):
        np.save(folder / f"x{steps}.npy", rng.normal(size=(steps, F)).astype(np.float32))
    stored = {k: v.astype(np.float32).astype(np.float64) for k, v in arrays.items()}  # as the file holds them
    return path, stored, folder


def lstm_steps(arrays: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """Keras' LSTM equations in float64 (gates i, f, c, o in the kernel's column order): (T, U) each."""
    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    h, cell = np.zeros(U), np.zeros(U)
    out: dict[str, list] = {name: [] for name in ("i", "f", "c", "o", "cell", "hidden")}
    for row in x.astype(np.float64):
        z = row @ arrays["kernel"] + h @ arrays["recurrent_kernel"] + arrays["bias"]
        i, f, c, o = sigmoid(z[:U]), sigmoid(z[U:2 * U]), np.tanh(z[2 * U:3 * U]), sigmoid(z[3 * U:])
        cell = f * cell + i * c
        h = o * np.tanh(cell)
        for name, value in zip(out, (i, f, c, o, cell, h)):
            out[name].append(value)
    return {name: np.array(values) for name, values in out.items()}


def render(view, width: int, system: str | None = None) -> tuple[str, str]:
    """(plain text, text with ANSI codes) of ``view`` drawn on a console ``width`` columns wide."""
    stream = io.StringIO()
    view(make_console(stream, width=width, color_system=system, terminal=system is not None))
    raw = stream.getvalue()
    return ANSI.sub("", raw), raw


def close(text: str, expected: float, digits: int) -> bool:
    """Whether ``text`` is ``expected`` rounded to ``digits`` significant digits (or fixed decimals)."""
    value = float(text.rstrip("%"))
    return abs(value - expected) <= 0.5 * 10 ** (np.floor(np.log10(max(abs(expected), 1e-300))) - digits + 1) + 1e-12


# ------------------------------------------------------------------ weights


@pytest.mark.parametrize("width", WIDTHS)
def test_weights_numbers_are_whole_and_right_at_every_width(lstm32, width):
    path, arrays, _ = lstm32
    text, _ = render(outputs.weights_output(load_model(str(path))).view, width)
    assert_fits(text, width)
    names = header(text)
    rows = body_rows(text)
    assert len(rows) == 12  # one line per (tensor, gate): kernel, recurrent_kernel, bias × i, f, c, o
    for row, (tensor, gate) in zip(rows, [(t, g) for t in ("kernel", "recurrent_kernel", "bias") for g in range(4)]):
        block = arrays[tensor][..., gate * U:(gate + 1) * U]
        expected = {"mean": block.mean(), "std": block.std(), "min": block.min(), "max": block.max(),
                    "L2 norm": np.sqrt((block ** 2).sum())}
        for name, value in expected.items():
            if name in names:
                cell = row[names.index(name)]
                assert NUMBER.match(cell) and close(cell, value, 4), (name, cell, value)
    shown = "path in file" in names
    assert shown is (width >= 200)
    assert ("not shown" in text) is (not shown) and ("path in file" in text.split("┘")[-1]) is (not shown)


# ------------------------------------------------------------------ layers


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("sample", ["stacked_lstm.keras", "bidirectional_lstm.keras", "gru_rnn.keras",
                                    "seq2seq.keras", "stateful_lstm.h5", "embedding_lstm.keras"])
def test_layers_one_line_per_layer(sample, width):
    model = load_model(str(SAMPLES / sample))
    text, _ = render(outputs.layers_output(model).view, width)
    assert_fits(text, width)
    header(text)  # one line of headers, none wrapped into fragments
    assert len(body_rows(text)) == len(model.graph.layers)
    if "act." in header(text):
        assert "act. = activation" in text  # an abbreviation is explained, once
        assert text.count("act. = activation") == 1


# ------------------------------------------------------------------ stats


@pytest.mark.parametrize("width", WIDTHS)
def test_stats_numbers_are_whole_and_right(lstm32, width):
    path, arrays, folder = lstm32
    values = lstm_steps(arrays, np.load(folder / "x100.npy"))
    text, _ = render(outputs.stats_output(load_model(str(path)), InputFiles((str(folder / "x100.npy"),))).view, width)
    assert_fits(text, width)
    names = header(text)
    rows = body_rows(text)
    assert len(rows) == 6 * U  # one line per (value, unit)
    gate = None
    for k, row in enumerate(rows):
        gate = row[0].split()[0] if row[0] else gate
        assert gate == ("i", "f", "c", "o", "cell", "hidden")[k // U]
        unit = int(row[names.index("unit")])
        column = values[gate][:, unit]
        for name, value in (("mean", column.mean()), ("std", column.std()), ("min", column.min()), ("max", column.max())):
            cell = row[names.index(name)]
            assert NUMBER.match(cell) and close(cell, value, 3), (gate, unit, name, cell, value)
    assert ("var. rank" in names) is (width >= 120)
    assert ("not shown" in text) is (width < 120)


# ------------------------------------------------------------------ trace


def trace_text(path, x_path, width, system=None, **options):
    output = outputs.trace_output(load_model(str(path)), InputFiles((str(x_path),)), **options)
    return render(output.view, width, system)


def shown_units(title: str) -> list[int]:
    match = re.search(r"units? ([\d,–]+)", title)
    units: list[int] = []
    for part in match.group(1).split(","):
        lo, _, hi = part.partition("–")
        units += list(range(int(lo), int(hi or lo) + 1))
    return units


@pytest.mark.parametrize("system", SYSTEMS, ids=lambda s: s or "no-colour")
@pytest.mark.parametrize("width", WIDTHS)
def test_trace_view_says_what_it_shows(lstm32, width, system):
    path, arrays, folder = lstm32
    expected = lstm_steps(arrays, np.load(folder / "x15.npy"))
    text, raw = trace_text(path, folder / "x15.npy", width, system)
    assert_fits(text, width)
    title = " ".join(text.split("┏")[0].split())
    units = shown_units(title)
    assert units == list(range(len(units))) and units
    assert ("of 32 (--units to choose)" in title) is (len(units) < U)
    assert "all 15 steps" in title
    rows = body_rows(text)
    assert [row[0] for row in rows] == [str(t) for t in range(15)]  # the t column is never empty; no … row
    names = header(text)
    assert names == ["t", "i", "f", "c", "o", "cell", "hidden"]
    shades = "█" in text
    assert shades is (system in ("256", "truecolor"))
    for t, row in enumerate(rows):
        for name, cell in zip(names[1:], row[1:]):
            if shades:
                assert cell == "█" * len(units)
            else:
                numbers = cell.split()
                assert len(numbers) == len(units), (name, cell)
                for unit, number in zip(units, numbers):
                    assert abs(float(number) - expected[name][t, unit]) <= 5e-4 + 1e-6, (name, t, unit, number)
    if system in ("256", "truecolor"):
        assert "viridis" in text  # the legend says what the shades mean
        assert ("38;2;" in raw) is (system == "truecolor")  # 24-bit colours only where the terminal shows them


@pytest.mark.parametrize("steps, omitted", [(15, False), (16, False), (17, True), (100, True)])
def test_trace_ellipsis_row_only_when_steps_are_left_out(lstm32, steps, omitted):
    path, _, folder = lstm32
    text, _ = trace_text(path, folder / f"x{steps}.npy", 120)
    t_column = [row[0] for row in body_rows(text)]
    if omitted:
        assert t_column == [str(t) for t in range(12)] + ["…"] + [str(t) for t in range(steps - 4, steps)]
        assert f"first 12 and last 4 of {steps} steps" in " ".join(text.split())
    else:
        assert t_column == [str(t) for t in range(steps)]
        assert f"all {steps} steps" in text


def test_trace_units_chosen_with_units_option_are_named(lstm32):
    path, _, folder = lstm32
    text, _ = trace_text(path, folder / "x15.npy", 300, None, units=[3, 5, 6, 7])
    title = " ".join(text.split("┏")[0].split())
    assert "units 3,5–7 of 32 ·" in title and "--units to choose" not in title
    assert all(len(cell.split()) == 4 for row in body_rows(text) for cell in row[1:])


def test_trace_gates_that_do_not_fit_are_named(lstm32):
    path, _, folder = lstm32
    from lstm_inspect.engine import ReplayOptions

    text, _ = trace_text(path, folder / "x15.npy", 80, None, options=ReplayOptions(pre_activation=True))
    assert_fits(text, 80)
    names = header(text)[1:]
    left_out = [n for n in ("i", "f", "c", "o", "cell", "hidden", "z_i", "z_f", "z_c", "z_o") if n not in names]
    assert left_out and f"not shown at 80 columns: {', '.join(left_out)} (--gates to choose)" in " ".join(text.split())


# ------------------------------------------------------------------ colour


def luminance(colour: str) -> float:
    r, g, b = (int(colour[k:k + 2], 16) / 255 for k in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_shades_are_distinct_and_ordered():
    from rich.color import Color, ColorSystem

    true = Painter(17)
    ramp = [true.colour(v, "sequential") for v in np.linspace(0, 1, 17)]
    assert len(set(ramp)) == 17 and ramp == list(VIRIDIS)
    assert all(a < b for a, b in zip(map(luminance, ramp), map(luminance, ramp[1:])))  # lightness rises
    diverging = [true.colour(v, "diverging") for v in np.linspace(-1, 1, 17)]
    assert len(set(diverging)) == 17 and diverging == list(COOL_WARM)
    middle = luminance(diverging[8])
    assert all(luminance(c) < middle for c in diverging[:8] + diverging[9:])  # grey between blue and red
    palette = Painter(9)
    for scale, low in (("sequential", 0.0), ("diverging", -1.0)):
        shades = [palette.colour(low + (1 - low) * k / 8, scale) for k in range(9)]
        numbers = [Color.parse(c).downgrade(ColorSystem.EIGHT_BIT).number for c in shades]
        assert len(set(numbers)) == 9, (scale, numbers)  # nine different colours of the 256


class FakeTerminalStream(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("environ, system", [
    ({"TERM": "xterm-256color"}, "256"),
    ({"TERM": "xterm-256color", "COLORTERM": "truecolor"}, "truecolor"),
    ({"TERM": "xterm"}, "standard"),
    ({"TERM": "xterm-256color", "NO_COLOR": "1"}, None),
    ({"TERM": "dumb"}, None),
])
def test_terminal_colours_from_the_environment(environ, system):
    out = FakeTerminalStream()
    terminal = Terminal.detect(stdout=out, stderr=io.StringIO(), environ={**environ, "COLUMNS": "90"})
    assert terminal.stdout_is_terminal and not terminal.stderr_is_terminal
    assert terminal.color_system == system and terminal.width == 90
    console = terminal.console()
    assert console.width == 90 and console.color_system == system


def test_no_colour_and_a_pipe_show_numbers(lstm32):
    """NO_COLOR on a terminal, and a table forced into a pipe: numbers, not blocks of one colour."""
    path, _, folder = lstm32
    output = outputs.trace_output(load_model(str(path)), InputFiles((str(folder / "x15.npy"),)))
    for terminal in (Terminal.detect(stdout=FakeTerminalStream(), environ={"TERM": "xterm-256color", "NO_COLOR": "1"}),
                     Terminal.detect(stdout=io.StringIO(), environ={"TERM": "xterm-256color"})):
        stream = terminal.stdout
        output = outputs.trace_output(load_model(str(path)), InputFiles((str(folder / "x15.npy"),)))
        output.view(terminal.console())
        text = stream.getvalue()
        assert "█" not in text and "\x1b[" not in text and "+0." in text


# ------------------------------------------------------------------ predict


@pytest.mark.parametrize("width", WIDTHS)
def test_predict_rows_and_columns_left_out_are_named(lstm32, width):
    path, arrays, folder = lstm32
    expected = lstm_steps(arrays, np.load(folder / "x100.npy"))["hidden"]
    text, _ = render(outputs.predict_output(load_model(str(path)), InputFiles((str(folder / "x100.npy"),))).view, width)
    assert_fits(text, width)
    names = header(text)
    rows = body_rows(text)
    assert len(rows) == 50 and "the first 50 of 100 rows shown" in text
    ys = [n for n in names if n.startswith("y_")]
    assert ys == [f"y_{k}" for k in range(len(ys))]
    if len(ys) < U:
        assert f"y_{len(ys)}–y_{U - 1} (--format csv shows every column)" in " ".join(text.split())
    for row in rows:
        t = int(row[names.index("t")])
        for k, name in enumerate(ys):
            cell = row[names.index(name)]  # 6 significant digits of a float32 replay
            assert NUMBER.match(cell) and abs(float(cell) - expected[t, k]) <= 1e-6 + 1e-5 * abs(expected[t, k]), (t, name)
