"""`phoenix-hook audit [--live]`: config-level findings over the whole cluster, no probing.

With dhcp_leases in the settings, the leases too (dhcp-lease findings); with
--live, the addresses running guests really hold (drift, duplicate-ip).
"""
from __future__ import annotations

import sys

from phoenix_hook.cli.main import CannotCheck, load_settings


def add_parser(sub):
    from phoenix_hook.pve import sources
    p = sub.add_parser("audit", help="find duplicate IPs/MACs and bad addresses in every guest config",
                       description="Read every guest config of the cluster (no probing) and report "
                       "duplicate static IPs, duplicate MACs, static IPs in DHCP pools, guest IPs "
                       "equal to a node address or a gateway, guest IPs that are their subnet's "
                       "network or broadcast address, gateways outside the subnet, malformed network "
                       "lines, guests with a static address but no phoenix-hook hookscript "
                       "(unprotected) and, with --source api, nodes that lack a guest's hookscript "
                       "(hookscript-missing); with dhcp_leases set, leases of guests' static addresses "
                       "(dhcp-lease). --live also reads the addresses running guests really hold "
                       "(drift, duplicate-ip). Exit 0 nothing found, 1 findings, 2 bad usage or "
                       "config, 3 could not read the configs or a lease file.")
    p.add_argument("--json", action="store_true",
                   help="one JSON object (README 'The whole cluster: phoenix-hook audit')")
    p.add_argument("--live", action="store_true", help="also read running guests' real addresses "
                   "(containers: lxc-info and nsenter; VMs: the guest agent; --source api: the API)")
    sources.add_argument(p)
    return p


def run(args) -> int:
    from phoenix_hook.checks import audit, coverage
    from phoenix_hook.pve import files as pve, sources

    settings = load_settings(args)
    source, guests = sources.read_guests(settings, args.source)
    try:
        node_ips = sources.node_addresses(source)
    except pve.SourceError as exc:
        raise CannotCheck(str(exc)) from None
    found = audit.audit(guests, dhcp_ranges=settings.dhcp_ranges, node_ips=node_ips,
                        ignored=settings.ignored if settings.ignore else None)
    found += coverage.unprotected(guests)
    if hasattr(source, "snippets"):          # the API can ask every node what it has
        found += _missing_snippets(source, guests)
    extra: dict = {}
    if settings.dhcp_leases:
        import time

        from phoenix_hook.checks import leases
        from phoenix_hook.cli.leases import load
        now = time.time()
        rows = leases.rows(leases.active(load(settings), now), guests)
        found += leases.findings(rows, now)
    if args.live:
        from phoenix_hook.checks import live as live_checks
        from phoenix_hook.pve import live
        seen, skipped, stopped = live.read_running(source, guests, settings.node)
        errors = [s["reason"] for s in skipped if s["kind"] == "error"]
        if errors and not seen:
            raise CannotCheck(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
        found += live_checks.findings(guests, seen)
        extra["live"] = {"read": sorted(seen), "stopped": stopped, "skipped": skipped}
        for s in skipped:
            sys.stderr.write(f"phoenix-hook: note: {s['reason']}\n")
    found = audit.sort_findings(found)
    if args.json:
        print(audit.to_json(found, guests, extra))
    else:
        from phoenix_hook.cli.tables import terminal
        term = terminal()
        print(audit.table(found, guests, color=term.color, width=term.width))
        if args.live:
            live_doc = extra["live"]
            print(f"live: {len(live_doc['read'])} running guests read, {len(skipped)} skipped, "
                  f"{stopped} not running")
    return 1 if found else 0


def _missing_snippets(source, guests):
    from phoenix_hook.checks import coverage
    from phoenix_hook.pve import files as pve
    try:
        nodes = source.nodes()
    except pve.SourceError as exc:       # the configs were read: audit them, say what is left out
        sys.stderr.write(f"phoenix-hook: note: hookscripts not checked on the nodes: {exc}\n")
        return []
    asked: dict = {}

    def listing(node, storage):
        if (node, storage) not in asked:
            asked[(node, storage)] = source.snippets(node, storage)
            if asked[(node, storage)] is None:
                sys.stderr.write(f"phoenix-hook: note: node {node} did not list storage {storage}; "
                                 f"its hookscripts are not checked\n")
        return asked[(node, storage)]
    return coverage.missing_snippets(guests, nodes, listing)
