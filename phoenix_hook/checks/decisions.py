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
# TIME_FORMAT read by hand: strptime costs 60 us a record, a big log has 10^5 records.
_TIME = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})([+-])([0-9]{2})([0-9]{2})$")
_RELATIVE = re.compile(r"^([0-9]{1,6})\s*(s|m|min|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
SINCE_HELP = "e.g. 2h, 7d, 30m, today, 2026-11-25 or '2026-11-25 14:00' (local time)"


class SinceError(ValueError):
    pass


def parse_records(lines, keep=None, into=None):
    """(records, bad): the JSON objects among the lines (those keep(record) accepts,
    when given), and the 1-based numbers of the lines that are not one (blank
    lines are neither). lines may be any iterable, a file too; into: where the
    records go (a bounded deque keeps only the last ones), a new list by default."""
    records = [] if into is None else into
    bad = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except (ValueError, RecursionError):
            bad.append(i)
            continue
        if not isinstance(r, dict):
            bad.append(i)
        elif keep is None or keep(r):
            records.append(r)
    return records, bad


def mentions(vmid: int):
    """A cheap test a line must pass to hold guest vmid's record (any JSON spacing)."""
    pattern = re.compile(rf'"vmid"\s*:\s*{vmid}(?![0-9])')
    return lambda line: pattern.search(line) is not None


def record_time(r: dict) -> datetime | None:
    t = r.get("time")
    m = _TIME.match(t) if isinstance(t, str) else None
    if not m:
        return None
    y, mo, d, h, mi, sec, sign, oh, om = m.groups()
    offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec),
                        tzinfo=timezone(offset))
    except ValueError:                      # month 13, hour 25, offset of a day or more
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


def wanted(r: dict, vmid: int | None = None, since: datetime | None = None) -> bool:
    """Is this record of the guest and from the moment asked for? With since, a
    record without a readable time is not."""
    if vmid is not None and r.get("vmid") != vmid:
        return False
    if since is not None:
        t = record_time(r)
        if t is None or t < since:
            return False
    return True


def select(records, vmid: int | None = None, since: datetime | None = None):
    """The records of one guest and/or from a moment on, in log order (newest last)."""
    return [r for r in records if wanted(r, vmid, since)]


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
    """The recorded local time as the admin reads it (the offset dropped)."""
    t = r.get("time")
    if isinstance(t, str) and _TIME.match(t):
        return f"{t[:10]} {t[11:19]}"
    return str(t if t is not None else "?")


def rows(records) -> list[tuple]:
    """Table rows: TIME, GUEST, VERDICT, ACTION, DETAIL (a list)."""
    return [(show_time(r), guest_label(r), str(r.get("verdict", "?")), str(r.get("action", "?")),
             details(r)) for r in records]
