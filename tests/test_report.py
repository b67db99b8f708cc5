"""`lstm-inspect report`: the page opens offline in a real browser and shows what `trace` writes.

The browser is Debian's headless Chromium (`apt-get install chromium`), driven by
Playwright through ``executable_path`` (Playwright's own browser download does not
work on these machines).  Without chromium or playwright the browser tests skip,
saying why.  Expected numbers come from `lstm-inspect trace` / `stats` (checked
against Keras elsewhere) and, for the planted pattern, from how the model was built.

Set LSTM_INSPECT_SCREENSHOTS=DIR to keep a screenshot of every section.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, keras_module, randomise, run_cli, sample_inputs

import lstm_inspect as li

pytest.importorskip("plotly", reason="report needs plotly (pip install -e '.[test]')")

# LSTM_INSPECT_CHROMIUM names another chromium binary ("" acts as if none were installed).
CHROMIUM = os.environ.get("LSTM_INSPECT_CHROMIUM", shutil.which("chromium") or
                          ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else "")) or None
# The flags that work on a closed network: no background connections, no sandbox as root.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MB = 1_000_000
SCREENSHOTS = os.environ.get("LSTM_INSPECT_SCREENSHOTS")
SAMPLE_MODELS = sorted(SAMPLES.glob("*.keras")) + [SAMPLES / "keras2_hard_sigmoid.h5"]


def _browser_missing() -> str | None:
    if CHROMIUM is None:
        return "the report's browser tests need Debian's chromium (apt-get install chromium); it is not installed"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the report's browser tests need playwright (pip install -e '.[test]')"
    return None


needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=_browser_missing() or "")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


class Report:
    """A report page opened in the browser, with what it logged and what it tried to fetch."""

    def __init__(self, browser, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

        def route(request_route):
            if request_route.request.url.startswith("file:"):
                request_route.continue_()
            else:  # offline: anything from the network is refused, and noted
                self.outside.append(request_route.request.url)
                request_route.abort()

        self.page.route("**/*", route)
        self.page.goto(path.as_uri(), timeout=180_000)
        self.page.wait_for_function("document.body.dataset.ready === '1'", timeout=180_000)

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def cell(self, div: str, t: float, unit: float) -> tuple[float, float]:
        """The screen position of (t, unit) in a chart (scrolled to the middle of the window)."""
        return tuple(self.js("""([id, t, u]) => {
            const gd = document.getElementById(id);
            gd.scrollIntoView({block: "center"});
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
            return [r.left + xa._offset + xa.l2p(t), r.top + ya._offset + ya.l2p(u)];
        }""", [div, t, unit]))

    def shot(self, name: str, selector: str) -> None:
        """Keep a screenshot of one section (with LSTM_INSPECT_SCREENSHOTS)."""
        if not SCREENSHOTS:
            return
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        self.js("document.querySelector('header').style.position = 'static'")
        self.page.locator(selector).screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))
        self.js("document.querySelector('header').style.position = ''")

    def close(self) -> None:
        self.page.close()


def write_report(tmp_path: Path, model: Path, *inputs, extra=()) -> Path:
    out = tmp_path / f"{model.stem}.html"
    result = run_cli("report", model, *inputs, *extra, "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert b"wrote" in result.stderr
    return out


def trace_rows(model: Path, *inputs) -> dict[tuple[str, str, int, int], dict[str, str]]:
    """`lstm-inspect trace` as {(sequence, layer, t, unit): row}."""
    result = run_cli("trace", model, *inputs, "--format", "csv")
    assert result.returncode == 0, result.stderr
    return {(r["sequence"], r["layer"], int(r["t"]), int(r["unit"])): r
            for r in csv.DictReader(io.StringIO(result.stdout.decode()))}


# ----------------------------------------------------------------------------- every sample model


@needs_browser
def test_every_sample_model_opens_offline_with_every_section(browser, tmp_path):
    for model in SAMPLE_MODELS:
        path = write_report(tmp_path, model, *sample_inputs(model))
        assert path.stat().st_size < 20 * MB
        report = Report(browser, path)
        try:
            names = [layer.name for layer in li.load_model(str(model)).recurrent_layers()]
            shown = report.js("[...document.querySelectorAll('section[id^=layer-] h2')].map(h => h.textContent)")
            assert [text.split(" (")[0] for text in shown] == names, model.name
            for k in range(len(names)):
                drawn = report.js(f"[...document.querySelectorAll('#layer-{k} .heatmap')].map(d => d.data && d.data.length)")
                assert drawn and all(drawn), (model.name, k, drawn)
            assert report.js("document.querySelectorAll('#model table tr').length") >= 2
            report.js("document.getElementById('weights').scrollIntoView()")
            report.page.wait_for_function("document.querySelectorAll('#weights [data-drawn]').length > 0")
            assert report.errors == [] and report.outside == [], (model.name, report.errors, report.outside)
            report.shot(f"sample-{model.stem}", "#layer-0")
        finally:
            report.close()


# ----------------------------------------------------------------------------- hover and click


@needs_browser
def test_hover_and_click_show_the_values_trace_writes(browser, tmp_path):
    """Hovering shows t, unit, value and the input row; clicking a unit draws all its values:
    both equal `trace`'s numbers (a go_backwards layer included)."""
    model, data = SAMPLES / "bidirectional_lstm.keras", SAMPLES / "bidirectional_lstm.csv"
    expected = trace_rows(model, data)
    inputs = np.loadtxt(data, delimiter=",", skiprows=1)
    report = Report(browser, write_report(tmp_path, model, data))
    try:
        layers = [layer.name for layer in li.load_model(str(model)).recurrent_layers()]
        for k, layer in enumerate(layers):
            for name, t, unit in (("i", 3, 2), ("cell", 0, 1), ("hidden", 7, 3)):
                x, y = report.cell(f"hm-{k}-{name}", t, unit)
                report.page.mouse.move(x, y)
                report.page.wait_for_function(
                    "([k, t, u, n]) => { const d = document.getElementById('hover-' + k).dataset; "
                    "return d.t === String(t) && d.unit === String(u) && d.value_name === n; }", arg=[k, t, unit, name])
                panel = report.js(f"Object.assign({{}}, document.getElementById('hover-{k}').dataset)")
                text = report.js(f"document.getElementById('hover-{k}').textContent")
                want = float(expected[("0", layer, t, unit)][name])
                assert panel["layer"] == layer
                assert float(panel["value"]) == pytest.approx(want, rel=1e-6, abs=1e-7)
                assert f"t {t}" in text and f"unit {unit}" in text
                assert f"{float(np.float32(inputs[t, 0])):.4g}" in text  # the input row
        x, y = report.cell("hm-1-f", 4, 2)
        report.page.mouse.click(x, y)
        report.page.wait_for_function("document.getElementById('unit-1').dataset.unit === '2'")
        drawn = report.js("document.getElementById('unit-1').data.map(d => [d.name, d.x, d.y])")
        assert [name for name, _, _ in drawn] == ["i", "f", "c", "o", "cell", "hidden"]
        for name, xs, ys in drawn:
            want = [float(expected[("0", layers[1], int(t), 2)][name]) for t in xs]
            np.testing.assert_allclose(ys, want, rtol=1e-6, atol=1e-7, err_msg=name)
        assert report.errors == []
        report.shot("hover-click-bidirectional", "#layer-1")
    finally:
        report.close()


