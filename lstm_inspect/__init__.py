"""lstm-inspect: label the weights of saved Keras recurrent models and trace their gates.

The public API (imported lazily, so ``import lstm_inspect`` stays light)::

    load_model(path) -> Model                 # .h5 / .keras / weights-only, no TensorFlow
    layer_rows(model) -> list[dict]           # what `lstm-inspect layers` prints
    label_weights(model, layers, gates)       # GateBlock per (layer, tensor, gate)
    weights_frame(model) -> DataFrame         # one row per weight value
    trace(model, x) -> DataFrame              # per-step i, f, c, o, cell, hidden
    trace_arrays(model, x) -> {layer: {name: (N, T, U) array}}
    predict(model, x) -> array                # the model's output, in NumPy
    gate_stats(model, x) -> DataFrame         # per unit: mean, std, saturation (`lstm-inspect stats`)
    export_weights(model, layout) -> ExportedWeights   # gates / pytorch / onnx arrays (`export`)
    plot_trace(model, x, path) -> Figure      # gate heatmaps (needs matplotlib)
    plot_saturation(model, x, path) -> Figure # left- vs right-saturation scatter
    write_report(model, x, path) -> str       # the interactive HTML report (needs plotly)
    replay_code(model) -> GeneratedCode       # a standalone NumPy script (`lstm-inspect code`)

See ``lstm_inspect.api`` for the details.
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "load_model",
    "layer_rows",
    "label_weights",
    "weights_frame",
    "trace",
    "trace_arrays",
    "predict",
    "as_sequences",
    "ReplayOptions",
    "GateBlock",
    "Model",
    "gate_stats",
    "compute_stats",
    "GateStats",
    "export_weights",
    "ExportedWeights",
    "plot_trace",
    "plot_saturation",
    "write_report",
    "replay_code",
}

__all__ = sorted(_API) + ["__version__"]  # noqa: PLE0605 (one list of public names: _API)


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'lstm_inspect' has no attribute {name!r}")
