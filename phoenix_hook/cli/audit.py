"""`phoenix-hook audit`: config-level findings over the whole cluster, no probing."""
from __future__ import annotations

import sys

from phoenix_hook.cli.main import CannotCheck, load_settings


def add_parser(sub):
    from phoenix_hook.pve import sources
    p = sub.add_parser("audit", help="find duplicate IPs/MACs and bad addresses in every guest config",
                       description="Read every guest config of the cluster (no probing) and report "
                       "duplicate static IPs, duplicate MACs, static IPs in DHCP pools, guest IPs "
                       "equal to a node address or a gateway, and malformed network lines. Exit 0 "
                       "nothing found, 1 findings, 2 bad usage or config, 3 could not read the configs.")
    p.add_argument("--json", action="store_true", help="one JSON object (README 'audit')")
    sources.add_argument(p)
    return p


def run(args) -> int:
    from phoenix_hook.checks import audit
    from phoenix_hook.pve import files as pve, sources

    settings = load_settings(args)
    source, guests = sources.read_guests(settings, args.source)
    try:
        node_ips = sources.node_addresses(source)
    except pve.SourceError as exc:
        raise CannotCheck(str(exc)) from None
    found = audit.audit(guests, dhcp_ranges=settings.dhcp_ranges, node_ips=node_ips,
                        ignored=settings.ignored if settings.ignore else None)
    if args.json:
        print(audit.to_json(found, guests))
    else:
        print(audit.table(found, guests, color=sys.stdout.isatty()))
    return 1 if found else 0
