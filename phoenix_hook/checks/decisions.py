"""The decision log read back: records, filters, one-line summaries. Pure.

hook.py appends one JSON object per decision to log_file (README "Past
decisions: phoenix-hook log" lists the keys). Reading tolerates what a crash or
a full disk leaves behind: a line that is not a JSON object is counted, not fatal.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"          # hook._log writes time.strftime with this
_RELATIVE = re.compile(r"^([0-9]{1,6})\s*(s|m|min|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
SINCE_HELP = "e.g. 2h, 7d, 30m, today, 2026-11-25 or '2026-11-25 14:00' (local time)"


class SinceError(ValueError):
    pass


def parse_records(lines):
    """(records, bad): the JSON objects among the lines, and the 1-based numbers of the
    lines that are not one (blank lines are neither)."""
    records, bad = [], []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except (ValueError, RecursionError):
            bad.append(i)
            continue
        if isinstance(r, dict):
            records.append(r)
        else:
            bad.append(i)
    return records, bad


def record_time(r: dict) -> datetime | None:
    t = r.get("time")
    if not isinstance(t, str):
        return None
    try:
        return datetime.strptime(t, TIME_FORMAT)
    except ValueError:
        return None


def parse_since(text: str, now: datetime) -> datetime:
    """--since: a span back from now (2h, 7d), today / yesterday, or a local date and time.
    now must be timezone-aware (local time); the result is too."""
    t = text.strip().lower()
    m = _RELATIVE.match(t)
    if m:
        return now - timedelta(seconds=int(m.group(1)) * _UNIT_S[m.group(2)])
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if t == "today":
        return midnight
    if t == "yesterday":
        return midnight - timedelta(days=1)
    for fmt in ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M",
                "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            d = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        return d if d.tzinfo else d.replace(tzinfo=now.tzinfo or timezone.utc)
    raise SinceError(f"--since {text!r} is not a time; use {SINCE_HELP}")


def select(records, vmid: int | None = None, since: datetime | None = None):
    """The records of one guest and/or from a moment on, in log order (newest last).
    With since, a record without a readable time is left out."""
    out = []
    for r in records:
        if vmid is not None and r.get("vmid") != vmid:
            continue
        if since is not None:
            t = record_time(r)
            if t is None or t < since:
                continue
        out.append(r)
    return out


def guest_label(r: dict) -> str:
    kind = {"lxc": "CT", "qemu": "VM"}.get(r.get("type"), "guest")
    return f"{kind} {r.get('vmid', '?')}"


def details(r: dict) -> list[str]:
    """What happened, one finding per item: the MAC that answered, why it could not
    check, the mode that let it through."""
    out = []
    if r.get("migrated_from"):
        out.append(f"arrived by live migration from {r['migrated_from']}: not probed")
    if r.get("mode") == "off" and r.get("verdict") == "skipped":
        out.append("mode = off: not checked")
    report = r.get("report") if isinstance(r.get("report"), dict) else {}
    for n in report.get("nics") or []:
        if not isinstance(n, dict):
            continue
        where = f"{n.get('nic', '?')} {n.get('ip') or ''}".strip()
        for c in n.get("conflicts") or []:
            if not isinstance(c, dict):
                continue
            if c.get("mac"):
                vendor = f" ({c['vendor']})" if c.get("vendor") else ""
                out.append(f"{where}: answered by {c['mac']}{vendor}")
            else:
                out.append(f"{where}: {c.get('detail', 'conflict')}")
    if r.get("error"):
        out.append(f"not checked: {r['error']}")
    if not out and r.get("verdict") == "clear":
        free = [str(n.get("ip")) for n in report.get("nics") or []
                if isinstance(n, dict) and n.get("verdict") == "clear" and n.get("ip")]
        if free:
            out.append("free: " + ", ".join(free))
    return out


def show_time(r: dict) -> str:
    t = record_time(r)
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else str(r.get("time", "?"))


def rows(records) -> list[tuple]:
    """Table rows: TIME, GUEST, VERDICT, ACTION, DETAIL (a list)."""
    return [(show_time(r), guest_label(r), str(r.get("verdict", "?")), str(r.get("action", "?")),
             details(r)) for r in records]
