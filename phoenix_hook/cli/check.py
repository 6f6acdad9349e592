"""`phoenix-hook check VMID... | --all`: the hook's check, by hand, for any guest."""
from __future__ import annotations

import sys

from phoenix_hook.cli.main import CannotCheck, UsageError, check_timeout_ms, load_settings, need_raw_sockets, vmid_arg


def add_parser(sub):
    p = sub.add_parser("check", help="probe a guest's static addresses now",
                       description="Probe the static IPv4 and IPv6 addresses of guests on the wire, as the "
                       "hookscript does at pre-start. Exit 0 all clear, 1 a conflict, 2 bad usage "
                       "or config, 3 could not check.")
    p.add_argument("vmids", nargs="*", metavar="VMID", help="guest IDs")
    p.set_defaults(_usage=p.format_usage)
    p.add_argument("--all", action="store_true", help="every guest (CT and VM) of this node")
    p.add_argument("--json", action="store_true", help="one JSON object (README 'JSON output')")
    p.add_argument("--timeout-ms", type=int, metavar="MS",
                   help="probe window, overriding probe_timeout_ms (50-60000)")
    from phoenix_hook.pve import sources
    sources.add_argument(p)
    return p


def guest_source(args, settings):
    """The configs to read: files under pve_root, or the API (--source, sources.py)."""
    from phoenix_hook.pve import sources
    return sources.open_source(settings, getattr(args, "source", None))


def _no_guests_here(source, settings) -> None:
    """--all found no guest on this node: a wrong `node` would check nothing and pass,
    so when other nodes have guests, name them (exit 2)."""
    others = sorted({c.node for c in source.config_files()})
    if others:
        where = settings.path or "the settings file"
        raise UsageError(f"node {settings.node} has no guests; nodes with guests: {', '.join(others)}; "
                         f"set node in {where} to this node's name as in /etc/pve/nodes/")


def run(args) -> int:
    from phoenix_hook.pve import files as pve
    from phoenix_hook.checks.check import Options, run_check
    from phoenix_hook.checks.report import table

    if not args.vmids and not args.all:
        sys.stderr.write(args._usage())
        raise UsageError("name the guests to check (check 951 952), or --all for every guest of this node")
    if args.vmids and args.all:
        raise UsageError("name guests to check or use --all, not both")
    check_timeout_ms(args.timeout_ms)
    vmids = [vmid_arg(v) for v in args.vmids]
    settings = load_settings(args)
    need_raw_sockets(args)
    from phoenix_hook.pve.sources import running_checker
    source = guest_source(args, settings)
    running = running_checker(source)
    try:
        if args.all:
            vmids = [c.vmid for c in source.config_files(node=settings.node)]
            if not vmids:
                _no_guests_here(source, settings)
        guests = []
        for vmid in vmids:
            g = source.guest(vmid)
            if g.template:
                continue
            if not running(g.vmid, g.type):
                # Stopped: check what the next start will use, pending changes
                # included (PVE applies them before pre-start).
                g = source.guest(vmid, with_pending=True)
            guests.append(g)
    except pve.NoSuchGuest as exc:
        raise UsageError(str(exc)) from None
    except pve.SourceError as exc:
        raise CannotCheck(str(exc)) from None
    opts = Options(timeout=args.timeout_ms, stop_on_first=False, running=running)
    report = run_check(guests, settings, opts, load_cluster=source.guests)
    if args.json:
        print(report.json())
    else:
        from phoenix_hook.cli.tables import terminal
        term = terminal()
        if not guests:
            print("no guests to check" + (f" on node {settings.node}" if args.all else ""))
        else:
            print(table(report, color=term.color, width=term.width))
    for line in what_the_hook_would_do(report, settings):
        sys.stderr.write(f"phoenix-hook: {line}\n")
    return report.exit_code


def what_the_hook_would_do(report, settings) -> list[str]:
    """For a guest whose mode is not enforce, what pre-start would do with this verdict:
    `check` exits 1 on any conflict, the hook refuses only in mode = enforce."""
    out = []
    for g in report.guests:
        mode, _timeout = settings.for_guest(g.vmid)
        where = f"[guest:{g.vmid}]" if "mode" in settings.guests.get(g.vmid, {}) else "the settings"
        if mode == "warn" and g.verdict == "conflict":
            out.append(f"{g.label} has mode = warn ({where}): at pre-start the hook would start it "
                       f"anyway, with WARNING lines; set mode = enforce to refuse the start")
        elif mode == "off":
            out.append(f"{g.label} has mode = off ({where}): the hook does not check it at pre-start")
    return out
