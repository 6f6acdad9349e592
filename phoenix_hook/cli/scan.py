"""`phoenix-hook scan [CIDR]`: who answers ARP on a subnet, and whose guest each one is.

The sweep runs below (net/sweep.py over net/scan.py's schedule); who owns each
answer and its flags are checks/answers.py's; this module parses the command
line and renders a table, CSV or JSON.

JSON (one object, keys stable):
  {"cidr", "bridge", "iface", "vlan", "source_ip",
   "rows": [{"ip", "mac", "vendor", "owner", "owner_vmid", "owner_by", "mac_owner", "flags": [..]}],
   "silent": [{"ip", "vmid", "nic", "owner", "node"}],
   "local": [{"ip", "iface", "mac"}],
   "sent", "elapsed_ms", "rate", "retries", "timeout_ms", "frames_lost"}
Exit: 0 nothing wrong, 1 a DUP or MAC-MISMATCH, 2 bad usage, 3 could not scan
(also when the kernel dropped received frames and nothing was found: answers may be missing).
"""
from __future__ import annotations

import json
import sys

from phoenix_hook.checks import answers
from phoenix_hook.checks.owners import (DUP, MISMATCH, UNCLAIMED, Owners, guest_claims, node_claims,
                                        host_claims, mac_claims)
from phoenix_hook.cli.main import UsageError, load_settings, need_raw_sockets
from phoenix_hook.cli.tables import columns
from phoenix_hook.net import arp, scan, sweep
from phoenix_hook.pve import sources


def cluster_claims(settings, requested_source, **guest_filter):
    """(guests, claims of guests and other nodes) from the chosen guest source (scan, neigh):
    the reading of the configs, at the edge; owners.py decides over them."""
    from phoenix_hook.errors import CannotCheck, SourceError
    source, guests = sources.read_guests(settings, requested_source)
    try:
        nodes = sources.node_addresses(source)
    except SourceError as exc:
        raise CannotCheck(str(exc)) from None
    claims = guest_claims(guests, **guest_filter)
    claims += node_claims([(name, ip) for ip, name in nodes.items()], settings.node)
    return guests, claims


def add_parser(sub):
    p = sub.add_parser("scan", help="ARP-sweep a subnet and name each answer's guest",
                       description="Send an ARP request to every address of a subnet from a bridge, "
                       "collect every answer, and name the guest configured for each address. "
                       "Flags: DUP (several MACs answer for one address), MAC-MISMATCH (the "
                       "address's guest is configured with another MAC), UNCLAIMED (nobody claims "
                       "it). Exit 0 nothing wrong, 1 DUP or MAC-MISMATCH, 2 bad usage, 3 could "
                       "not scan.")
    p.add_argument("cidr", nargs="?", metavar="CIDR",
                   help="subnet to sweep, e.g. 10.0.0.0/24 (default: the bridge's own subnet)")
    p.add_argument("--bridge", default="vmbr0", help="bridge to send from (default vmbr0)")
    p.add_argument("--vlan", type=int, metavar="N", help="sweep VLAN N (802.1Q tag, as a guest's tag=)")
    p.add_argument("--rate", type=int, default=scan.RATE, metavar="PPS",
                   help=f"requests per second, at most (default {scan.RATE})")
    p.add_argument("--retries", type=int, default=scan.RETRIES, metavar="N",
                   help=f"requests after the first to an address that has not answered "
                        f"(default {scan.RETRIES})")
    p.add_argument("--timeout-ms", type=int, default=scan.TIMEOUT_MS, metavar="MS",
                   help=f"wait before the first retry; each further wait is {scan.BACKOFF}x longer "
                        f"(default {scan.TIMEOUT_MS})")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object")
    out.add_argument("--csv", action="store_true", help="CSV rows; silent guest addresses "
                     "as rows with flag SILENT and no MAC")
    p.add_argument("--yes", action="store_true", help=f"allow a subnet wider than "
                   f"/{scan.WIDEST_WITHOUT_YES}")
    sources.add_argument(p)
    return p


def _check_options(args) -> None:
    if not 1 <= args.rate <= 100000:
        raise UsageError(f"--rate {args.rate} is out of range; use 1 to 100000 requests per second")
    if not 0 <= args.retries <= 10:
        raise UsageError(f"--retries {args.retries} is out of range; use 0 to 10")
    if not 10 <= args.timeout_ms <= 60000:
        raise UsageError(f"--timeout-ms {args.timeout_ms} is out of range; use 10 to 60000")
    if args.vlan is not None and not 1 <= args.vlan <= 4094:
        raise UsageError(f"--vlan {args.vlan} is not a VLAN ID; use 1 to 4094")


class _Progress:
    """One self-overwriting line on stderr, for long sweeps on a TTY only."""

    def __init__(self, total: int, label: str, on: bool):
        self.total, self.label, self.on, self.next = total, label, on, 0.0

    def __call__(self, sweep, now, final=False):
        if not self.on or (now < self.next and not final):
            return
        self.next = now + 0.2
        if final:
            sys.stderr.write("\r\033[K")
        else:
            sys.stderr.write(f"\r{self.label}: {sweep.sent} requests sent, "
                             f"{len(sweep.answers)}/{self.total} addresses answered\033[K")
        sys.stderr.flush()