@needs_browser
def test_masked_steps_hover_as_empty_gates(browser, tmp_path):
    model, data = SAMPLES / "embedding_lstm.keras", SAMPLES / "embedding_lstm.csv"
    expected = trace_rows(model, data)
    report = Report(browser, write_report(tmp_path, model, data))
    try:
        masked = next(key for key, row in expected.items() if row["masked"] == "1")
        x, y = report.cell("hm-0-i", masked[2], masked[3])
        report.page.mouse.move(x, y)
        report.page.wait_for_function(f"document.getElementById('hover-0').dataset.t === '{masked[2]}'")
        text = report.js("document.getElementById('hover-0').textContent")
        assert "empty (masked step)" in text and "masked" in text and "token id 0" in text
        assert expected[masked]["i"] == ""
    finally:
        report.close()


# ----------------------------------------------------------------------------- saturation


@needs_browser
def test_saturation_scatter_counts_overlaps_and_selects_a_unit(browser, tmp_path):
    model, data = SAMPLES / "stacked_lstm.keras", SAMPLES / "stacked_lstm.csv"
    report = Report(browser, write_report(tmp_path, model, data))
    try:
        stats = li.gate_stats(li.load_model(str(model)), str(data), layers=["lstm_1"])
        gates = stats[stats.gate.isin(["i", "f", "o"])]
        places = gates.groupby(["left_saturated", "right_saturated"]).size()
        drawn = report.js("document.getElementById('sat-0').data.map(d => [d.name, d.x, d.y, d.text, d.customdata])")
        shown = {}
        for gate, xs, ys, texts, units in drawn:
            for x, y, text, members in zip(xs, ys, texts, units):
                want = gates[(gates.gate == gate) & np.isclose(gates.left_saturated, x) & np.isclose(gates.right_saturated, y)]
                assert sorted(want.unit) == sorted(members), (gate, x, y)
                if text:
                    shown[(x, y)] = int(text)
        overlapping = {key: int(n) for key, n in places.items() if n > 1}
        assert len(shown) == len(overlapping) and overlapping  # every overlap is counted, once
        for (x, y), n in shown.items():
            assert n == overlapping[min(overlapping, key=lambda k: abs(k[0] - x) + abs(k[1] - y))]
        # A point alone at its place (no other gate's point over it): clicking it selects its unit.
        gate, x, y, members = next((g, x, y, m) for g, xs, ys, texts, units in drawn
                                   for x, y, m in zip(xs, ys, units) if places.get((x, y), 0) == 1)
        px, py = report.cell("sat-0", x, y)
        report.page.mouse.click(px, py)
        report.page.wait_for_function(f"document.getElementById('unit-0').dataset.unit === '{members[0]}'")
        assert "Selected" in report.js("document.getElementById('sat-caption-0').textContent")
        report.shot("saturation-stacked", "#sat-0")
    finally:
        report.close()


