"""`phoenix-hook log [VMID] [--since WHEN] [--json]`: the hook's past decisions, newest last.

Reads log_file and the copies logrotate left beside it (log_file.1,
log_file.2.gz, ...; oldest first). The records are hook.py's, the keys are
listed in README "Past decisions: phoenix-hook log"; checks/decisions.py reads them.
Exit 0 (also when nothing was logged yet), 2 bad usage, 3 cannot read the log.
"""
from __future__ import annotations

import collections
import gzip
import json
import os
import re
import sys
from datetime import datetime

from phoenix_hook.cli.main import CannotCheck, UsageError, command_line, load_settings, vmid_arg


def add_parser(sub):
    from phoenix_hook.checks.decisions import SINCE_HELP
    p = sub.add_parser("log", help="the hook's past decisions (the decision log), newest last",
                       description="Show what the hookscript decided at each pre-start: time, guest, "
                       "verdict, action and the MAC that answered, read from log_file and its "
                       "rotated copies, newest last. Exit 0, 2 bad usage, 3 cannot read the log.")
    p.add_argument("vmid", nargs="?", metavar="VMID", help="only this guest")
    p.add_argument("--since", metavar="WHEN", help=f"only decisions from then on: {SINCE_HELP}")
    p.add_argument("--last", type=int, metavar="N", help="only the last N decisions")
    p.add_argument("--json", action="store_true", help="the records as logged, one JSON object per line "
                   "(README 'Past decisions: phoenix-hook log')")
    return p


def log_files(path: str) -> list[str]:
    """path's rotated copies, oldest first, then path itself: logrotate's numbered
    names (path.1, path.2.gz; a higher number is older) and dateext names (path-20261125)."""
    d, base = os.path.split(path)
    pat = re.compile(rf"^{re.escape(base)}(?:\.([0-9]+)|-([0-9]{{8,10}}))(?:\.gz)?$")
    numbered, dated = [], []
    try:
        names = os.listdir(d or ".")
    except OSError:
        names = []
    for name in names:
        m = pat.match(name)
        if m and m.group(1):
            numbered.append((int(m.group(1)), name))
        elif m:
            dated.append((m.group(2), name))
    return ([os.path.join(d, n) for _k, n in sorted(dated)] +
            [os.path.join(d, n) for _k, n in sorted(numbered, reverse=True)] + [path])


def open_log(path: str):
    """A log file as text lines; a rotated .gz copy decompressed on the way."""
    opener = gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", errors="replace")


def run(args) -> int:
    from phoenix_hook.checks import decisions

    vmid = None
    if args.vmid is not None:
        vmid = vmid_arg(args.vmid)
    if args.last is not None and args.last < 1:
        raise UsageError(f"--last {args.last}: use a number from 1 up")
    since = None
    if args.since is not None:
        try:
            since = decisions.parse_since(args.since, datetime.now().astimezone())
        except decisions.SinceError as exc:
            raise UsageError(str(exc)) from None
    settings = load_settings(args)
    # Filtered file by file: a year of logs need not be held in memory at once.
    chosen: collections.deque = collections.deque(maxlen=args.last)
    files = log_files(settings.log_file)

    def keep(r):
        return decisions.wanted(r, vmid, since)
    quick = decisions.mentions(vmid) if vmid is not None else None
    for path in files:
        try:
            with open_log(path) as f:
                # A line that cannot hold the guest's record is blanked, not dropped:
                # line numbers in the note below stay the file's own.
                lines = (line if quick is None or quick(line) else "" for line in f)
                _got, bad = decisions.parse_records(lines, keep, into=chosen)
        except FileNotFoundError:
            continue
        except PermissionError:
            raise CannotCheck(f"cannot read the decision log {path}: permission denied; run it as root: "
                              f"sudo {command_line(args)}") from None
        except (OSError, EOFError) as exc:        # a truncated .gz: say so, keep the others
            sys.stderr.write(f"phoenix-hook: note: {path} cannot be read "
                             f"({getattr(exc, 'strerror', None) or exc}); left out\n")
            continue
        if bad:
            sys.stderr.write(f"phoenix-hook: note: {len(bad)} line{'s' if len(bad) > 1 else ''} of {path} "
                             f"{'are' if len(bad) > 1 else 'is'} not a decision record (line "
                             f"{', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''}); left out\n")
    if not any(os.path.exists(p) for p in files):
        sys.stderr.write(f"phoenix-hook: no decisions logged yet: {settings.log_file} does not exist (the "
                         f"hook appends a line at each start of a guest it is attached to; log_file in "
                         f"the settings names the file)\n")
        return 0
    chosen = list(chosen)
    if args.json:
        for r in chosen:
            print(json.dumps(r, sort_keys=True))
        return 0
    if not chosen:
        what = (f" for guest {vmid}" if vmid else "") + (f" since {args.since}" if since else "")
        print(f"no decisions{what} in {settings.log_file}")
        return 0
    from phoenix_hook.checks.grid import grid, sgr
    from phoenix_hook.cli.tables import terminal
    term = terminal()
    paint = {"clear": "32", "conflict": "31;1", "error": "33", "skipped": "2"}

    def painter(column, text):
        return sgr(paint.get(text.strip()), text) if column == "VERDICT" else text
    lines = grid(("TIME", "GUEST", "VERDICT", "ACTION", "DETAIL"), decisions.rows(chosen), term.width,
                 painter if term.color else None)
    print("\n".join(lines))
    return 0
