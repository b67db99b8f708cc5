"""Reading a terminal table back as a person would: its header, its rows, whether it fits.

Shared by ``test_terminal_views.py`` (Rich consoles in this process) and ``test_real_terminal.py``
(the command in tmux).
"""

from __future__ import annotations

import re

from rich.cells import cell_len

ANSI = re.compile(r"\x1b\[[0-9;]*m")
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?%?$")


def body_rows(text: str) -> list[list[str]]:
    """The cells of every table body row (the lines between │ borders)."""
    return [[cell.strip() for cell in line.strip()[1:-1].split("│")] for line in text.splitlines()
            if line.startswith("│")]


def header(text: str) -> list[str]:
    """The header cells of the (first) table; fails when the header takes more than one line."""
    first_table = text.split("┡")[0]
    headers = [line for line in first_table.splitlines() if line.startswith("┃")]
    assert len(headers) == 1, f"the header takes {len(headers)} lines:\n{text}"
    return [cell.strip() for cell in headers[0].strip()[1:-1].split("┃")]


def assert_fits(text: str, width: int) -> None:
    """Every line within ``width`` columns, every table line with its right border, and no cell cut
    short with an ellipsis (the only ``…`` allowed is the row that stands for left-out steps)."""
    for line in text.splitlines():
        assert cell_len(line.rstrip()) <= width, f"{cell_len(line)} > {width}: {line}"
        if line.startswith(("│", "┃", "┏", "┡", "└", "├")):
            assert line.rstrip()[-1] in "│┃┓┩┘┤", f"no right border: {line}"
    cut = [cell for row in body_rows(text) for cell in row if "…" in cell and cell != "…"]
    assert not cut, f"cells cut short: {cut}"
