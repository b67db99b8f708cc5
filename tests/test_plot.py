"""`plot`: the pictures are produced, valid and non-trivial; matplotlib stays optional."""

from __future__ import annotations

import io
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLES, run_cli, sample_inputs

import lstm_inspect as li

pytest.importorskip("matplotlib", reason="plot needs matplotlib (pip install -e '.[test]')")

HEADERS = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<svg", "pdf": b"%PDF-"}


def invoke(*args) -> None:
    """Run the command in this process (matplotlib is imported once for the whole file)."""
    from click.testing import CliRunner

    from lstm_inspect.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == HEADERS["png"]
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def png_colours(data: bytes) -> int:
    """The number of distinct colours: a blank picture has one."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    pixels = np.asarray(image)
    return len(np.unique(pixels.reshape(-1, 3), axis=0))


def check_picture(path, fmt: str, min_bytes: int = 5000) -> bytes:
    data = path.read_bytes()
    assert len(data) >= min_bytes, len(data)
    if fmt == "svg":
        assert data.lstrip().startswith(b"<?xml") and HEADERS["svg"] in data[:2000]
        assert data.rstrip().endswith(b"</svg>")
    else:
        assert data.startswith(HEADERS[fmt])
    if fmt == "pdf":
        assert data.rstrip().endswith(b"%%EOF")
    return data


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_heatmap_files(tmp_path, fmt):
    out = tmp_path / f"trace.{fmt}"
    result = run_cli("plot", SAMPLES / "stacked_lstm.keras", SAMPLES / "stacked_lstm.csv", "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b"" and result.stdout == b""
    data = check_picture(out, fmt)
    if fmt == "png":
        width, height = png_size(data)
        assert width >= 400 and height >= 600  # 2 layers × 6 values
        assert png_colours(data) > 100
    if fmt == "svg":
        assert data.count(b"<image") >= 12  # one raster per panel: 6 values × 2 layers


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_saturation_files(tmp_path, fmt):
    out = tmp_path / f"saturation.{fmt}"
    result = run_cli("plot", SAMPLES / "stacked_lstm.keras", SAMPLES / "stacked_lstm.csv", "--kind", "saturation", "-o", out)
    assert result.returncode == 0, result.stderr
    data = check_picture(out, fmt)
    if fmt == "png":
        width, height = png_size(data)
        assert width > height >= 250  # two square panels side by side


def test_layout_follows_layers_values_and_units(tmp_path):
    """More values or units make a taller picture; a Bidirectional gives two columns."""
    sizes = {}
    for name, args in {
        "all": [],
        "two_gates": ["--gates", "i,f"],
        "one_unit": ["--units", "0"],
    }.items():
        out = tmp_path / f"{name}.png"
        invoke("plot", SAMPLES / "stacked_lstm.keras", SAMPLES / "stacked_lstm.csv", "-o", out, "--dpi", "40", *args)
        sizes[name] = png_size(out.read_bytes())
    assert sizes["two_gates"][1] < sizes["all"][1]
    assert sizes["one_unit"][1] < sizes["all"][1]
    single = tmp_path / "single.png"
    bi = tmp_path / "bi.png"
    invoke("plot", SAMPLES / "single_lstm.keras", SAMPLES / "single_lstm.csv", "-o", single, "--dpi", "40")
    invoke("plot", SAMPLES / "bidirectional_lstm.keras", SAMPLES / "bidirectional_lstm.csv", "-o", bi, "--dpi", "40")
    assert png_size(bi.read_bytes())[0] > 1.5 * png_size(single.read_bytes())[0]


def test_every_sample_model(tmp_path):
    # The .h5 twins hold the same models as the .keras files (reading them is tested elsewhere).
    for model in sorted(SAMPLES.glob("*.keras")) + [SAMPLES / "keras2_hard_sigmoid.h5"]:
        for kind in ("heatmap", "saturation"):
            out = tmp_path / f"{model.name}-{kind}.png"
            invoke("plot", model, *sample_inputs(model), "--kind", kind, "-o", out, "--dpi", "40")
            check_picture(out, "png", min_bytes=2000)


def test_heatmap_values_are_the_trace(saved_model):
    """The panels show the trace: the image arrays equal trace_arrays in input-row order."""
    case = saved_model("bi_concat", "keras3")
    model = li.load_model(str(case.paths["keras"]))
    figure = li.plot_trace(model, case.x[1])
    arrays = li.trace_arrays(model, case.x[1])
    images = [ax.images[0].get_array() for ax in figure.axes if ax.images]
    # Row by row over the grid: rows i, f, c, o, cell, hidden; columns forward, backward.
    expected = [arrays[layer][name][0].T for name in ("i", "f", "c", "o", "cell", "hidden")
                for layer in ("bi/forward", "bi/backward")]
    assert len(images) == len(expected)
    for image, want in zip(images, expected):
        np.testing.assert_array_equal(np.ma.getdata(image), want)


def test_masked_steps_are_blank(saved_model):
    case = saved_model("masking", "keras3")
    model = li.load_model(str(case.paths["keras"]))
    figure = li.plot_trace(model, case.x, sequence="0", gates=["i"])
    image = figure.axes[0].images[0].get_array()
    masked = np.ma.getmaskarray(image)
    assert masked[:, 2:4].all() and not masked[:, :2].any()  # x[0, 2:4] is all zeros


def test_api_plot_to_file(tmp_path, saved_model):
    case = saved_model("gru", "keras3")
    model = li.load_model(str(case.paths["keras"]))
    out = tmp_path / "gru.svg"
    figure = li.plot_saturation(model, case.x, str(out))
    assert out.exists() and figure.axes
    check_picture(out, "svg", min_bytes=3000)


@pytest.mark.parametrize(
    "args,message",
    [
        (["-o", "x.gif"], b"must end in .png, .svg or .pdf"),
        (["-o", "x.png", "--sequence", "7"], b"--sequence 7: no such sequence"),
        (["-o", "x.png", "--gates", "q"], b"unknown gate(s) q"),
        ([], b"Missing option '-o'"),
    ],
)
def test_errors_are_one_line(tmp_path, args, message):
    result = run_cli("plot", SAMPLES / "single_lstm.keras", SAMPLES / "single_lstm.csv", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert b"Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_without_matplotlib_one_line_naming_the_extra(tmp_path):
    code = "import sys; sys.modules['matplotlib'] = None; from lstm_inspect.cli import main; main()"
    out = tmp_path / "x.png"
    result = subprocess.run(
        [sys.executable, "-c", code, "plot", str(SAMPLES / "single_lstm.keras"), str(SAMPLES / "single_lstm.csv"), "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "lstm-inspect: error: plot needs matplotlib: pip install 'lstm-inspect[plot]'"
    assert not out.exists()


def test_matplotlib_is_imported_only_for_pictures():
    code = (
        "import sys, lstm_inspect as li, lstm_inspect.api, lstm_inspect.cli, lstm_inspect.stats, lstm_inspect.export; "
        "m = li.load_model('sample_models/single_lstm.keras'); li.gate_stats(m, 'sample_models/single_lstm.csv'); "
        "li.export_weights(m, 'onnx'); print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_readme_picture_command_runs(tmp_path):
    """The command the README gives for docs/trace.png works (written to a temporary folder here)."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^lstm-inspect (plot .* -o docs/trace\.png.*)$", readme, flags=re.MULTILINE)
    assert match, "the README shows the command that made docs/trace.png"
    args = match.group(1).replace("docs/trace.png", str(tmp_path / "trace.png")).split()[1:]
    result = run_cli("plot", *args)
    assert result.returncode == 0, result.stderr
    committed = (ROOT / "docs" / "trace.png").read_bytes()
    assert png_size((tmp_path / "trace.png").read_bytes()) == png_size(committed)
    assert len(committed) < 200_000


def test_plot_help():
    result = run_cli("plot", "--help")
    assert result.returncode == 0 and b"Exit status" in result.stdout and b"lstm-inspect[plot]" in result.stdout
