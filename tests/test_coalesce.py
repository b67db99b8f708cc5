"""Merging small blocks before formatting changes nothing in the output."""

import numpy as np
import pytest

from lstm_inspect.columns import Block, coalesce
from lstm_inspect.writers import write_blocks


def _blocks():
    rng = np.random.default_rng(3)
    blocks = []
    for index in range(7):
        rows = int(rng.integers(1, 4))
        source = np.ma.masked_all(rows, dtype=np.int64) if index % 2 else np.arange(rows)
        # Values of several dtypes: merging must not promote them (an int64 near
        # 2**63, or a float32 0.1, prints differently once made float64).
        value = [
            rng.normal(size=rows).astype(np.float32),
            rng.normal(size=rows),
            np.iinfo(np.int64).max - np.arange(rows),
        ][index % 3]
        blocks.append(Block(
            ["sequence", "layer", "t", "source", "value"],
            [f"s{index // 3}", "lstm" if index < 5 else "gru", np.arange(rows), source,
             value],
        ))
    return blocks


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_merged_blocks_write_the_same_bytes(fmt, tmp_path):
    import io

    columns = _blocks()[0].columns
    merged = io.BytesIO()
    write_blocks(_blocks(), columns, fmt, merged)  # write_blocks coalesces
    one_by_one = io.BytesIO()
    for index, block in enumerate(_blocks()):
        part = io.BytesIO()
        write_blocks([block], columns, fmt, part)
        text = part.getvalue()
        if fmt == "csv" and index:
            text = text.split(b"\n", 1)[1]  # the header once
        one_by_one.write(text)
    if fmt == "json":
        import json

        pieces = [json.loads(write_one) for write_one in _json_parts(_blocks(), columns)]
        assert json.loads(merged.getvalue()) == [row for piece in pieces for row in piece]
    else:
        assert merged.getvalue() == one_by_one.getvalue()


def _json_parts(blocks, columns):
    import io

    for block in blocks:
        stream = io.BytesIO()
        write_blocks([block], columns, "json", stream)
        yield stream.getvalue()


def test_coalesce_keeps_large_blocks_and_order():
    small = [Block(["a"], [np.arange(k, k + 2)]) for k in range(0, 10, 2)]
    large = Block(["a"], [np.arange(100, 100 + 10)])
    out = list(coalesce(small + [large], min_rows=4))
    values = np.concatenate([b.data[0] for b in out])
    assert values.tolist() == list(range(10)) + list(range(100, 110))
    assert all(b.rows >= 4 for b in out[:-1])
