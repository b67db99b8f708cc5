"""Selections every command spells the same way: ``--layer``, ``--gates``, ``--units``.

Each takes comma lists and can be repeated (``--gates i,f --gates o``); the
names are checked against the selected layers, and an unknown one is refused
with the names that exist, listed in the layers' own order (i, f, c, o for an
LSTM; z, r, c for a GRU), not alphabetically.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .engine import value_names
from .errors import UsageProblem
from .model import RecurrentLayer


def merge_names(values: Iterable[str | Sequence[str]] | None) -> list[str] | None:
    """Flatten repeated, comma-separated values into one list (first spelling kept); None if empty."""
    names: list[str] = []
    for value in values or ():
        parts = value.split(",") if isinstance(value, str) else value
        for part in parts:
            part = part.strip()
            if part and part not in names:
                names.append(part)
    return names or None


def known_gates(layers: Sequence[RecurrentLayer], *, values: bool) -> list[str]:
    """The gates of ``layers`` in their own order; with ``values``, also cell and hidden (trace/stats)."""
    known: list[str] = []
    for layer in layers:
        for name in (value_names(layer, False) if values else layer.gates):
            if name not in known:
                known.append(name)
    return known


def check_gates(layers: Sequence[RecurrentLayer], gates: Sequence[str] | None, *, values: bool) -> list[str] | None:
    """``gates`` put in the layers' order; a UsageProblem naming the known ones if one is unknown."""
    if not gates:
        return None
    known = known_gates(layers, values=values)
    unknown = [g for g in gates if g not in known]
    if unknown:
        kinds = "/".join(sorted({layer.kind.name for layer in layers}))
        raise UsageProblem(f"unknown gate(s) {', '.join(unknown)}: the selected {kinds} layer(s) have "
                           f"{', '.join(known)} (--gates takes a comma list, e.g. --gates {','.join(known[:2])})")
    return [g for g in known if g in gates]
