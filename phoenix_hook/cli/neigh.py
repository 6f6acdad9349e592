"""`phoenix-hook neigh`: this host's ARP / IPv6 neighbour table, with each entry's guest.

Reads the table the kernel already has (neigh.py: `ip -j neigh`, else
/proc/net/arp); sends nothing. Owners and flags as `scan` (owners.py),
except that the table is one address space: claims match by address on any
bridge or VLAN. The kernel keeps one MAC per address and device, so a live
conflict on one segment shows here as a MAC that changes; `scan` sees it
as DUP.

JSON (one object): {"source": "ip" | "/proc/net/arp",
  "rows": [{"ip", "family", "mac", "dev", "state": [..], "vendor", "owner", "owner_vmid",
            "owner_by", "mac_owner", "flags": [..]}]}
Exit: 0 nothing wrong, 1 a DUP or MAC-MISMATCH, 2 bad usage, 3 could not read the table.
"""
from __future__ import annotations

import ipaddress
import json

from phoenix_hook.cli.main import CannotCheck, load_settings
from phoenix_hook.checks import answers
from phoenix_hook.pve import sources
from phoenix_hook.checks.owners import Owners, host_claims, mac_claims


def add_parser(sub):
    p = sub.add_parser("neigh", help="this host's neighbour table, with each entry's guest",
                       description="List this host's ARP and IPv6 neighbour entries with the vendor "
                       "of each MAC and the guest configured for each address; flags as in scan. "
                       "Sends nothing. Exit 0 nothing wrong, 1 DUP or MAC-MISMATCH, 2 bad usage or "
                       "settings, 3 could not read the table.")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--all", action="store_true", help="also entries with no MAC yet (INCOMPLETE, FAILED)")
    sources.add_argument(p)
    return p


def run(args) -> int:
    from phoenix_hook.net import neigh, vendor
    from phoenix_hook.cli.scan import cluster_claims
    from phoenix_hook.cli.tables import columns

    settings = load_settings(args)
    try:
        entries, source = neigh.read_neighbours()
    except neigh.NeighError as exc:
        raise CannotCheck(exc.strerror) from None
    guests, claims = cluster_claims(settings, args.source, ipv6=True)
    addrs = neigh.read_addresses() or []
    claims += host_claims(settings.node, [(a.ip, a.mac) for a in addrs
                                         if not ipaddress.ip_address(a.ip).is_loopback])
    rows = answers.neigh_rows(entries, Owners(claims, mac_claims(guests)), vendor.vendor, args.all)
    if args.json:
        print(json.dumps({"source": source, "rows": rows}, indent=2))
    else:
        from phoenix_hook.cli.tables import terminal
        term = terminal()
        cells = [("IP", "MAC", "DEV", "STATE", "VENDOR", "OWNER", "FLAGS")]
        for r in rows:
            flags = answers.flag_words(r["flags"], r["mac_owner"])
            cells.append((r["ip"], r["mac"] or "-", r["dev"] or "-", ",".join(r["state"]) or "-",
                          (r["vendor"] or "-")[:32], r["owner"] or "-", flags))
        print(f"{len(rows)} neighbours (from {source})")
        if rows:
            print("\n".join(columns(cells, term.color, term.width)))
    return answers.exit_code(r["flags"] for r in rows)