# ----------------------------------------------------------------------------- pattern search

PLANTED = {0: [(5, 9), (30, 34)], 1: [(12, 16)], 2: [(20, 21)]}  # marker spans; the last one is too short


def planted_model(tmp_path: Path) -> tuple[Path, Path]:
    """LSTM(6) over (marker, noise): units 0 and 1 are on (hidden ≈ 0.75) exactly while the marker
    is 1, and near 0 otherwise (forget gate closed, input/output gates driven by the marker);
    units 2-5 follow the noise weakly."""
    K, L = keras_module("keras3")
    model = K.Sequential([K.Input((None, 2)), L.LSTM(6, return_sequences=True, name="lstm")])
    rng = np.random.default_rng(7)
    kernel = np.zeros((2, 24), np.float32)
    recurrent = rng.normal(0, 0.1, (6, 24)).astype(np.float32)
    bias = np.zeros(24, np.float32)
    for unit in (0, 1):
        kernel[0, [unit, 12 + unit, 18 + unit]] = 10.0  # i, c, o from the marker
        bias[[unit, 18 + unit]] = -5.0  # i and o closed without it
        bias[6 + unit] = -10.0  # forget gate closed
        recurrent[:, [unit, 6 + unit, 12 + unit, 18 + unit]] = 0.0
    kernel[1, [u for u in range(24) if u % 6 >= 2]] = rng.normal(0, 0.3, 16)
    model.get_layer("lstm").set_weights([kernel, recurrent, bias])
    x = np.zeros((3, 40, 2), np.float32)
    x[..., 1] = rng.normal(0, 1, (3, 40))
    for seq, spans in PLANTED.items():
        for a, b in spans:
            x[seq, a : b + 1, 0] = 1.0
    path = tmp_path / "planted.keras"
    model.save(path)
    np.save(tmp_path / "planted.npy", x)
    return path, tmp_path / "planted.npy"


