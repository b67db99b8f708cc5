"""The README's pictures of the terminal views: Rich's SVG export of what a 256-colour terminal shows.

    python tools/screenshots.py            # writes docs/terminal-trace.svg and docs/terminal-weights.svg

The views are drawn by the same functions the command line calls (``lstm_inspect.outputs``), on a
true-colour console 100 columns wide, from the sample models in ``sample_models/``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 100


def record(view, title: str, path: Path) -> None:
    """Draw ``view`` on a recording console and save it as an SVG titled ``title``."""
    from rich.console import Console

    console = Console(file=io.StringIO(), record=True, width=WIDTH, color_system="truecolor", force_terminal=True,
                      highlight=False, markup=False, emoji=False, legacy_windows=False)
    view(console)
    console.save_svg(str(path), title=title)
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> int:
    """Write both pictures."""
    sys.path.insert(0, str(ROOT))
    from lstm_inspect import outputs
    from lstm_inspect.inputs import InputFiles
    from lstm_inspect.model import load_model

    samples = ROOT / "sample_models"
    docs = ROOT / "docs"
    model = load_model(str(samples / "single_lstm.keras"))
    trace = outputs.trace_output(model, InputFiles((str(samples / "single_lstm.csv"),)))
    record(trace.view, "lstm-inspect trace sample_models/single_lstm.keras sample_models/single_lstm.csv",
           docs / "terminal-trace.svg")
    weights = outputs.weights_output(load_model(str(samples / "stacked_lstm.keras")))
    record(weights.view, "lstm-inspect weights sample_models/stacked_lstm.keras", docs / "terminal-weights.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
