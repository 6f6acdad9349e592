"""The outcome of a check and how it is shown: task-log lines, a table, JSON. Pure.

The JSON shape is a contract (README "JSON output"); keep keys stable.
"""
from __future__ import annotations

import json
from phoenix_hook.records import dataclass, field

from phoenix_hook.pve.guest import label_for

# Worst wins: a conflict outranks not being able to check, which outranks
# a clear result, which outranks having nothing to check.
VERDICTS = ("skipped", "clear", "error", "conflict")
EXIT_CODES = {"clear": 0, "skipped": 0, "conflict": 1, "error": 3}


def printable(text) -> str:
    """Text safe for a terminal, the task log or a table: each character that is not printable
    (control characters, ESC, \\x1e, \\u2028, ...) shown escaped, as repr would. JSON needs
    none of this: json.dumps escapes what it must."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def worst(verdicts, default: str = "skipped") -> str:
    vs = list(verdicts)
    return max(vs, key=VERDICTS.index) if vs else default


@dataclass
class Finding:
    source: str                   # "arp" | "ndp" (IPv6, on the wire) | "host" | "config"
    detail: str
    mac: str | None = None
    vendor: str | None = None
    vmid: int | None = None       # config warnings: the other guest
    node: str | None = None
    line: str | None = None       # the task-log sentence, without prefix

    def as_conflict(self) -> dict:
        return {"source": self.source, "mac": self.mac, "vendor": self.vendor, "detail": self.detail}

    def as_warning(self) -> dict:
        return {"source": self.source, "vmid": self.vmid, "node": self.node, "detail": self.detail}


@dataclass
class NicResult:
    nic: str
    ip: str | None
    bridge: str | None
    vlan: int | None
    verdict: str
    conflicts: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    note: str = ""                # why skipped / why error / how clear
    family: int = 4               # 4: ip is the NIC's IPv4 address; 6: its static ip6= address
                                  # (not a JSON key: the NIC keys are pinned; an IPv6 "ip" has a ':')

    def to_json(self) -> dict:
        return {"nic": self.nic, "family": self.family, "ip": self.ip, "bridge": self.bridge,
                "vlan": self.vlan, "verdict": self.verdict, "note": self.note,
                "conflicts": [c.as_conflict() for c in self.conflicts],
                "warnings": [w.as_warning() for w in self.warnings]}


@dataclass
class GuestResult:
    vmid: int
    type: str
    name: str | None
    nics: list[NicResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None      # the guest as a whole could not be checked

    @property
    def verdict(self) -> str:
        if self.error:
            return worst(["error"] + [n.verdict for n in self.nics])
        return worst(n.verdict for n in self.nics)

    @property
    def label(self) -> str:
        return label_for(self.type, self.vmid)

    def to_json(self) -> dict:
        return {"vmid": self.vmid, "type": self.type, "name": self.name, "verdict": self.verdict,
                "error": self.error, "notes": self.notes, "nics": [n.to_json() for n in self.nics]}


@dataclass
class Report:
    guests: list[GuestResult] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return worst(g.verdict for g in self.guests)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "guests": [g.to_json() for g in self.guests]}

    def json(self) -> str:
        return json.dumps(self.to_json(), indent=2)


def _where(n: NicResult) -> str:
    return f"{n.bridge}" + (f" VLAN {n.vlan}" if n.vlan is not None else "")


def task_log_lines(g: GuestResult, action: str = "", warn: bool = False,
                   errors: bool = True) -> list[str]:
    """Short plain lines for the PVE start task log (REFERENCE section 1).

    action is what the hook does about a conflict: "start refused" or
    "starting anyway (mode = warn)"; warn puts "WARNING: " before conflict lines.
    errors=False leaves out the NICs that could not be checked: the hook says
    those once, in its one loud could-not-check line.
    """
    p = "phoenix-hook:"
    out = [f"{p} {g.label} {line}" for line in g.notes]
    if g.error:
        out.append(f"{p} {g.label}: {g.error}")
    for n in g.nics:
        head = f"{p} {g.label} {n.nic}"
        if n.verdict == "conflict":
            for c in n.conflicts:
                tail = f" - {action}" if action else ""
                out.append(f"{'WARNING: ' if warn else ''}{head} {n.ip} {c.line or c.detail} "
                           f"on {_where(n)}{tail}")
        elif n.verdict == "error":
            if errors:
                out.append(f"{head}{' ' + n.ip if n.ip else ''}: could not check: {n.note}")
        elif n.verdict == "skipped":
            out.append(f"{head}: {n.note}")
        else:
            out.append(f"{head} {n.ip} is free on {_where(n)}" + (f" ({n.note})" if n.note else ""))
        for w in n.warnings:
            out.append(f"WARNING: {p} {g.label} {n.nic} {n.ip}: {w.detail}")
    return [printable(line) for line in out]


def table(report: Report, color: bool = False, width: int | None = None) -> str:
    """A human table for the shell; colour only when asked (a TTY). width: the
    terminal's columns (wrap to fit, one finding per line); None: one row per line."""
    from phoenix_hook.checks.grid import grid, sgr, wrap_lines
    paint = {"clear": "32", "conflict": "31;1", "error": "33", "skipped": "2"}
    rows = []
    for g in report.guests:
        label = f"{g.label} {g.name or ''}".strip()
        if g.error and not g.nics:
            rows.append((label, "-", "-", "-", "error", [g.error]))
        for n in g.nics:
            details = [c.line or c.detail for c in n.conflicts] or ([n.note] if n.note else [])
            details += [f"warning: {w.detail}" for w in n.warnings]
            rows.append((label, n.nic, n.ip or "-", _where(n) if n.bridge else "-", n.verdict, details))
    # Printable before laid out: a name or note from a config never moves the cursor.
    rows = [tuple(printable(c) if isinstance(c, str) else [printable(x) for x in c] for c in r) for r in rows]

    def painter(column, text):
        return sgr(paint.get(text.strip(), "0"), text) if column == "VERDICT" else text
    lines = grid(("GUEST", "NIC", "IP", "BRIDGE", "VERDICT", "DETAIL"), rows, width,
                 painter if color else None)
    notes = [f"{g.label}: {x}" for g in report.guests for x in g.notes]
    notes += [f"{g.label}: {g.error}" for g in report.guests if g.error and g.nics]
    lines += wrap_lines([printable(x) for x in notes], width)
    lines.append(f"verdict: {report.verdict}")
    return "\n".join(lines)
