"""The terminal: its width and whether to paint; plain text tables for the shell.

On a TTY tables fit its width and flag words are painted, unless NO_COLOR is
set (https://no-color.org: any non-empty value). Piped output is one row per
line and never painted.
"""
from __future__ import annotations

import os
import shutil
import sys
from phoenix_hook.records import dataclass

from phoenix_hook.checks.grid import grid, sgr
from phoenix_hook.checks.owners import DUP, MISMATCH, UNCLAIMED
from phoenix_hook.checks.report import printable

_PAINT = {DUP: "31;1", MISMATCH: "31;1", UNCLAIMED: "33"}


@dataclass(frozen=True)
class Terminal:
    color: bool = False
    width: int | None = None        # None: not a terminal, one row per line


def terminal(stream=None, environ=None) -> Terminal:
    stream = stream or sys.stdout
    environ = os.environ if environ is None else environ
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        return Terminal()
    try:
        cols = os.get_terminal_size(stream.fileno()).columns
    except (OSError, AttributeError, ValueError):
        cols = 0
    # COLUMNS wins, as for shutil.get_terminal_size; 0 means unknown.
    if environ.get("COLUMNS", "").isdigit() and int(environ["COLUMNS"]) > 0:
        cols = int(environ["COLUMNS"])
    cols = cols or shutil.get_terminal_size().columns
    return Terminal(color=not environ.get("NO_COLOR"), width=max(cols, 40))


def paint_flags(column: str, text: str) -> str:
    """FLAGS cells: each flag word in its colour."""
    if column != "FLAGS":
        return text
    return " ".join(sgr(_PAINT.get(w), w) for w in text.split(" "))


def columns(rows, color=False, width: int | None = None) -> list[str]:
    """rows[0] is the header. Left-aligned columns; colour paints the flag words;
    width: fit the terminal (see checks/grid.py). Non-printable characters in cells
    are shown escaped."""
    rows = [tuple(printable(c) for c in r) for r in rows]
    return grid(rows[0], rows[1:], width, paint_flags if color else None)