@needs_browser
def test_pattern_search_finds_the_planted_pattern(browser, tmp_path):
    model, data = planted_model(tmp_path)
    hidden = li.trace_arrays(li.load_model(str(model)), str(data))["lstm"]["hidden"]
    assert (hidden[0, 5:10, :2] > 0.7).all() and (np.abs(hidden[..., 2:]) < 0.5).all()  # the model does what it says
    report = Report(browser, write_report(tmp_path, model, data))
    try:
        report.js("document.getElementById('thr-0').value = '0.5'")
        start, top = report.cell("hm-0-hidden", 4.6, -0.4)
        end, bottom = report.cell("hm-0-hidden", 9.4, 5.4)
        report.page.mouse.move(start, top)
        report.page.mouse.down()
        report.page.mouse.move((start + end) / 2, (top + bottom) / 2, steps=5)
        report.page.mouse.move(end, bottom, steps=5)
        report.page.mouse.up()
        report.page.wait_for_function("document.getElementById('matches-0').dataset.matches !== undefined")
        assert report.js("[document.getElementById('from-0').value, document.getElementById('to-0').value]") == ["5", "9"]
        assert report.js("document.getElementById('units-0').dataset.units") == "0,1"
        matches = json.loads(report.js("document.getElementById('matches-0').dataset.matches"))
        assert matches == [["0", 5, 9], ["0", 30, 34], ["1", 12, 16]]  # the 2-step blip in sequence 2 is too short
        rects = report.js("document.getElementById('hm-0-hidden').layout.shapes.filter(s => s.type === 'rect')"
                          ".map(s => [s.x0, s.x1])")
        assert rects == [[4.5, 9.5], [29.5, 34.5]]  # highlighted in the sequence shown
        report.shot("pattern-search", "#search-0")
        # A match in another sequence: its button shows that sequence, highlighted.
        report.page.get_by_role("button", name="sequence 1: t 12–16").click()
        report.page.wait_for_function("document.getElementById('sequence').value === '1'")
        rects = report.js("document.getElementById('hm-0-hidden').layout.shapes.filter(s => s.type === 'rect')"
                          ".map(s => [s.x0, s.x1])")
        assert rects == [[11.5, 16.5]]
        shown = report.js("document.getElementById('hm-0-hidden').data[0].z.map(row => row[14])")
        np.testing.assert_allclose(shown, hidden[1, 14], rtol=1e-6)
        assert report.errors == []
        report.shot("pattern-search-layer", "#layer-0")
    finally:
        report.close()


@needs_browser
def test_zoom_on_time_is_linked(browser, tmp_path):
    model, data = SAMPLES / "stacked_lstm.keras", SAMPLES / "stacked_lstm.csv"
    report = Report(browser, write_report(tmp_path, model, data))
    try:
        report.js("Plotly.relayout('hm-0-f', {'xaxis.range': [2, 6]})")
        report.page.wait_for_timeout(300)
        ranges = report.js("[...document.querySelectorAll('.heatmap')].map(d => d.layout.xaxis.range)")
        assert len(ranges) == 12 and all(r == [2, 6] for r in ranges), ranges
    finally:
        report.close()


# ----------------------------------------------------------------------------- a char-level text model

TEXT = "the cat sat on the mat. the dog sat on the log.\nthe end"


