"""`phoenix-hook reservations --format dnsmasq|isc|kea|csv`: DHCP reservations for static guests."""
from __future__ import annotations

import sys

from phoenix_hook.cli.main import load_settings

FORMATS = ("dnsmasq", "isc", "kea", "csv")


def add_parser(sub):
    from phoenix_hook.pve import sources
    p = sub.add_parser("reservations", help="DHCP reservations for every guest's static address",
                       description="Print a DHCP reservation (MAC -> IPv4, hostname) for every "
                       "guest NIC with a static IPv4 address and a MAC, in the DHCP server's own "
                       "syntax. NICs that cannot be reserved (shared MAC or IP, no MAC, an "
                       "unreadable network line) are named on stderr ('not reserved') and make the "
                       "exit code 1; templates and NICs without a static IPv4 are named too ('left "
                       "out'). Exit 0 every static NIC reserved, 1 some not, 2 bad usage or "
                       "settings, 3 could not read the configs.")
    p.add_argument("--format", required=True, choices=FORMATS, help="dnsmasq dhcp-host= lines, ISC "
                   "dhcpd host blocks, Kea Dhcp4 reservations JSON, or CSV")
    sources.add_argument(p)
    return p


def run(args) -> int:
    from phoenix_hook.checks import reservations
    from phoenix_hook.pve import sources

    settings = load_settings(args)
    _source, guests = sources.read_guests(settings, args.source)
    found, skipped = reservations.collect(guests)
    sys.stdout.write(reservations.render(found, args.format))
    for line in reservations.left_out(guests):
        sys.stderr.write(f"phoenix-hook: left out: {line}\n")
    for line in skipped:
        sys.stderr.write(f"phoenix-hook: not reserved: {line}\n")
    return 1 if skipped else 0
