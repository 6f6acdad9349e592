"""Text tables that fit the terminal. Pure: rows in, lines out.

Piped (width None): one row per line, the last column's findings joined
with "; ", so `grep` and `awk` see one record per line. On a terminal of
`width` columns: one finding per line, wrapped; the columns that do not fit
beside the first ones go under the row, indented, as "HEADER value".
Colour codes are added after padding, so they never shift a column.

paint(column, text) -> text: colour for a cell (a TTY's); see sgr().
"""
from __future__ import annotations

import textwrap

GAP = "  "
INDENT = "    "
MIN_DETAIL = 24          # narrower than this, the last column goes under the row


def _cells(row) -> list:
    out = []
    for i, c in enumerate(row):
        if i == len(row) - 1:
            out.append([x for x in c if x] if isinstance(c, (list, tuple)) else ([c] if c else []))
        else:
            out.append(c if isinstance(c, str) else ", ".join(c))
    return out


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    width = max(width, 10)
    # Leading blanks are kept by textwrap and would push a word that fits past the edge
    # (then cut in two); a cell's surrounding blanks mean nothing on a terminal.
    return textwrap.wrap(text.strip(), width=width, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=True) or [""]


def grid(header, rows, width: int | None = None, paint=None) -> list[str]:
    """Lines of a table. header: column names; rows: tuples of str, the last cell a str
    or a list of findings. paint(column, text) -> text with colour codes added (a TTY's)."""
    table = [_cells(header)] + [_cells(r) for r in rows]
    table[0][-1] = [header[-1]]
    n = len(header)

    def painted(col, text, _value, row_i):
        return paint(header[col], text) if (paint and row_i) else text

    widths = [max(len(r[i]) for r in table) for i in range(n - 1)]
    if width is None:
        lines = []
        for i, r in enumerate(table):
            cells = [painted(j, r[j].ljust(widths[j]), r[j], i) for j in range(n - 1)]
            last = "; ".join(r[-1])
            lines.append(GAP.join(cells + [painted(n - 1, last, last, i)]).rstrip())
        return lines

    # How many leading columns fit on the row's own line (at least one).
    keep, used = 1, widths[0] if widths else 0
    while keep < n - 1 and used + len(GAP) + widths[keep] <= width:
        used += len(GAP) + widths[keep]
        keep += 1
    # Findings stay beside the row only where every word of them fits there whole
    # (continuation lines are indented 2); else they go under the row, where it is wider.
    room = width - used - len(GAP)
    longest = max((len(w) for r in table[1:] for f in r[-1] for w in f.split()), default=0)
    inline_detail = keep == n - 1 and room >= MIN_DETAIL and longest <= room - 2
    lines = []
    for i, r in enumerate(table):
        head = [painted(j, r[j].ljust(widths[j]), r[j], i) for j in range(keep)]
        under = [f"{header[j]} {r[j]}" for j in range(keep, n - 1) if r[j] and r[j] != "-"] if i else []
        findings = r[-1]
        if inline_detail:
            col = used + len(GAP)
            first = True
            for f in findings or [""]:
                for k, piece in enumerate(_wrap(f, width - col, "  ")):
                    text = painted(n - 1, piece, f, i)
                    if first:
                        lines.append((GAP.join(head) + GAP + text).rstrip())
                        first = False
                    else:
                        lines.append((" " * col + text).rstrip())
            continue
        lines.append(GAP.join(head).rstrip())
        if not i:
            continue
        if under:
            lines += [INDENT + x for x in _wrap(GAP.join(under), width - len(INDENT), "  ")]
        for f in findings:
            lines += [INDENT + painted(n - 1, x, f, i) for x in _wrap(f, width - len(INDENT), "  ")]
    return lines


def wrap_lines(lines, width: int | None, indent: str = "  ") -> list[str]:
    """Free text under a table (notes, summaries): wrapped on a terminal, as is when piped."""
    if width is None:
        return list(lines)
    out = []
    for line in lines:
        out += _wrap(line, width, indent) if line else [""]
    return out


def sgr(code: str | None, text: str) -> str:
    """Text in an SGR colour ("31;1" bold red), or as is for None."""
    return f"\033[{code}m{text}\033[0m" if code else text