def char_model(tmp_path: Path) -> tuple[Path, Path, Path]:
    K, L = keras_module("keras3")
    chars = sorted(set(TEXT))
    vocab = ["<pad>"] + chars
    model = K.Sequential([K.Input((None,)), L.Embedding(len(vocab), 8, name="embedding"),
                          L.LSTM(16, return_sequences=True, name="lstm"), L.Dense(len(vocab), activation="softmax", name="next")])
    randomise(model, seed=11)
    path = tmp_path / "char_lstm.keras"
    model.save(path)
    ids = tmp_path / "text.csv"
    ids.write_text("id\n" + "\n".join(str(vocab.index(c)) for c in TEXT) + "\n")
    vocab_path = tmp_path / "vocab.json"
    vocab_path.write_text(json.dumps(vocab))
    return path, ids, vocab_path


@needs_browser
def test_char_level_text_model_colours_each_character(browser, tmp_path):
    model, ids, vocab = char_model(tmp_path)
    hidden = li.trace_arrays(li.load_model(str(model)), str(ids))["lstm"]
    report = Report(browser, write_report(tmp_path, model, ids, extra=("--vocab", vocab)))
    try:
        assert report.js("document.getElementById('text-view').textContent") == TEXT.replace("\n", "↵\n")
        x, y = report.cell("hm-0-hidden", 10, 3)
        report.page.mouse.click(x, y)
        report.page.wait_for_function("document.getElementById('text-view').dataset.unit === '3'")
        values = report.js("[...document.querySelectorAll('#text-view span')].map(s => Number(s.dataset.value))")
        np.testing.assert_allclose(values, hidden["hidden"][0, :, 3], rtol=1e-6, atol=1e-7)
        colours = set(report.js("[...document.querySelectorAll('#text-view span')].map(s => s.style.background)"))
        assert len(colours) > 10
        report.page.select_option("#text-value", "f")
        report.page.wait_for_function("document.getElementById('text-view').dataset.valueName === 'f'")
        values = report.js("[...document.querySelectorAll('#text-view span')].map(s => Number(s.dataset.value))")
        np.testing.assert_allclose(values, hidden["f"][0, :, 3], rtol=1e-6, atol=1e-7)
        x, y = report.cell("hm-0-i", 4, 1)
        report.page.mouse.move(x, y)
        report.page.wait_for_function("document.getElementById('hover-0').dataset.t === '4'")
        assert 'token "c" (id' in report.js("document.getElementById('hover-0').textContent")
        assert report.errors == [] and report.outside == []
        report.shot("text", "#text")
        report.shot("model", "#model")
        report.js("document.getElementById('weights').scrollIntoView()")
        report.page.wait_for_function("document.querySelectorAll('#weights [data-drawn]').length >= 4")
        report.shot("weights", "#weights")
    finally:
        report.close()


# ----------------------------------------------------------------------------- size, notes, errors (no browser)


def test_long_input_is_downsampled_with_a_note_and_stays_small(tmp_path):
    from lstm_inspect.report import build_report, report_payload

    model = li.load_model(str(SAMPLES / "single_lstm.keras"))
    x = np.random.default_rng(0).normal(size=(2, 50_000, 3)).astype(np.float32)
    payload = report_payload(model, li.as_sequences(x), trace_budget=100_000)
    stride = payload["stride"]
    assert stride == 24  # 100,000 steps × 24 values > 100,000 numbers: means of 24 steps
    assert any(f"mean of {stride} consecutive steps" in note for note in payload["notes"])
    # Each column is the mean of its steps, as the exact trace gives them.
    arrays = li.trace_arrays(model, x)["lstm"]["f"][1]  # (T, U)
    import base64

    shown = np.frombuffer(base64.b64decode(payload["trace"][1][0]["f"]), dtype="<f4").reshape(4, -1)
    columns = shown.shape[1]
    want = np.array([arrays[j * stride : (j + 1) * stride].mean(axis=0) for j in range(columns)]).T
    np.testing.assert_allclose(shown, want, rtol=1e-5, atol=1e-6)
    page = build_report(model, li.as_sequences(np.random.default_rng(1).normal(size=(1, 400_000, 3)).astype(np.float32)))
    assert len(page.encode()) < 20 * MB


