"""Plain text tables for the shell: left-aligned columns, flag words painted on a TTY."""
from __future__ import annotations

from phoenix_hook.checks.owners import DUP, MISMATCH, UNCLAIMED
from phoenix_hook.checks.report import printable

_PAINT = {DUP: "31;1", MISMATCH: "31;1", UNCLAIMED: "33"}


def columns(rows, color=False, widths_from=None) -> list[str]:
    """Left-aligned columns; the last one is not padded. Colour paints the flag words.
    Non-printable characters in cells are shown escaped."""
    rows = [tuple(printable(c) for c in r) for r in rows]
    widths_from = None if widths_from is None else [tuple(printable(c) for c in r) for r in widths_from]
    widths = [max(len(r[i]) for r in (widths_from or rows)) for i in range(len(rows[0]) - 1)]
    lines = []
    for i, r in enumerate(rows):
        last = r[-1]
        if color and i:
            last = " ".join(f"\033[{_PAINT[f]}m{f}\033[0m" if f in _PAINT else f for f in last.split(" "))
        lines.append("  ".join([c.ljust(w) for c, w in zip(r, widths)] + [last]).rstrip())
    return lines
