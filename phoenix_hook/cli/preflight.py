"""`phoenix-hook preflight PLAN... [ID...]`: check an orchestrator's plans before `pct create` / `qm create`."""
from __future__ import annotations

import sys

from phoenix_hook.cli.main import CannotCheck, UsageError, check_timeout_ms, load_settings, need_raw_sockets


def add_parser(sub):
    from phoenix_hook.pve import sources
    p = sub.add_parser("preflight", help="check plans of containers and VMs before they are created",
                       description="Check plans (the phoenix_lxc_configs.json or phoenix_vm_configs.json "
                       "shape, or a list of {vmid, nic, bridge, ip, mac, vlan}) against themselves and each "
                       "other, the cluster's guests, the host, the DHCP pools and the wire. Arguments that "
                       "are whole numbers are guest IDs to check (default: all); any other is a plan file. "
                       "Exit 0 all clear, 1 a conflict, 2 bad usage, plan or config, 3 could not check.")
    # nargs="*": no PLAN at all is said in our words, after the usage line
    p.add_argument("items", nargs="*", metavar="PLAN|ID",
                   help="plan files (JSON; - for standard input), then the IDs of the guests to check")
    p.set_defaults(_usage=p.format_usage)
    p.add_argument("--no-probe", action="store_true", help="config-level checks only, no ARP probes")
    p.add_argument("--json", action="store_true", help="one JSON object: check's shape, with 'plan' "
                   "entries in place of 'guests'")
    p.add_argument("--timeout-ms", type=int, metavar="MS",
                   help="probe window, overriding probe_timeout_ms (50-60000)")
    sources.add_argument(p)
    return p


def split_items(items) -> tuple[list[str], list[int]]:
    """(plan files, guest IDs): whole numbers are guest IDs, anything else a plan file."""
    plans, ids = [], []
    for v in items:
        if v.isascii() and v.isdigit():
            if not 100 <= int(v) <= 999999999 or len(v) > 9:
                raise UsageError(f"'{v}' is not a guest ID; IDs are numbers from 100 to 999999999 "
                                 f"(a plan file named like a number: write ./{v})")
            ids.append(int(v))
        else:
            plans.append(v)
    if not plans:
        raise UsageError("no plan file given; usage: phoenix-hook preflight PLAN... [ID...]")
    if plans.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    return plans, ids


def run(args) -> int:
    from phoenix_hook.pve import files as pve, sources
    from phoenix_hook.checks.plan import PlanError
    from phoenix_hook.checks.preflight import preflight

    if not args.items:
        sys.stderr.write(args._usage())
        raise UsageError("preflight needs PLAN, a plan file (or - for standard input); "
                         "guest IDs after it are optional (default: every entry)")
    settings = load_settings(args)
    check_timeout_ms(args.timeout_ms)
    plans, ctids = split_items(args.items)
    if not args.no_probe:
        need_raw_sockets(args, "or add --no-probe for the config-level checks only")
    source = sources.open_source(settings, args.source)
    try:
        report = preflight(plans[0] if len(plans) == 1 else plans, ctids, settings=settings, source=source,
                           probe=not args.no_probe, timeout_ms=args.timeout_ms)
    except PlanError as exc:
        raise UsageError(str(exc)) from None
    except pve.SourceError as exc:
        raise CannotCheck(str(exc)) from None
    if args.json:
        print(report.json())
    elif not report.guests:
        print("the plan has no guests to check")
    else:
        from phoenix_hook.cli.tables import terminal
        term = terminal()
        print(report.table(color=term.color, width=term.width))
    if not args.no_probe and any("does not exist on this host" in n.note
                                 for g in report.guests for n in g.nics if n.verdict == "error"):
        sys.stderr.write("phoenix-hook: probing needs the guests' bridges: run preflight on a PVE node, "
                         "or add --no-probe for the config-level checks only\n")
    return report.exit_code
