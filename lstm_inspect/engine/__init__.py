"""The replay: compile a model's graph (``program``), scan recurrent layers over time (``scan``).

The cells (what one step computes) belong to the kinds (``lstm_inspect.kinds``)
and the feed-forward layers to ``lstm_inspect.ops``; this package runs them.
"""

from __future__ import annotations

from .program import FEED, FROM, InputSpec, Program, Replay, ReplayOptions, compile_model, value_names
from .scan import StepBlock

__all__ = ["FEED", "FROM", "InputSpec", "Program", "Replay", "ReplayOptions", "StepBlock", "compile_model", "value_names"]