def test_many_sequences_are_cut_with_a_note():
    from lstm_inspect.report import report_payload

    model = li.load_model(str(SAMPLES / "single_lstm.keras"))
    x = np.random.default_rng(0).normal(size=(30, 5, 3)).astype(np.float32)
    payload = report_payload(model, li.as_sequences(x), max_sequences=4)
    assert [s["id"] for s in payload["sequences"]] == ["0", "1", "2", "3"]
    assert any("first 4 of 30 sequences" in note for note in payload["notes"])


@pytest.mark.parametrize("text,expected", [
    ('["<pad>", "a", "b"]', {0: "<pad>", 1: "a", 2: "b"}),
    ('{"a": 1, "b": 2}', {1: "a", 2: "b"}),  # Keras Tokenizer.word_index
    ('{"0": "<pad>", "1": "x"}', {0: "<pad>", 1: "x"}),
    ("<pad>\na\n \n", {0: "<pad>", 1: "a", 2: " "}),
])
def test_vocab_files(tmp_path, text, expected):
    from lstm_inspect.vocab import read_vocab

    path = tmp_path / "vocab"
    path.write_text(text)
    assert read_vocab(str(path)) == expected


@pytest.mark.parametrize("args,message", [
    (["--vocab", "missing.json"], "--vocab missing.json"),
    ([], "Missing option '-o'"),
])
def test_errors_are_one_line_and_write_nothing(tmp_path, args, message):
    out = ["-o", "r.html"] if args else []
    result = run_cli("report", SAMPLES / "single_lstm.keras", SAMPLES / "single_lstm.csv", *args, *out, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr.decode() and len(result.stderr.decode().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_without_plotly_one_line_naming_the_extra(tmp_path):
    import subprocess
    import sys

    code = "import sys; sys.modules['plotly'] = None; from lstm_inspect.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code, "report", str(SAMPLES / "single_lstm.keras"),
                             str(SAMPLES / "single_lstm.csv"), "-o", str(tmp_path / "r.html")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "lstm-inspect: error: report needs plotly: pip install 'lstm-inspect[report]'"
    assert not list(tmp_path.iterdir())


def test_api_write_report(tmp_path):
    model = li.load_model(str(SAMPLES / "gru_rnn.keras"))
    page = li.write_report(model, str(SAMPLES / "gru_rnn.csv"), str(tmp_path / "gru.html"))
    assert (tmp_path / "gru.html").read_text(encoding="utf-8") == page
    assert page.startswith("<!DOCTYPE html>") and "plotly.js" in page[:20000]


def test_from_feeds_a_later_layer(tmp_path):
    """--from LAYER: the report shows what `trace --from` gives (here lstm_2 fed (T, 8) rows directly)."""
    import base64

    x = np.random.default_rng(2).normal(size=(2, 5, 8)).astype(np.float32)
    np.save(tmp_path / "h.npy", x)
    model = SAMPLES / "stacked_lstm.keras"
    out = tmp_path / "r.html"
    result = run_cli("report", model, tmp_path / "h.npy", "--from", "lstm_2", "--layer", "lstm_2", "-o", out)
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    start = page.index('<script type="application/json" id="payload">') + len('<script type="application/json" id="payload">')
    payload = json.loads(page[start : page.index("</script>", start)])
    assert [layer["name"] for layer in payload["layers"]] == ["lstm_2"]
    want = li.trace_arrays(li.load_model(str(model)), x, layers=["lstm_2"], start="lstm_2")["lstm_2"]
    for seq in range(2):
        shown = np.frombuffer(base64.b64decode(payload["trace"][seq][0]["o"]), dtype="<f4").reshape(4, 5)
        np.testing.assert_array_equal(shown, want["o"][seq].T)
