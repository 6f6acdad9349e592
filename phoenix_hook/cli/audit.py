"""`phoenix-hook audit`: config-level findings over the whole cluster, no probing."""
from __future__ import annotations

import sys

from phoenix_hook.cli.main import CannotCheck, load_settings


def add_parser(sub):
    from phoenix_hook.pve import sources
    p = sub.add_parser("audit", help="find duplicate IPs/MACs and bad addresses in every guest config",
                       description="Read every guest config of the cluster (no probing) and report "
                       "duplicate static IPs, duplicate MACs, static IPs in DHCP pools, guest IPs "
                       "equal to a node address or a gateway, network/broadcast addresses and "
                       "gateways outside the subnet, malformed network lines, guests with a static "
                       "address but no phoenix-hook hookscript (unprotected) and, with --source api, "
                       "nodes that lack a guest's hookscript (hookscript-missing). Exit 0 nothing "
                       "found, 1 findings, 2 bad usage or config, 3 could not read the configs.")
    p.add_argument("--json", action="store_true", help="one JSON object (README 'audit')")
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
    found.sort(key=lambda f: (audit.ORDER.index(f.kind), f.vmids, f.ip or "", f.mac or ""))
    if args.json:
        print(audit.to_json(found, guests))
    else:
        print(audit.table(found, guests, color=sys.stdout.isatty()))
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
