"""Token texts for models that read token ids (an Embedding input): ``--vocab FILE``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import InputDataError, UsageProblem


def read_vocab(path: str) -> dict[int, str]:
    """Token id -> text, from a JSON list (index = id), a JSON dict (token -> id, or id -> token),
    or a text file with one token per line (line number from 0 = id)."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as exc:
        raise UsageProblem(f"--vocab {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputDataError(f"--vocab {path}: not UTF-8 text") from None
    stripped = text.lstrip()
    if stripped[:1] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"--vocab {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(data, list):
            return {k: str(token) for k, token in enumerate(data)}
        if isinstance(data, dict):
            return _vocab_dict(data, path)
        raise InputDataError(f"--vocab {path}: a JSON vocabulary is a list or an object")
    return {k: line for k, line in enumerate(text.split("\n")[: -1 if text.endswith("\n") else None])}


def _vocab_dict(data: Mapping[str, Any], path: str) -> dict[int, str]:
    if all(isinstance(v, int) and not isinstance(v, bool) for v in data.values()):
        return {int(v): str(k) for k, v in data.items()}  # token -> id (Keras' Tokenizer.word_index)
    try:
        return {int(k): str(v) for k, v in data.items()}  # id -> token
    except ValueError:
        raise InputDataError(f"--vocab {path}: a JSON object maps tokens to ids, or ids to tokens") from None