def run(args) -> int:
    from phoenix_hook.net import vendor

    settings = load_settings(args)
    _check_options(args)
    net = None
    if args.cidr:                       # usage first: a bad CIDR is exit 2 whatever the bridge
        try:
            net = scan.parse_cidr(args.cidr)
        except scan.ScanUsage as exc:
            raise UsageError(str(exc)) from None
        sweep.check_size(net, args.yes, args.rate)

    def progress_factory(net, link, _sw):
        label = f"scan {net} on {link.name}"
        return _Progress(net.num_addresses, label, sys.stderr.isatty() and net.num_addresses > 1024)

    def warn(line):
        sys.stderr.write(f"phoenix-hook: note: {line}\n")

    need_raw_sockets(args)
    # The claims are read first: a source that cannot be read stops the scan before it sends.
    guests, claims = cluster_claims(settings, args.source, bridge=args.bridge, vlan=args.vlan)
    res = sweep.sweep(args.bridge, args.vlan, net, rate=args.rate, retries=args.retries,
                      timeout_ms=args.timeout_ms, yes=args.yes, progress_factory=progress_factory,
                      warn=warn)
    claims += host_claims(settings.node, [(ip, mac) for ip, _dev, mac in res.local])
    owners = Owners(claims, mac_claims(guests))
    rows = answers.build_rows(res.answers, owners, vendor.vendor)
    heard = {r.ip for r in rows}
    quiet = answers.silent(claims, res.net, heard)
    result = {"cidr": str(res.net), "bridge": args.bridge, "iface": res.link.name, "vlan": args.vlan,
              "source_ip": res.source_ip or arp.ZERO_IP, "rows": [r.to_json() for r in rows],
              "silent": [s.to_json() for s in quiet],
              "local": [{"ip": ip, "iface": dev, "mac": mac} for ip, dev, mac in res.local
                        if ip in res.in_net],
              "sent": res.sent, "elapsed_ms": res.elapsed_ms, "rate": args.rate,
              "retries": args.retries, "timeout_ms": args.timeout_ms, "frames_lost": res.lost}
    if res.lost:
        sys.stderr.write(f"phoenix-hook: WARNING: the kernel dropped {res.lost} received frames on "
                         f"{res.link.name} during the sweep (receive buffer full: a flood?); answers "
                         f"may be missing, silence proves nothing; rerun, or lower --rate\n")
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.csv:
        print(csv_text(rows, quiet), end="")
    else:
        if not guests:
            sys.stderr.write(f"phoenix-hook: note: no guest configs under {settings.pve_root}/nodes; "
                             f"owners are this host's addresses only\n")
        from phoenix_hook.cli.tables import terminal
        term = terminal()
        print(table(result, rows, quiet, color=term.color, width=term.width))
    code = answers.exit_code(r.flags for r in rows)
    return 3 if code == 0 and res.lost else code


# -- output ---------------------------------------------------------------------
def csv_text(rows, quiet) -> str:
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["ip", "mac", "vendor", "owner", "owner_vmid", "flags"])
    for r in rows:
        w.writerow([r.ip, r.mac, r.vendor or "", r.owner or "", r.owner_vmid or "", " ".join(r.flags)])
    for s in quiet:
        w.writerow([s.ip, "", "", s.owner, s.vmid or "", "SILENT"])
    return buf.getvalue()


def table(result, rows, quiet, color=False, width=None) -> str:
    vlan = f" VLAN {result['vlan']}" if result["vlan"] is not None else ""
    n_ips = len({r.ip for r in rows})
    head = (f"{result['cidr']} on {result['bridge']}{vlan}: {len(rows)} answers from {n_ips} addresses, "
            f"{len(quiet)} silent guest addresses ({result['sent']} requests from "
            f"{result['source_ip']} in {result['elapsed_ms'] / 1000:.2f} s)")
    from phoenix_hook.checks.grid import wrap_lines
    out = wrap_lines([head], width)
    if rows:
        cells = [("IP", "MAC", "VENDOR", "OWNER", "FLAGS")]
        cells += [(r.ip, r.mac, (r.vendor or "-")[:32], r.owner or "-",
                   answers.flag_words(r.flags, r.mac_owner)) for r in rows]
        out += [""] + columns(cells, color, width)
    if quiet:
        out += ["", "Configured but silent (stopped, or not reachable here):"]
        out += ["  " + x for x in columns([("IP", "GUEST", "NIC")] +
                                          [(s.ip, s.owner, s.nic or "-") for s in quiet],
                                          width=width - 2 if width else None)]
    if result["local"]:
        out += [""] + wrap_lines(["This host holds " + ", ".join(f"{x['ip']} ({x['iface']})"
                                                            for x in result["local"])
                                  + ": probed from 0.0.0.0, any answer is someone else's"], width)
    problems = [r for r in rows if DUP in r.flags or MISMATCH in r.flags]
    if problems:
        seen = dict.fromkeys(f"{r.ip} " + " ".join(f for f in r.flags if f != UNCLAIMED)
                             for r in problems)      # rows are in address order already
        out += [""] + wrap_lines(["Conflicts: " + "; ".join(seen)], width)
    return "\n".join(out)
